//! A private PostgreSQL for development and tests, started from the system's server binaries.
//!
//! herald needs nothing but PostgreSQL, so `herald dev` (and `make test`) start one when no
//! `DATABASE_URL` is given: its data lives in a directory of ours, it listens only on a unix
//! socket (no port to collide with), and it is stopped again by whoever started it. A second
//! start reuses the data; a start while it already runs (an operator command beside `herald dev`)
//! reuses the server and leaves it running.
//!
//! `initdb` and `postgres` refuse to run as root, and CI runs as root: then the server runs as the
//! `postgres` system user (or `herald-postgres`, created on demand), which owns the data directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::Command;

/// The role and database the private server is created with.
const LOCAL_USER: &str = "herald";
const LOCAL_DATABASE: &str = "herald";
const SOCKET_PATH_LIMIT: usize = 100;

/// How the private server trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on: for `herald dev` and benchmarks.
    Durable,
    /// fsync off: for throwaway test clusters, where a power cut loses nothing of value.
    Throwaway,
}

/// A running private PostgreSQL.
#[derive(Debug)]
pub struct LocalPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<String>,
    started_here: bool,
}

impl LocalPostgres {
    /// Starts (or reuses) the server whose data lives in `root`, creating it on first use.
    pub async fn start(root: &Path, durability: Durability) -> Result<Self> {
        let bin_dir = find_server_binaries()?;
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let root = root.canonicalize().with_context(|| format!("resolving {}", root.display()))?;
        let data_dir = root.join("data");
        let socket_dir = socket_dir_for(&root)?;
        let run_as = if running_as_root() { Some(unprivileged_user().await?) } else { None };
        let server = Self { bin_dir, data_dir, socket_dir, run_as, started_here: false };
        server.prepare_directories(&root).await?;
        if !server.data_dir.join("PG_VERSION").exists() {
            server.initdb().await?;
        }
        if server.is_running().await {
            server.ensure_database().await?;
            return Ok(server);
        }
        server.start_server(durability).await?;
        let server = Self { started_here: true, ..server };
        server.ensure_database().await?;
        Ok(server)
    }

    /// Creates the `herald` database on first start (initdb makes only `postgres`).
    async fn ensure_database(&self) -> Result<()> {
        use sqlx::Connection;
        let url = format!("postgres://{LOCAL_USER}@localhost/postgres?host={}", self.socket_dir.display());
        let mut connection = sqlx::PgConnection::connect(&url).await.context("connecting to the private PostgreSQL")?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(LOCAL_DATABASE)
            .fetch_one(&mut connection)
            .await?;
        if !exists {
            sqlx::query("CREATE DATABASE herald").execute(&mut connection).await?;
        }
        connection.close().await?;
        Ok(())
    }

    /// The URL of the server's `herald` database, over its unix socket.
    pub fn url(&self) -> String {
        format!("postgres://{LOCAL_USER}@localhost/{LOCAL_DATABASE}?host={}", self.socket_dir.display())
    }

    /// Restarts the running server whose data lives in `root` the hard way (`pg_ctl restart -m
    /// immediate`: no checkpoint, every connection cut, crash recovery at start), with the
    /// options it was started with. For `make chaos`.
    pub async fn restart_immediately(root: &Path) -> Result<()> {
        let root = root.canonicalize().with_context(|| format!("resolving {}", root.display()))?;
        let run_as = if running_as_root() { Some(unprivileged_user().await?) } else { None };
        let server = Self {
            bin_dir: find_server_binaries()?,
            data_dir: root.join("data"),
            socket_dir: socket_dir_for(&root)?,
            run_as,
            started_here: false,
        };
        let data_dir = server.data_dir.display().to_string();
        let log = server.data_dir.join("server.log").display().to_string();
        let status = server
            .command("pg_ctl", &["restart", "-D", &data_dir, "-m", "immediate", "-w", "-t", "60", "-l", &log])
            .stdout(Stdio::null())
            .status()
            .await
            .context("running pg_ctl restart")?;
        if !status.success() {
            bail!("pg_ctl restart failed ({status}) for {data_dir}");
        }
        Ok(())
    }

    /// True when this value started the server (and so [`LocalPostgres::stop`] stops it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Stops the server if this value started it; a reused server keeps running.
    pub async fn stop(self) -> Result<()> {
        if !self.started_here {
            return Ok(());
        }
        let data_dir = self.data_dir.display().to_string();
        let status = self
            .command("pg_ctl", &["stop", "-D", &data_dir, "-m", "fast", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .status()
            .await
            .context("running pg_ctl stop")?;
        if !status.success() {
            bail!("pg_ctl stop failed ({status}) for {data_dir}");
        }
        Ok(())
    }

    async fn prepare_directories(&self, root: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.socket_dir).with_context(|| format!("creating {}", self.socket_dir.display()))?;
        let Some(user) = &self.run_as else { return Ok(()) };
        std::fs::create_dir_all(&self.data_dir).with_context(|| format!("creating {}", self.data_dir.display()))?;
        for dir in [root, self.socket_dir.as_path()] {
            let status = Command::new("chown")
                .args(["-R", &format!("{user}:"), &dir.display().to_string()])
                .status()
                .await
                .context("running chown")?;
            if !status.success() {
                bail!("could not give {} to user {user}", dir.display());
            }
        }
        let reachable = Command::new("runuser")
            .args(["-u", user, "--", "test", "-w", &self.data_dir.display().to_string()])
            .status()
            .await
            .context("running runuser")?;
        if !reachable.success() {
            bail!(
                "the private PostgreSQL runs as user {user}, who cannot reach {}: set HERALD_DATA_DIR to a \
                 directory every user can traverse (e.g. under /tmp), or set DATABASE_URL",
                self.data_dir.display()
            );
        }
        Ok(())
    }

    async fn initdb(&self) -> Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let output = self
            .command(
                "initdb",
                &["-D", &data_dir, "-U", LOCAL_USER, "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"],
            )
            .output()
            .await
            .context("running initdb")?;
        if !output.status.success() {
            bail!("initdb failed for {data_dir}: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    async fn is_running(&self) -> bool {
        let data_dir = self.data_dir.display().to_string();
        let status = self.command("pg_ctl", &["status", "-D", &data_dir]).stdout(Stdio::null()).status().await;
        matches!(status, Ok(status) if status.success())
    }

    /// Whether the server's package ships the loadable module `name`.
    fn has_library(&self, name: &str) -> bool {
        self.bin_dir.parent().is_some_and(|root| root.join("lib").join(format!("{name}.so")).is_file())
    }

    async fn start_server(&self, durability: Durability) -> Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let log = self.data_dir.join("server.log").display().to_string();
        let mut options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=400 \
             -c shared_buffers=256MB -c max_locks_per_transaction=256",
            self.socket_dir.display()
        );
        match durability {
            Durability::Throwaway => {
                options.push_str(" -c fsync=off -c full_page_writes=off -c synchronous_commit=off");
            }
            // pg_stat_statements, as managed PostgreSQL services load it by default: what an
            // operator reaches for first, and how `make bench-queue` counts an idle herald's
            // statements. Loaded only where the server ships it.
            Durability::Durable if self.has_library("pg_stat_statements") => {
                options.push_str(" -c shared_preload_libraries=pg_stat_statements");
            }
            Durability::Durable => {}
        }
        let output = self
            .command("pg_ctl", &["start", "-D", &data_dir, "-l", &log, "-w", "-t", "60", "-o", &options])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .context("running pg_ctl start")?;
        if !output.status.success() {
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = server_log.lines().rev().take(10).collect();
            bail!(
                "PostgreSQL did not start from {data_dir}: {}\n{}",
                String::from_utf8_lossy(&output.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// A server binary, run as the unprivileged user when we are root.
    fn command(&self, binary: &str, args: &[&str]) -> Command {
        let program = self.bin_dir.join(binary);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.args(args).current_dir("/").env_remove("PGDATA");
        command
    }
}

/// Where `initdb` and `pg_ctl` live: on `PATH`, or the newest `/usr/lib/postgresql/*/bin`.
pub fn find_server_binaries() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if let Some(dir) = on_path {
        // Debian links only some binaries onto PATH; prefer the directory holding all of them.
        let resolved = dir.join("initdb").canonicalize().ok().and_then(|path| path.parent().map(Path::to_path_buf));
        return Ok(resolved.filter(|dir| dir.join("postgres").is_file()).unwrap_or(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server binaries found (initdb, pg_ctl on PATH or under /usr/lib/postgresql/*/bin): \
             install them with `apt-get install postgresql`, or set DATABASE_URL to a running server"
        )
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|meta| meta.uid() == 0).unwrap_or(false)
}

/// The user a root-started server runs as: `postgres` if it exists, else `herald-postgres`.
async fn unprivileged_user() -> Result<String> {
    for user in ["postgres", "herald-postgres"] {
        let exists = Command::new("id").arg("-u").arg(user).stdout(Stdio::null()).stderr(Stdio::null()).status().await;
        if matches!(exists, Ok(status) if status.success()) {
            return Ok(user.to_owned());
        }
    }
    let status = Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "herald-postgres"])
        .status()
        .await
        .context("running useradd")?;
    if !status.success() {
        bail!("running as root and no unprivileged user for PostgreSQL: create one (useradd herald-postgres)");
    }
    Ok("herald-postgres".to_owned())
}

/// The socket directory: inside the data root, unless that path is too long for a unix socket.
fn socket_dir_for(root: &Path) -> Result<PathBuf> {
    let inside = root.join("socket");
    if inside.as_os_str().len() + "/.s.PGSQL.5432".len() < SOCKET_PATH_LIMIT {
        return Ok(inside);
    }
    let digest =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(root.as_os_str().as_encoded_bytes()));
    Ok(std::env::temp_dir().join(format!("herald-pg-{}", hex::encode(&digest[..6]))))
}
