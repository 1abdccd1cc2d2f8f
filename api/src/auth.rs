//! Who is calling: `Authorization: Bearer <key>` becomes a [`Caller`], or a 401/403/429 problem.
//!
//! A key is found by the SHA-256 of its secret, in this process's cache or in `api_keys` (see
//! [`crate::key_cache`] for how a revocation reaches every process at once). Then
//! the key's allowed IPs and origins are checked, and its per-minute and per-day limits are
//! taken together, all or nothing, from the shared limiter (`herald_shared::rate_limit`).
//! Every answer to an authenticated request carries `X-RateLimit-Limit`, `-Remaining` and
//! `-Reset`; a 429 adds `Retry-After`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use herald_shared::domain::api_key::{Environment, Reach};
use herald_shared::rate_limit::{self, Decision, Rate};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::key_cache::{KnownKey, StoredKey};

/// The key a request was made with, and what it may reach.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Uuid,
    pub project_id: Uuid,
    pub environment: Environment,
    pub scopes: Vec<String>,
    /// Only these platforms, when set.
    pub platforms: Option<Vec<String>>,
    /// Only these accounts (ids or external ids), when set.
    pub accounts: Option<Vec<String>>,
}

impl Caller {
    /// A 403 naming `scope` unless the key holds it.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|held| held == scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this key lacks the scope `{scope}`")))
        }
    }

    /// What this key reaches, to compare with what a request touches or another key reaches.
    pub fn reach(&self) -> Reach<'_> {
        Reach::stored(self.environment, &self.scopes, self.platforms.as_deref(), self.accounts.as_deref())
    }

    /// A 403 unless the key may act on `platform`: a test key reaches only the sandbox, and a
    /// key with a platform list only those.
    pub fn reaches_platform(&self, platform: &str) -> Result<(), ApiError> {
        if self.reach().reaches_platform(platform) {
            return Ok(());
        }
        if self.environment == Environment::Test && platform != "sandbox" {
            return Err(ApiError::forbidden("a test key (hk_test_) reaches only the sandbox platform"));
        }
        Err(ApiError::forbidden(format!("this key may not act on {platform}")))
    }

    /// True if this key may see the account `id` on `platform` (its platform list, its account
    /// list of ids or external ids, and a test key's sandbox-only rule).
    pub fn reaches_account(&self, platform: &str, id: Uuid, external_id: Option<&str>) -> bool {
        self.reach().reaches_account(platform, id, external_id)
    }

    /// A 403 naming what `other` reaches beyond this key, if anything: a key creates, sees and
    /// revokes only keys within its own reach.
    pub fn covers(&self, other: &Reach<'_>) -> Result<(), ApiError> {
        match self.reach().lacks(other) {
            None => Ok(()),
            Some(lack) => Err(ApiError::forbidden(lack)),
        }
    }

    /// The actor recorded in event metadata.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_id)
    }

    /// The metadata of events this request appends: its request id, project and key.
    pub fn event_metadata(&self) -> herald_shared::events::EventMetadata {
        herald_shared::events::EventMetadata {
            request_id: crate::error::current_request_id(),
            project_id: Some(self.project_id),
            actor: Some(self.actor()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::unauthorized("this route needs a key"))
    }
}

/// What the limiter said, for the response headers.
struct Allowance {
    limit: i32,
    remaining: u32,
    reset_at: DateTime<Utc>,
}

impl Allowance {
    fn apply(&self, headers: &mut HeaderMap) {
        let reset_secs = (self.reset_at - Utc::now()).num_milliseconds().max(0).saturating_add(999) / 1000;
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset_secs));
    }
}

/// The middleware in front of every `/v1` route.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    let client = client_ip(&state, request.headers(), peer);
    match admit(&state, request.headers(), client).await {
        Ok((caller, allowance)) => {
            if let Err(error) = authorize(&caller, &request) {
                let mut response = error.into_response();
                allowance.apply(response.headers_mut());
                return response;
            }
            request.extensions_mut().insert(caller);
            let mut response = next.run(request).await;
            allowance.apply(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

/// The scopes the route declares in its OpenAPI annotation, checked before the handler reads
/// anything, so a key without them learns nothing from validation errors.
fn authorize(caller: &Caller, request: &Request) -> Result<(), ApiError> {
    let template = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or_default();
    let Some(needed) = crate::openapi::required_scopes(request.method(), template) else {
        return Err(ApiError::internal(&format!("the route {} {template} declares no scope", request.method())));
    };
    needed.iter().try_for_each(|scope| caller.require(scope))
}

async fn admit(state: &AppState, headers: &HeaderMap, client: Option<IpAddr>) -> Result<(Caller, Allowance), ApiError> {
    let presented = bearer_key(headers)?;
    let digest = Sha256::digest(presented.as_bytes()).to_vec();
    let known = find_key(state, digest).await?;
    let stored = &known.stored;
    if stored.revoked_at.is_some() {
        return Err(ApiError::unauthorized("this key was revoked"));
    }
    if let Some(expires_at) = stored.expires_at
        && expires_at <= Utc::now()
    {
        return Err(ApiError::unauthorized(format!("this key expired at {}", expires_at.to_rfc3339())));
    }
    check_ip(client, &stored.allowed_ips)?;
    check_origin(headers, &stored.allowed_origins)?;
    let allowance = take_allowance(state, stored).await?;
    record_use(state, &known).await;
    let caller = Caller {
        key_id: stored.id,
        project_id: stored.project_id,
        environment: stored.environment,
        scopes: stored.scopes.clone(),
        platforms: stored.platforms.clone(),
        accounts: stored.accounts.clone(),
    };
    Ok((caller, allowance))
}

/// The key whose secret hashes to `digest`: from the cache, or from the database (one indexed
/// read) and then cached. Unknown keys are not cached.
async fn find_key(state: &AppState, digest: Vec<u8>) -> Result<Arc<KnownKey>, ApiError> {
    if let Some(known) = state.keys.get(&digest) {
        return Ok(known);
    }
    let generation = state.keys.generation();
    let stored = sqlx::query_as!(
        StoredKey,
        r#"SELECT k.id, k.project_id, k.key_hash, k.environment AS "environment: Environment", k.scopes, k.platforms, k.accounts, k.expires_at,
                  k.revoked_at, k.requests_per_minute, k.requests_per_day, k.allowed_ips, k.allowed_origins,
                  u.last_used_at AS "last_used_at?"
           FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id
           WHERE k.key_hash = $1"#,
        &digest,
    )
    .fetch_optional(&state.pool)
    .await
    .map_err(|error| ApiError::internal(&error))?;
    // The index found the row by hash; compare once more without a timing side channel.
    let Some(stored) = stored.filter(|stored| bool::from(stored.key_hash.ct_eq(&digest))) else {
        return Err(ApiError::unauthorized("no such key"));
    };
    let known = Arc::new(KnownKey::new(stored));
    state.keys.store(digest, known.clone(), generation);
    Ok(known)
}

fn bearer_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send the key as `Authorization: Bearer <key>`"))?;
    let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not readable"))?;
    let (scheme, key) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized("the Authorization scheme must be Bearer"));
    }
    let key = key.trim();
    if !herald_shared::domain::api_key::is_well_formed(key) {
        return Err(ApiError::unauthorized("that is not a herald key (hk_live_ or hk_test_ and 32 hex digits)"));
    }
    Ok(key)
}

/// The client's address: the peer, or the first `X-Forwarded-For` hop when the operator says a
/// proxy writes it.
fn client_ip(state: &AppState, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
    if state.config.trust_forwarded_for
        && let Some(forwarded) = headers.get("x-forwarded-for").and_then(|value| value.to_str().ok())
    {
        return forwarded.split(',').next().and_then(|first| first.trim().parse().ok());
    }
    peer
}

fn check_ip(ip: Option<IpAddr>, allowed: &[String]) -> Result<(), ApiError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let permitted = ip.is_some_and(|ip| {
        allowed
            .iter()
            .filter_map(|network| herald_shared::domain::api_key::parse_network(network))
            .any(|net| net.contains(&ip))
    });
    if permitted {
        Ok(())
    } else {
        let shown = ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
        Err(ApiError::forbidden(format!("this key may not be used from {shown}")))
    }
}

/// Browsers send `Origin`; a key with allowed origins refuses any other. Servers send none.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    if allowed.is_empty() {
        return Ok(());
    }
    let origin = origin.to_str().unwrap_or_default();
    if allowed.iter().any(|permitted| permitted.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("this key may not be used from the origin {origin}")))
    }
}

async fn take_allowance(state: &AppState, key: &StoredKey) -> Result<Allowance, ApiError> {
    let per_minute = u32::try_from(key.requests_per_minute).unwrap_or(1).max(1);
    let per_day = u32::try_from(key.requests_per_day).unwrap_or(1).max(1);
    let minute = Rate::per(per_minute, Duration::from_secs(60));
    let day = Rate::per(per_day, Duration::from_secs(24 * 60 * 60));
    let (minute_key, day_key) = (format!("api:{}:minute", key.id), format!("api:{}:day", key.id));
    let decision = rate_limit::acquire_all(&state.limiter, &[(minute_key.as_str(), minute), (day_key.as_str(), day)])
        .await
        .map_err(|error| ApiError::internal(&error))?;
    let (remaining, reset_at) = match decision {
        Decision::Allowed { remaining, reset_at } => (remaining, reset_at),
        Decision::RetryAt(at) => return Err(too_many(at, key.requests_per_minute, key.requests_per_day)),
    };
    Ok(Allowance { limit: key.requests_per_minute, remaining, reset_at })
}

fn too_many(retry_at: DateTime<Utc>, limit: i32, per_day: i32) -> ApiError {
    let wait = (retry_at - Utc::now()).num_milliseconds().max(0).saturating_add(999) / 1000;
    let error = ApiError::rate_limited(
        format!("this key may make {limit} requests a minute and {per_day} a day; try again in {wait} s"),
        u64::try_from(wait).unwrap_or(1),
    );
    let reset = HeaderValue::from(wait);
    error
        .with_header(header::HeaderName::from_static("x-ratelimit-limit"), HeaderValue::from(limit))
        .with_header(header::HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from(0))
        .with_header(header::HeaderName::from_static("x-ratelimit-reset"), reset)
}

/// Notes when the key was used, at most once a minute (a failure here never fails the request).
async fn record_use(state: &AppState, known: &KnownKey) {
    if !known.claim_usage_write(Utc::now()) {
        return;
    }
    let key = &known.stored;
    let recorded = sqlx::query!(
        "INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, now())
         ON CONFLICT (key_id) DO UPDATE SET last_used_at = now()",
        key.id
    )
    .execute(&state.pool)
    .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, "cannot record when a key was used");
    }
}
