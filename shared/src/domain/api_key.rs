//! An API key: its scope is fixed at creation (to change it, create a new key and revoke the old
//! one). The key itself never reaches the log: only its SHA-256 and its 12-character prefix.
//!
//! A key is `hk_live_` (or `hk_test_`, sandbox only) followed by 32 lowercase hex digits from a
//! CSPRNG, so secret scanners can match `hk_(live|test)_[a-f0-9]{32}`. Only its SHA-256 and its
//! first 12 characters are stored; the key itself is shown once, at creation. Creating and
//! revoking keys is `crate::commands::keys`.

use chrono::{DateTime, Utc};
use rand::Rng;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::aggregate::{Aggregate, DomainEvent};

/// Everything a key is, but the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpec {
    pub project_id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The first 12 characters, shown in lists.
    pub prefix: String,
    /// SHA-256 of the key, hex.
    pub key_hash: String,
    /// `live`, or `test` (sandbox only).
    pub environment: Environment,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub requests_per_minute: i32,
    pub requests_per_day: i32,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiKey {
    pub exists: bool,
    pub project_id: Uuid,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create(Box<KeySpec>),
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "key.created")]
    Created(Box<KeySpec>),
    #[serde(rename = "key.revoked")]
    Revoked {},
}

impl DomainEvent for Event {
    fn event_type(&self) -> &'static str {
        match self {
            Event::Created(_) => "key.created",
            Event::Revoked {} => "key.revoked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the key already exists")]
    AlreadyExists,
    #[error("the key does not exist")]
    NotFound,
    #[error("the key is already revoked")]
    AlreadyRevoked,
    #[error("a key needs at least one scope")]
    NoScopes,
    #[error("rate limits must be positive")]
    InvalidLimits,
}

impl Aggregate for ApiKey {
    const KIND: &'static str = "key";
    type Command = Command;
    type Event = Event;
    type Rejection = Rejection;

    fn decide(&self, command: Command) -> Result<Vec<Event>, Rejection> {
        match command {
            Command::Create(spec) => {
                if self.exists {
                    return Err(Rejection::AlreadyExists);
                }
                if spec.scopes.is_empty() {
                    return Err(Rejection::NoScopes);
                }
                if spec.requests_per_minute <= 0 || spec.requests_per_day <= 0 {
                    return Err(Rejection::InvalidLimits);
                }
                Ok(vec![Event::Created(spec)])
            }
            Command::Revoke => match (self.exists, self.revoked) {
                (false, _) => Err(Rejection::NotFound),
                (true, true) => Err(Rejection::AlreadyRevoked),
                (true, false) => Ok(vec![Event::Revoked {}]),
            },
        }
    }

    fn evolve(mut self, event: &Event) -> Self {
        match event {
            Event::Created(spec) => {
                self.exists = true;
                self.project_id = spec.project_id;
            }
            Event::Revoked {} => self.revoked = true,
        }
        self
    }
}

/// Every scope a key can hold.
pub const SCOPES: &[&str] = &[
    "posts:read",
    "posts:write",
    "posts:delete",
    "posts:approve",
    "media:read",
    "media:upload",
    "queue:read",
    "queue:write",
    "schedule:read",
    "schedule:write",
    "analytics:read",
    "connections:read",
    "connections:write",
    "apps:read",
    "apps:write",
    "keys:read",
    "keys:write",
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "feeds:read",
    "feeds:write",
    "ai:generate",
];

/// The length of the prefix shown in lists (`hk_live_` and four hex digits).
pub const PREFIX_LEN: usize = 12;

/// Which platforms a key reaches. Stored and written as `live` / `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Environment {
    /// Every platform.
    Live,
    /// Only the sandbox platform.
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    fn marker(self) -> &'static str {
        match self {
            Environment::Live => "hk_live_",
            Environment::Test => "hk_test_",
        }
    }
}

/// A freshly generated key: the secret (shown once) and what is stored of it.
#[derive(Debug)]
pub struct GeneratedKey {
    pub secret: SecretString,
    pub prefix: String,
    /// SHA-256 of the key, hex.
    pub hash: String,
}

/// Makes a new key.
pub fn generate(environment: Environment) -> GeneratedKey {
    // The thread-local generator is a CSPRNG (ChaCha) seeded and reseeded from the OS.
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    let key = format!("{}{}", environment.marker(), hex::encode(bytes));
    GeneratedKey { prefix: key[..PREFIX_LEN].to_owned(), hash: hash(&key), secret: SecretString::from(key) }
}

/// SHA-256 of `key`, hex: what the database holds and what a presented key is looked up by.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `text` has the shape of a key (not whether it exists).
pub fn is_well_formed(text: &str) -> bool {
    let Some(hex_part) = text.strip_prefix("hk_live_").or_else(|| text.strip_prefix("hk_test_")) else {
        return false;
    };
    hex_part.len() == 32 && hex_part.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Expands `read` and `write` and checks every name; the answer is sorted and without repeats.
/// `read` is every `*:read` scope; `write` is every other one.
pub fn expand_scopes(requested: &[String]) -> Result<Vec<String>, String> {
    let mut scopes = Vec::new();
    for scope in requested {
        match scope.as_str() {
            "read" => scopes.extend(SCOPES.iter().filter(|scope| scope.ends_with(":read")).map(|s| (*s).to_owned())),
            "write" => scopes.extend(SCOPES.iter().filter(|scope| !scope.ends_with(":read")).map(|s| (*s).to_owned())),
            known if SCOPES.contains(&known) => scopes.push(known.to_owned()),
            unknown => return Err(format!("unknown scope `{unknown}`")),
        }
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// An allowed-IP entry: a CIDR block, or a single address.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// What a key may reach: its environment, scopes, platforms and accounts. A key may create, see
/// and revoke only keys whose reach lies within its own ([`Reach::lacks`]), so no key can widen
/// itself through another.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    /// A `hk_test_` key: the sandbox platform only.
    pub test_only: bool,
    /// Expanded, as stored.
    pub scopes: &'a [String],
    /// Only these platforms, when set.
    pub platforms: Option<&'a [String]>,
    /// Only these accounts (ids or external ids), when set.
    pub accounts: Option<&'a [String]>,
}

/// The platform a test key is confined to.
const SANDBOX: &str = "sandbox";

impl<'a> Reach<'a> {
    /// The reach of the key `spec` describes.
    pub fn of(spec: &'a KeySpec) -> Self {
        Self::stored(spec.environment, &spec.scopes, spec.platforms.as_deref(), spec.accounts.as_deref())
    }

    /// The reach stored as a key's (or an endpoint's) columns: its environment, expanded scopes,
    /// platforms and accounts.
    pub fn stored(
        environment: Environment,
        scopes: &'a [String],
        platforms: Option<&'a [String]>,
        accounts: Option<&'a [String]>,
    ) -> Self {
        Reach { test_only: environment == Environment::Test, scopes, platforms, accounts }
    }

    /// Whether this key may act on `platform`.
    pub fn reaches_platform(&self, platform: &str) -> bool {
        (!self.test_only || platform == SANDBOX)
            && self.platforms.is_none_or(|allowed| allowed.iter().any(|name| name == platform))
    }

    /// Whether this key may see the account `id` (with `external_id`) on `platform`.
    pub fn reaches_account(&self, platform: &str, id: Uuid, external_id: Option<&str>) -> bool {
        self.reaches_platform(platform)
            && self.accounts.is_none_or(|allowed| {
                allowed.iter().any(|entry| *entry == id.to_string() || external_id == Some(entry.as_str()))
            })
    }

    /// The platforms this key reaches, `None` for all of them.
    fn effective_platforms(&self) -> Option<Vec<&'a str>> {
        match (self.test_only, self.platforms) {
            (false, None) => None,
            (false, Some(platforms)) => Some(platforms.iter().map(String::as_str).collect()),
            (true, None) => Some(vec![SANDBOX]),
            (true, Some(platforms)) => Some(platforms.iter().map(String::as_str).filter(|p| *p == SANDBOX).collect()),
        }
    }

    /// What `other` reaches that this key does not, said for a 403; `None` if `other` lies
    /// wholly within this key's reach.
    pub fn lacks(&self, other: &Reach<'_>) -> Option<String> {
        if self.test_only && !other.test_only {
            return Some("a test key (hk_test_) reaches only test keys".into());
        }
        if let Some(scope) = other.scopes.iter().find(|scope| !self.scopes.contains(scope)) {
            return Some(format!("this key lacks the scope `{scope}`"));
        }
        if let Some(mine) = self.effective_platforms() {
            match other.effective_platforms() {
                None => return Some(format!("this key reaches only the platforms {}, not every one", mine.join(", "))),
                Some(theirs) => {
                    if let Some(platform) = theirs.iter().find(|platform| !mine.contains(platform)) {
                        return Some(format!("this key does not reach the platform {platform}"));
                    }
                }
            }
        }
        if let Some(mine) = self.accounts {
            match other.accounts {
                None => return Some("this key reaches only the accounts it lists, not every one".into()),
                Some(theirs) => {
                    if let Some(account) = theirs.iter().find(|account| !mine.contains(account)) {
                        return Some(format!("this key does not reach the account `{account}`"));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    pub(crate) fn spec() -> KeySpec {
        KeySpec {
            project_id: Uuid::from_u128(1),
            name: "ci".into(),
            description: None,
            prefix: "hk_live_0123".into(),
            key_hash: "ab".repeat(32),
            environment: Environment::Live,
            scopes: vec!["posts:read".into()],
            platforms: None,
            accounts: None,
            expires_at: None,
            requests_per_minute: 60,
            requests_per_day: 10_000,
            allowed_ips: vec![],
            allowed_origins: vec![],
        }
    }

    #[test]
    fn a_key_is_created_then_revoked_once() {
        let created = ApiKey::default().decide(Command::Create(Box::new(spec()))).unwrap();
        let key = ApiKey::replay(&created);
        assert_eq!(key.decide(Command::Create(Box::new(spec()))), Err(Rejection::AlreadyExists));
        let revoked = key.decide(Command::Revoke).unwrap();
        assert_eq!(revoked, vec![Event::Revoked {}]);
        let key = revoked.iter().fold(key, ApiKey::evolve);
        assert_eq!(key.decide(Command::Revoke), Err(Rejection::AlreadyRevoked));
    }

    #[test]
    fn a_key_needs_scopes_and_positive_limits_and_must_exist_to_be_revoked() {
        let no_scopes = KeySpec { scopes: vec![], ..spec() };
        assert_eq!(ApiKey::default().decide(Command::Create(Box::new(no_scopes))), Err(Rejection::NoScopes));
        let zero = KeySpec { requests_per_minute: 0, ..spec() };
        assert_eq!(ApiKey::default().decide(Command::Create(Box::new(zero))), Err(Rejection::InvalidLimits));
        assert_eq!(ApiKey::default().decide(Command::Revoke), Err(Rejection::NotFound));
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn a_key_reaches_only_keys_within_its_own_reach() {
        let all = strings(&["keys:read", "keys:write", "posts:read"]);
        let x = strings(&["x"]);
        let one_account = strings(&["acct-1"]);
        let full = Reach { test_only: false, scopes: &all, platforms: None, accounts: None };
        let on_x = Reach { platforms: Some(&x), ..full };
        let on_one = Reach { accounts: Some(&one_account), ..full };
        let test = Reach { test_only: true, ..full };
        let fewer = strings(&["posts:read"]);
        let narrow = Reach { scopes: &fewer, ..on_x };

        for reach in [full, on_x, on_one, test, narrow] {
            assert_eq!(full.lacks(&reach), None, "the unrestricted key reaches {reach:?}");
            assert_eq!(reach.lacks(&reach), None, "{reach:?} reaches itself");
        }
        assert!(on_x.lacks(&full).unwrap().contains("platforms x"));
        assert!(on_one.lacks(&full).unwrap().contains("accounts"));
        assert!(test.lacks(&full).unwrap().contains("test"));
        assert!(narrow.lacks(&on_x).unwrap().contains("`keys:read`"));
        let sandbox = strings(&["sandbox", "x"]);
        let on_sandbox_and_x = Reach { platforms: Some(&sandbox), ..full };
        assert_eq!(on_sandbox_and_x.lacks(&test), None, "a test key reaches only the sandbox");
        assert!(on_x.lacks(&test).unwrap().contains("sandbox"));
        let other = strings(&["acct-2"]);
        assert!(on_one.lacks(&Reach { accounts: Some(&other), ..full }).unwrap().contains("`acct-2`"));
        assert!(test.reaches_platform("sandbox") && !test.reaches_platform("x"));
        assert!(on_one.reaches_account("x", Uuid::from_u128(9), Some("acct-1")));
        assert!(!on_one.reaches_account("x", Uuid::from_u128(9), Some("acct-2")));
    }

    #[test]
    fn keys_have_the_documented_shape_and_are_stored_as_hashes() {
        let key = generate(Environment::Live);
        let text = key.secret.expose_secret();
        assert!(is_well_formed(text), "{}", key.prefix);
        assert!(text.starts_with("hk_live_") && text.len() == 40);
        assert_eq!(key.prefix, text[..12]);
        assert_eq!(key.hash, hash(text));
        assert_eq!(key.hash.len(), 64);
        assert_ne!(generate(Environment::Live).hash, key.hash);
        assert!(generate(Environment::Test).secret.expose_secret().starts_with("hk_test_"));
        assert!(!is_well_formed("hk_live_0123"));
        assert!(!is_well_formed(&"hk_live_".repeat(5)));
        assert!(!is_well_formed("hk_live_0123456789ABCDEF0123456789abcdef"));
    }

    #[test]
    fn shorthands_expand_and_unknown_scopes_are_refused() {
        let read = expand_scopes(&["read".into()]).unwrap();
        assert!(read.iter().all(|scope| scope.ends_with(":read")));
        assert!(read.contains(&"events:read".to_owned()));
        let both = expand_scopes(&["read".into(), "write".into(), "posts:read".into()]).unwrap();
        assert_eq!(both.len(), SCOPES.len());
        assert_eq!(expand_scopes(&["posts:publish".into()]).unwrap_err(), "unknown scope `posts:publish`");
    }
}
