//! The OAuth 2.0 authorization-code and refresh grants, through the `oauth2` crate, for every
//! adapter that speaks standard OAuth (RFC 6749 + PKCE, RFC 7636).
//!
//! `oauth2` 5 is used without its bundled reqwest (it pins another major version than the
//! workspace's): [`send`] adapts the workspace's `reqwest::Client` to its HTTP interface. Token
//! error responses are classified here: `invalid_grant` (and `unauthorized_client`) means the
//! grant is dead; a 429 or 5xx from the token endpoint, or a network failure, is transient.

use std::future::Future;
use std::pin::Pin;

use chrono::Utc;
use oauth2::basic::{BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};

use super::{ClientCredentials, Endpoints, PlatformError, TokenSet};

/// A platform's OAuth endpoints, its name for reasons, and the HTTP client.
pub struct OAuthClient {
    label: &'static str,
    endpoints: Endpoints,
    http: reqwest::Client,
    /// Send the client id and secret in the token request's body (`client_secret_post`, as
    /// LinkedIn wants) rather than as HTTP Basic.
    secret_in_body: bool,
    /// Extra authorize parameters (Google's `access_type=offline`).
    authorize_params: Vec<(&'static str, &'static str)>,
    /// Scopes joined with commas rather than spaces (Pinterest, Instagram).
    comma_scopes: bool,
    /// The guarded client for URLs a user gave (Bluesky's link cards); `None`: none are fetched.
    outbound: Option<crate::outbound::OutboundClient>,
}

impl OAuthClient {
    pub fn new(label: &'static str, endpoints: Endpoints, http: reqwest::Client) -> Self {
        Self {
            label,
            endpoints,
            http,
            secret_in_body: false,
            authorize_params: Vec::new(),
            comma_scopes: false,
            outbound: None,
        }
    }

    /// The same client, fetching user-supplied URLs with `outbound`.
    pub fn with_outbound(mut self, outbound: crate::outbound::OutboundClient) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// The guarded client for user-supplied URLs, when there is one.
    pub fn outbound(&self) -> Option<&crate::outbound::OutboundClient> {
        self.outbound.as_ref()
    }

    /// The same client, joining scopes with commas in the authorize URL.
    pub fn with_comma_scopes(mut self) -> Self {
        self.comma_scopes = true;
        self
    }

    /// The same client, adding `params` to every authorize URL.
    pub fn with_authorize_params(mut self, params: &[(&'static str, &'static str)]) -> Self {
        self.authorize_params.extend_from_slice(params);
        self
    }

    /// The same client, authenticating with `client_secret_post`.
    pub fn with_secret_in_body(mut self) -> Self {
        self.secret_in_body = true;
        self
    }

    /// The platform's name in reasons ("X", "the sandbox").
    pub fn label(&self) -> &'static str {
        self.label
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The authorize URL for `client` with `state`, the S256 challenge of `pkce_verifier`
    /// (when the platform takes PKCE) and `scopes` (none: the configured defaults).
    pub fn authorize_url(
        &self,
        client: &ClientCredentials,
        redirect_uri: &str,
        state: &str,
        pkce_verifier: Option<&SecretString>,
        scopes: &[String],
    ) -> Result<String, PlatformError> {
        let scopes = if scopes.is_empty() { self.endpoints.scopes.as_slice() } else { scopes };
        let oauth = oauth2::basic::BasicClient::new(ClientId::new(client.client_id.clone()))
            .set_auth_uri(AuthUrl::new(self.endpoints.authorize_url.clone()).map_err(config_error)?)
            .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(config_error)?);
        let state = state.to_owned();
        let mut request = oauth.authorize_url(move || CsrfToken::new(state));
        if self.comma_scopes {
            request = request.add_scope(Scope::new(scopes.join(",")));
        } else {
            request = request.add_scopes(scopes.iter().map(|scope| Scope::new(scope.clone())));
        }
        for (name, value) in &self.authorize_params {
            request = request.add_extra_param(*name, *value);
        }
        if let Some(verifier) = pkce_verifier {
            let verifier = PkceCodeVerifier::new(verifier.expose_secret().to_owned());
            request = request.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
        }
        Ok(request.url().0.to_string())
    }

    /// Exchanges an authorization code at the token endpoint.
    pub async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &SecretString,
        pkce_verifier: Option<&SecretString>,
        redirect_uri: &str,
    ) -> Result<TokenSet, PlatformError> {
        let oauth = self
            .token_client(client)?
            .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(config_error)?);
        let mut request = oauth.exchange_code(AuthorizationCode::new(code.expose_secret().to_owned()));
        if let Some(verifier) = pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()));
        }
        let response = request.request_async(&Http(&self.http)).await.map_err(classify)?;
        Ok(token_set(&response))
    }

    /// Uses a refresh token at the token endpoint.
    pub async fn refresh(
        &self,
        client: &ClientCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, PlatformError> {
        let refresh_token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let request = self.token_client(client)?;
        let response =
            request.exchange_refresh_token(&refresh_token).request_async(&Http(&self.http)).await.map_err(classify)?;
        Ok(token_set(&response))
    }

    /// Revokes `token` at the platform's RFC 7009 endpoint, if it has one (a form post with the
    /// token and the client id; confidential clients authenticate with HTTP Basic).
    pub async fn revoke(&self, client: &ClientCredentials, token: &SecretString) -> Result<(), PlatformError> {
        let Some(url) = &self.endpoints.revoke_url else { return Ok(()) };
        let form = [("token", token.expose_secret()), ("client_id", client.client_id.as_str())];
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut request = self.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(secret) = &client.client_secret {
            request = request.basic_auth(&client.client_id, Some(secret.expose_secret()));
        }
        super::http::send(self.label, request).await.map(drop)
    }

    fn token_client(&self, client: &ClientCredentials) -> Result<TokenClient, PlatformError> {
        let mut oauth = oauth2::basic::BasicClient::new(ClientId::new(client.client_id.clone()))
            .set_token_uri(TokenUrl::new(self.endpoints.token_url.clone()).map_err(config_error)?);
        if let Some(secret) = &client.client_secret {
            oauth = oauth.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        if self.secret_in_body {
            oauth = oauth.set_auth_type(oauth2::AuthType::RequestBody);
        }
        Ok(oauth)
    }
}

/// A fresh PKCE verifier (32 random bytes, base64url), kept until the code is exchanged.
pub fn new_pkce_verifier() -> SecretString {
    let (_, verifier) = PkceCodeChallenge::new_random_sha256();
    SecretString::from(verifier.secret().clone())
}

type TokenClient = oauth2::basic::BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn token_set(response: &BasicTokenResponse) -> TokenSet {
    TokenSet {
        access_token: SecretString::from(response.access_token().secret().clone()),
        refresh_token: response.refresh_token().map(|token| SecretString::from(token.secret().clone())),
        expires_at: response
            .expires_in()
            .and_then(|lifetime| chrono::Duration::from_std(lifetime).ok())
            .map(|lifetime| Utc::now() + lifetime),
        scopes: response
            .scopes()
            .map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect())
            .unwrap_or_default(),
    }
}

fn config_error(error: impl std::fmt::Display) -> PlatformError {
    PlatformError::Permanent(format!("a configured platform URL is invalid: {error}"))
}

type TokenError = RequestTokenError<reqwest::Error, oauth2::StandardErrorResponse<BasicErrorResponseType>>;

fn classify(error: TokenError) -> PlatformError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let reason = match response.error_description() {
                Some(description) => format!("{}: {description}", response.error()),
                None => response.error().to_string(),
            };
            match response.error() {
                BasicErrorResponseType::InvalidGrant | BasicErrorResponseType::UnauthorizedClient => {
                    PlatformError::AuthDead(reason)
                }
                _ => PlatformError::Permanent(reason),
            }
        }
        RequestTokenError::Request(error) => PlatformError::Transient(format!("token endpoint unreachable: {error}")),
        // A body that is neither tokens nor an OAuth error.
        RequestTokenError::Parse(error, _) => {
            PlatformError::Transient(format!("the token endpoint answered with an unreadable body: {error}"))
        }
        RequestTokenError::Other(message) => PlatformError::Transient(message),
    }
}

/// `oauth2`'s HTTP interface over the workspace's reqwest. A 5xx or 429 becomes a request error
/// (transient), so only a real OAuth error body is read as one.
struct Http<'a>(&'a reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for Http<'_> {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let http = self.0.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut outgoing = http.request(parts.method, parts.uri.to_string()).body(body);
            for (name, value) in &parts.headers {
                outgoing = outgoing.header(name, value);
            }
            let response = outgoing.send().await?;
            let response = if response.status().is_server_error() || response.status().as_u16() == 429 {
                response.error_for_status()?
            } else {
                response
            };
            let mut built = HttpResponse::new(Vec::new());
            *built.status_mut() = response.status();
            *built.headers_mut() = response.headers().clone();
            *built.body_mut() = response.bytes().await?.to_vec();
            Ok(built)
        })
    }
}
