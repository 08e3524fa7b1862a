//! Who may operate, and as whom: the API's tokens and their scopes.
//!
//! - `ADMIN_TOKEN`: everything, recorded as `operator`;
//! - `READ_TOKEN`: reads only (dashboards, CI status), recorded as `read-only`;
//! - `OPERATOR_TOKENS`: named operators, `name:<hex SHA-256 of the token>` pairs separated
//!   by commas; the name is what the history, the logs and the answers record as `by`.
//!
//! Tokens are compared as SHA-256 digests in constant time, every candidate checked, so
//! neither the length of a guess nor which token it resembles shows in the timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::settings::{
    SettingsError, SECRET_ADMIN_TOKEN, SECRET_OPERATOR_TOKENS, SECRET_READ_TOKEN,
};

/// Shortest token accepted: 32 characters of a random token is far beyond guessing, even
/// without the login's rate limit.
pub const MIN_TOKEN_CHARS: usize = 32;
/// Longest operator name (an email from Cloudflare Access fits).
pub const MAX_NAME_CHARS: usize = 128;
/// The name `ADMIN_TOKEN` acts as.
pub const ADMIN_NAME: &str = "operator";
/// The name `READ_TOKEN` reads as.
pub const READ_ONLY_NAME: &str = "read-only";

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Status, minutes and file listings.
    Read,
    /// Everything: commands, overrides, revocations.
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// Who is acting: the name recorded as `by`, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
}

impl Principal {
    pub fn may_write(&self) -> bool {
        self.scope == Scope::Write
    }
}

/// Whether `name` can be recorded as `by` and carried in a session: printable ASCII
/// without separators that would need quoting anywhere it is written.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
}

/// The hex SHA-256 of a token, as `OPERATOR_TOKENS` lists it (`scripts/canary token`).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The configured tokens, validated once per isolate.
#[derive(Clone)]
pub struct Operators {
    admin: [u8; 32],
    read: Option<[u8; 32]>,
    named: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.named.iter().map(|(n, _)| n.as_str()).collect();
        write!(
            f,
            "Operators(read: {}, named: {names:?})",
            self.read.is_some()
        )
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The SHA-256 of a token as it is compared (trimmed): what a session's credential is
/// derived from (`credential::Bound::token`).
pub fn token_digest(token: &str) -> [u8; 32] {
    digest(token.trim())
}

fn long_enough(var: &'static str, token: &str) -> Result<(), SettingsError> {
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(SettingsError {
            var,
            message: format!(
                "is {} characters; at least {MIN_TOKEN_CHARS} are required (e.g. `openssl rand -hex 32`), \
                 so the admin API is off",
                token.chars().count()
            ),
        });
    }
    Ok(())
}

impl Operators {
    /// The tokens from their secrets: `None` when `ADMIN_TOKEN` is unset (the admin API
    /// is off), an error naming the secret when one is unusable (the admin API refuses to
    /// start rather than run with a guessable token).
    pub fn from_secrets(
        admin: Option<&str>,
        read: Option<&str>,
        named: Option<&str>,
    ) -> Result<Option<Self>, SettingsError> {
        let Some(admin) = admin else { return Ok(None) };
        long_enough(SECRET_ADMIN_TOKEN, admin)?;
        if let Some(read) = read {
            long_enough(SECRET_READ_TOKEN, read)?;
            if read == admin {
                return Err(SettingsError {
                    var: SECRET_READ_TOKEN,
                    message: "must differ from ADMIN_TOKEN".into(),
                });
            }
        }
        let mut list = Vec::new();
        for pair in named.unwrap_or_default().split(',').map(str::trim) {
            if pair.is_empty() {
                continue;
            }
            let bad = |message: String| SettingsError {
                var: SECRET_OPERATOR_TOKENS,
                message,
            };
            let (name, hash) = pair.split_once(':').ok_or_else(|| {
                bad("must be `name:<hex SHA-256 of the token>` pairs separated by commas".into())
            })?;
            if !valid_name(name) || name == ADMIN_NAME || name == READ_ONLY_NAME {
                return Err(bad(format!(
                    "operator name {name:?}: 1-{MAX_NAME_CHARS} of A-Z a-z 0-9 . _ @ + -, \
                     not {ADMIN_NAME:?} or {READ_ONLY_NAME:?}"
                )));
            }
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hash.trim(), &mut bytes).map_err(|_| {
                bad(format!(
                    "the hash of {name:?} must be 64 hex digits (SHA-256 of the token)"
                ))
            })?;
            if list.iter().any(|(n, _)| n == name) {
                return Err(bad(format!("operator {name:?} is listed twice")));
            }
            list.push((name.to_owned(), bytes));
        }
        Ok(Some(Self {
            admin: digest(admin),
            read: read.map(digest),
            named: list,
        }))
    }

    /// The principal a token stands for, if any. Every candidate is compared.
    pub fn by_token(&self, token: &str) -> Option<Principal> {
        let given = digest(token.trim());
        let mut found: Option<Principal> = None;
        let mut check = |hash: &[u8; 32], principal: &dyn Fn() -> Principal| {
            if bool::from(given.ct_eq(hash)) && found.is_none() {
                found = Some(principal());
            }
        };
        check(&self.admin, &|| Principal {
            name: ADMIN_NAME.into(),
            scope: Scope::Write,
        });
        if let Some(read) = &self.read {
            check(read, &|| Principal {
                name: READ_ONLY_NAME.into(),
                scope: Scope::Read,
            });
        }
        for (name, hash) in &self.named {
            check(hash, &|| Principal {
                name: name.clone(),
                scope: Scope::Write,
            });
        }
        found
    }

    /// Whether a current token stands for `principal` (same name and scope) and its digest
    /// satisfies `matches`: how a session checks that its credential still verifies. Only
    /// the principal's own entry is hashed (names are unique; the principal comes from a
    /// signed session, not from the caller).
    pub fn holds(&self, principal: &Principal, matches: impl Fn(&[u8; 32]) -> bool) -> bool {
        let mut found = false;
        let mut check = |name: &str, scope: Scope, hash: &[u8; 32]| {
            let same = name == principal.name && scope == principal.scope;
            found |= same && matches(hash);
        };
        check(ADMIN_NAME, Scope::Write, &self.admin);
        if let Some(read) = &self.read {
            check(READ_ONLY_NAME, Scope::Read, read);
        }
        for (name, hash) in &self.named {
            check(name, Scope::Write, hash);
        }
        found
    }

    /// The principal of an `Authorization: Bearer <token>` header, if any.
    pub fn by_bearer(&self, authorization: Option<&str>) -> Option<Principal> {
        let token = authorization?.strip_prefix("Bearer ")?;
        if token.is_empty() || token.len() > 1024 {
            return None;
        }
        self.by_token(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-token-0123456789abcdef012345";
    const READ: &str = "read-token-0123456789abcdef0123456";
    const ALICE: &str = "alice-token-0123456789abcdef012345";

    fn operators() -> Operators {
        let named = format!(
            "alice:{}, bob@example.com:{}",
            token_hash(ALICE),
            "ab".repeat(32)
        );
        Operators::from_secrets(Some(ADMIN), Some(READ), Some(&named))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn each_token_is_its_principal() {
        let ops = operators();
        for (authorization, expected) in [
            (format!("Bearer {ADMIN}"), Some((ADMIN_NAME, Scope::Write))),
            (
                format!("Bearer {READ}"),
                Some((READ_ONLY_NAME, Scope::Read)),
            ),
            (format!("Bearer {ALICE}"), Some(("alice", Scope::Write))),
            (format!("Bearer {ALICE} "), Some(("alice", Scope::Write))),
            (format!("Bearer {}", &ADMIN[1..]), None),
            (format!("bearer {ADMIN}"), None),
            (format!("Basic {ADMIN}"), None),
            ("Bearer ".into(), None),
            (format!("Bearer {}", "x".repeat(2000)), None),
        ] {
            let got = ops.by_bearer(Some(&authorization));
            assert_eq!(
                got.as_ref().map(|p| (p.name.as_str(), p.scope)),
                expected,
                "{authorization}"
            );
        }
        assert_eq!(ops.by_bearer(None), None);
        assert!(!ops.by_token(READ).unwrap().may_write());
    }

    #[test]
    fn unusable_secrets_are_named() {
        assert!(Operators::from_secrets(None, Some(READ), None)
            .unwrap()
            .is_none());
        let hash = token_hash(ALICE);
        for (admin, read, named, var) in [
            ("short", None, None, SECRET_ADMIN_TOKEN),
            (ADMIN, Some("short"), None, SECRET_READ_TOKEN),
            (ADMIN, Some(ADMIN), None, SECRET_READ_TOKEN),
            (ADMIN, None, Some("alice"), SECRET_OPERATOR_TOKENS),
            (ADMIN, None, Some("alice:zz"), SECRET_OPERATOR_TOKENS),
            (ADMIN, None, Some("bad name:00"), SECRET_OPERATOR_TOKENS),
            (
                ADMIN,
                None,
                Some(&format!("operator:{hash}") as &str),
                SECRET_OPERATOR_TOKENS,
            ),
            (
                ADMIN,
                None,
                Some(&format!("a:{hash},a:{hash}") as &str),
                SECRET_OPERATOR_TOKENS,
            ),
        ] {
            let err = Operators::from_secrets(Some(admin), read, named).expect_err(var);
            assert_eq!(err.var, var, "{admin} {read:?} {named:?}");
        }
        let short = Operators::from_secrets(Some("x".repeat(31).as_str()), None, None);
        assert!(short.unwrap_err().to_string().contains("at least 32"));
        assert!(
            Operators::from_secrets(Some("x".repeat(32).as_str()), None, Some(" , "))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn names() {
        for (name, ok) in [
            ("alice", true),
            ("alice@example.com", true),
            ("a.b+c_d-e", true),
            ("", false),
            ("a b", false),
            ("a;b", false),
            ("a.b:c", false),
            (&"a".repeat(129) as &str, false),
        ] {
            assert_eq!(valid_name(name), ok, "{name}");
        }
    }
}
