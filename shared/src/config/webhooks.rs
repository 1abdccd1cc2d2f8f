//! How webhook messages are sent and retried (`HERALD_WEBHOOKS__*`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The webhook settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// How long a receiver may take to answer, in seconds; longer is a failed attempt
    /// (`HERALD_WEBHOOKS__TIMEOUT_SECS`).
    pub timeout_secs: u64,
    /// The wait before each retry, in seconds, after the first attempt failed; each is jittered
    /// by ±10%. The default is 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 14 h and 24 h: ten
    /// attempts over about three days (`HERALD_WEBHOOKS__RETRY_SCHEDULE_SECS`, a list such as `[5,300,1800]`).
    pub retry_schedule_secs: Vec<u64>,
    /// An endpoint whose attempts have all failed for this long is disabled, in hours
    /// (`HERALD_WEBHOOKS__DISABLE_AFTER_HOURS`; 120 = five days).
    pub disable_after_hours: u64,
    /// The most messages sent to one endpoint per second, over every worker (the shared rate
    /// limiter; `HERALD_WEBHOOKS__PER_ENDPOINT_PER_SECOND`).
    pub per_endpoint_per_second: u32,
    /// How long delivered and failed messages and their attempts are kept, in days
    /// (`HERALD_WEBHOOKS__RETENTION_DAYS`).
    pub retention_days: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout_secs: 15,
            retry_schedule_secs: vec![5, 300, 1800, 7200, 18_000, 36_000, 36_000, 50_400, 86_400],
            disable_after_hours: 120,
            per_endpoint_per_second: 1000,
            retention_days: 30,
        }
    }
}

impl WebhookSettings {
    /// How long a receiver may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// How long an endpoint may fail before it is disabled.
    pub fn disable_after(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::try_from(self.disable_after_hours).unwrap_or(i64::MAX / 3600))
    }

    /// How long ended messages are kept.
    pub fn retention(&self) -> chrono::Duration {
        chrono::Duration::days(i64::try_from(self.retention_days).unwrap_or(36_500))
    }

    /// Checks what types alone cannot, naming the variable to fix.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(ConfigError::new("HERALD_WEBHOOKS__TIMEOUT_SECS", "must be between 1 and 300"));
        }
        if self.retry_schedule_secs.is_empty() || self.retry_schedule_secs.len() > 50 {
            return Err(ConfigError::new("HERALD_WEBHOOKS__RETRY_SCHEDULE_SECS", "must list 1 to 50 waits"));
        }
        if self.retry_schedule_secs.iter().any(|wait| *wait == 0 || *wait > 7 * 24 * 3600) {
            return Err(ConfigError::new(
                "HERALD_WEBHOOKS__RETRY_SCHEDULE_SECS",
                "each wait must be between 1 second and 7 days",
            ));
        }
        if self.disable_after_hours == 0 {
            return Err(ConfigError::new("HERALD_WEBHOOKS__DISABLE_AFTER_HOURS", "must be at least 1"));
        }
        if self.per_endpoint_per_second == 0 {
            return Err(ConfigError::new("HERALD_WEBHOOKS__PER_ENDPOINT_PER_SECOND", "must be at least 1"));
        }
        if self.retention_days == 0 {
            return Err(ConfigError::new("HERALD_WEBHOOKS__RETENTION_DAYS", "must be at least 1"));
        }
        Ok(())
    }
}
