//! Merchant-signed user keys. `X-User-Key` picks a client's cohort whoever sends it; it counts
//! as evidence of its own (one user, not one network) only when the merchant's backend
//! signed it: `X-User-Key-Signature: <hex HMAC-SHA256(USER_KEY_SECRET, user key)>`. Anything
//! else falls under the per-network cap like any other client.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the signature (next to the configured user-key header).
pub const SIGNATURE_HEADER: &str = "X-User-Key-Signature";

/// Longest user key that is signed or checked (the cohort hash reads at most this much too).
const MAX_KEY_LEN: usize = crate::edge::cohort::MAX_IDENTITY_LEN;

#[derive(Clone)]
pub struct UserKeySigner {
    mac: HmacSha256,
}

impl std::fmt::Debug for UserKeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKeySigner(..)")
    }
}

impl UserKeySigner {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        Self { mac }
    }

    fn tag(&self, key: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"user-key-v1\0");
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The signature a merchant's backend sends with `key` (64 lower-case hex digits).
    pub fn sign(&self, key: &str) -> String {
        hex::encode(self.tag(key))
    }

    /// Whether `signature` is `key`'s, compared in constant time.
    pub fn verify(&self, key: &str, signature: &str) -> bool {
        if key.is_empty() || key.len() > MAX_KEY_LEN || signature.len() != 64 {
            return false;
        }
        let Ok(given) = hex::decode(signature.trim()) else {
            return false;
        };
        bool::from(self.tag(key).ct_eq(&given[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_merchants_signature_verifies() {
        let s = UserKeySigner::new(b"merchant secret");
        let sig = s.sign("user-42");
        assert_eq!(sig.len(), 64);
        let other = UserKeySigner::new(b"another secret").sign("user-42");
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let long_sig = s.sign(&long);
        for (key, signature, ok) in [
            ("user-42", sig.as_str(), true),
            ("user-43", sig.as_str(), false),
            ("user-42", other.as_str(), false),
            ("user-42", &sig[..63], false),
            ("user-42", "", false),
            ("", s.sign("").leak(), false),
            (long.as_str(), long_sig.as_str(), false),
            ("user-42", "zz".repeat(32).leak(), false),
        ] {
            assert_eq!(s.verify(key, signature), ok, "{key} {signature}");
        }
    }
}
