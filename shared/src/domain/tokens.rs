//! The values an OAuth grant hands over: a token pair and the client that asked for it. They
//! sit here, below storage and the platforms, because both carry them: `credentials` seals and
//! opens them, `platforms` sends and receives them. `Debug` never prints a token or a secret.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

/// The OAuth client a connect or refresh uses: a managed app from settings, or a project's own.
#[derive(Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// What a code or refresh grant returned. Never logged: `Debug` shows only the expiry.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    /// `None` when the platform did not send one: the stored one, if any, stays.
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_at", &self.expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sets_never_print_their_tokens() {
        let tokens = TokenSet {
            access_token: SecretString::from("at-secret"),
            refresh_token: Some(SecretString::from("rt-secret")),
            expires_at: None,
            scopes: vec![],
        };
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
