//! The jobs herald's workers perform, registered in one place.

mod connect;
mod import;
mod prune;
mod publish;
mod refresh;
mod revoke;
mod webhooks;

use std::sync::Arc;

use herald_shared::crypto::Keyring;
use herald_shared::events::GroupCommitter;
use herald_shared::jobs::{
    ExchangeCode, ImportMedia, PruneExpired, PublishDelivery, RefreshCredentials, RevokeGrant, SendWebhooks,
};
use herald_shared::media::MediaStore;
use herald_shared::outbound::OutboundClient;
use herald_shared::platforms::Platforms;
use herald_shared::projections::ReadModels;
use herald_shared::{Config, credentials};
use sqlx::PgPool;

use crate::runtime::Registry;

/// Batches of each kind (reads, limiter decisions, commits) a worker has in flight at once.
const BATCH_LANES: usize = 2;
/// The most appends one commit of the group committer carries.
const COMMIT_BATCH: usize = 500;

/// What every job may use.
pub struct Context {
    pub pool: PgPool,
    /// For the rate limiter only: `synchronous_commit` off (a decision lost in a database crash
    /// costs nothing that matters, and waiting for the WAL flush there serialised every publish
    /// of an account on one row lock).
    pub limiter: PgPool,
    pub config: Arc<Config>,
    /// Seals and opens tokens, codes and client secrets.
    pub keyring: Arc<Keyring>,
    /// The platform adapters and managed apps.
    pub platforms: Platforms,
    /// Appends many jobs' events in one transaction each time (synchronous commits).
    pub committer: GroupCommitter,
    /// The publish jobs' batched reads and limiter decisions.
    pub publishing: publish::Batches,
    /// Where media objects live (imports write them, publishing reads them, the sweep removes
    /// them).
    pub media: MediaStore,
    /// Signs the URLs platforms fetch a post's media from (`herald_shared::media::signing`).
    pub media_url_key: [u8; 32],
    /// The guarded client for user-supplied URLs (`HERALD_ALLOW_PRIVATE_NETWORKS`).
    pub outbound: OutboundClient,
    /// Where adapters keep a publish's state across workers (sealed).
    pub checkpoints: publish::StoredCheckpoints,
    /// The guarded client webhook messages go through: no redirects, the receiver timeout
    /// (`HERALD_WEBHOOKS__TIMEOUT_SECS`).
    pub webhook_client: OutboundClient,
}

impl Context {
    pub fn new(pool: PgPool, config: Arc<Config>) -> anyhow::Result<Self> {
        let keyring = Arc::new(Keyring::from_config(&config)?);
        let platforms = Platforms::from_config(&config)?;
        // A limiter decision is one short statement: a quarter of the pool's size is plenty.
        let limiter = herald_shared::db::relaxed_commit_pool(&pool, (config.database_max_connections / 4).max(2));
        // Two of each at once: while one batch waits for its answer or its commit, the next
        // fills. More would only queue on the same rows.
        let committer = GroupCommitter::spawn(pool.clone(), Arc::new(ReadModels), BATCH_LANES, COMMIT_BATCH);
        let publishing = publish::Batches::spawn(pool.clone(), limiter.clone(), keyring.clone(), BATCH_LANES);
        let media = MediaStore::from_config(&config)?;
        let media_url_key = keyring.derive(herald_shared::media::signing::PURPOSE)?;
        let outbound = OutboundClient::new(&config)?;
        let webhook_client =
            OutboundClient::without_redirects(config.allow_private_networks, config.webhooks.timeout())?;
        let checkpoints = publish::StoredCheckpoints { pool: pool.clone(), keyring: keyring.clone() };
        Ok(Self {
            checkpoints,
            pool,
            limiter,
            config,
            keyring,
            platforms,
            committer,
            publishing,
            media,
            media_url_key,
            outbound,
            webhook_client,
        })
    }
}

/// Every kind a herald worker runs.
pub fn registry() -> Registry<Context> {
    Registry::default()
        .register::<PruneExpired>()
        .register::<ExchangeCode>()
        .register::<RefreshCredentials>()
        .register::<RevokeGrant>()
        .register::<PublishDelivery>()
        .register::<ImportMedia>()
        .register::<SendWebhooks>()
}

/// The adapter of `platform` and the OAuth client (`app_id`, or the managed app) that account
/// jobs call the platform with; `Err` is the outcome to end the job with.
async fn platform_client(
    context: &Context,
    connection: &mut sqlx::PgConnection,
    project_id: uuid::Uuid,
    platform: &str,
    app_id: Option<uuid::Uuid>,
) -> Result<(Arc<dyn herald_shared::platforms::Platform>, herald_shared::platforms::ClientCredentials), crate::Outcome>
{
    let Some(adapter) = context.platforms.get(platform) else {
        return Err(crate::Outcome::Fail(format!("no adapter for {platform}")));
    };
    let managed = context.platforms.managed_app(platform);
    match credentials::client_for(connection, &context.keyring, managed, project_id, platform, app_id).await {
        Ok(client) => Ok((adapter, client)),
        Err(error) => Err(crate::Outcome::Fail(format!("no OAuth client: {error}"))),
    }
}
