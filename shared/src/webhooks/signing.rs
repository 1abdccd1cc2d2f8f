//! Standard Webhooks signatures: `v1,` and the base64 of HMAC-SHA256 over `id.timestamp.body`,
//! keyed with the secret's bytes (the base64 after `whsec_`). Several signatures (a rotation's
//! old and new secret) go in one header, separated by spaces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The `webhook-signature` header's value for `body` sent as message `id` at `timestamp` (Unix
/// seconds), one signature per secret. A secret that is not `whsec_` + base64 signs with its raw
/// bytes (herald only makes well-formed ones).
pub fn signature_header(secrets: &[SecretString], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|secret| format!("v1,{}", sign(secret, id, timestamp, body))).collect::<Vec<_>>().join(" ")
}

fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &[u8]) -> String {
    let secret = secret.expose_secret();
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else { return String::new() };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_signs_as_published() {
        // The example of the Standard Webhooks specification (and svix's libraries' tests).
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature_header(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn two_secrets_make_two_signatures() {
        let secrets = [SecretString::from("whsec_AAAA"), SecretString::from("whsec_BBBB")];
        let header = signature_header(&secrets, "evt_1", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|part| part.starts_with("v1,")));
    }
}
