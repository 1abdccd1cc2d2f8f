//! herald's HTTP API (axum).
//!
//! The api validates commands and appends them as events, queueing in the same transaction the
//! jobs they cause. This crate holds the server: the shared state, the middleware every request
//! goes through (request id, span, metrics, panic catching, body limit, then for `/v1` the key,
//! its scopes and limits, and `Idempotency-Key`), the problem-JSON errors, the routes (one file
//! a resource in `routes/`), the OpenAPI document built from them, and the sandbox platform's
//! server side.

pub mod auth;
pub mod error;
pub mod extract;
mod html;
mod idempotency;
pub mod key_cache;
mod middleware;
pub mod openapi;
pub mod ops_server;
mod routes;
mod sandbox;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use herald_shared::Config;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// Connections for the rate limiter only, with `synchronous_commit` off. Every request of a
    /// key updates the same `rate_limits` row, and the row lock is held until commit: waiting
    /// for the WAL flush there serialised a key's requests at one flush each (695 requests/s at
    /// 64 connections). A limiter decision lost in a database crash costs nothing that matters.
    pub limiter: PgPool,
    /// The validated settings.
    pub config: Arc<Config>,
    /// API keys already seen, forgotten when any process changes them.
    pub keys: Arc<key_cache::KeyCache>,
    /// Seals and opens tokens, codes and client secrets.
    pub keyring: Arc<herald_shared::crypto::Keyring>,
    /// The platform adapters and managed apps.
    pub platforms: herald_shared::platforms::Platforms,
    /// Where media objects are streamed to and served from.
    pub media: herald_shared::media::MediaStore,
    /// Signs and checks media content URLs (derived from the keyring: rotating the newest
    /// encryption key invalidates every outstanding URL).
    pub media_url_key: Arc<[u8; 32]>,
}

impl AppState {
    /// Connects to the configured database, applies the migrations and listens for key
    /// changes until `shutdown`.
    pub async fn connect(config: Arc<Config>, shutdown: &CancellationToken) -> Result<Self> {
        let pool = herald_shared::db::connect_and_migrate(&config).await?;
        Self::on_pool(config, pool, shutdown)
    }

    /// The state on a connected, migrated `pool`.
    pub fn on_pool(config: Arc<Config>, pool: PgPool, shutdown: &CancellationToken) -> Result<Self> {
        // Install the recorder before the first request records anything.
        herald_shared::telemetry::metrics();
        let limiter = herald_shared::db::relaxed_commit_pool(&pool, config.database_max_connections);
        let keys = Arc::new(key_cache::KeyCache::default());
        let listening = keys.clone();
        tokio::spawn(herald_shared::notify::listen(
            pool.clone(),
            &[herald_shared::commands::keys::CHANGED_CHANNEL],
            move |notice| listening.on_notice(notice),
            shutdown.clone(),
        ));
        let keyring = Arc::new(herald_shared::crypto::Keyring::from_config(&config)?);
        let platforms = herald_shared::platforms::Platforms::from_config(&config)?;
        let media = herald_shared::media::MediaStore::from_config(&config)?;
        let media_url_key =
            Arc::new(keyring.derive(herald_shared::media::signing::PURPOSE).context("no key to sign media URLs with")?);
        Ok(Self { pool, limiter, config, keys, keyring, platforms, media, media_url_key })
    }
}

/// Every route with every layer, ready to serve.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes merged in, under the same layers (the test harness uses it
/// for handlers that sleep or panic).
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let body_limit = state.config.max_body_bytes;
    let gate = Arc::new(tokio::sync::Semaphore::new(state.config.max_in_flight));
    routes::routes(state.clone())
        .merge(extra)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(middleware::panic_to_problem))
        .layer(axum::middleware::from_fn_with_state(gate, middleware::shed_load))
        .layer(axum::middleware::from_fn(middleware::request_context))
        .with_state(state)
}

/// A running api server.
pub struct ApiServer {
    /// The address it listens on (useful when the configured port was 0).
    pub local_addr: SocketAddr,
    /// Resolves when the server has stopped.
    pub task: JoinHandle<Result<()>>,
}

/// Binds `config.listen`, waits for the database (answering `/healthz`, a 503 `/readyz` and a
/// 503 `starting` problem meanwhile), migrates, and serves until `shutdown`. Returns once the
/// api serves its routes; `None` when `shutdown` came while it waited.
pub async fn start(config: Arc<Config>, shutdown: CancellationToken) -> Result<Option<ApiServer>> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("HERALD_LISTEN: cannot listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let Some((state, listener)) = wait_for_database(listener, config.clone(), &shutdown).await? else {
        return Ok(None);
    };
    tracing::info!("listening on http://{local_addr}");
    let task = tokio::spawn(serve(listener, router(state), shutdown, config.shutdown_grace()));
    Ok(Some(ApiServer { local_addr, task }))
}

/// Runs the api until `shutdown` is cancelled and in-flight requests are done.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> Result<()> {
    match start(config, shutdown).await? {
        Some(server) => server.task.await.context("the api task failed")?,
        None => Ok(()),
    }
}

/// Serves [`ops_server::router_while_starting`] on `listener` until the database answers and
/// is migrated; then the state and the listener back (`None`: `shutdown` came first). The
/// starting server accepts on a duplicate of the socket and is stopped before the api serves,
/// so no connection is refused in between.
async fn wait_for_database(
    listener: TcpListener,
    config: Arc<Config>,
    shutdown: &CancellationToken,
) -> Result<Option<(AppState, TcpListener)>> {
    let socket = listener.into_std().context("the api's listening socket")?;
    let starting_socket = TcpListener::from_std(socket.try_clone().context("duplicating the api's socket")?)?;
    let health = Arc::new(herald_shared::health::Health::default());
    let started = CancellationToken::new();
    let starting = tokio::spawn(serve(
        starting_socket,
        ops_server::router_while_starting(health),
        started.clone(),
        Duration::from_secs(1),
    ));
    let pool = herald_shared::db::wait_and_migrate(&config, shutdown).await;
    started.cancel();
    let _ = starting.await;
    let Some(pool) = pool? else { return Ok(None) };
    let state = AppState::on_pool(config, pool, shutdown)?;
    Ok(Some((state, TcpListener::from_std(socket)?)))
}

/// Serves `app` on `listener`. On `shutdown` it stops accepting, lets in-flight requests finish
/// for up to `grace`, then returns.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken, grace: Duration) -> Result<()> {
    let stop = shutdown.clone();
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { stop.cancelled().await });
    let mut serving = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut serving => return result.context("the api server failed"),
        _ = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, serving).await {
        Ok(result) => result.context("the api server failed"),
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "requests still in flight after the grace period; stopping anyway"
            );
            Ok(())
        }
    }
}
