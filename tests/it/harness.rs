//! The end-to-end harness: a fresh database per test (cloned from a migrated template, which is
//! much faster than migrating each one), and the real app (api + scheduler + worker) on
//! 127.0.0.1:0 against it.
//!
//! The server comes from `DATABASE_URL`; `make test` points it at a private throwaway PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use herald_shared::Config;
use herald_shared::db::with_database;
use secrecy::SecretString;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The server every test database lives on.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must name a PostgreSQL server for the tests (`make test` starts a private one)")
}

/// A database of its own for one test, dropped (with its connections) when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let server = server_url();
        let template = ensure_template(&server).await;
        let name = format!("herald_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server).await.expect("connect to the test server");
        // Cloning a template fails while another clone of it is starting; retry briefly.
        for attempt in 0.. {
            let created =
                admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {template}"))).await;
            match created {
                Ok(_) => break,
                Err(error) if attempt < 50 && error.to_string().contains("is being accessed by other users") => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("creating {name}: {error}"),
            }
        }
        admin.close().await.ok();
        Self { url: with_database(&server, &name), name }
    }

    /// A small pool on this database, for tests that use the library directly.
    pub async fn pool_for_test(&self) -> PgPool {
        PgPool::connect(&self.url).await.expect("connect to the test database")
    }

    /// Drops the database now, cutting every connection to it.
    pub async fn drop_now(&self) {
        let mut admin = PgConnection::connect(&server_url()).await.expect("connect to the test server");
        admin
            .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .await
            .expect("drop the test database");
        admin.close().await.ok();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime is going away: use a short-lived one.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&server_url()).await {
                    let _ = admin
                        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// The migrated template, created once per schema version (its name carries the migrations'
/// checksum, so a changed migration gets a new template).
async fn ensure_template(server: &str) -> String {
    let mut digest = 0u64;
    for migration in herald_shared::db::MIGRATOR.iter() {
        for byte in migration.checksum.iter().chain(&migration.version.to_le_bytes()) {
            digest = digest.wrapping_mul(0x100_0000_01b3).wrapping_add(u64::from(*byte));
        }
    }
    let template = format!("herald_template_{digest:016x}");
    let mut admin = PgConnection::connect(server).await.expect("connect to the test server");
    sqlx::query("SELECT pg_advisory_lock(1952804208)").execute(&mut admin).await.expect("lock");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&template)
        .fetch_one(&mut admin)
        .await
        .expect("look up the template");
    if !exists {
        let building = format!("{template}_building");
        admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {building}"))).await.expect("drop");
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}"))).await.expect("create template");
        let pool = PgPool::connect(&with_database(server, &building)).await.expect("connect to the template");
        herald_shared::db::migrate(&pool).await.expect("migrate the template");
        pool.close().await;
        admin
            .execute(sqlx::AssertSqlSafe(format!("ALTER DATABASE {building} RENAME TO {template}")))
            .await
            .expect("publish the template");
    }
    sqlx::query("SELECT pg_advisory_unlock(1952804208)").execute(&mut admin).await.expect("unlock");
    admin.close().await.ok();
    template
}

/// Settings for an app on `db`, listening on a free port.
pub fn test_config(db: &TestDb) -> Config {
    Config {
        database_url: Some(SecretString::from(db.url.clone())),
        database_max_connections: 5,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: std::env::temp_dir().join(format!("herald-test-{}", Uuid::new_v4().simple())),
        encryption_key: Some(herald_shared::crypto::Keyring::generate_base64()),
        shutdown_grace_secs: 5,
        heartbeat_secs: 1,
        ..Config::default()
    }
}

/// The whole app, running in this test's runtime.
pub struct TestApp {
    pub db: TestDb,
    pub config: Arc<Config>,
    pub addr: SocketAddr,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    api: JoinHandle<anyhow::Result<()>>,
    roles: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// api + scheduler + worker on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_with(Router::new()).await
    }

    /// Like [`TestApp::spawn`], with `extra` routes merged into the api (for tests that need a
    /// handler that sleeps, panics or reads JSON).
    pub async fn spawn_with(extra: Router<herald_api::AppState>) -> Self {
        let db = TestDb::new().await;
        let config = Arc::new(test_config(&db));
        Self::spawn_on(db, config, extra).await
    }

    pub async fn spawn_on(db: TestDb, config: Arc<Config>, extra: Router<herald_api::AppState>) -> Self {
        Self::spawn_roles(db, config, extra, true).await
    }

    /// The api and the scheduler only: the test runs workers as processes of their own.
    pub async fn spawn_without_worker(db: TestDb, config: Arc<Config>) -> Self {
        Self::spawn_roles(db, config, Router::new(), false).await
    }

    async fn spawn_roles(db: TestDb, config: Arc<Config>, extra: Router<herald_api::AppState>, worker: bool) -> Self {
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind(config.listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Callbacks (and the sandbox platform) must name the port the api really listens on.
        let mut config = Arc::unwrap_or_clone(config);
        config.public_url.get_or_insert_with(|| format!("http://{addr}"));
        let config = Arc::new(config);
        let state = herald_api::AppState::connect(config.clone(), &shutdown).await.expect("api state");
        let pool = state.pool.clone();
        let app = herald_api::router_with(state, extra);
        let api = tokio::spawn(herald_api::serve(listener, app, shutdown.clone(), config.shutdown_grace()));
        let mut roles = vec![tokio::spawn(herald_scheduler::run(config.clone(), shutdown.clone()))];
        if worker {
            roles.push(tokio::spawn(herald_worker::run(config.clone(), shutdown.clone())));
        }
        Self { db, config, addr, pool, http: reqwest::Client::new(), shutdown, api, roles }
    }

    /// Waits until the worker and the scheduler have started (migrated and sent a heartbeat).
    pub async fn wait_for_roles(&self) {
        for _ in 0..200 {
            let roles: i64 = sqlx::query_scalar("SELECT count(DISTINCT role) FROM process_heartbeats")
                .fetch_one(&self.pool)
                .await
                .expect("read heartbeats");
            if roles == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the worker and the scheduler did not start within 5 s");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Cancels the app and waits for every role to return.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.api.await??;
        for role in self.roles {
            role.await??;
        }
        Ok(())
    }
}

/// A `herald worker` process on the test's database and api, as an operator starts one: its
/// environment only, a 3 s lease (a killed worker's jobs come back soon), quick polling, quiet.
/// Callers add the settings their test needs, then spawn it.
pub fn worker_command(app: &TestApp) -> std::process::Command {
    let mut command = std::process::Command::new(herald_binary());
    command
        .arg("worker")
        .env_clear()
        .env("DATABASE_URL", &app.db.url)
        .env("HERALD_ENCRYPTION_KEY", secrecy::ExposeSecret::expose_secret(app.config.encryption_key.as_ref().unwrap()))
        .env("HERALD_PUBLIC_URL", app.url(""))
        // Tests run workers side by side: each takes a free port for its ops endpoints.
        .env("HERALD_OPS_LISTEN", "127.0.0.1:0")
        .env("HERALD_QUEUE__LEASE_SECS", "3")
        .env("HERALD_QUEUE__POLL_INTERVAL_MS", "100")
        .env("HERALD_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// The `herald` binary built for these tests.
pub fn herald_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_herald"))
}

/// Every table of the database whose rows, as text, contain `needle`: a scan for secrets that
/// must never be stored in plain text.
pub async fn tables_containing(pool: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(pool)
            .await
            .expect("list tables");
    let mut found = Vec::new();
    for table in tables {
        // The names come quoted from the catalog.
        let query = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} t WHERE strpos(t::text, $1) > 0"));
        let hits: i64 = sqlx::query_scalar(query).bind(needle).fetch_one(pool).await.expect("scan a table");
        if hits > 0 {
            found.push(table);
        }
    }
    found
}

/// A free TCP port of 127.0.0.1 (bound and let go: another process could take it in between,
/// which on a test machine does not happen in practice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP proxy on 127.0.0.1 in front of the test's PostgreSQL server: a database that can be
/// taken away and brought back under a running process (stopping it closes every connection
/// through it and refuses new ones, as a database restart does).
pub struct DbProxy {
    pub port: u16,
    target: DbTarget,
    stop: Option<CancellationToken>,
}

#[derive(Clone)]
enum DbTarget {
    Tcp(String),
    Unix(PathBuf),
}

impl DbProxy {
    /// A proxy for the server of `url` on a free port; not yet accepting (see [`DbProxy::start`]).
    pub fn for_url(url: &str) -> Self {
        let parsed = url::Url::parse(url).expect("a database URL");
        let socket_dir = parsed.query_pairs().find(|(key, _)| key == "host").map(|(_, value)| value.into_owned());
        let port = parsed.port().unwrap_or(5432);
        let target = match socket_dir {
            Some(dir) if dir.starts_with('/') => DbTarget::Unix(PathBuf::from(dir).join(format!(".s.PGSQL.{port}"))),
            _ => DbTarget::Tcp(format!("{}:{port}", parsed.host_str().unwrap_or("127.0.0.1"))),
        };
        Self { port: free_port(), target, stop: None }
    }

    /// `url` (of the same server) through this proxy.
    pub fn url(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("a database URL");
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(key, _)| key != "host" && key != "port")
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
        parsed.set_host(Some("127.0.0.1")).unwrap();
        parsed.set_port(Some(self.port)).unwrap();
        parsed.to_string()
    }

    /// Accepts on the port and forwards every connection to the server.
    pub async fn start(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("bind the proxy port");
        let stop = CancellationToken::new();
        self.stop = Some(stop.clone());
        let target = self.target.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(accepted) => accepted, Err(_) => continue },
                };
                let (stop, target) = (stop.clone(), target.clone());
                tokio::spawn(async move {
                    let forwarded = async {
                        match target {
                            DbTarget::Tcp(address) => {
                                let mut server = tokio::net::TcpStream::connect(address).await?;
                                tokio::io::copy_bidirectional(&mut client, &mut server).await.map(|_| ())
                            }
                            DbTarget::Unix(path) => {
                                let mut server = tokio::net::UnixStream::connect(path).await?;
                                tokio::io::copy_bidirectional(&mut client, &mut server).await.map(|_| ())
                            }
                        }
                    };
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = forwarded => {}
                    }
                });
            }
        });
    }

    /// Closes every connection and stops accepting.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `target/<name>`, a Python virtualenv with `requirement` installed from PyPI, created on first
/// use (a marker file says it is complete, so an interrupted install is redone). Tests that
/// need a tool from PyPI (moto's S3 server, the Kubernetes schemas) get it this way: python3
/// with venv is all they ask of the machine.
pub fn python_venv(name: &str, requirement: &str) -> PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(name);
    let marker = venv.join(".installed");
    if std::fs::read_to_string(&marker).is_ok_and(|installed| installed == requirement) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let run = |program: &std::path::Path, args: &[&str]| {
        let status = std::process::Command::new(program).args(args).status().expect("run the installer");
        assert!(status.success(), "{} {args:?} failed", program.display());
    };
    run(std::path::Path::new("python3"), &["-m", "venv", venv.to_str().expect("utf-8 path")]);
    run(&venv.join("bin/pip"), &["install", "--quiet", "--disable-pip-version-check", requirement]);
    std::fs::write(&marker, requirement).expect("write the marker");
    venv
}

/// A connected account of `project_id` on `platform` (as `platform_user_id`, a `kind` account),
/// recorded as the exchange job records one, its grant's `token` sealed with `keyring` and
/// valid for a month: for tests that need an account without running a connect flow.
pub async fn connected_account(
    pool: &PgPool,
    keyring: &herald_shared::crypto::Keyring,
    project_id: Uuid,
    platform: &'static str,
    platform_user_id: &str,
    kind: &str,
    token: &str,
) -> Uuid {
    use herald_shared::domain::account::{self, Account, Grant};
    let metadata = herald_shared::events::EventMetadata { project_id: Some(project_id), ..Default::default() };
    let id = Uuid::now_v7();
    let grant = Grant {
        project_id,
        platform: platform.into(),
        platform_user_id: platform_user_id.into(),
        kind: kind.into(),
        username: None,
        display_name: None,
        external_id: None,
        app_id: None,
        scopes: vec![],
        expires_at: None,
        session_id: Uuid::now_v7(),
    };
    let mut tx = pool.begin().await.unwrap();
    herald_shared::commands::execute::<Account>(&mut tx, id, account::Command::Connect(Box::new(grant)), &metadata)
        .await
        .unwrap();
    let tokens = herald_shared::platforms::TokenSet {
        access_token: SecretString::from(token.to_owned()),
        refresh_token: None,
        expires_at: Some(chrono::Utc::now() + chrono::Duration::days(30)),
        scopes: vec![],
    };
    let grant = herald_shared::credentials::GrantRef { id: Uuid::now_v7(), project_id, platform };
    herald_shared::credentials::store_grant_tokens(&mut tx, keyring, grant, &tokens).await.unwrap();
    herald_shared::credentials::link_account(&mut tx, keyring, id, grant.id, None).await.unwrap();
    tx.commit().await.unwrap();
    id
}
