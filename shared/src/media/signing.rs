//! Signed content URLs: herald serves each media object at
//! `{public_url}/media/{id}?expires={unix}&signature={hex}`, where the signature is
//! HMAC-SHA256 over the id and the expiry. Platforms that pull media by URL (Instagram, Threads,
//! TikTok, Pinterest) get such a URL: unguessable, expiring, and useless for any other object.
//!
//! The key is [`crate::crypto::Keyring::derive`]`(`[`PURPOSE`]`)`: no extra secret to configure;
//! rotating the encryption key invalidates every outstanding URL (they are re-issued on demand).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// The purpose the URL key is derived for.
pub const PURPOSE: &str = "herald media url v1";

fn mac(key: &[u8], media_id: Uuid, expires_at: i64) -> Hmac<Sha256> {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(media_id.as_bytes());
    mac.update(b".");
    mac.update(expires_at.to_string().as_bytes());
    mac
}

/// The hex signature of `media_id` valid until `expires_at` (unix seconds).
pub fn sign(key: &[u8], media_id: Uuid, expires_at: i64) -> String {
    hex::encode(mac(key, media_id, expires_at).finalize().into_bytes())
}

/// Whether `signature` signs `media_id` until `expires_at`, and `now` (unix seconds) is not past
/// it. The comparison takes the same time however much of the signature is right.
pub fn verify(key: &[u8], media_id: Uuid, expires_at: i64, signature: &str, now: i64) -> bool {
    if now > expires_at {
        return false;
    }
    let Ok(signature) = hex::decode(signature) else { return false };
    mac(key, media_id, expires_at).verify_slice(&signature).is_ok()
}

/// The URL of `media_id` on `public_url` (no trailing slash needed), valid for `lifetime` from
/// `now` (unix seconds).
pub fn content_url(public_url: &str, key: &[u8], media_id: Uuid, lifetime: Duration, now: i64) -> String {
    let expires_at = now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
    let signature = sign(key, media_id, expires_at);
    format!("{}/media/{media_id}?expires={expires_at}&signature={signature}", public_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signature_verifies_until_it_expires() {
        let id = Uuid::now_v7();
        let signature = sign(KEY, id, 1_000);
        assert!(verify(KEY, id, 1_000, &signature, 999));
        assert!(verify(KEY, id, 1_000, &signature, 1_000));
        assert!(!verify(KEY, id, 1_000, &signature, 1_001));
    }

    #[test]
    fn tampering_with_anything_fails() {
        let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let signature = sign(KEY, id, 1_000);
        assert!(!verify(KEY, other, 1_000, &signature, 0), "another object");
        assert!(!verify(KEY, id, 2_000, &signature, 0), "a later expiry");
        assert!(!verify(b"another key", id, 1_000, &signature, 0), "another key");
        let mut flipped = signature.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!verify(KEY, id, 1_000, &String::from_utf8(flipped).unwrap(), 0), "one digit off");
        assert!(!verify(KEY, id, 1_000, &signature[..10], 0), "truncated");
        assert!(!verify(KEY, id, 1_000, "not hex", 0));
        assert!(!verify(KEY, id, 1_000, "", 0));
    }

    #[test]
    fn the_url_carries_its_expiry_and_signature() {
        let id = Uuid::now_v7();
        let url = content_url("https://herald.example/", KEY, id, Duration::from_secs(3600), 100);
        let signature = sign(KEY, id, 3700);
        assert_eq!(url, format!("https://herald.example/media/{id}?expires=3700&signature={signature}"));
    }
}
