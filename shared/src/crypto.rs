//! Encryption at rest for OAuth tokens and client secrets: AES-256-GCM with a key id, so keys can
//! rotate, and associated data naming the row and column, so a ciphertext copied into another row
//! or column does not decrypt.
//!
//! A sealed value is text: `v1.<key id>.<base64url(nonce || ciphertext || tag)>`. The key id is the
//! first 8 hex digits of the key's SHA-256, so it needs no registry and reveals nothing.
//! The newest key (the first of the [`Keyring`]) seals; every key opens.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError};

const FORMAT: &str = "v1";
const NONCE_LEN: usize = 12;

/// A key that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    /// Not 32 bytes of standard base64.
    #[error("expected 32 bytes, base64")]
    Encoding,
}

/// Sealing or opening failed. Deliberately says nothing of the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// No key is configured.
    #[error("no encryption key is configured")]
    NoKey,
    /// The value was sealed with a key that is no longer configured.
    #[error("the value was sealed with key {0}, which is not configured")]
    UnknownKey(String),
    /// The value is not a sealed value, or was altered, or belongs to another row or column.
    #[error("the sealed value is malformed or does not belong here")]
    Invalid,
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
    /// The key itself, kept only to derive purpose keys from (see [`Keyring::derive`]).
    bytes: [u8; 32],
}

/// The configured keys, newest first.
#[derive(Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|key| key.id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// The keys `config` names, newest first. Empty when no key is configured (the roles that
    /// need one refuse to start; `herald dev` generates one).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut keyring = Keyring::default();
        for (setting, key) in config.encryption_keys() {
            keyring.push_base64(key.expose_secret()).map_err(|error| match error {
                KeyringError::Encoding => ConfigError { setting: setting.to_owned(), problem: error.to_string() },
            })?;
        }
        Ok(keyring)
    }

    /// Adds a key (32 bytes, standard base64) after the ones already there. A repeated key is
    /// ignored.
    pub fn push_base64(&mut self, encoded: &str) -> Result<(), KeyringError> {
        let bytes = crate::config::decode_encryption_key(encoded).ok_or(KeyringError::Encoding)?;
        let id = hex::encode(&Sha256::digest(&bytes)[..4]);
        if self.keys.iter().any(|key| key.id == id) {
            return Ok(());
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyringError::Encoding)?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyringError::Encoding)?;
        self.keys.push(Key { id, cipher, bytes });
        Ok(())
    }

    /// A fresh random key, base64, for `herald dev` and operators.
    pub fn generate_base64() -> SecretString {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        SecretString::from(STANDARD.encode(bytes))
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The id of the key that seals new values.
    pub fn current_key_id(&self) -> Option<&str> {
        self.keys.first().map(|key| key.id.as_str())
    }

    /// Encrypts `plaintext` for the place named by `associated_data` (e.g. `accounts.access_token:<id>`).
    pub fn seal(&self, plaintext: &SecretString, associated_data: &str) -> Result<String, CryptoError> {
        let key = self.keys.first().ok_or(CryptoError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let payload = Payload { msg: plaintext.expose_secret().as_bytes(), aad: associated_data.as_bytes() };
        let ciphertext = key.cipher.encrypt(&Nonce::from(nonce), payload).map_err(|_| CryptoError::Invalid)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!("{FORMAT}.{}.{}", key.id, URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Decrypts a value sealed for the same `associated_data` by any configured key.
    pub fn open(&self, sealed: &str, associated_data: &str) -> Result<SecretString, CryptoError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(FORMAT), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Invalid);
        };
        let key =
            self.keys.iter().find(|key| key.id == key_id).ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| CryptoError::Invalid)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Invalid);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Invalid)?;
        let payload = Payload { msg: ciphertext, aad: associated_data.as_bytes() };
        let plaintext = key.cipher.decrypt(&Nonce::from(nonce), payload).map_err(|_| CryptoError::Invalid)?;
        String::from_utf8(plaintext).map(SecretString::from).map_err(|_| CryptoError::Invalid)
    }

    /// A key for one `purpose` (e.g. `media-url`), HMAC-SHA256 of the purpose under the newest
    /// key, so no second secret has to be configured and a leaked purpose key opens nothing else.
    ///
    /// Derived from the newest key only: putting a new key in front (rotation) changes every
    /// derived key, so whatever was signed with the old one (outstanding signed media URLs, for
    /// example) stops verifying at once. Signed URLs are short-lived and re-issued on demand, so
    /// that is the price of a rotation that really retires the old key.
    pub fn derive(&self, purpose: &str) -> Result<[u8; 32], CryptoError> {
        let key = self.keys.first().ok_or(CryptoError::NoKey)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes).map_err(|_| CryptoError::Invalid)?;
        mac.update(purpose.as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }

    /// The id of the key a sealed value was sealed with, to find rows that need re-encryption.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, '.');
        match (parts.next(), parts.next()) {
            (Some(FORMAT), Some(key_id)) => Some(key_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(keys: &[&SecretString]) -> Keyring {
        let mut keyring = Keyring::default();
        for key in keys {
            keyring.push_base64(key.expose_secret()).unwrap();
        }
        keyring
    }

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let key = Keyring::generate_base64();
        let keyring = keyring(&[&key]);
        let secret = SecretString::from("ya29.token-value");
        let sealed = keyring.seal(&secret, "accounts.access_token:1").unwrap();
        assert!(!sealed.contains("token-value"));
        assert_eq!(keyring.open(&sealed, "accounts.access_token:1").unwrap().expose_secret(), "ya29.token-value");
        assert_eq!(keyring.open(&sealed, "accounts.access_token:2").unwrap_err(), CryptoError::Invalid);
        assert_eq!(keyring.open(&sealed, "accounts.refresh_token:1").unwrap_err(), CryptoError::Invalid);
    }

    #[test]
    fn the_newest_key_seals_and_older_keys_still_open() {
        let (old, new) = (Keyring::generate_base64(), Keyring::generate_base64());
        let sealed_by_old = keyring(&[&old]).seal(&SecretString::from("s"), "a").unwrap();
        let rotated = keyring(&[&new, &old]);
        assert_eq!(rotated.open(&sealed_by_old, "a").unwrap().expose_secret(), "s");
        let sealed_by_new = rotated.seal(&SecretString::from("s"), "a").unwrap();
        assert_eq!(Keyring::key_id_of(&sealed_by_new), rotated.current_key_id());
        let without_old = keyring(&[&new]);
        assert!(matches!(without_old.open(&sealed_by_old, "a"), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let keyring = keyring(&[&Keyring::generate_base64()]);
        let sealed = keyring.seal(&SecretString::from("secret"), "a").unwrap();
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(keyring.open(&String::from_utf8(tampered).unwrap(), "a").is_err());
        assert_eq!(keyring.open("plain", "a").unwrap_err(), CryptoError::Invalid);
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_follow_the_newest_key() {
        let (old, new) = (Keyring::generate_base64(), Keyring::generate_base64());
        let before = keyring(&[&old]);
        let url_key = before.derive("media-url").unwrap();
        assert_eq!(url_key, keyring(&[&old]).derive("media-url").unwrap());
        assert_ne!(url_key, before.derive("something-else").unwrap());
        assert_ne!(url_key, keyring(&[&new, &old]).derive("media-url").unwrap());
        assert_eq!(Keyring::default().derive("media-url").unwrap_err(), CryptoError::NoKey);
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        let mut keyring = Keyring::default();
        assert_eq!(keyring.push_base64("not base64!"), Err(KeyringError::Encoding));
        assert_eq!(keyring.push_base64(&STANDARD.encode([0u8; 16])), Err(KeyringError::Encoding));
        assert!(keyring.is_empty());
        assert_eq!(keyring.seal(&SecretString::from("x"), "a").unwrap_err(), CryptoError::NoKey);
    }
}
