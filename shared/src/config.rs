//! herald's settings: defaults, then an optional TOML file, then `HERALD_*` environment variables
//! (and `DATABASE_URL`), validated once at start.
//!
//! Every role reads the same [`Config`], so one image and one set of variables run the api, the
//! scheduler and the workers. Nested settings use `__` in the environment
//! (`HERALD_PLATFORMS__X__CLIENT_ID` is `platforms.x.client_id`). An error names the variable an
//! operator has to fix, for example `HERALD_ENCRYPTION_KEY: expected 32 bytes, base64`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

mod environment;
mod media;
mod webhooks;

pub use environment::{Settings as KnownSettings, Variable};

pub use media::{MediaSettings, MediaStoreKind};
pub use webhooks::WebhookSettings;

/// The environment variable that names an optional settings file.
pub const CONFIG_FILE_VAR: &str = "HERALD_CONFIG";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-friendly, for a terminal.
    #[default]
    Pretty,
    /// One JSON object a line, for log collectors.
    Json,
}

/// Every setting herald reads. See the module documentation for where values come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `DATABASE_URL`. Unset means "start or reuse the private PostgreSQL under `data_dir`"
    /// (only `herald dev` and the operator commands do that).
    #[serde(default, skip_serializing)]
    pub database_url: Option<SecretString>,
    /// Connections each process keeps to PostgreSQL.
    pub database_max_connections: u32,
    /// The api's listen address.
    pub listen: SocketAddr,
    /// Where a worker or scheduler serves `/healthz`, `/readyz` and `/metrics`
    /// (`HERALD_OPS_LISTEN`; port 0 picks a free one). The api serves them on `listen`.
    pub ops_listen: SocketAddr,
    /// Where local state lives: the private PostgreSQL and a generated encryption key.
    pub data_dir: PathBuf,
    /// `pretty` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info,herald=debug`; `RUST_LOG` wins when it is set.
    pub log: String,
    /// The key that encrypts tokens and client secrets: 32 bytes, base64. For one key; to
    /// rotate, use `encryption_keys`.
    #[serde(default, skip_serializing)]
    pub encryption_key: Option<SecretString>,
    /// Several keys, comma separated, newest first: the newest seals, every one opens. After
    /// adding a key in front, `herald secrets reencrypt` moves every value to it; then the old
    /// ones can go. `encryption_key`, if also set, comes after these.
    #[serde(default, skip_serializing)]
    pub encryption_keys: Option<SecretString>,
    /// How long a stopping process lets in-flight requests and jobs finish, in seconds.
    pub shutdown_grace_secs: u64,
    /// Largest request body the api accepts, in bytes; larger ones get a 413.
    pub max_body_bytes: usize,
    /// Requests the api serves at once; one more gets a 503 `overloaded` problem at once
    /// (with `Retry-After: 1`) instead of waiting for a database connection.
    pub max_in_flight: usize,
    /// How often a worker or scheduler reports that it is alive, in seconds.
    pub heartbeat_secs: u64,
    /// The most keys a project may have that are neither revoked nor expired.
    pub max_live_keys: usize,
    /// Take the client's address from `X-Forwarded-For` (set only behind a proxy that writes it);
    /// otherwise the peer address is the client's, for keys' allowed IPs.
    pub trust_forwarded_for: bool,
    /// The job queue (`HERALD_QUEUE__*`).
    pub queue: QueueConfig,
    /// The URL clients and platforms reach this api at; OAuth callbacks are
    /// `<public_url>/v1/connect/<platform>/callback`. Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Each platform's endpoints and managed app (`HERALD_PLATFORMS__<NAME>__*`).
    pub platforms: BTreeMap<String, PlatformSettings>,
    /// `/readyz` also requires a worker heartbeat fresher than three heartbeat intervals. Off by
    /// default, so an api-only deployment (workers elsewhere, scaled to zero) is not unready.
    pub ready_requires_worker: bool,
    /// How long a call to a platform may take, in seconds. A publish without an answer in time
    /// is looked up before it is tried again.
    pub platform_timeout_secs: u64,
    /// Let fetches of user-supplied URLs (media import, later webhooks and feeds) reach
    /// loopback, private, link-local and metadata addresses (`crate::outbound`). Only for tests
    /// and local development, where the servers are on loopback: on a server it hands every
    /// key holder herald's network position.
    pub allow_private_networks: bool,
    /// Where media objects live and their limits (`HERALD_MEDIA__*`).
    pub media: MediaSettings,
    /// How webhook messages are sent and retried (`HERALD_WEBHOOKS__*`).
    pub webhooks: WebhookSettings,
    /// `HERALD_*` variables that are no setting of herald's (nor near one): ignored, and warned
    /// about once logging starts (Kubernetes' service links are left out of this).
    #[serde(skip)]
    pub unowned_variables: Vec<String>,
}

/// How workers claim and hold jobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// How long a claimed job is held before another worker may rescue it, in seconds. Workers
    /// extend the leases of running jobs every third of this.
    pub lease_secs: u64,
    /// How often an idle worker looks for due jobs when no notification arrives, in ms.
    pub poll_interval_ms: u64,
    /// The most jobs one claim takes.
    pub claim_batch: usize,
    /// Jobs a worker runs at once on a queue not named in `concurrency`.
    pub default_concurrency: usize,
    /// Jobs a worker runs at once, by queue (`HERALD_QUEUE__CONCURRENCY__PUBLISH=32`).
    pub concurrency: BTreeMap<String, usize>,
    /// How long finished jobs are kept before the scheduler prunes them, in hours.
    pub retention_hours: u64,
}

/// One platform's endpoints, managed app and pace, as configured
/// (`HERALD_PLATFORMS__<NAME>__*`). Unset fields take the platform's own defaults (its spec in
/// `platforms/`); which names are platforms is known there too, and checked when herald starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformSettings {
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub api_url: Option<String>,
    pub upload_url: Option<String>,
    pub revoke_url: Option<String>,
    /// The managed app's client id: what a connect without `app_id` uses.
    pub client_id: Option<String>,
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    /// Space- or comma-separated scopes asked for by default.
    pub scopes: Option<String>,
    /// The sandbox only (`HERALD_PLATFORMS__SANDBOX__ENABLED`, default true): `false` stops
    /// serving `/sandbox` and refuses to connect or publish to sandbox accounts.
    pub enabled: Option<bool>,
    /// Publishes herald allows per account per hour (`__PUBLISHES_PER_HOUR`), instead of the
    /// platform's default pace: for an account whose platform grants it more, or less.
    pub publishes_per_hour: Option<u32>,
    /// Publishes herald allows per OAuth app per hour, over all its accounts
    /// (`__APP_PUBLISHES_PER_HOUR`).
    pub app_publishes_per_hour: Option<u32>,
    /// How long before its access token expires an account is refreshed, in seconds
    /// (`__REFRESH_MARGIN_SECONDS`).
    pub refresh_margin_seconds: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease_secs: 30,
            poll_interval_ms: 1000,
            claim_batch: 500,
            default_concurrency: 16,
            concurrency: BTreeMap::new(),
            retention_hours: 24 * 7,
        }
    }
}

impl QueueConfig {
    /// How long a claimed job is held.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// The polling fallback.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// How long finished jobs are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours * 60 * 60)
    }

    /// Concurrency for `queue`.
    pub fn concurrency_of(&self, queue: &str) -> usize {
        self.concurrency.get(queue).copied().unwrap_or(self.default_concurrency)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: None,
            database_max_connections: 20,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            data_dir: PathBuf::from(".herald"),
            log_format: LogFormat::Pretty,
            log: "info".to_owned(),
            encryption_key: None,
            encryption_keys: None,
            shutdown_grace_secs: 20,
            max_body_bytes: 1024 * 1024,
            max_in_flight: 256,
            heartbeat_secs: 5,
            max_live_keys: 10,
            trust_forwarded_for: false,
            queue: QueueConfig::default(),
            public_url: None,
            platforms: BTreeMap::new(),
            platform_timeout_secs: 30,
            ready_requires_worker: false,
            allow_private_networks: false,
            media: MediaSettings::default(),
            webhooks: WebhookSettings::default(),
            unowned_variables: Vec::new(),
        }
    }
}

/// A setting that is missing or wrong, named as the operator would set it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The variable (or file key) to fix, e.g. `HERALD_LISTEN`.
    pub setting: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { setting: setting.into(), problem: problem.into() }
    }
}

impl Config {
    /// Reads defaults, then the file named by `HERALD_CONFIG` (if any), then the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var_os(CONFIG_FILE_VAR).map(PathBuf::from);
        Self::load_from(file.as_deref(), Env::prefixed("HERALD_"))
    }

    /// Like [`Config::load`], with the file and the environment given (tests use this).
    pub fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::new(CONFIG_FILE_VAR, format!("no such file: {}", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let (env, unowned_variables) = settings_only(env)?;
        figment = figment.merge(env.ignore(&["config"]).split("__")).merge(Env::raw().only(&["DATABASE_URL"]));
        let mut config: Config = figment.extract().map_err(|error| {
            let source = error.metadata.as_ref().map(|metadata| metadata.name.to_string()).unwrap_or_default();
            let setting = setting_name(&error.path, &source, file);
            ConfigError::new(setting, error.kind.to_string())
        })?;
        config.validate()?;
        config.unowned_variables = unowned_variables;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::new("DATABASE_URL", "expected a postgres:// or postgresql:// URL"));
            }
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError::new("HERALD_DATABASE_MAX_CONNECTIONS", "must be at least 1"));
        }
        if self.heartbeat_secs == 0 {
            return Err(ConfigError::new("HERALD_HEARTBEAT_SECS", "must be at least 1"));
        }
        if self.queue.lease_secs < 3 {
            return Err(ConfigError::new("HERALD_QUEUE__LEASE_SECS", "must be at least 3"));
        }
        if self.queue.poll_interval_ms == 0 {
            return Err(ConfigError::new("HERALD_QUEUE__POLL_INTERVAL_MS", "must be at least 1"));
        }
        if self.queue.claim_batch == 0 {
            return Err(ConfigError::new("HERALD_QUEUE__CLAIM_BATCH", "must be at least 1"));
        }
        if self.queue.default_concurrency == 0 {
            return Err(ConfigError::new("HERALD_QUEUE__DEFAULT_CONCURRENCY", "must be at least 1"));
        }
        if let Some((queue, _)) = self.queue.concurrency.iter().find(|(_, concurrency)| **concurrency == 0) {
            return Err(ConfigError::new(
                format!("HERALD_QUEUE__CONCURRENCY__{}", queue.to_uppercase()),
                "must be at least 1",
            ));
        }
        if self.platform_timeout_secs == 0 {
            return Err(ConfigError::new("HERALD_PLATFORM_TIMEOUT_SECS", "must be at least 1"));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::new("HERALD_MAX_IN_FLIGHT", "must be at least 1"));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::new("HERALD_MAX_BODY_BYTES", "must be at least 1024"));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new("HERALD_PUBLIC_URL", "expected an http:// or https:// URL"));
        }
        self.media.validate()?;
        self.webhooks.validate()?;
        for (name, settings) in &self.platforms {
            settings.validate(&format!("HERALD_PLATFORMS__{}", name.to_uppercase()), name)?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|error| ConfigError::new("HERALD_LOG", format!("not a log filter: {error}")))?;
        for (setting, key) in self.encryption_keys() {
            if decode_encryption_key(key.expose_secret()).is_none() {
                return Err(ConfigError::new(setting, "expected 32 bytes, base64"));
            }
        }
        Ok(())
    }

    /// The configured encryption keys, newest first, still base64, each with the setting it came
    /// from (for errors). `crypto::Keyring::from_config` builds the keyring from them.
    pub fn encryption_keys(&self) -> Vec<(&'static str, SecretString)> {
        let mut keys = Vec::new();
        if let Some(listed) = &self.encryption_keys {
            for key in listed.expose_secret().split(',').map(str::trim).filter(|key| !key.is_empty()) {
                keys.push(("HERALD_ENCRYPTION_KEYS", SecretString::from(key)));
            }
        }
        if let Some(key) = &self.encryption_key {
            keys.push(("HERALD_ENCRYPTION_KEY", SecretString::from(key.expose_secret().trim())));
        }
        keys
    }

    /// Where clients and platforms reach this api, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The OAuth callback herald registers for `platform`.
    pub fn callback_url(&self, platform: &str) -> String {
        format!("{}/v1/connect/{platform}/callback", self.public_url())
    }

    /// Whether herald serves the sandbox platform (`HERALD_PLATFORMS__SANDBOX__ENABLED`, default
    /// true): its `/sandbox` routes, connecting sandbox accounts and publishing to them.
    pub fn sandbox_enabled(&self) -> bool {
        self.platforms.get("sandbox").and_then(|settings| settings.enabled).unwrap_or(true)
    }

    /// How long a call to a platform may take.
    pub fn platform_timeout(&self) -> Duration {
        Duration::from_secs(self.platform_timeout_secs)
    }

    /// Where the local media store keeps its files.
    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    /// The grace period for in-flight work at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The heartbeat interval of workers and schedulers.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }
}

impl PlatformSettings {
    /// Checks what types alone cannot; `setting` is the variables' prefix
    /// (`HERALD_PLATFORMS__X`), `name` the platform's.
    fn validate(&self, setting: &str, name: &str) -> Result<(), ConfigError> {
        if self.enabled.is_some() && name != "sandbox" {
            return Err(ConfigError::new(format!("{setting}__ENABLED"), "only the sandbox can be turned off"));
        }
        let urls = [
            ("AUTHORIZE_URL", &self.authorize_url),
            ("TOKEN_URL", &self.token_url),
            ("API_URL", &self.api_url),
            ("UPLOAD_URL", &self.upload_url),
            ("REVOKE_URL", &self.revoke_url),
        ];
        for (field, url) in urls {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ConfigError::new(format!("{setting}__{field}"), "expected an http:// or https:// URL"));
            }
        }
        let paces = [
            ("PUBLISHES_PER_HOUR", self.publishes_per_hour.map(u64::from)),
            ("APP_PUBLISHES_PER_HOUR", self.app_publishes_per_hour.map(u64::from)),
            ("REFRESH_MARGIN_SECONDS", self.refresh_margin_seconds),
        ];
        if let Some((field, _)) = paces.iter().find(|(_, value)| *value == Some(0)) {
            return Err(ConfigError::new(format!("{setting}__{field}"), "must be at least 1"));
        }
        Ok(())
    }
}

/// The 32 bytes a standard-base64 encryption key holds, or `None` if it holds anything else.
/// Pure, so settings are checked at load; `crypto` builds its ciphers from the same bytes.
pub fn decode_encryption_key(encoded: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

/// `env` narrowed to herald's settings, and the names of the variables that are not herald's;
/// a near miss of a setting is refused (see [`environment`]).
fn settings_only(env: Env) -> Result<(Env, Vec<String>), ConfigError> {
    let settings = environment::Settings::of_config();
    let mut accepted = std::collections::HashSet::new();
    let mut unowned = Vec::new();
    for (key, value) in env.iter() {
        let key = key.as_str().to_ascii_uppercase();
        match settings.classify(&key, &value) {
            Variable::Setting => {
                accepted.insert(key);
            }
            Variable::ServiceLink => {}
            Variable::NearMiss { closest } => {
                return Err(ConfigError::new(
                    format!("HERALD_{key}"),
                    format!("not a setting; did you mean {closest}?"),
                ));
            }
            Variable::Unowned => unowned.push(format!("HERALD_{key}")),
        }
    }
    let accepted = std::sync::Arc::new(accepted);
    let env = env.filter(move |key| accepted.contains(&key.as_str().to_ascii_uppercase()));
    Ok((env, unowned))
}

/// How an operator would name the setting at `path`, given where the bad value came from.
fn setting_name(path: &[String], source: &str, file: Option<&Path>) -> String {
    if path == ["database_url"] {
        return "DATABASE_URL".to_owned();
    }
    match file {
        Some(file) if !source.contains("environment") => format!("{} (in {})", path.join("."), file.display()),
        _ => format!("HERALD_{}", path.join("__").to_uppercase()),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return its large error type
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut loaded = None;
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            for (name, value) in vars {
                jail.set_env(name, value);
            }
            loaded = Some(Config::load_from(None, Env::prefixed("HERALD_")));
            Ok(())
        });
        loaded.expect("the jail ran")
    }

    #[test]
    fn defaults_need_nothing() {
        let config = load(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from(".herald"));
        assert!(config.database_url.is_none());
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = load(&[("HERALD_LISTEN", "0.0.0.0:9000"), ("DATABASE_URL", "postgres://x@y/z")]).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.database_url.unwrap().expose_secret(), "postgres://x@y/z");
    }

    #[test]
    fn a_bad_address_names_its_variable() {
        let error = load(&[("HERALD_LISTEN", "nowhere")]).unwrap_err();
        assert_eq!(error.setting, "HERALD_LISTEN", "{error}");
    }

    #[test]
    fn a_short_encryption_key_says_what_is_expected() {
        let error = load(&[("HERALD_ENCRYPTION_KEY", "c2hvcnQ=")]).unwrap_err();
        assert_eq!(error.to_string(), "HERALD_ENCRYPTION_KEY: expected 32 bytes, base64");
    }

    #[test]
    fn a_misspelt_setting_is_refused_with_the_closest_name() {
        let error = load(&[("HERALD_LISTN", "127.0.0.1:1")]).unwrap_err();
        assert_eq!(error.to_string(), "HERALD_LISTN: not a setting; did you mean HERALD_LISTEN?");
        let error = load(&[("HERALD_PLATFORMS__X__CLIENT_SECERT", "s")]).unwrap_err();
        assert_eq!(error.setting, "HERALD_PLATFORMS__X__CLIENT_SECERT", "{error}");
    }

    #[test]
    fn kubernetes_service_links_start_and_other_variables_are_only_listed() {
        let config = load(&[
            ("HERALD_PORT", "tcp://10.96.0.12:8080"),
            ("HERALD_SERVICE_HOST", "10.96.0.12"),
            ("HERALD_SERVICE_PORT", "8080"),
            ("HERALD_PORT_8080_TCP", "tcp://10.96.0.12:8080"),
            ("HERALD_PORT_8080_TCP_PROTO", "tcp"),
            ("HERALD_PORT_8080_TCP_PORT", "8080"),
            ("HERALD_PORT_8080_TCP_ADDR", "10.96.0.12"),
            ("HERALD_BUILD_COMMIT", "abc123"),
            ("HERALD_LISTEN", "0.0.0.0:8080"),
        ])
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.unowned_variables, ["HERALD_BUILD_COMMIT"]);
    }

    #[test]
    fn queue_settings_nest_under_double_underscores() {
        let config = load(&[("HERALD_QUEUE__LEASE_SECS", "12"), ("HERALD_QUEUE__CONCURRENCY__PUBLISH", "40")]).unwrap();
        assert_eq!(config.queue.lease(), Duration::from_secs(12));
        assert_eq!(config.queue.concurrency_of("publish"), 40);
        assert_eq!(config.queue.concurrency_of("default"), 16);
        let error = load(&[("HERALD_QUEUE__LEASE_SECS", "soon")]).unwrap_err();
        assert_eq!(error.setting, "HERALD_QUEUE__LEASE_SECS", "{error}");
        let error = load(&[("HERALD_QUEUE__CONCURRENCY__PUBLISH", "0")]).unwrap_err();
        assert_eq!(error.to_string(), "HERALD_QUEUE__CONCURRENCY__PUBLISH: must be at least 1");
    }

    #[test]
    fn the_sandbox_is_on_unless_turned_off_and_only_it_can_be() {
        assert!(load(&[]).unwrap().sandbox_enabled());
        assert!(!load(&[("HERALD_PLATFORMS__SANDBOX__ENABLED", "false")]).unwrap().sandbox_enabled());
        assert!(load(&[("HERALD_PLATFORMS__SANDBOX__ENABLED", "true")]).unwrap().sandbox_enabled());
        let error = load(&[("HERALD_PLATFORMS__X__ENABLED", "false")]).unwrap_err();
        assert_eq!(error.to_string(), "HERALD_PLATFORMS__X__ENABLED: only the sandbox can be turned off");
        let error = load(&[("HERALD_PLATFORMS__SANDBOX__ENABLED", "nope")]).unwrap_err();
        assert_eq!(error.setting, "HERALD_PLATFORMS__SANDBOX__ENABLED", "{error}");
    }

    #[test]
    fn a_platform_pace_of_zero_or_less_is_refused_by_name() {
        let config = load(&[("HERALD_PLATFORMS__X__PUBLISHES_PER_HOUR", "3")]).unwrap();
        assert_eq!(config.platforms["x"].publishes_per_hour, Some(3));
        let error = load(&[("HERALD_PLATFORMS__X__APP_PUBLISHES_PER_HOUR", "0")]).unwrap_err();
        assert_eq!(error.to_string(), "HERALD_PLATFORMS__X__APP_PUBLISHES_PER_HOUR: must be at least 1");
        let error = load(&[("HERALD_PLATFORMS__SANDBOX__REFRESH_MARGIN_SECONDS", "0")]).unwrap_err();
        assert_eq!(error.to_string(), "HERALD_PLATFORMS__SANDBOX__REFRESH_MARGIN_SECONDS: must be at least 1");
        let error = load(&[("HERALD_PLATFORMS__X__PUBLISHES_PER_HOUR", "-2")]).unwrap_err();
        assert_eq!(error.setting, "HERALD_PLATFORMS__X__PUBLISHES_PER_HOUR", "{error}");
    }

    #[test]
    fn media_settings_default_to_local_and_check_s3() {
        let config = load(&[]).unwrap();
        assert_eq!(config.media.store, MediaStoreKind::Local);
        assert_eq!(config.media_dir(), PathBuf::from(".herald/media"));
        let error = load(&[("HERALD_MEDIA__STORE", "s3")]).unwrap_err();
        assert_eq!(error.to_string(), "HERALD_MEDIA__BUCKET: required when HERALD_MEDIA__STORE is s3");
        let error = load(&[("HERALD_MEDIA__STORE", "ftp")]).unwrap_err();
        assert_eq!(error.setting, "HERALD_MEDIA__STORE", "{error}");
        let error = load(&[("HERALD_MEDIA__URL_LIFETIME_SECONDS", "5")]).unwrap_err();
        assert_eq!(error.setting, "HERALD_MEDIA__URL_LIFETIME_SECONDS", "{error}");
        let error = load(&[("HERALD_MEDIA__ACCESS_KEY_ID", "id")]).unwrap_err();
        assert_eq!(error.setting, "HERALD_MEDIA__SECRET_ACCESS_KEY", "{error}");
        let config = load(&[
            ("HERALD_MEDIA__STORE", "s3"),
            ("HERALD_MEDIA__BUCKET", "media"),
            ("HERALD_MEDIA__SECRET_ACCESS_KEY", "hunter2-secret"),
            ("HERALD_MEDIA__ACCESS_KEY_ID", "id"),
            ("HERALD_MEDIA__PATH_STYLE", "true"),
        ])
        .unwrap();
        assert!(config.media.path_style);
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&config).unwrap().contains("hunter2"));
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("herald.toml", "listen = \"127.0.0.1:7000\"\nlog = \"debug\"\n")?;
            jail.set_env("HERALD_LOG", "warn");
            let config = Config::load_from(Some(Path::new("herald.toml")), Env::prefixed("HERALD_")).unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
            assert_eq!(config.log, "warn");
            Ok(())
        });
    }
}
