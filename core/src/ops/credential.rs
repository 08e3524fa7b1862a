//! What a console session is bound to, and whether that still verifies.
//!
//! A session outlives the request that started it (8 hours), but not the credential it was
//! started with: an operator removed from `OPERATOR_TOKENS`, a rotated `READ_TOKEN` or
//! `ADMIN_TOKEN`, or an identity Cloudflare Access no longer vouches for, ends its sessions
//! at their next request. So the session names its credential, and every request checks
//! that name against the current secrets:
//!
//! - a token session carries a keyed hash of the token's SHA-256 (keyed with the session
//!   key: the cookie holds no hash anyone could match against `OPERATOR_TOKENS`, and never
//!   the token); it holds while a current token of the same principal (name and scope)
//!   hashes to it;
//! - an Access session holds only while the request carries a currently valid Access JWT
//!   for the same identity.

use subtle::ConstantTimeEq;

use crate::ops::operators::{Operators, Principal};
use crate::ops::session::SessionKey;

/// Hex digits of a token session's credential (64 bits: enough to tell tokens apart; the
/// session's own MAC is what makes it unforgeable).
const TOKEN_HEX: usize = 16;

/// What a session was started with, as its cookie names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// A token: the keyed hash of its SHA-256 ([`Bound::token`]).
    Token(String),
    /// A Cloudflare Access identity (the session's name).
    Access,
}

impl Bound {
    /// The credential of a token, given its SHA-256 (`operators::token_digest`).
    pub fn token(key: &SessionKey, digest: &[u8; 32]) -> Self {
        let mut tag = key.tag(&format!("credential.{}", hex::encode(digest)));
        tag.truncate(TOKEN_HEX);
        Bound::Token(tag)
    }

    /// As the cookie carries it: `t<hex>` or `access`.
    pub fn encode(&self) -> String {
        match self {
            Bound::Token(hash) => format!("t{hash}"),
            Bound::Access => "access".into(),
        }
    }

    pub fn decode(text: &str) -> Option<Self> {
        if text == "access" {
            return Some(Bound::Access);
        }
        let hash = text.strip_prefix('t')?;
        let hex_ok = hash.len() == TOKEN_HEX
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex_ok.then(|| Bound::Token(hash.to_owned()))
    }
}

/// Why a session's credential no longer verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    /// No current token of this principal hashes to the session's credential (removed
    /// from `OPERATOR_TOKENS`, `READ_TOKEN` rotated or unset).
    TokenGone,
    /// An Access session without a valid Access JWT on this request.
    NoAccessToken,
    /// An Access session whose JWT names someone else.
    OtherIdentity,
}

impl Unbound {
    pub fn as_str(self) -> &'static str {
        match self {
            Unbound::TokenGone => "credential_gone",
            Unbound::NoAccessToken => "no_access_token",
            Unbound::OtherIdentity => "other_access_identity",
        }
    }
}

/// Whether `bound`, the credential of `principal`'s session, still verifies: against the
/// current tokens (`ops`), or against the identity of the request's valid Access JWT
/// (`access_identity`, `None` without one).
pub fn still_holds(
    key: &SessionKey,
    principal: &Principal,
    bound: &Bound,
    ops: &Operators,
    access_identity: Option<&str>,
) -> Result<(), Unbound> {
    match bound {
        Bound::Token(hash) => {
            let matches = |digest: &[u8; 32]| match Bound::token(key, digest) {
                Bound::Token(current) => bool::from(current.as_bytes().ct_eq(hash.as_bytes())),
                Bound::Access => false,
            };
            if ops.holds(principal, matches) {
                Ok(())
            } else {
                Err(Unbound::TokenGone)
            }
        }
        Bound::Access => match access_identity {
            None => Err(Unbound::NoAccessToken),
            Some(name) if name == principal.name => Ok(()),
            Some(_) => Err(Unbound::OtherIdentity),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::operators::{token_digest, token_hash, Scope, ADMIN_NAME, READ_ONLY_NAME};

    const ADMIN: &str = "admin-token-0123456789abcdef012345";
    const ADMIN2: &str = "admin-token-rotated-0123456789abcd";
    const READ: &str = "read-token-0123456789abcdef0123456";
    const READ2: &str = "read-token-rotated-0123456789abcde";
    const ALICE: &str = "alice-token-0123456789abcdef012345";
    const BOB: &str = "bob-token-0123456789abcdef01234567";

    fn ops(admin: &str, read: Option<&str>, named: &[(&str, &str)]) -> Operators {
        let named: Vec<String> = named
            .iter()
            .map(|(n, t)| format!("{n}:{}", token_hash(t)))
            .collect();
        Operators::from_secrets(Some(admin), read, Some(&named.join(",")))
            .unwrap()
            .unwrap()
    }

    fn who(name: &str, scope: Scope) -> Principal {
        Principal {
            name: name.into(),
            scope,
        }
    }

    #[test]
    fn a_token_session_holds_while_its_token_is_current() {
        let key = SessionKey::new(ADMIN);
        let bound = |token: &str| Bound::token(&key, &token_digest(token));
        let alice = who("alice", Scope::Write);
        let admin = who(ADMIN_NAME, Scope::Write);
        let reader = who(READ_ONLY_NAME, Scope::Read);
        let before = ops(ADMIN, Some(READ), &[("alice", ALICE), ("bob", BOB)]);
        let gone = Err(Unbound::TokenGone);
        for (label, principal, token, now, expected) in [
            ("alice as before", &alice, ALICE, &before, Ok(())),
            ("admin as before", &admin, ADMIN, &before, Ok(())),
            ("reader as before", &reader, READ, &before, Ok(())),
            (
                "alice removed",
                &alice,
                ALICE,
                &ops(ADMIN, Some(READ), &[("bob", BOB)]),
                gone,
            ),
            (
                "alice's token replaced",
                &alice,
                ALICE,
                &ops(ADMIN, Some(READ), &[("alice", BOB)]),
                gone,
            ),
            (
                "READ_TOKEN rotated",
                &reader,
                READ,
                &ops(ADMIN, Some(READ2), &[]),
                gone,
            ),
            (
                "READ_TOKEN unset",
                &reader,
                READ,
                &ops(ADMIN, None, &[]),
                gone,
            ),
            (
                "ADMIN_TOKEN rotated",
                &admin,
                ADMIN,
                &ops(ADMIN2, Some(READ), &[]),
                gone,
            ),
            ("bob's token, alice's name", &alice, BOB, &before, gone),
            (
                "the admin token, another name",
                &alice,
                ADMIN,
                &before,
                gone,
            ),
            (
                "the read token claiming write",
                &who(READ_ONLY_NAME, Scope::Write),
                READ,
                &before,
                gone,
            ),
        ] {
            assert_eq!(
                still_holds(&key, principal, &bound(token), now, None),
                expected,
                "{label}"
            );
        }
        assert_eq!(
            still_holds(&key, &alice, &Bound::Access, &before, None),
            Err(Unbound::NoAccessToken)
        );
    }

    #[test]
    fn an_access_session_holds_with_a_valid_jwt_of_the_same_identity() {
        let key = SessionKey::new(ADMIN);
        let current = ops(ADMIN, None, &[]);
        let a = who("a@example.com", Scope::Write);
        for (jwt, expected) in [
            (Some("a@example.com"), Ok(())),
            (Some("b@example.com"), Err(Unbound::OtherIdentity)),
            (None, Err(Unbound::NoAccessToken)),
        ] {
            assert_eq!(
                still_holds(&key, &a, &Bound::Access, &current, jwt),
                expected
            );
        }
    }

    #[test]
    fn the_cookie_names_a_keyed_hash_never_the_token() {
        let key = SessionKey::new(ADMIN);
        let bound = Bound::token(&key, &token_digest(ALICE));
        let text = bound.encode();
        assert_eq!(text.len(), 1 + TOKEN_HEX);
        assert!(!text.contains(ALICE));
        assert!(
            !token_hash(ALICE).contains(&text[1..]),
            "not the listed hash"
        );
        assert_ne!(
            Bound::token(&SessionKey::new(ADMIN2), &token_digest(ALICE)),
            bound,
            "keyed"
        );
        assert_eq!(Bound::decode(&text), Some(bound));
        assert_eq!(Bound::decode("access"), Some(Bound::Access));
        for bad in [
            "",
            "t",
            "tABCDEF0123456789",
            "t0123",
            "x0123456789abcdef",
            "Access",
        ] {
            assert_eq!(Bound::decode(bad), None, "{bad}");
        }
    }
}
