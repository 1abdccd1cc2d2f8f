//! The jobs herald's workers perform, registered in one place.

mod prune;

use std::sync::Arc;

use herald_shared::Config;
use herald_shared::jobs::PruneExpired;
use sqlx::PgPool;

use crate::runtime::Registry;

/// What every job may use.
pub struct Context {
    pub pool: PgPool,
    pub config: Arc<Config>,
}

/// Every kind a herald worker runs.
pub fn registry() -> Registry<Context> {
    Registry::default().register::<PruneExpired>()
}
