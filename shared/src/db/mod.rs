//! The PostgreSQL connection pool and the embedded migrations.
use std::time::Duration;

use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

/// The schema, compiled into the binary so every role can migrate at start.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Opens a pool to `url` and waits (up to a bound) for the server to answer.
pub async fn connect(url: &SecretString, max_connections: u32) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url.expose_secret())
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")
}

/// A second pool on `pool`'s database whose commits do not wait for the WAL flush
/// (`synchronous_commit = off`), for writes that are safe to lose in a database crash: job
/// claims (the job runs again) and rate-limiter decisions. Connects lazily.
pub fn relaxed_commit_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    let options = pool.connect_options().as_ref().clone().options([("synchronous_commit", "off")]);
    PgPoolOptions::new().max_connections(max_connections.max(1)).connect_lazy_with(options)
}

/// Applies every embedded migration not yet applied. Safe to run from many processes at once:
/// sqlx serialises them with an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await.context("applying database migrations")
}

/// What `/readyz` reports about the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Reachable, every migration applied.
    Ready,
    /// The server did not answer.
    Unreachable,
    /// Reachable, but these migration versions are not applied.
    MigrationsMissing(Vec<i64>),
}

/// Checks that the database answers and that every embedded migration has been applied.
pub async fn readiness(pool: &PgPool, timeout: Duration) -> Readiness {
    let applied = tokio::time::timeout(timeout, async {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text").fetch_one(pool).await?;
        if table.is_none() {
            return Ok::<_, sqlx::Error>(Vec::new());
        }
        sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool).await
    })
    .await;
    match applied {
        Ok(Ok(applied)) => {
            let missing: Vec<i64> = MIGRATOR
                .iter()
                .filter(|migration| !migration.migration_type.is_down_migration())
                .map(|migration| migration.version)
                .filter(|version| !applied.contains(version))
                .collect();
            if missing.is_empty() { Readiness::Ready } else { Readiness::MigrationsMissing(missing) }
        }
        Ok(Err(_)) | Err(_) => Readiness::Unreachable,
    }
}

/// Connects to `DATABASE_URL` from `config` and applies the migrations: how every role starts.
pub async fn connect_and_migrate(config: &crate::Config) -> Result<PgPool> {
    let url = config.database_url.as_ref().ok_or_else(|| anyhow::anyhow!("DATABASE_URL: not set"))?;
    let pool = connect(url, config.database_max_connections).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// The first wait between attempts to reach the database at start, and the longest.
const FIRST_WAIT: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// [`connect_and_migrate`], waiting for the database: how the api, workers and schedulers start.
/// A process started before PostgreSQL (a pod scheduled before its database, a restart) would
/// otherwise exit at once and, under an orchestrator, crash-loop with a growing back-off. It
/// tries again after 250 ms, doubling to 10 s, with a log line each time; `None` when `shutdown`
/// came first. Only the migrations' own failures (a damaged or newer schema) end the wait.
pub async fn wait_and_migrate(config: &crate::Config, shutdown: &CancellationToken) -> Result<Option<PgPool>> {
    let url = config.database_url.as_ref().ok_or_else(|| anyhow::anyhow!("DATABASE_URL: not set"))?;
    let mut wait = FIRST_WAIT;
    let mut attempt = 1u32;
    loop {
        let failure = match connect(url, config.database_max_connections).await {
            Ok(pool) => match MIGRATOR.run(&pool).await {
                Ok(()) => return Ok(Some(pool)),
                Err(sqlx::migrate::MigrateError::Execute(error)) if is_unavailable(&error) => {
                    pool.close().await;
                    format!("{error}")
                }
                Err(error) => return Err(anyhow::Error::new(error).context("applying database migrations")),
            },
            Err(error) => format!("{error:#}"),
        };
        tracing::warn!(attempt, retry_in_ms = wait.as_millis() as u64, error = %failure, "waiting for PostgreSQL");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(LONGEST_WAIT);
        attempt += 1;
    }
}

/// Whether `error` says the server is away or not yet accepting work (rather than that a
/// statement is wrong).
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        // Class 08 (connection exception) and 57P (operator intervention: shutting down,
        // starting up).
        sqlx::Error::Database(error) => {
            error.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
        }
        _ => false,
    }
}

/// `url` with its database name replaced (query parameters such as `host=` kept): how tests and
/// benchmarks reach a database of their own on the same server.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Runs `step`, a delete of at most `batch` rows, until it deletes less than a batch; the rows
/// deleted in all. Pruning goes this way so no one statement holds its locks for long.
pub async fn delete_in_batches<F, Fut>(batch: i64, mut step: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let deleted = step().await?;
        total += deleted;
        if deleted < u64::try_from(batch).unwrap_or(0) {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced_and_the_socket_kept() {
        assert_eq!(super::with_database("postgres://u@h:5/a", "b"), "postgres://u@h:5/b");
        assert_eq!(super::with_database("postgres://u@localhost/a?host=/s", "b"), "postgres://u@localhost/b?host=/s");
    }
}
