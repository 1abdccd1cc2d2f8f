//! `herald`: one binary for every role, so one image runs the api, the scheduler or a worker.
//!
//! `herald dev` runs all three in one process against a private PostgreSQL it starts (or the one
//! `DATABASE_URL` names); the other subcommands are the single roles and the operator's tools.

mod local_postgres;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use herald_shared::Config;
use herald_shared::crypto::Keyring;
use herald_shared::platforms;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::local_postgres::{Durability, LocalPostgres};

/// mimalloc rather than the system allocator: a busy worker or api allocates and frees small
/// buffers (JSON values, rows, requests) by the million, and glibc's malloc spent a quarter of
/// the publish benchmark's worker time on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "herald", version, about = "Self-hostable social publishing backend")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ProjectionsAction {
    /// Replay the whole event log into empty read models (appends wait meanwhile).
    Rebuild,
}

#[derive(Subcommand)]
enum ProjectsAction {
    /// Create a project and its first key (every scope). The key is printed once, alone on the
    /// last line.
    Create {
        /// The project's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// List a project's keys (prefixes only; keys are never shown again).
    List {
        #[arg(long)]
        project: Uuid,
    },
    /// Create a key; it is printed once, alone on the last line.
    Create {
        #[arg(long)]
        project: Uuid,
        #[arg(long)]
        name: String,
        /// Comma-separated scopes, or the shorthands `read` and `write`.
        #[arg(long, default_value = "read,write", value_delimiter = ',')]
        scopes: Vec<String>,
        /// An `hk_test_` key, which reaches only the sandbox platform.
        #[arg(long)]
        test: bool,
    },
    /// Revoke a key: refused from its next request on, by every api process.
    Revoke {
        #[arg(long)]
        project: Uuid,
        /// The key's id (from `herald keys list`).
        key: Uuid,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Re-seal every token and client secret with the newest key of HERALD_ENCRYPTION_KEYS.
    Reencrypt,
}

#[derive(Subcommand)]
enum Command {
    /// Run api + scheduler + worker in one process, starting a private PostgreSQL when
    /// DATABASE_URL is unset.
    Dev,
    /// Run the HTTP api.
    Api,
    /// Run a worker (start as many as you like).
    Worker,
    /// Run the scheduler (replicas are safe).
    Scheduler,
    /// Apply the database migrations and exit.
    Migrate,
    /// Print the version.
    Version,
    /// GET `url` and exit 0 on a 2xx answer, 1 otherwise: a container health check without curl
    /// (`herald probe http://127.0.0.1:9090/readyz`).
    Probe { url: String },
    /// Create projects (operators).
    Projects {
        #[command(subcommand)]
        action: ProjectsAction,
    },
    /// List, create and revoke API keys (operators).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Maintain the encrypted secrets.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Maintain the read models.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Restart the private PostgreSQL under `dir` with `pg_ctl restart -m immediate` (used by
    /// `make chaos`).
    #[command(hide = true)]
    RestartPostgres {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run a command with DATABASE_URL pointing at a private PostgreSQL (used by `make test`).
    #[command(hide = true)]
    WithPostgres {
        /// Where the private server keeps its data.
        #[arg(long)]
        dir: PathBuf,
        /// Throw away any data from an earlier run first.
        #[arg(long)]
        fresh: bool,
        /// Keep fsync and synchronous commit on (for benchmarks); tests run without.
        #[arg(long)]
        durable: bool,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Version = cli.command {
        println!("herald {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Command::Probe { url } = &cli.command {
        return probe(url);
    }
    if let Command::RestartPostgres { dir } = &cli.command {
        let restarted = tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(LocalPostgres::restart_immediately(dir)));
        return match restarted {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("herald: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load().and_then(|config| platforms::validate_settings(&config).map(|()| config)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("herald: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("herald: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut config: Config) -> Result<ExitCode> {
    if let Command::WithPostgres { dir, fresh, durable, command } = command {
        let durability = if durable { Durability::Durable } else { Durability::Throwaway };
        return with_postgres(&config, &dir, fresh, durability, &command).await;
    }
    let _telemetry = herald_shared::telemetry::init(&config)?;
    for variable in &config.unowned_variables {
        tracing::warn!(%variable, "set in the environment but not a herald setting; ignored");
    }
    let local = use_private_postgres_if_needed(&mut config).await?;
    let outcome = run_role(command, config).await;
    if let Some(local) = local {
        local.stop().await.context("stopping the private PostgreSQL")?;
        tracing::info!("private PostgreSQL stopped");
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

async fn run_role(command: Command, mut config: Config) -> Result<()> {
    let shutdown = herald_shared::shutdown::on_signal();
    match command {
        Command::Dev => {
            ensure_encryption_key(&mut config, true)?;
            let config = Arc::new(config);
            run_together(config, shutdown).await
        }
        Command::Api => {
            ensure_encryption_key(&mut config, false)?;
            herald_api::run(Arc::new(config), shutdown).await
        }
        Command::Worker => {
            ensure_encryption_key(&mut config, false)?;
            let health = serve_ops(&config, &shutdown).await?;
            herald_worker::run_reporting(Arc::new(config), shutdown, health).await
        }
        Command::Scheduler => {
            let health = serve_ops(&config, &shutdown).await?;
            herald_scheduler::run_reporting(Arc::new(config), shutdown, health).await
        }
        Command::Migrate => {
            // Waits for the database like the roles do: a migration Job may start first.
            let Some(pool) = herald_shared::db::wait_and_migrate(&config, &shutdown).await? else { return Ok(()) };
            pool.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Projections { action: ProjectionsAction::Rebuild } => {
            let pool = herald_shared::db::connect_and_migrate(&config).await?;
            let started = std::time::Instant::now();
            let applied = herald_shared::projections::rebuild::rebuild(&pool).await?;
            println!("rebuilt the read models from {applied} events in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Secrets { action: SecretsAction::Reencrypt } => {
            ensure_encryption_key(&mut config, false)?;
            let pool = herald_shared::db::connect_and_migrate(&config).await?;
            let keyring = Keyring::from_config(&config)?;
            let report = herald_shared::credentials::reencrypt_all(&pool, &keyring, 1000).await?;
            for (column, moved) in &report.moved {
                println!("{column}: {moved} re-encrypted");
            }
            println!("{} values now sealed with key {}", report.total(), keyring.current_key_id().unwrap_or("?"));
            Ok(())
        }
        Command::Projects { action } => operator::projects(&config, action).await,
        Command::Keys { action } => operator::keys(&config, action).await,
        Command::Version | Command::Probe { .. } | Command::RestartPostgres { .. } | Command::WithPostgres { .. } => {
            Ok(())
        }
    }
}

/// The operator's commands: they print results on standard output (logs go to standard error).
mod operator {
    use anyhow::Result;
    use herald_shared::Config;
    use herald_shared::commands::keys::{self, KeyRequest};
    use herald_shared::domain::api_key::Environment;
    use herald_shared::events::EventMetadata;

    use super::{KeysAction, ProjectsAction};

    fn metadata() -> EventMetadata {
        EventMetadata { actor: Some("operator".into()), ..EventMetadata::default() }
    }

    pub(super) async fn projects(config: &Config, action: ProjectsAction) -> Result<()> {
        let pool = herald_shared::db::connect_and_migrate(config).await?;
        match action {
            ProjectsAction::Create { name } => {
                let (project_id, key_id, secret) = keys::create_project(&pool, &name, &metadata()).await?;
                println!("project {project_id}");
                println!("admin key {key_id}, every scope; it is shown only now:");
                println!("{}", keys::reveal(&secret));
            }
        }
        Ok(())
    }

    pub(super) async fn keys(config: &Config, action: KeysAction) -> Result<()> {
        let pool = herald_shared::db::connect_and_migrate(config).await?;
        match action {
            KeysAction::List { project } => {
                for key in keys::list_keys(&pool, project).await? {
                    let state = match (key.revoked_at, key.expires_at) {
                        (Some(at), _) => format!("revoked {at}"),
                        (None, Some(at)) if at <= chrono::Utc::now() => format!("expired {at}"),
                        _ => "live".to_owned(),
                    };
                    println!("{}  {}…  {}  {}  [{}]", key.id, key.prefix, key.name, state, key.scopes.join(" "));
                }
            }
            KeysAction::Create { project, name, scopes, test } => {
                let environment = if test { Environment::Test } else { Environment::Live };
                let request = KeyRequest { scopes, environment, ..KeyRequest::admin(&name) };
                let metadata = EventMetadata { project_id: Some(project), ..metadata() };
                let (key_id, secret) =
                    keys::create_key(&pool, project, request, config.max_live_keys, &metadata).await?;
                println!("key {key_id}; it is shown only now:");
                println!("{}", keys::reveal(&secret));
            }
            KeysAction::Revoke { project, key } => {
                let metadata = EventMetadata { project_id: Some(project), ..metadata() };
                keys::revoke_key(&pool, project, key, &metadata).await?;
                println!("revoked {key}");
            }
        }
        Ok(())
    }
}

/// `herald probe`: 0 when `url` answers 2xx within 3 s.
fn probe(url: &str) -> ExitCode {
    let answered = tokio::runtime::Builder::new_current_thread().enable_all().build().map(|runtime| {
        runtime.block_on(async {
            let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()?;
            client.get(url).send().await.map(|response| response.status())
        })
    });
    match answered {
        Ok(Ok(status)) if status.is_success() => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("herald probe: {url} answered {status}");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("herald probe: {url}: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("herald probe: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the ops server (`/healthz`, `/readyz`, `/metrics`) of a worker or scheduler on
/// `HERALD_OPS_LISTEN`; answers the health the role keeps current. The server stops with
/// `shutdown`.
async fn serve_ops(config: &Config, shutdown: &CancellationToken) -> Result<Arc<herald_shared::health::Health>> {
    let health = Arc::new(herald_shared::health::Health::default());
    herald_api::ops_server::start(config.ops_listen, health.clone(), shutdown.clone()).await?;
    Ok(health)
}

/// api, scheduler and worker in one process; the first to fail stops the others.
async fn run_together(config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    let mut roles = tokio::task::JoinSet::new();
    roles.spawn(herald_api::run(config.clone(), shutdown.clone()));
    roles.spawn(herald_scheduler::run(config.clone(), shutdown.clone()));
    roles.spawn(herald_worker::run(config, shutdown.clone()));
    let mut first_error = None;
    while let Some(result) = roles.join_next().await {
        let result = result.context("a role panicked").and_then(|result| result);
        if let Err(error) = result {
            shutdown.cancel();
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Without DATABASE_URL, start (or reuse) the private PostgreSQL under the data directory.
async fn use_private_postgres_if_needed(config: &mut Config) -> Result<Option<LocalPostgres>> {
    if config.database_url.is_some() {
        return Ok(None);
    }
    let root = config.data_dir.join("postgres");
    let local = LocalPostgres::start(&root, Durability::Durable).await?;
    if local.started_here() {
        tracing::info!(data = %root.display(), "started a private PostgreSQL (set DATABASE_URL to use your own)");
    } else {
        tracing::info!(data = %root.display(), "using the private PostgreSQL that is already running");
    }
    config.database_url = Some(SecretString::from(local.url()));
    Ok(Some(local))
}

/// The encryption key: configured, or the one `herald dev` generated into the data directory.
fn ensure_encryption_key(config: &mut Config, may_generate: bool) -> Result<()> {
    if !Keyring::from_config(config)?.is_empty() {
        return Ok(());
    }
    let path = config.data_dir.join("encryption.key");
    if path.is_file() {
        let key = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        config.encryption_key = Some(SecretString::from(key.trim().to_owned()));
        Keyring::from_config(config).with_context(|| format!("the key in {} is damaged", path.display()))?;
        tracing::info!(path = %path.display(), "using the encryption key from the data directory");
        return Ok(());
    }
    if !may_generate {
        bail!("HERALD_ENCRYPTION_KEY: not set (32 bytes, base64; `openssl rand -base64 32` makes one)");
    }
    let key = Keyring::generate_base64();
    write_private_file(&path, key.expose_secret())?;
    tracing::warn!(
        path = %path.display(),
        "no HERALD_ENCRYPTION_KEY set: generated one into the data directory; back it up, tokens cannot be read without it"
    );
    config.encryption_key = Some(key);
    Ok(())
}

fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Runs `command` with DATABASE_URL set: the given one, or a private server's.
async fn with_postgres(
    config: &Config,
    dir: &Path,
    fresh: bool,
    durability: Durability,
    command: &[String],
) -> Result<ExitCode> {
    let Some((program, args)) = command.split_first() else { bail!("with-postgres: no command given") };
    let mut child = tokio::process::Command::new(program);
    child.args(args);
    let local = match &config.database_url {
        Some(_) => None,
        None => {
            if fresh && dir.exists() {
                std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            let local = LocalPostgres::start(dir, durability).await?;
            eprintln!("herald: private PostgreSQL at {}", local.url());
            child.env("DATABASE_URL", local.url());
            Some(local)
        }
    };
    // Ctrl-C reaches the command too (one process group). Without a handler this process would
    // die at once and leave the server running; with one, it waits for the command to end.
    let _interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let status = child.status().await.with_context(|| format!("running {program}"));
    if let Some(local) = local {
        local.stop().await?;
    }
    let code = status?.code().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
