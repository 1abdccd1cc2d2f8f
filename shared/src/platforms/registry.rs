//! What is known from the one list of platforms ([`ALL`]): which names are platforms, and
//! [`Platforms`], every adapter built from its spec and the settings, with its managed app and
//! pace resolved.
//!
//! Adding a platform is one new file in `platforms/` (its adapter and its `SPEC`) and one line
//! in [`ALL`]: the settings, the connect and apps routes, the keys' reach, the refresh sweep
//! and the publish limits all read the list.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ALL, ClientCredentials, Endpoints, Platform, PlatformSpec, PublishRates, oauth, sandbox, split_scopes};
use crate::config::{Config, ConfigError, PlatformSettings};

/// The spec of the platform called `name`.
pub fn spec(name: &str) -> Option<&'static PlatformSpec> {
    ALL.iter().copied().find(|spec| spec.name == name)
}

/// Whether herald knows a platform called `name` (lowercase, as in URLs and settings).
pub fn is_known(name: &str) -> bool {
    spec(name).is_some()
}

/// Every platform's name, comma separated, for messages that list them.
pub fn known_names() -> String {
    ALL.iter().map(|spec| spec.name).collect::<Vec<_>>().join(", ")
}

/// Refuses settings for a platform herald does not know (`HERALD_PLATFORMS__MYSPACE__...`):
/// the settings themselves cannot tell, since the list lives here. Every role runs it at start.
pub fn validate_settings(config: &Config) -> Result<(), ConfigError> {
    match config.platforms.keys().find(|name| !is_known(name)) {
        Some(name) => Err(ConfigError {
            setting: format!("HERALD_PLATFORMS__{}", name.to_uppercase()),
            problem: format!("not a platform herald knows ({})", known_names().to_uppercase()),
        }),
        None => Ok(()),
    }
}

/// How fast herald goes on a platform: its settings over its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// How long before its access token expires an account is refreshed.
    pub refresh_margin: chrono::Duration,
    pub publish_rates: PublishRates,
}

impl Pace {
    fn resolve(spec: &PlatformSpec, settings: &PlatformSettings) -> Self {
        let margin = settings.refresh_margin_seconds.map_or(spec.refresh_margin, std::time::Duration::from_secs);
        let defaults = spec.publish_rates;
        Self {
            refresh_margin: chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX),
            publish_rates: PublishRates {
                per_account: settings.publishes_per_hour.map_or(defaults.per_account, super::hourly),
                per_app: settings.app_publishes_per_hour.map_or(defaults.per_app, super::hourly),
            },
        }
    }
}

/// `spec`'s endpoints with `settings` over them; `public_url` is herald's own, for the sandbox.
pub fn endpoints(spec: &PlatformSpec, settings: &PlatformSettings, public_url: &str) -> Endpoints {
    let base = public_url.trim_end_matches('/');
    let own = |url: &str| if url.starts_with('/') { format!("{base}{url}") } else { url.to_owned() };
    let defaults = &spec.endpoints;
    let settings = settings.clone();
    Endpoints {
        authorize_url: settings.authorize_url.unwrap_or_else(|| own(defaults.authorize_url)),
        token_url: settings.token_url.unwrap_or_else(|| own(defaults.token_url)),
        api_url: settings.api_url.unwrap_or_else(|| own(defaults.api_url)),
        upload_url: settings.upload_url.or_else(|| defaults.upload_url.map(own)),
        revoke_url: settings.revoke_url.or_else(|| defaults.revoke_url.map(own)),
        scopes: match &settings.scopes {
            Some(scopes) => split_scopes(scopes),
            None => defaults.scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        },
    }
}

/// How long fetching one page or image for a link card may take.
const LINK_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The platforms with an adapter, by name, with their settings resolved.
#[derive(Clone)]
pub struct Platforms {
    adapters: BTreeMap<&'static str, Arc<dyn Platform>>,
    managed: BTreeMap<&'static str, ClientCredentials>,
    /// Every known platform's pace, turned off or not (its accounts still exist).
    paces: BTreeMap<&'static str, Pace>,
    /// Platforms the operator turned off (only the sandbox can be): no adapter, no managed app.
    disabled: Vec<&'static str>,
}

impl std::fmt::Debug for Platforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platforms").field("adapters", &self.adapters.keys().collect::<Vec<_>>()).finish()
    }
}

impl Platforms {
    /// Every adapter, configured from `config`; refuses settings for an unknown platform.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        validate_settings(config)?;
        let http = reqwest::Client::builder()
            .timeout(config.platform_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        // Link cards read pages users link to: guarded, and briefer than a media import.
        let outbound =
            crate::outbound::OutboundClient::with_timeout(config.allow_private_networks, LINK_FETCH_TIMEOUT).ok();
        let public_url = config.public_url();
        let mut platforms =
            Self { adapters: BTreeMap::new(), managed: BTreeMap::new(), paces: BTreeMap::new(), disabled: Vec::new() };
        for spec in ALL {
            let settings = config.platforms.get(spec.name).cloned().unwrap_or_default();
            platforms.paces.insert(spec.name, Pace::resolve(spec, &settings));
            if spec.name == sandbox::SPEC.name && !config.sandbox_enabled() {
                platforms.disabled.push(spec.name);
                continue;
            }
            let client_id = settings.client_id.clone().or(spec.builtin_client_id.map(str::to_owned));
            if let Some(client_id) = client_id {
                let client_secret = settings.client_secret.clone();
                platforms.managed.insert(spec.name, ClientCredentials { client_id, client_secret });
            }
            let mut oauth = oauth::OAuthClient::new(spec.label, endpoints(spec, &settings, &public_url), http.clone());
            if let Some(outbound) = &outbound {
                oauth = oauth.with_outbound(outbound.clone());
            }
            platforms.adapters.insert(spec.name, (spec.build)(oauth));
        }
        Ok(platforms)
    }

    /// The adapter for `name`, if herald has one (and the platform is not turned off).
    pub fn get(&self, name: &str) -> Option<Arc<dyn Platform>> {
        self.adapters.get(name).cloned()
    }

    /// How fast herald goes on `name`, settings over its spec; `None` for an unknown platform.
    pub fn pace(&self, name: &str) -> Option<Pace> {
        self.paces.get(name).copied()
    }

    /// Every known platform with its pace, by name.
    pub fn paces(&self) -> impl Iterator<Item = (&'static str, Pace)> + '_ {
        self.paces.iter().map(|(name, pace)| (*name, *pace))
    }

    /// Whether the operator turned `name` off (`HERALD_PLATFORMS__SANDBOX__ENABLED=false`).
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled.contains(&name)
    }

    /// Why `name` cannot be used for `what` ("connect", "publish to"), when [`Platforms::get`]
    /// has no adapter for it.
    pub fn unavailable(&self, name: &str, what: &str) -> String {
        if self.is_disabled(name) {
            format!(
                "the {name} platform is turned off on this herald (HERALD_PLATFORMS__{}__ENABLED=false)",
                name.to_uppercase()
            )
        } else {
            format!("herald cannot {what} {name} accounts yet")
        }
    }

    /// The managed app for `name`, if the operator configured one (the sandbox always has one).
    pub fn managed_app(&self, name: &str) -> Option<&ClientCredentials> {
        self.managed.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::{hourly, mastodon, x};

    fn config_with(name: &str, settings: PlatformSettings) -> Config {
        let mut config = Config::default();
        config.platforms.insert(name.into(), settings);
        config
    }

    #[test]
    fn every_platform_is_listed_once_and_builds() {
        let platforms = Platforms::from_config(&Config::default()).unwrap();
        for spec in ALL {
            assert_eq!(ALL.iter().filter(|other| other.name == spec.name).count(), 1, "{}", spec.name);
            assert_eq!(platforms.get(spec.name).map(|adapter| adapter.name()), Some(spec.name));
        }
        assert!(!is_known("myspace"));
        assert_eq!(known_names().split(", ").count(), ALL.len());
    }

    #[test]
    fn settings_override_endpoints_and_herald_serves_the_sandbox() {
        let settings = PlatformSettings { token_url: Some("http://127.0.0.1:9/token".into()), ..Default::default() };
        let x = endpoints(&x::SPEC, &settings, "http://h");
        assert_eq!(x.token_url, "http://127.0.0.1:9/token");
        assert_eq!(x.authorize_url, "https://x.com/i/oauth2/authorize");
        let sandbox = endpoints(&sandbox::SPEC, &PlatformSettings::default(), "http://127.0.0.1:8080/");
        assert_eq!(sandbox.api_url, "http://127.0.0.1:8080/sandbox/api");
        assert_eq!(split_scopes("a b,c ,, d"), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn paces_are_the_specs_unless_set() {
        let settings = PlatformSettings {
            publishes_per_hour: Some(3),
            app_publishes_per_hour: Some(7),
            refresh_margin_seconds: Some(90),
            ..Default::default()
        };
        let platforms = Platforms::from_config(&config_with("x", settings)).unwrap();
        let x = platforms.pace("x").unwrap();
        assert_eq!(x.refresh_margin, chrono::Duration::seconds(90));
        assert_eq!(x.publish_rates, PublishRates { per_account: hourly(3), per_app: hourly(7) });
        let mastodon = platforms.pace("mastodon").unwrap();
        assert_eq!(mastodon.publish_rates, mastodon::SPEC.publish_rates);
        assert_eq!(mastodon.refresh_margin, chrono::Duration::days(7));
        assert_eq!(platforms.paces().count(), ALL.len());
    }

    #[test]
    fn settings_for_an_unknown_platform_are_refused() {
        let error = Platforms::from_config(&config_with("myspace", PlatformSettings::default())).unwrap_err();
        assert_eq!(error.setting, "HERALD_PLATFORMS__MYSPACE");
        assert!(error.problem.starts_with("not a platform herald knows (X, LINKEDIN,"), "{error}");
    }

    #[test]
    fn a_turned_off_sandbox_has_no_adapter_but_keeps_its_pace() {
        let off = PlatformSettings { enabled: Some(false), ..Default::default() };
        let platforms = Platforms::from_config(&config_with("sandbox", off)).unwrap();
        assert!(platforms.get("sandbox").is_none() && platforms.is_disabled("sandbox"));
        assert!(platforms.managed_app("sandbox").is_none());
        assert!(platforms.pace("sandbox").is_some());
    }

    use crate::domain::media_rules::{Attachment, broken_rules};

    #[test]
    fn every_spec_states_coherent_media_rules() {
        for spec in ALL {
            let media = &spec.content.media;
            // Exactly the platforms that cannot publish text alone need media.
            assert_eq!(media.required, !spec.content.publishes_text, "{}", spec.name);
            for kind in [&media.images, &media.videos] {
                assert_eq!(kind.types.is_empty(), kind.max_count == 0, "{}", spec.name);
                assert!(kind.max_count <= media.max_items, "{}", spec.name);
                assert!(kind.types.iter().all(|t| t.starts_with("image/") || t.starts_with("video/")), "{}", spec.name);
            }
            assert!(media.max_items >= 1, "{} takes some media", spec.name);
        }
    }

    fn image<'a>(content_type: &'a str, size_bytes: u64, width: u32, height: u32) -> Attachment<'a> {
        Attachment {
            is_video: false,
            alt_text_chars: 0,
            content_type,
            size_bytes,
            width: Some(width),
            height: Some(height),
            duration_ms: None,
        }
    }

    fn video(seconds: u64, width: u32, height: u32) -> Attachment<'static> {
        Attachment {
            is_video: true,
            alt_text_chars: 0,
            content_type: "video/mp4",
            size_bytes: 10_000_000,
            width: Some(width),
            height: Some(height),
            duration_ms: Some(seconds * 1000),
        }
    }

    /// What each platform's documentation refuses, refused by its spec (and what it takes,
    /// taken): one case per rule that sets the platforms apart.
    #[test]
    fn each_platform_refuses_what_its_documentation_refuses() {
        let jpeg = image("image/jpeg", 500_000, 1080, 1080);
        let png = image("image/png", 500_000, 1080, 1080);
        let portrait = video(30, 1080, 1920);
        let cases: &[(&str, Vec<Attachment<'_>>, Option<&str>)] = &[
            ("x", vec![jpeg; 4], None),
            ("x", vec![jpeg; 5], Some("x takes at most 4 images in a post")),
            ("x", vec![video(141, 1280, 720)], Some("141.0 s long; x takes 0.5 to 140.0 s")),
            ("x", vec![jpeg, video(10, 1280, 720)], Some("x does not take images and videos in the same post")),
            ("x", vec![image("image/png", 6_000_000, 100, 100)], Some("6000000 bytes; x takes at most 5000000")),
            ("linkedin", vec![jpeg; 20], None),
            ("linkedin", vec![image("image/webp", 1, 10, 10)], Some("linkedin does not take image/webp")),
            ("linkedin", vec![video(2, 1920, 1080)], Some("2.0 s long; linkedin takes 3.0 to 1800.0 s")),
            ("facebook", vec![jpeg; 11], Some("facebook takes at most 10 attachments")),
            ("facebook", vec![video(10, 3000, 1000)], Some("aspect ratio 3000:1000")),
            ("instagram", vec![], Some("instagram posts need an image or a video")),
            ("instagram", vec![jpeg, portrait], None),
            ("instagram", vec![png], Some("instagram does not take image/png")),
            (
                "instagram",
                vec![image("image/jpeg", 1, 1080, 1920)],
                Some("aspect ratio 1080:1920; instagram takes 0.80"),
            ),
            ("threads", vec![png; 20], None),
            ("threads", vec![png; 21], Some("threads takes at most 20 attachments")),
            ("threads", vec![video(301, 1080, 1920)], Some("301.0 s long")),
            ("youtube", vec![portrait], None),
            ("youtube", vec![jpeg], Some("youtube takes no images")),
            ("youtube", vec![portrait, portrait], Some("youtube takes at most 1 attachments")),
            ("tiktok", vec![jpeg; 35], None),
            ("tiktok", vec![png], Some("tiktok does not take image/png")),
            ("tiktok", vec![video(601, 1080, 1920)], Some("601.0 s long; tiktok takes 3.0 to 600.0 s")),
            ("tiktok", vec![video(30, 320, 240)], Some("320 px wide; tiktok takes 360 to 4096 px")),
            ("pinterest", vec![jpeg; 5], None),
            ("pinterest", vec![video(3, 1000, 1500)], Some("3.0 s long; pinterest takes 4.0 to 900.0 s")),
            (
                "bluesky",
                vec![image("image/png", 2_000_001, 10, 10)],
                Some("2000001 bytes; bluesky takes at most 2000000"),
            ),
            ("bluesky", vec![video(181, 1080, 1920)], Some("181.0 s long")),
            ("mastodon", vec![jpeg; 5], Some("mastodon takes at most 4 attachments")),
            ("mastodon", vec![image("image/gif", 1, 10, 10)], None),
        ];
        for (platform, attachments, refusal) in cases {
            let spec = ALL.iter().find(|spec| spec.name == *platform).unwrap();
            let broken = broken_rules(platform, &spec.content.media, attachments);
            match refusal {
                None => assert!(broken.is_empty(), "{platform} takes {attachments:?}: {broken:?}"),
                Some(rule) => assert!(
                    broken.iter().any(|sentence| sentence.contains(rule)),
                    "{platform} should refuse {attachments:?} with {rule:?}: {broken:?}"
                ),
            }
        }
    }
}
