//! Keyed hashes the edge computes with a secret it holds (derived from `COHORT_SECRET`):
//! client ids before they enter a distinct-count sketch, and client networks before they
//! leave the isolate. Without the key nobody can pick ids that land on chosen sketch
//! registers, nor learn a client's address from the control plane's state.

use std::hash::Hasher;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher13;

/// A SipHash-1-3 key for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedHash {
    k0: u64,
    k1: u64,
}

impl KeyedHash {
    /// The key for `purpose`, derived from `secret` (SHA-256, domain-separated).
    pub fn derive(secret: &[u8], purpose: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(b"canary-edge keyed hash\0")
            .chain_update(purpose.as_bytes())
            .chain_update([0])
            .chain_update(secret)
            .finalize();
        let word = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&digest[i..i + 8]);
            u64::from_le_bytes(b)
        };
        Self {
            k0: word(0),
            k1: word(8),
        }
    }

    pub fn bytes(&self, tag: u8, data: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(tag);
        h.write(data);
        h.finish()
    }

    pub fn id(&self, id: u64) -> u64 {
        self.bytes(b'i', &id.to_be_bytes())
    }

    /// The client's network: its IPv4 address, or its IPv6 /48 (what one customer or one
    /// site is given; a /64 is one LAN and costs nothing to multiply). Text that is not an
    /// address counts as one network of its own. Merchant-signed user keys are networks of
    /// their own (`user_key`).
    pub fn network(&self, ip: &str) -> u64 {
        match ip.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => self.bytes(4, &v4.octets()),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => self.bytes(4, &v4.octets()),
                None => self.bytes(6, &v6.octets()[..6]),
            },
            Err(_) => self.bytes(0, ip.as_bytes()),
        }
    }

    /// A user key the merchant's backend signed: one user, one network of its own.
    pub fn user_key(&self, key: &str) -> u64 {
        self.bytes(b'u', key.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_ipv4_addresses_and_ipv6_slash_48s() {
        let k = KeyedHash::derive(b"secret", "network");
        for (a, b, same) in [
            ("203.0.113.7", "203.0.113.7", true),
            ("203.0.113.7", "203.0.113.8", false),
            ("2001:db8:1:2::1", "2001:db8:1:ffff::2", true),
            ("2001:db8:1::1", "2001:db8:2::1", false),
            ("::ffff:203.0.113.7", "203.0.113.7", true),
            (" 203.0.113.7 ", "203.0.113.7", true),
            ("not an ip", "not an ip", true),
            ("not an ip", "203.0.113.7", false),
        ] {
            assert_eq!(k.network(a) == k.network(b), same, "{a} vs {b}");
        }
    }

    #[test]
    fn keys_separate_purposes_and_secrets() {
        let a = KeyedHash::derive(b"secret", "network");
        assert_ne!(a, KeyedHash::derive(b"secret", "sketch"));
        assert_ne!(a, KeyedHash::derive(b"other", "network"));
        assert_eq!(a, KeyedHash::derive(b"secret", "network"));
        assert_ne!(a.id(1), a.id(2));
        assert_ne!(a.user_key("alice"), a.network("alice"));
    }
}
