//! The one HTTP client for fetching URLs a user handed herald (media import now; webhooks and
//! feeds later). A user-supplied URL is a way to make herald's network position do the user's
//! bidding (server-side request forgery): reach the cloud metadata service, an admin port on
//! loopback, a database on the private network. So this client refuses to connect to any
//! address that is not plainly public, unless `HERALD_ALLOW_PRIVATE_NETWORKS=true` (tests and
//! local development, where the servers are on loopback).
//!
//! The check is on the address actually connected to, not on the name in the URL, so DNS
//! rebinding (a name that resolves to a public address when checked and a private one when
//! used) cannot get past it:
//! - names are resolved by [`GuardedResolver`], which drops every forbidden address and fails
//!   when none is left; reqwest (through hyper-util's `HttpConnector`) connects only to the
//!   addresses its resolver returned, and resolves again for every new connection;
//! - hosts that are IP literals never reach a resolver, so [`check_url`] checks them before the
//!   first request and in the redirect policy ([`redirect_verdict`]) before every hop;
//! - no proxy is used (neither from the environment nor configured), so the connection goes
//!   where the check said.
//!
//! Bodies are not decompressed (reqwest's gzip/brotli features are off): the size cap counts
//! the bytes that arrive. The total timeout covers connecting, redirects and reading the body.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};
use url::{Host, Url};

use crate::Config;

/// The most redirects one fetch follows.
pub const MAX_REDIRECTS: usize = 5;
/// The longest URL accepted, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one fetch may take in all, by default (body included): a 1 GiB video at 4 MB/s.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a fetch did not happen or did not finish. Messages name the refused address class or
/// the status, never the URL (a URL may carry a token in its query).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The host is, or resolves only to, an address of this class (`loopback`, `private`, ...).
    #[error("refused: the address is {class}")]
    Refused { class: &'static str },
    /// Not http or https.
    #[error("only http and https URLs can be fetched, not {0}")]
    Scheme(String),
    /// User name or password in the URL.
    #[error("the URL carries credentials")]
    Credentials,
    /// Unparseable, too long, or without a host.
    #[error("not a usable URL: {0}")]
    InvalidUrl(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("timed out")]
    Timeout,
    /// The body is larger than the caller's cap.
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A connection or transfer failure that may pass (the message has no URL).
    #[error("network error: {0}")]
    Network(String),
}

impl OutboundError {
    /// A stable, short name of the failure, for a failure reason's code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "refused_address",
            Self::Scheme(_) | Self::Credentials | Self::InvalidUrl(_) => "invalid_url",
            Self::TooManyRedirects => "too_many_redirects",
            Self::Timeout => "timeout",
            Self::TooLarge { .. } => "too_large",
            Self::Network(_) => "network",
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Network(_))
    }
}

/// The class of address `ip` is, when herald must not connect to it; `None` for a public
/// unicast address. IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4,
/// Teredo) are judged by the IPv4 address they reach.
pub fn is_forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => forbidden_v6(ip),
    }
}

/// Cloud metadata and instance services: AWS/GCP/Azure/OCI (169.254.169.254), AWS DNS and
/// NTP (169.254.169.253, 169.254.169.123), ECS task metadata (169.254.170.2), Alibaba
/// (100.100.100.200), Oracle legacy (192.0.0.192). All are inside forbidden ranges too; they
/// are named for a clearer reason.
const METADATA_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 169, 253),
    Ipv4Addr::new(169, 254, 169, 123),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
];

/// AWS's IPv6 instance metadata, DNS and NTP (inside fc00::/7).
const METADATA_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x123),
];

/// IPv4 ranges that are not public unicast (IANA's special-purpose registry), first match wins.
const FORBIDDEN_V4: [(u32, u8, &str); 17] = [
    (0x0000_0000, 32, "unspecified"),   // 0.0.0.0
    (0x0000_0000, 8, "this-network"),   // 0.0.0.0/8
    (0x0a00_0000, 8, "private"),        // 10.0.0.0/8
    (0x6440_0000, 10, "cgnat"),         // 100.64.0.0/10
    (0x7f00_0000, 8, "loopback"),       // 127.0.0.0/8
    (0xa9fe_0000, 16, "link-local"),    // 169.254.0.0/16
    (0xac10_0000, 12, "private"),       // 172.16.0.0/12
    (0xc000_0000, 24, "reserved"),      // 192.0.0.0/24, IETF protocol assignments
    (0xc000_0200, 24, "documentation"), // 192.0.2.0/24
    (0xc058_6300, 24, "reserved"),      // 192.88.99.0/24, the old 6to4 relay anycast
    (0xc0a8_0000, 16, "private"),       // 192.168.0.0/16
    (0xc612_0000, 15, "benchmarking"),  // 198.18.0.0/15
    (0xc633_6400, 24, "documentation"), // 198.51.100.0/24
    (0xcb00_7100, 24, "documentation"), // 203.0.113.0/24
    (0xe000_0000, 4, "multicast"),      // 224.0.0.0/4
    (0xffff_ffff, 32, "broadcast"),     // 255.255.255.255
    (0xf000_0000, 4, "reserved"),       // 240.0.0.0/4
];

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if METADATA_V4.contains(&ip) {
        return Some("metadata");
    }
    let bits = u32::from(ip);
    FORBIDDEN_V4.iter().find(|(base, length, _)| bits & mask32(*length) == *base).map(|(_, _, class)| *class)
}

fn mask32(length: u8) -> u32 {
    if length == 0 { 0 } else { u32::MAX << (32 - u32::from(length)) }
}

fn mask128(length: u8) -> u128 {
    if length == 0 { 0 } else { u128::MAX << (128 - u32::from(length)) }
}

/// IPv6 ranges that are not public unicast, first match wins (after the embedded-IPv4 forms).
const FORBIDDEN_V6: [(u128, u8, &str); 11] = [
    (0, 128, "unspecified"),                            // ::
    (1, 128, "loopback"),                               // ::1
    (0x0100_0000_0000_0000 << 64, 64, "reserved"),      // 100::/64, discard-only
    (0x2001_0002_0000_0000 << 64, 48, "benchmarking"),  // 2001:2::/48
    (0x2001_0010_0000_0000 << 64, 28, "reserved"),      // 2001:10::/28, ORCHID
    (0x2001_0db8_0000_0000 << 64, 32, "documentation"), // 2001:db8::/32
    (0x3fff_0000_0000_0000 << 64, 20, "documentation"), // 3fff::/20
    (0xfc00_0000_0000_0000 << 64, 7, "unique-local"),   // fc00::/7
    (0xfe80_0000_0000_0000 << 64, 10, "link-local"),    // fe80::/10
    (0xfec0_0000_0000_0000 << 64, 10, "site-local"),    // fec0::/10
    (0xff00_0000_0000_0000 << 64, 8, "multicast"),      // ff00::/8
];

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if METADATA_V6.contains(&ip) {
        return Some("metadata");
    }
    let bits = u128::from(ip);
    if let Some(verdict) = embedded_v4(bits) {
        return verdict;
    }
    if let Some((_, _, class)) = FORBIDDEN_V6.iter().find(|(base, length, _)| bits & mask128(*length) == *base) {
        return Some(*class);
    }
    // Only 2000::/3 is allocated as global unicast; everything else is reserved by the IETF.
    if bits & mask128(3) != 0x2000_0000_0000_0000 << 64 {
        return Some("reserved");
    }
    None
}

/// For an IPv6 form that carries an IPv4 address, the verdict on it (`Some(None)`: allowed);
/// `None` when `bits` is no such form.
fn embedded_v4(bits: u128) -> Option<Option<&'static str>> {
    let low = Ipv4Addr::from(bits as u32);
    // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (translated): a v6 socket reaches the v4
    // address. Never a real DNS answer, so refused even when the v4 address is public.
    if bits >> 32 == 0xffff || bits >> 32 == 0xffff_0000 {
        return Some(Some(forbidden_v4(low).unwrap_or("ipv4-mapped")));
    }
    // ::a.b.c.d, the deprecated IPv4-compatible form (:: and ::1 are judged as themselves).
    if bits >> 32 == 0 && bits > 1 {
        return Some(Some(forbidden_v4(low).unwrap_or("ipv4-compatible")));
    }
    // 64:ff9b::/96, NAT64's well-known prefix: the gateway connects to the embedded address.
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(forbidden_v4(low));
    }
    // 64:ff9b:1::/48, local-use NAT64: private by definition.
    if bits & mask128(48) == 0x0064_ff9b_0001 << 80 {
        return Some(Some("nat64-local"));
    }
    // 2002::/16, 6to4: the IPv4 address is bits 16..48.
    if bits >> 112 == 0x2002 {
        return Some(forbidden_v4(Ipv4Addr::from((bits >> 80) as u32)));
    }
    // 2001::/32, Teredo: the server in bits 32..64, the client (inverted) in the last 32.
    if bits >> 96 == 0x2001_0000 {
        let server = Ipv4Addr::from((bits >> 64) as u32);
        let client = Ipv4Addr::from(!(bits as u32));
        return Some(forbidden_v4(client).or_else(|| forbidden_v4(server)));
    }
    None
}

/// Checks `url` before it is fetched: http or https, no credentials, not too long, a host, and
/// when the host is an IP literal, an allowed one (names are checked when resolved).
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), OutboundError> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(OutboundError::Scheme(url.scheme().chars().take(20).collect()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundError::Credentials);
    }
    if url.as_str().len() > MAX_URL_CHARS {
        return Err(OutboundError::InvalidUrl(format!("longer than {MAX_URL_CHARS} characters")));
    }
    let ip = match url.host() {
        None => return Err(OutboundError::InvalidUrl("no host".to_owned())),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    match is_forbidden(ip) {
        Some(class) if !allow_private => Err(OutboundError::Refused { class }),
        _ => Ok(()),
    }
}

/// Parses and checks a user-supplied URL ([`check_url`]), as a route validates it.
pub fn parse_url(text: &str, allow_private: bool) -> Result<Url, OutboundError> {
    if text.len() > MAX_URL_CHARS {
        return Err(OutboundError::InvalidUrl(format!("longer than {MAX_URL_CHARS} characters")));
    }
    let url = Url::parse(text).map_err(|error| OutboundError::InvalidUrl(error.to_string()))?;
    check_url(&url, allow_private)?;
    Ok(url)
}

/// What the redirect policy decides for a hop to `next`, after `hops` earlier redirects: the
/// same checks as the first URL, and at most [`MAX_REDIRECTS`].
pub fn redirect_verdict(next: &Url, hops: usize, allow_private: bool) -> Result<(), OutboundError> {
    if hops >= MAX_REDIRECTS {
        return Err(OutboundError::TooManyRedirects);
    }
    check_url(next, allow_private)
}

/// A resolver that keeps only allowed addresses, so a connection is only ever made to one.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

impl GuardedResolver {
    /// The allowed ones of `addresses`, or the class of the first refused when none is.
    pub fn filter(addresses: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, OutboundError> {
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addresses
            .into_iter()
            .filter(|address| match is_forbidden(address.ip()) {
                Some(class) => {
                    refused.get_or_insert(class);
                    false
                }
                None => true,
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(class)) => Err(OutboundError::Refused { class }),
            (true, None) => Err(OutboundError::Network("the name has no address".to_owned())),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed = Self::filter(found)?;
            Ok::<Addrs, Box<dyn std::error::Error + Send + Sync>>(Box::new(allowed.into_iter()))
        })
    }
}

/// The guarded client: see the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    allow_private: bool,
}

impl OutboundClient {
    /// A client obeying `config.allow_private_networks`, with the default total timeout.
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        Self::with_timeout(config.allow_private_networks, TOTAL_TIMEOUT)
    }

    /// A client with its own total timeout (connect, redirects and body).
    pub fn with_timeout(allow_private: bool, timeout: Duration) -> Result<Self, reqwest::Error> {
        let policy = Policy::custom(move |attempt: Attempt<'_>| {
            // `previous` starts with the first URL, which was no redirect.
            let hops = attempt.previous().len().saturating_sub(1);
            match redirect_verdict(attempt.url(), hops, allow_private) {
                Ok(()) => attempt.follow(),
                Err(error) => attempt.error(error),
            }
        });
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(policy)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        Ok(Self { client: builder.build()?, allow_private })
    }

    /// A client that follows no redirect at all (a 3xx is the answer), with its own total timeout:
    /// webhook deliveries, where a redirect would be a way around the address rules and the
    /// receiver's answer is what counts.
    pub fn without_redirects(allow_private: bool, timeout: Duration) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        Ok(Self { client: builder.build()?, allow_private })
    }

    /// Whether private networks are allowed (`HERALD_ALLOW_PRIVATE_NETWORKS`).
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// GETs `url`, following allowed redirects. Any status is an answer (the caller judges it).
    pub async fn get(&self, url: &Url) -> Result<reqwest::Response, OutboundError> {
        check_url(url, self.allow_private)?;
        self.client.get(url.clone()).send().await.map_err(|error| classify(&error))
    }
}

impl OutboundClient {
    /// POSTs `body` to `url` with `headers`. Any status is an answer (the caller judges it).
    pub async fn post(
        &self,
        url: &Url,
        headers: reqwest::header::HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, OutboundError> {
        check_url(url, self.allow_private)?;
        self.client.post(url.clone()).headers(headers).body(body).send().await.map_err(|error| classify(&error))
    }
}

/// Up to `limit` bytes of the start of `response`'s body (the rest is not read), as text with
/// anything that is not UTF-8 replaced.
pub async fn body_start(response: reqwest::Response, limit: usize) -> String {
    let mut stream = response.bytes_stream();
    let mut start = Vec::with_capacity(limit.min(4096));
    while start.len() < limit {
        match stream.next().await {
            Some(Ok(chunk)) => start.extend_from_slice(&chunk[..chunk.len().min(limit - start.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&start).into_owned()
}

/// The body of `response` as a stream that fails with [`OutboundError::TooLarge`] once more than
/// `limit` bytes arrived (or at once when `Content-Length` says so), never holding it whole.
pub fn body_stream(
    response: reqwest::Response,
    limit: u64,
) -> impl Stream<Item = Result<Bytes, OutboundError>> + Send + Unpin + 'static {
    let declared_too_large = response.content_length().is_some_and(|length| length > limit);
    let mut received: u64 = 0;
    let mut done = false;
    let body = response.bytes_stream().map(move |chunk| -> Result<Bytes, OutboundError> {
        let chunk = chunk.map_err(|error| classify(&error))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(OutboundError::TooLarge { limit });
        }
        Ok(chunk)
    });
    let refused = futures::stream::iter(declared_too_large.then_some(Err(OutboundError::TooLarge { limit })));
    // After the first error nothing more is read.
    Box::pin(refused.chain(body).take_while(move |item| {
        let keep = !done;
        done |= item.is_err();
        futures::future::ready(keep)
    }))
}

/// The [`OutboundError`] a reqwest error means: a refusal by the resolver or the redirect
/// policy is found in its source chain; the rest loses its URL.
fn classify(error: &reqwest::Error) -> OutboundError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(ours) = current.downcast_ref::<OutboundError>() {
            return ours.clone();
        }
        source = current.source();
    }
    if error.is_timeout() {
        return OutboundError::Timeout;
    }
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        message.push_str(": ");
        message.push_str(&current.to_string());
        source = current.source();
    }
    OutboundError::Network(message)
}

#[cfg(test)]
mod tests;
