//! Which `HERALD_*` variables are herald's settings, and what to do with the others.
//!
//! An orchestrator puts variables herald does not own in its environment: Kubernetes gives every
//! pod of a namespace with a Service named `herald` `HERALD_PORT=tcp://10.0.0.1:8080`,
//! `HERALD_SERVICE_HOST`, `HERALD_PORT_8080_TCP_ADDR` and more (a Service `herald-api` gives
//! `HERALD_API_SERVICE_HOST`...). Refusing every unknown name would crash-loop such a pod;
//! accepting every one would let `HERALD_LISTN` pass unnoticed. So each variable is one of:
//!
//! - a setting (matches a field of [`Config`](super::Config), maps' keys being free): read;
//! - a Kubernetes service link: ignored quietly;
//! - a near miss of a setting (at most [`NEAR_MISS`] edits from one): refused, naming the
//!   closest setting;
//! - anything else: ignored, and the process warns about it at start.
//!
//! The list of settings is derived from the settings' own defaults, so a new field is known
//! without being listed here.

use serde::Serialize;

/// The most single-character edits that make a name a misspelt setting rather than someone
/// else's variable.
pub const NEAR_MISS: usize = 2;

/// What a `HERALD_*` variable is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// One of herald's settings.
    Setting,
    /// A Kubernetes service link (`HERALD_SERVICE_HOST`, `HERALD_PORT_8080_TCP`, ...).
    ServiceLink,
    /// Close to a setting: almost certainly a typo of `closest` (the full variable name).
    NearMiss { closest: String },
    /// Not herald's.
    Unowned,
}

/// The settings' names, as `__`-separated upper-case paths below `HERALD_` (`QUEUE__LEASE_SECS`),
/// `*` standing for a map's key (`PLATFORMS__*__CLIENT_ID`).
#[derive(Debug, Clone)]
pub struct Settings {
    patterns: Vec<Vec<String>>,
}

impl Settings {
    /// Every setting of [`super::Config`].
    pub fn of_config() -> Self {
        let mut patterns = Vec::new();
        leaves(&to_value(&super::Config::default()), &mut Vec::new(), &mut patterns);
        // Maps: their keys are free, their values' fields are not.
        patterns.retain(|pattern| pattern != &["PLATFORMS"] && pattern != &["QUEUE", "CONCURRENCY"]);
        patterns.push(vec!["QUEUE".into(), "CONCURRENCY".into(), "*".into()]);
        let mut platform = Vec::new();
        leaves(&to_value(&super::PlatformSettings::default()), &mut Vec::new(), &mut platform);
        platform.push(vec!["CLIENT_SECRET".into()]);
        for field in platform {
            patterns.push([vec!["PLATFORMS".into(), "*".into()], field].concat());
        }
        // Written never (secrets) or read elsewhere (the file's name).
        for secret in ["ENCRYPTION_KEY", "ENCRYPTION_KEYS", "CONFIG"] {
            patterns.push(vec![secret.into()]);
        }
        patterns.push(vec!["MEDIA".into(), "SECRET_ACCESS_KEY".into()]);
        Self { patterns }
    }

    /// What the variable `HERALD_<key>` (with `key` as set, any case) holding `value` is.
    pub fn classify(&self, key: &str, value: &str) -> Variable {
        let key = key.to_ascii_uppercase();
        let segments: Vec<&str> = key.split("__").collect();
        if self.patterns.iter().any(|pattern| matches(pattern, &segments)) {
            return Variable::Setting;
        }
        if is_service_link(&key, value) {
            return Variable::ServiceLink;
        }
        let closest = self
            .patterns
            .iter()
            .map(|pattern| instantiate(pattern, &segments))
            .map(|name| (strsim::levenshtein(&name, &key), name))
            .min();
        match closest {
            Some((distance, name)) if distance <= NEAR_MISS => Variable::NearMiss { closest: format!("HERALD_{name}") },
            _ => Variable::Unowned,
        }
    }
}

fn to_value(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// The paths of `value`'s leaves (an empty object is a leaf: a map with no default keys).
fn leaves(value: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(fields) if !fields.is_empty() => {
            for (name, field) in fields {
                path.push(name.to_ascii_uppercase());
                leaves(field, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn matches(pattern: &[String], segments: &[&str]) -> bool {
    pattern.len() == segments.len()
        && pattern.iter().zip(segments).all(|(want, got)| want == got || (want == "*" && !got.is_empty()))
}

/// `pattern` as a name, its `*`s taken from `segments` where it has them.
fn instantiate(pattern: &[String], segments: &[&str]) -> String {
    let named: Vec<&str> = pattern
        .iter()
        .enumerate()
        .map(|(index, want)| if want == "*" { segments.get(index).copied().unwrap_or("X") } else { want.as_str() })
        .collect();
    named.join("__")
}

/// Kubernetes' service-link variables for a Service whose upper-cased name starts with
/// `HERALD`: `<S>_SERVICE_HOST`, `<S>_SERVICE_PORT[_<PORT NAME>]`, `<S>_PORT` (`tcp://...`) and
/// `<S>_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR]`. `key` is below `HERALD_` (possibly empty-named:
/// a Service called `herald` gives `PORT`, `SERVICE_HOST`).
fn is_service_link(key: &str, value: &str) -> bool {
    let full = format!("HERALD_{key}");
    if full.ends_with("_SERVICE_HOST") || full.ends_with("_SERVICE_PORT") || full.contains("_SERVICE_PORT_") {
        return true;
    }
    if full.split_once("_PORT_").is_some_and(|(_, rest)| is_port_link(rest)) {
        return true;
    }
    full.ends_with("_PORT") && ["tcp://", "udp://", "sctp://"].iter().any(|scheme| value.starts_with(scheme))
}

/// `<N>_<PROTO>`, then an optional `_PROTO`, `_PORT` or `_ADDR`.
fn is_port_link(rest: &str) -> bool {
    let mut parts = rest.split('_');
    let number = parts.next().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let protocol = parts.next().is_some_and(|p| matches!(p, "TCP" | "UDP" | "SCTP"));
    let suffix = match parts.next() {
        None => true,
        Some(part) => matches!(part, "PROTO" | "PORT" | "ADDR") && parts.next().is_none(),
    };
    number && protocol && suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(key: &str, value: &str) -> Variable {
        Settings::of_config().classify(key, value)
    }

    #[test]
    fn settings_are_known_from_the_defaults() {
        for key in [
            "LISTEN",
            "OPS_LISTEN",
            "QUEUE__LEASE_SECS",
            "QUEUE__CONCURRENCY__PUBLISH",
            "PLATFORMS__X__CLIENT_ID",
            "PLATFORMS__X__CLIENT_SECRET",
            "PLATFORMS__SANDBOX__ENABLED",
            "MEDIA__SECRET_ACCESS_KEY",
            "WEBHOOKS__TIMEOUT_SECS",
            "ENCRYPTION_KEY",
            "public_url",
        ] {
            assert_eq!(classify(key, "1"), Variable::Setting, "{key}");
        }
    }

    #[test]
    fn what_kubernetes_injects_for_a_service_named_herald_is_ignored() {
        // A Service `herald` with ports 8080 (http) and 9090 (ops), and one `herald-api`.
        for (key, value) in [
            ("PORT", "tcp://10.96.0.12:8080"),
            ("SERVICE_HOST", "10.96.0.12"),
            ("SERVICE_PORT", "8080"),
            ("SERVICE_PORT_HTTP", "8080"),
            ("SERVICE_PORT_OPS", "9090"),
            ("PORT_8080_TCP", "tcp://10.96.0.12:8080"),
            ("PORT_8080_TCP_PROTO", "tcp"),
            ("PORT_8080_TCP_PORT", "8080"),
            ("PORT_8080_TCP_ADDR", "10.96.0.12"),
            ("PORT_9090_UDP_ADDR", "10.96.0.12"),
            ("API_SERVICE_HOST", "10.96.0.13"),
            ("API_PORT", "tcp://10.96.0.13:8080"),
            ("API_PORT_8080_TCP_ADDR", "10.96.0.13"),
        ] {
            assert_eq!(classify(key, value), Variable::ServiceLink, "HERALD_{key}");
        }
    }

    #[test]
    fn a_near_miss_names_the_closest_setting() {
        for (key, closest) in [
            ("LISTN", "HERALD_LISTEN"),
            ("QUEUE_LEASE_SECS", "HERALD_QUEUE__LEASE_SECS"),
            ("PLATFORMS__X__CLIENT_SECERT", "HERALD_PLATFORMS__X__CLIENT_SECRET"),
            ("ENCRYPTON_KEY", "HERALD_ENCRYPTION_KEY"),
            ("WEBHOOKS__TIMEOUT_SEC", "HERALD_WEBHOOKS__TIMEOUT_SECS"),
        ] {
            assert_eq!(classify(key, "1"), Variable::NearMiss { closest: closest.into() }, "HERALD_{key}");
        }
    }

    #[test]
    fn anything_else_is_not_herald_s() {
        for key in ["HOME_DIRECTORY", "VERSION_FROM_CI", "PORT"] {
            // `HERALD_PORT` holding a number is not a service link, nor near a setting.
            assert_eq!(classify(key, "3000"), Variable::Unowned, "HERALD_{key}");
        }
    }
}
