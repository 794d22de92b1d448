//! Secrets: generation from the OS random source, redacted formatting, and the SHA-256 digests that are stored in their place.

use std::fmt;

use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in an access or refresh token: 48 bytes, shown as 96 lowercase hex characters.
pub const TOKEN_BYTES: usize = 48;
/// Random bytes in codes, link tokens, session ids and client secrets.
pub const SECRET_BYTES: usize = 32;

/// A secret value shown to its holder once and never logged: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Generates `bytes` random bytes from the operating system's CSPRNG, as lowercase hex.
    pub fn generate(bytes: usize) -> Secret {
        let mut buffer = vec![0u8; bytes];
        OsRng.fill_bytes(&mut buffer);
        Secret(hex::encode(buffer))
    }

    /// Wraps a secret received from a caller.
    pub fn from_presented(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> Digest32 {
        Digest32::of(self.0.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

/// The SHA-256 digest of a secret: the only form in which secrets are stored or used as keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest32(pub [u8; 32]);

impl Digest32 {
    pub fn of(bytes: &[u8]) -> Digest32 {
        Digest32(Sha256::digest(bytes).into())
    }

    /// Compares in constant time, so the position of the first differing byte does not leak.
    pub fn matches(&self, other: &Digest32) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A short, non-reversible label for logs: the first 8 hex characters of the digest.
    pub fn label(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for Digest32 {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Digest32({})", self.label())
    }
}

/// Generates a random identifier that is public but unguessable, such as a client id or user id.
pub fn random_id(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_96_lowercase_hex_characters() {
        let token = Secret::generate(TOKEN_BYTES);
        assert_eq!(token.expose().len(), 96);
        assert!(token.expose().chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }

    #[test]
    fn secret_formatting_is_redacted() {
        let secret = Secret::from_presented("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
    }

    #[test]
    fn digest_is_sha256_of_the_text() {
        let digest = Secret::from_presented("abc").digest();
        assert_eq!(hex::encode(digest.0), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(digest.matches(&Digest32::of(b"abc")));
        assert!(!digest.matches(&Digest32::of(b"abd")));
    }
}
