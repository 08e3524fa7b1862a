//! Cloudflare Access: verifies the JWT that Access puts in the `Cf-Access-Jwt-Assertion`
//! header of every request it lets through, so the worker trusts the identity only when the
//! token is Access's own, for this application, and current.
//!
//! Pure: the caller fetches the team's signing keys ([`AccessPolicy::certs_url`]), parses
//! them once with [`Jwks::parse`] and keeps them; when a token names a key it does not have
//! ([`header_kid`], [`Jwks::has_kid`]), Access has rotated its keys and the caller fetches
//! them again (at most every so often: the `kid` comes from the request, so anyone can name
//! an unknown one).
//!
//! Rules, checked by [`verify`] in this order:
//! - at most [`MAX_TOKEN_BYTES`], three base64url parts, else [`AccessError::Malformed`];
//! - the header's `alg` is `RS256`, before any crypto (so no `none`, no HS256 keyed with the
//!   public key, no other scheme); a `crit` header is refused; `jku`/`x5u` are ignored (keys
//!   only ever come from the caller's [`Jwks`]);
//! - the header's `kid` names a key of the [`Jwks`], and the RSA PKCS#1 v1.5 SHA-256
//!   signature verifies with it; only then is the payload read;
//! - `iss` equals the team domain; `aud` (a string or an array) contains the application's
//!   AUD tag;
//! - `exp` is present and not past; `nbf` and `iat`, when present, are not in the future;
//!   each with [`LEEWAY_SECS`] of clock skew allowed;
//! - the identity is `email`, or `common_name` for service tokens (see [`Identity`]).
//!
//! Every input here is attacker-controlled: nothing panics, every failure is an
//! [`AccessError`], and the strings an error carries are cut short and printable.

use std::fmt;

use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use rsa::{BoxedUint, PublicKey};
use serde::Deserialize;
use serde_json::Value;

/// Tokens longer than this are refused unread (Access's are about 1 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 60;
/// The only algorithm accepted.
const ALG: &str = "RS256";
/// The largest modulus accepted in a JWKS, in bytes (8192 bits, `rsa`'s own limit).
const MAX_MODULUS_BYTES: usize = 1024;
/// How much of an attacker-chosen string (an `alg`, a `kid`) an error quotes.
const QUOTE_CHARS: usize = 40;

/// What a token must match: the team's Access domain and the application's AUD tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// E.g. `https://myteam.cloudflareaccess.com`; the token's `iss` must equal it (a
    /// trailing `/` here is ignored).
    pub team_domain: String,
    /// The Access application's AUD tag; the token's `aud` must contain it.
    pub audience: String,
}

impl AccessPolicy {
    fn issuer(&self) -> &str {
        self.team_domain.trim_end_matches('/')
    }

    /// Where the team publishes its signing keys (the JSON [`Jwks::parse`] reads).
    pub fn certs_url(&self) -> String {
        format!("{}/cdn-cgi/access/certs", self.issuer())
    }
}

/// The team's RS256 signing keys, by `kid`.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<(String, VerifyingKey<Sha256>)>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field(
                "kids",
                &self.keys.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Jwks {
    /// Reads the certs JSON (`{"keys": [{"kid", "kty", "alg", "use", "n", "e"}, ...], ...}`).
    /// Keys that are not RSA signing keys for RS256 are skipped, as are keys without a `kid`
    /// and repeats of a `kid` (the first one is kept); an RSA key whose `n` or `e` is broken
    /// fails the whole document (so the caller keeps the keys it had), and so does a
    /// document with no usable key.
    pub fn parse(json: &str) -> Result<Jwks, AccessError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|_| AccessError::BadJwks("not JSON".into()))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| AccessError::BadJwks("no \"keys\" array".into()))?;
        let mut keys: Vec<(String, VerifyingKey<Sha256>)> = Vec::new();
        for entry in entries {
            let field = |name: &str| entry.get(name).and_then(Value::as_str);
            let usable = field("kty") == Some("RSA")
                && field("alg").is_none_or(|alg| alg == ALG)
                && field("use").is_none_or(|u| u == "sig");
            let kid = match field("kid") {
                Some(kid) if usable && !kid.is_empty() => kid,
                _ => continue,
            };
            if keys.iter().any(|(known, _)| known == kid) {
                continue;
            }
            let bad = |what: &str| AccessError::BadJwks(format!("key {}: {what}", quote(kid)));
            let n = field("n")
                .and_then(|n| decode_uint(n, MAX_MODULUS_BYTES))
                .ok_or_else(|| bad("bad modulus n"))?;
            let e = field("e")
                .and_then(|e| decode_uint(e, 8))
                .ok_or_else(|| bad("bad exponent e"))?;
            let key = PublicKey::new(n, e).map_err(|_| bad("not a valid RSA public key"))?;
            keys.push((kid.to_owned(), VerifyingKey::new(key)));
        }
        if keys.is_empty() {
            return Err(AccessError::BadJwks("no RS256 signing key".into()));
        }
        Ok(Jwks { keys })
    }

    /// Whether a key with this `kid` is known (if not, the caller may refetch the keys).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.key(kid).is_some()
    }

    fn key(&self, kid: &str) -> Option<&VerifyingKey<Sha256>> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }
}

/// A JWK big-endian unsigned integer (base64url, padding tolerated), at most `max_bytes`
/// long once leading zeros are dropped.
fn decode_uint(b64: &str, max_bytes: usize) -> Option<BoxedUint> {
    if b64.len() > (max_bytes + 8) * 4 / 3 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD_INDIFFERENT.decode(b64).ok()?;
    let start = bytes.iter().position(|&b| b != 0)?;
    let bytes = &bytes[start..];
    if bytes.len() > max_bytes {
        return None;
    }
    let bits = u32::try_from(bytes.len()).ok()?.checked_mul(8)?;
    BoxedUint::from_be_slice(bytes, bits).ok()
}

/// Who Access let through.
///
/// `email` is the user's `email` claim; a service token (a machine client with a client id
/// and secret) has no email, and its token carries `common_name` (the service token's client
/// id) instead: then `email` holds that `common_name` and `service_token` is true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub email: String,
    pub service_token: bool,
}

/// Why a token (or a JWKS) was refused; `Display` gives a short reason for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// Not a JWT we can read (too long, not three base64url parts, not JSON, a claim of the
    /// wrong type, no `kid`, no `exp`).
    Malformed(String),
    /// The header's `kid` is not in the JWKS (refetch the keys, then retry once).
    UnknownKey(String),
    BadSignature,
    /// The header's `alg` is not RS256.
    WrongAlgorithm(String),
    WrongIssuer,
    WrongAudience,
    Expired,
    /// `nbf` or `iat` is in the future.
    NotYetValid,
    /// Neither `email` nor `common_name`.
    NoEmail,
    /// The certs document is unusable.
    BadJwks(String),
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::Malformed(why) => write!(f, "malformed Access token: {why}"),
            AccessError::UnknownKey(kid) => write!(f, "Access token signed by unknown key {kid}"),
            AccessError::BadSignature => f.write_str("Access token signature does not verify"),
            AccessError::WrongAlgorithm(alg) => {
                write!(f, "Access token algorithm {alg} refused (only RS256)")
            }
            AccessError::WrongIssuer => f.write_str("Access token issued by another team"),
            AccessError::WrongAudience => f.write_str("Access token is for another application"),
            AccessError::Expired => f.write_str("Access token expired"),
            AccessError::NotYetValid => f.write_str("Access token not yet valid"),
            AccessError::NoEmail => f.write_str("Access token has no email nor common_name"),
            AccessError::BadJwks(why) => write!(f, "bad Access certs: {why}"),
        }
    }
}

impl std::error::Error for AccessError {}

/// An attacker-chosen string, quoted for an error: printable ASCII, cut short.
fn quote(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(QUOTE_CHARS)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if s.chars().count() > QUOTE_CHARS {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

fn malformed(why: &str) -> AccessError {
    AccessError::Malformed(why.to_owned())
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    // NumericDate may have a fraction (RFC 7519 section 2).
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    common_name: Option<String>,
}

/// A token's parts: the signing input (`header.payload`), the header, the payload and the
/// signature, all still base64url.
struct Parts<'a> {
    signing_input: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, AccessError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("longer than 8 KiB"));
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| malformed("not a JWT"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or_else(|| malformed("not a JWT"))?;
    // An empty signature is let through here, so that an `alg: none` token is refused as
    // such; for RS256 it fails as a bad signature.
    if payload.contains('.') || header.is_empty() || payload.is_empty() {
        return Err(malformed("not a JWT"));
    }
    Ok(Parts {
        signing_input,
        header,
        payload,
        signature,
    })
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str, what: &str) -> Result<T, AccessError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AccessError::Malformed(format!("{what} is not base64url")))?;
    let bad = || AccessError::Malformed(format!("bad {what}"));
    // An object only: serde's derived structs would also take a JSON array, field by field.
    // (Straight into the struct, a repeated claim is an error rather than last-one-wins.)
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(bad());
    }
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// The `kid` of a token's header, if it is a readable RS256 token: lets the caller refetch
/// the JWKS when the key is unknown (other tokens fail in [`verify`] without a refetch).
pub fn header_kid(token: &str) -> Option<String> {
    let parts = split(token).ok()?;
    let header: Header = decode_json(parts.header, "header").ok()?;
    if header.alg != ALG {
        return None;
    }
    header.kid.filter(|kid| !kid.is_empty())
}

/// Verifies an Access token (the `Cf-Access-Jwt-Assertion` header) at `now_unix`: the
/// identity it carries, or why it is refused (see the module doc for the rules).
pub fn verify(
    token: &str,
    jwks: &Jwks,
    policy: &AccessPolicy,
    now_unix: u64,
) -> Result<Identity, AccessError> {
    let parts = split(token)?;
    let header: Header = decode_json(parts.header, "header")?;
    if header.alg != ALG {
        return Err(AccessError::WrongAlgorithm(quote(&header.alg)));
    }
    if header.crit.is_some() {
        return Err(malformed("unsupported crit header"));
    }
    let kid = header
        .kid
        .filter(|kid| !kid.is_empty())
        .ok_or_else(|| malformed("no kid"))?;
    let key = jwks
        .key(&kid)
        .ok_or_else(|| AccessError::UnknownKey(quote(&kid)))?;
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| malformed("signature is not base64url"))?;
    let signature =
        Signature::try_from(signature.as_slice()).map_err(|_| AccessError::BadSignature)?;
    key.verify(parts.signing_input.as_bytes(), &signature)
        .map_err(|_| AccessError::BadSignature)?;

    let claims: Claims = decode_json(parts.payload, "payload")?;
    check_claims(claims, policy, now_unix)
}

fn check_claims(
    claims: Claims,
    policy: &AccessPolicy,
    now_unix: u64,
) -> Result<Identity, AccessError> {
    let issuer = policy.issuer();
    if issuer.is_empty() || claims.iss.as_deref() != Some(issuer) {
        return Err(AccessError::WrongIssuer);
    }
    let audience = policy.audience.as_str();
    let aud_ok = !audience.is_empty()
        && match &claims.aud {
            Some(Audience::One(aud)) => aud == audience,
            Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == audience),
            None => false,
        };
    if !aud_ok {
        return Err(AccessError::WrongAudience);
    }

    // Seconds fit an f64 exactly up to 2^53; the comparisons are on whole or fractional
    // seconds alike.
    let now = now_unix as f64;
    let leeway = LEEWAY_SECS as f64;
    let exp = claims.exp.ok_or_else(|| malformed("no exp"))?;
    if now >= exp + leeway {
        return Err(AccessError::Expired);
    }
    let in_future = |t: Option<f64>| t.is_some_and(|t| t > now + leeway);
    if in_future(claims.nbf) || in_future(claims.iat) {
        return Err(AccessError::NotYetValid);
    }

    match (claims.email, claims.common_name) {
        (Some(email), _) if !email.is_empty() => Ok(Identity {
            email,
            service_token: false,
        }),
        (_, Some(name)) if !name.is_empty() => Ok(Identity {
            email: name,
            service_token: true,
        }),
        _ => Err(AccessError::NoEmail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::traits::PublicKeyParts;
    use rsa::PrivateKey;
    use serde_json::json;
    use std::sync::OnceLock;

    // Two fixed RSA-2048 test keys (openssl genpkey), so the tests need no key generation.
    // Test keys only: they sign nothing outside this module.
    const KEY_A: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCcF+iwfaQPV4S8
i+mte30N9LAjCNpSZ0Mt0DVmN459rcVi6kssk3pUqOge58VBRPZTf0JMpl/OK4sn
c+omfBKEFivO8KPNS7IKI8jp1sgGyPYQAH2gO8+F6/tp0JMdWs7lbMi+59tgKbTj
qUl5SOME0Uqw/x4q5k/NHzZiTsoX9tJ15GlOcwBFB8Y7aMdyp82kC7y5X9cYL+Up
1hH7hCczzPL6nIwXLjuxyttPMU/sqnOCqGt3eHH1Y0R8aBL3OD4i5SGFNf8GJInG
sgWzyP04Y9Gb7G3TeGHDc4cJ1mBNP7j8Bf4JL7B1g8SnairAYoFSgdf95ROB2GuL
d1QL96f9AgMBAAECggEACEn2vSSMM+pcWJzUwGB4iryt0SEfuCor9ZYDDUCxrDfa
7alDwQQQhh1gEiq8R/6EVs5rtAv5C3GMLACqSaKODdNAPqF7DqRQjzGeR4NJz55t
U/qKsURr0pCY+GIEkJWpZffUYzAxxJYCY+fcnc2tNyzGsBvOu3ghJbiHbUoCI6qO
S0k7kvM8woV1TBr5U1xXRbC1FASGvTmMi9AEtvFHQwDa17rsaBjT0P9X77jEPUN1
r2Z4CP/g59LnnE//GsmVPrK96FLmPjWE4nStfMN2+dXZ4cjpc/tBJJ6ke5iiq3Ab
GrO6rjEDBg+2mUZPse/5WQnAfYafA0bxb0WdJUPJAQKBgQDUvmIBiUHdAQfoH+/9
yiq+hdAufcdL1RdRsdftw2VL9mQoLn+BRByAInaMBHXOUqKb4Ipf8uFWw8q0sZt6
I6zTw9A7+Lfm60nb7ALbH+ZmIQLUWwwbJM7K7eatb9ZMwKOjLCq4teTvpgIH4xfQ
N1Rfoms2B2wU7fAYmBAOMZoagQKBgQC71Mvjt5jnHI4xxtu0wT3JtlTBKyjsO2mO
vx7GhPEfwJUMtnrFlCu3xa2dtsn50g5klX2UStDCbdfQymxsfFmsrVNadHDDPu2g
SMlIwPTKdoQ7nz52PnTWddcc/TxjVOR6IxCV8Lt9+eil2prJpClp3HySch5HvYiF
frjOvoc3fQKBgQCla8/rH94dyaJrRQIoVd28vXHt5JFmDrCOLnoW/7sxQMoKUHWG
fv6mR6XkI8eygaC9EfCmwMWk4KMqs3uQklLdasHtD+13WfbZUX+7AOf2+64mjxEv
vgQp2KhorbB1h8j1pO8nJxB3o56qoVMv7QXnQvSYU1cgQw9RIFRDpSANgQKBgDky
isgUX555Jp/n033OnrcvK84LC5IsYW+TqZaAY0DtDzZo1ygVf96ddsohII5PtgxR
LYWb5sheVKsDCVNb5p7bxRc1gCUko438vDbIc4K35nqVeprdWAz6o3/zaZFCB7Vd
ui4+uYmaMYtX72zZ7baL6u9ZivkDsXAdb7+da2WtAoGAJKqFGrkMH/k6qLTWaBYp
Le2KVCZxqn6pOIrR2SGeUWgRt9rlq5ti4VqLzmygM/qZOJJMS6g6rPBjn4HCnVx0
VfVhqPFAbvUChPlL3QCzlIf3t4bRIPFbEY5Wu55Kp3Cv7TdkVBqC1wv2UbKoh3jX
ouIZP3/YGnCwuY2SwwKA+pk=
-----END PRIVATE KEY-----
";
    const KEY_B: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDSRnEkT96I4pqX
DbfffOA/kYWTeiPH6yVt8oUXpDnwc5va3MyoVdJ8q6SHkEHb/Qo3vV5RKVUfpT2z
sjth7HXlXRMrTAb0lKIimCC6mHOdGvAaPFIfJJIlLrbit5jm1EJXwzA5cb3YpzBI
LFtuf7R1Z75Wb3Ming8AWeupmflmG4zGmlQpLsxuXyxW8AuERfipj9QqYV158iki
99TP/1eSQLNCs/RSKV5suLAj27lMz7m7brl++8n++Ku799iEJxbLQ7TRwgW3N15e
r9gZ9fY4bHvmpEI3vRTkf/FqXMxOgva4YJA7xgrejIqWxflyi1T/nj4QDQ5tsuAc
sV7Vr/0HAgMBAAECggEASImkXjJvQilpytIgrCgX89XvjoCD92NW9ibDYvR0SE6Z
ZVbmAuwYQIm1qE5LaehQrgnVj4oCo3gNYQALHCzGPulsw3Lms1jS1bxFDhmpSHkS
evp0GeozwD/tNyi+xmJSwJPE/wwNwb9rGHq0z9meFyJCtu6beUWtRyG9+jPzpRUb
Ykbk+1G7+AugHBoFX3ye3TFUgeIuY9RyCF0ZYt2CrSa7t9t9+B+rYNqWojGpY82x
5JAJcKUUJH8iPPBweRaus6YSoHq8tOK0pnxYz9BGSZhIeQ+CYgpeKcGet7hZdFrd
CmDji5u+m4X4jT1lecnLvZuZlCpItZfKTYHuH7rHgQKBgQD6QWfv52GcHBcdGXQj
4OnKJF8L5JXQW9Bx+N3Maf0hVR3BmE0CWLYv68gePgnp2g+nTFCSiMo0gvVwj3Yo
qpWoNBt0AQH2JZnX8e5rWiZdI/wYJA16wGzQ0OEQ6JFHEi0GYod/W2Gr433RTwwG
dLjmC4r4YHh3z9uXz8cvwu10TQKBgQDXGhjDh6iwqeJT/8UVL79787R6JmBK67ul
zsymvuMrEQElIp7cvGu2vb80oQ91tG+/P88uvpb806oEUoXiG8wLXvBhWkqw//Ub
ELUc5QexbTsZ01kM1qX1lMz7CLCxesrH377Rr6oB9KogJq9pCT6IO+smtScxtB6q
nk4Ph7KwowKBgQCiEP2IpeXWvXJSjAtkuOFu4YMUJqLG3s7tIGgzW2hsz7yHhWRJ
4r2J5z4gJ7kv0uJUS93aJ/AbdbwRezbgOyjUV3p387cbe1pYOPtYVneF1ioKUD7S
gg92Y+99jb+XsTOrcN+jIMDuGlN+25xECg88G7mSBJe/r8LcW9j5G1m/+QKBgGHa
l2VsM4ua3UGFW60VubCz32iqSKgMsaLufx9kO4f+Bl1UcJzOgtnxXCifFJ9hZGzG
pIQJZDrEN9YbjJieOKb7m7NOFiiLaH/Vi+8HKgbHQFmxUhOLGpisBsw02d0DlXh0
CyTtGxQkr7hMoQPRlsb3KzTCuH/eBw1rUuuxudKtAoGAEFKpYVOibBRHMziCiHGv
X1rW/0O9atcShOiJIjcX+apqkYADZHbtOCfjM75o7iDSyheLqFkLgtOR7zq05fNv
ozmanN5RBLo+wHupxmxQ56RXDv8A93WgYiPZ53GEQYqcA3uHLYl8A9SOXo33U4/H
ZwzP9m9ZtRCU2kOGCXho81k=
-----END PRIVATE KEY-----
";

    const TEAM: &str = "https://myteam.cloudflareaccess.com";
    const AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";
    const NOW: u64 = 1_750_000_000;

    fn keys() -> &'static (PrivateKey, PrivateKey) {
        static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let a = PrivateKey::from_pkcs8_pem(KEY_A).unwrap();
            let b = PrivateKey::from_pkcs8_pem(KEY_B).unwrap();
            (a, b)
        })
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwk(key: &PrivateKey, kid: &str) -> Value {
        json!({
            "kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig",
            "n": b64(&key.n_bytes()), "e": b64(&key.e_bytes()),
        })
    }

    /// The certs document as Access serves it: key A as `kid-a`, plus fields to ignore.
    fn certs_json() -> String {
        json!({
            "keys": [
                {"kid": "kid-ec", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
                jwk(&keys().0, "kid-a"),
            ],
            "public_cert": {"kid": "kid-a", "cert": "-----BEGIN CERTIFICATE-----\n..."},
            "public_certs": [{"kid": "kid-a", "cert": "-----BEGIN CERTIFICATE-----\n..."}],
        })
        .to_string()
    }

    fn jwks() -> Jwks {
        Jwks::parse(&certs_json()).unwrap()
    }

    fn policy() -> AccessPolicy {
        AccessPolicy {
            team_domain: TEAM.into(),
            audience: AUD.into(),
        }
    }

    fn header(kid: &str) -> Value {
        json!({"alg": "RS256", "kid": kid, "typ": "JWT"})
    }

    fn claims() -> Value {
        json!({
            "aud": [AUD], "email": "ada@example.com", "exp": NOW + 600, "iat": NOW,
            "nbf": NOW, "iss": TEAM, "type": "app", "identity_nonce": "x",
            "sub": "7335d417-61da-459d-899c-0a01c76a2a94", "country": "FR",
        })
    }

    fn with(mut v: Value, field: &str, value: Value) -> Value {
        v[field] = value;
        v
    }

    fn without(mut v: Value, field: &str) -> Value {
        if let Some(map) = v.as_object_mut() {
            map.remove(field);
        }
        v
    }

    fn sign_with(key: &PrivateKey, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signer = SigningKey::<Sha256>::new(key.clone());
        let signature = signer.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", b64(&signature))
    }

    /// A token signed by key A with `kid-a` and these claims.
    fn token(claims: &Value) -> String {
        sign_with(&keys().0, &header("kid-a"), claims)
    }

    fn ada() -> Result<Identity, AccessError> {
        Ok(Identity {
            email: "ada@example.com".into(),
            service_token: false,
        })
    }

    fn malformed(why: &str) -> Result<Identity, AccessError> {
        Err(AccessError::Malformed(why.into()))
    }

    /// The classic key-confusion forgery: HS256, keyed with the public key as the secret.
    fn hs256_forgery(secret: &[u8]) -> String {
        let header = json!({"alg": "HS256", "kid": "kid-a", "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }

    fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn access_verify_table() {
        let (key_a, key_b) = keys();
        let valid = token(&claims());
        let (valid_input, valid_sig) = valid.rsplit_once('.').unwrap();
        let (valid_header, _) = valid_input.split_once('.').unwrap();
        let public_pem = key_a
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let forged_claims = with(claims(), "email", json!("mallory@example.com"));
        let mut big_claims = claims();
        big_claims["padding"] = json!("x".repeat(6 * 1024));

        let cases: Vec<(&str, String, Result<Identity, AccessError>)> = vec![
            ("valid", valid.clone(), ada()),
            (
                "aud as a string",
                token(&with(claims(), "aud", json!(AUD))),
                ada(),
            ),
            (
                "aud array containing it",
                token(&with(claims(), "aud", json!(["other-app", AUD, "third"]))),
                ada(),
            ),
            (
                "service token: common_name only",
                token(&with(
                    without(claims(), "email"),
                    "common_name",
                    json!("a1b2c3.access"),
                )),
                Ok(Identity {
                    email: "a1b2c3.access".into(),
                    service_token: true,
                }),
            ),
            (
                "empty email falls back to common_name",
                token(&with(
                    with(claims(), "email", json!("")),
                    "common_name",
                    json!("svc"),
                )),
                Ok(Identity {
                    email: "svc".into(),
                    service_token: true,
                }),
            ),
            (
                "no email nor common_name",
                token(&without(claims(), "email")),
                Err(AccessError::NoEmail),
            ),
            (
                "email null",
                token(&with(claims(), "email", Value::Null)),
                Err(AccessError::NoEmail),
            ),
            (
                "expired",
                token(&with(claims(), "exp", json!(NOW - 61))),
                Err(AccessError::Expired),
            ),
            (
                "expired exactly at the leeway",
                token(&with(claims(), "exp", json!(NOW - 60))),
                Err(AccessError::Expired),
            ),
            (
                "expired within the leeway",
                token(&with(claims(), "exp", json!(NOW - 30))),
                ada(),
            ),
            (
                "fractional exp",
                token(&with(claims(), "exp", json!(NOW as f64 + 0.5))),
                ada(),
            ),
            (
                "exp missing",
                token(&without(claims(), "exp")),
                malformed("no exp"),
            ),
            (
                "exp a string",
                token(&with(claims(), "exp", json!("9999999999"))),
                malformed("bad payload"),
            ),
            (
                "nbf in the future",
                token(&with(claims(), "nbf", json!(NOW + 120))),
                Err(AccessError::NotYetValid),
            ),
            (
                "nbf within the leeway",
                token(&with(claims(), "nbf", json!(NOW + 30))),
                ada(),
            ),
            (
                "iat in the future",
                token(&with(claims(), "iat", json!(NOW + 120))),
                Err(AccessError::NotYetValid),
            ),
            (
                "wrong iss",
                token(&with(
                    claims(),
                    "iss",
                    json!("https://evil.cloudflareaccess.com"),
                )),
                Err(AccessError::WrongIssuer),
            ),
            (
                "iss with a trailing slash",
                token(&with(claims(), "iss", json!(format!("{TEAM}/")))),
                Err(AccessError::WrongIssuer),
            ),
            (
                "iss missing",
                token(&without(claims(), "iss")),
                Err(AccessError::WrongIssuer),
            ),
            (
                "wrong aud",
                token(&with(claims(), "aud", json!(["other-app"]))),
                Err(AccessError::WrongAudience),
            ),
            (
                "aud empty array",
                token(&with(claims(), "aud", json!([]))),
                Err(AccessError::WrongAudience),
            ),
            (
                "aud missing",
                token(&without(claims(), "aud")),
                Err(AccessError::WrongAudience),
            ),
            (
                "alg none, no signature",
                unsigned(&json!({"alg": "none", "kid": "kid-a"}), &claims(), ""),
                Err(AccessError::WrongAlgorithm("\"none\"".into())),
            ),
            (
                "alg none, with RS256's signature",
                unsigned(
                    &json!({"alg": "none", "kid": "kid-a"}),
                    &claims(),
                    valid_sig,
                ),
                Err(AccessError::WrongAlgorithm("\"none\"".into())),
            ),
            (
                "HS256 keyed with the public key PEM",
                hs256_forgery(public_pem.as_bytes()),
                Err(AccessError::WrongAlgorithm("\"HS256\"".into())),
            ),
            (
                "HS256 keyed with the JWKS",
                hs256_forgery(certs_json().as_bytes()),
                Err(AccessError::WrongAlgorithm("\"HS256\"".into())),
            ),
            (
                "RS512",
                sign_with(key_a, &json!({"alg": "RS512", "kid": "kid-a"}), &claims()),
                Err(AccessError::WrongAlgorithm("\"RS512\"".into())),
            ),
            (
                "alg is case-sensitive",
                sign_with(key_a, &json!({"alg": "rs256", "kid": "kid-a"}), &claims()),
                Err(AccessError::WrongAlgorithm("\"rs256\"".into())),
            ),
            (
                "alg missing",
                sign_with(key_a, &json!({"kid": "kid-a"}), &claims()),
                malformed("bad header"),
            ),
            (
                "crit header",
                sign_with(
                    key_a,
                    &json!({"alg": "RS256", "kid": "kid-a", "crit": ["exp"]}),
                    &claims(),
                ),
                malformed("unsupported crit header"),
            ),
            (
                "unknown kid",
                sign_with(key_a, &header("kid-x"), &claims()),
                Err(AccessError::UnknownKey("\"kid-x\"".into())),
            ),
            (
                "kid missing",
                sign_with(key_a, &json!({"alg": "RS256"}), &claims()),
                malformed("no kid"),
            ),
            (
                "signed by another key",
                sign_with(key_b, &header("kid-a"), &claims()),
                Err(AccessError::BadSignature),
            ),
            (
                "tampered payload",
                format!(
                    "{valid_header}.{}.{valid_sig}",
                    b64(forged_claims.to_string().as_bytes())
                ),
                Err(AccessError::BadSignature),
            ),
            (
                "tampered header",
                format!(
                    "{}.{}",
                    unsigned(&json!({"alg": "RS256", "kid": "kid-a"}), &claims(), "")
                        .trim_end_matches('.'),
                    valid_sig
                ),
                Err(AccessError::BadSignature),
            ),
            (
                "truncated signature",
                {
                    let sig = URL_SAFE_NO_PAD.decode(valid_sig).unwrap();
                    format!("{valid_input}.{}", b64(&sig[..sig.len() - 1]))
                },
                Err(AccessError::BadSignature),
            ),
            (
                "empty signature",
                format!("{valid_input}."),
                Err(AccessError::BadSignature),
            ),
            (
                "padded signature",
                format!("{valid}=="),
                malformed("signature is not base64url"),
            ),
            (
                "signature in standard base64",
                format!(
                    "{valid_input}.{}",
                    valid_sig.replace('-', "+").replace('_', "/")
                ),
                if valid_sig.contains(['-', '_']) {
                    malformed("signature is not base64url")
                } else {
                    ada()
                },
            ),
            ("empty", String::new(), malformed("not a JWT")),
            ("one part", "abc".into(), malformed("not a JWT")),
            ("two parts", "abc.def".into(), malformed("not a JWT")),
            ("dots only", "..".into(), malformed("not a JWT")),
            ("four parts", format!("{valid}.x"), malformed("not a JWT")),
            (
                "garbage parts",
                "a.b.c".into(),
                malformed("header is not base64url"),
            ),
            (
                "not base64",
                "!!!.???.***".into(),
                malformed("header is not base64url"),
            ),
            (
                "header not JSON",
                format!("{}.e30.AAAA", b64(b"not json")),
                malformed("bad header"),
            ),
            (
                "header a JSON array",
                format!("{}.e30.AAAA", b64(b"[\"RS256\"]")),
                malformed("bad header"),
            ),
            (
                "unicode",
                "é.ü.ß".into(),
                malformed("header is not base64url"),
            ),
            (
                "payload a JSON array",
                {
                    let array = json!([TEAM, [AUD], NOW + 600, NOW, NOW, "ada@example.com"]);
                    token(&array)
                },
                malformed("bad payload"),
            ),
            (
                "repeated claim",
                {
                    let h = b64(header("kid-a").to_string().as_bytes());
                    let body = claims().to_string().replacen('{', "{\"iss\":\"x\",", 1);
                    let input = format!("{h}.{}", b64(body.as_bytes()));
                    let sig = SigningKey::<Sha256>::new(key_a.clone())
                        .sign(input.as_bytes())
                        .to_vec();
                    format!("{input}.{}", b64(&sig))
                },
                malformed("bad payload"),
            ),
            (
                "payload not JSON",
                {
                    let h = b64(header("kid-a").to_string().as_bytes());
                    let input = format!("{h}.{}", b64(b"\xff\xfe"));
                    let sig = SigningKey::<Sha256>::new(key_a.clone())
                        .sign(input.as_bytes())
                        .to_vec();
                    format!("{input}.{}", b64(&sig))
                },
                malformed("bad payload"),
            ),
            (
                "9 KiB token, validly signed",
                {
                    let big = token(&big_claims);
                    assert!(big.len() > MAX_TOKEN_BYTES && big.len() < 10 * 1024);
                    big
                },
                malformed("longer than 8 KiB"),
            ),
            (
                "9 KiB of garbage",
                "a".repeat(9 * 1024),
                malformed("longer than 8 KiB"),
            ),
        ];

        let (jwks, policy) = (jwks(), policy());
        for (name, token, want) in &cases {
            assert_eq!(&verify(token, &jwks, &policy, NOW), want, "case {name:?}");
        }
    }

    #[test]
    fn access_policy_checks() {
        let (jwks, valid) = (jwks(), token(&claims()));
        let slash = AccessPolicy {
            team_domain: format!("{TEAM}/"),
            audience: AUD.into(),
        };
        assert_eq!(verify(&valid, &jwks, &slash, NOW), ada());
        assert_eq!(
            slash.certs_url(),
            "https://myteam.cloudflareaccess.com/cdn-cgi/access/certs"
        );
        assert_eq!(policy().certs_url(), slash.certs_url());

        // An unconfigured policy accepts nothing, even a token made to match it.
        let empty = AccessPolicy {
            team_domain: TEAM.into(),
            audience: String::new(),
        };
        let matching = token(&with(claims(), "aud", json!("")));
        assert_eq!(
            verify(&matching, &jwks, &empty, NOW),
            Err(AccessError::WrongAudience)
        );
        let no_team = AccessPolicy {
            team_domain: String::new(),
            audience: AUD.into(),
        };
        let matching = token(&with(claims(), "iss", json!("")));
        assert_eq!(
            verify(&matching, &jwks, &no_team, NOW),
            Err(AccessError::WrongIssuer)
        );
    }

    #[test]
    fn access_header_kid() {
        assert_eq!(header_kid(&token(&claims())).as_deref(), Some("kid-a"));
        let other = sign_with(&keys().1, &header("kid-rotated"), &claims());
        assert_eq!(header_kid(&other).as_deref(), Some("kid-rotated"));
        let none = unsigned(&json!({"alg": "none", "kid": "kid-a"}), &claims(), "");
        assert_eq!(header_kid(&none), None);
        let no_kid = unsigned(&json!({"alg": "RS256"}), &claims(), "AAAA");
        assert_eq!(header_kid(&no_kid), None);
        let empty_kid = unsigned(&json!({"alg": "RS256", "kid": ""}), &claims(), "AAAA");
        assert_eq!(header_kid(&empty_kid), None);
        for garbage in ["", "abc", "a.b.c", "é.ü.ß", "...."] {
            assert_eq!(header_kid(garbage), None, "{garbage:?}");
        }
        let big = format!(
            "{}.{}.AAAA",
            b64(header("kid-a").to_string().as_bytes()),
            "a".repeat(9 * 1024)
        );
        assert_eq!(header_kid(&big), None);
    }

    #[test]
    fn access_jwks_parse() {
        let jwks = jwks();
        assert!(jwks.has_kid("kid-a"));
        assert!(!jwks.has_kid("kid-ec"), "the EC key is skipped");
        assert!(!jwks.has_kid(""));
        assert!(format!("{jwks:?}").contains("kid-a"));

        let (key_a, key_b) = keys();
        let bad = |json: &str| match Jwks::parse(json) {
            Err(AccessError::BadJwks(why)) => why,
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(bad(r#"{"keys":[]}"#), "no RS256 signing key");
        assert_eq!(bad("{}"), "no \"keys\" array");
        assert_eq!(bad(r#"{"keys":{}}"#), "no \"keys\" array");
        assert_eq!(bad("not json"), "not JSON");
        assert_eq!(bad(""), "not JSON");
        assert_eq!(bad("[]"), "no \"keys\" array");
        let only_others = json!({"keys": [
            {"kid": "ec", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            with(jwk(key_a, "enc"), "use", json!("enc")),
            with(jwk(key_a, "ps"), "alg", json!("PS256")),
            without(jwk(key_a, "nokid"), "kid"),
            with(jwk(key_a, "x"), "kid", json!("")),
            "not an object", 42, null,
        ]});
        assert_eq!(bad(&only_others.to_string()), "no RS256 signing key");

        // A broken RSA key fails the document: the caller keeps its last good keys.
        let broken = |field: &str, value: Value| {
            let doc =
                json!({"keys": [jwk(key_b, "good"), with(jwk(key_a, "kid-a"), field, value)]});
            bad(&doc.to_string())
        };
        assert_eq!(broken("n", json!("!!!")), "key \"kid-a\": bad modulus n");
        assert_eq!(broken("n", json!(42)), "key \"kid-a\": bad modulus n");
        assert_eq!(broken("n", json!("")), "key \"kid-a\": bad modulus n");
        assert_eq!(broken("n", json!("AAAA")), "key \"kid-a\": bad modulus n");
        assert_eq!(
            broken("n", json!(b64(&[0xc5; 2048]))),
            "key \"kid-a\": bad modulus n"
        );
        assert_eq!(
            broken("n", json!(b64(&[0xc5; 64]))),
            "key \"kid-a\": not a valid RSA public key",
            "a 512-bit modulus is refused"
        );
        assert_eq!(
            broken("n", json!(b64(&[0xc4; 256]))),
            "key \"kid-a\": not a valid RSA public key",
            "an even modulus is refused"
        );
        assert_eq!(
            broken("e", json!("AQ")),
            "key \"kid-a\": not a valid RSA public key"
        );
        assert_eq!(broken("e", Value::Null), "key \"kid-a\": bad exponent e");
        assert_eq!(
            broken("e", json!(b64(&[1; 16]))),
            "key \"kid-a\": bad exponent e"
        );

        // Lenient where it costs nothing: no alg/use, padded and zero-prefixed numbers, a
        // repeated kid (the first wins).
        let mut n = vec![0u8];
        n.extend_from_slice(&key_a.n_bytes());
        let lenient = json!({"keys": [
            {"kid": "kid-a", "kty": "RSA", "n": URL_SAFE_NO_PAD_INDIFFERENT.encode(&n) + "=", "e": "AQAB"},
            jwk(key_b, "kid-a"),
        ]});
        let padded_n = lenient["keys"][0]["n"].as_str().unwrap().to_owned();
        assert!(padded_n.ends_with('='), "{padded_n}");
        let jwks = Jwks::parse(&lenient.to_string()).unwrap();
        assert_eq!(verify(&token(&claims()), &jwks, &policy(), NOW), ada());
        let by_b = sign_with(key_b, &header("kid-a"), &claims());
        assert_eq!(
            verify(&by_b, &jwks, &policy(), NOW),
            Err(AccessError::BadSignature)
        );
    }

    #[test]
    fn access_errors_are_short_and_printable() {
        let long_alg = "\u{1b}[31m".to_owned() + &"A".repeat(500);
        let token = unsigned(&json!({"alg": long_alg, "kid": "k"}), &claims(), "");
        let err = verify(&token, &jwks(), &policy(), NOW).unwrap_err();
        let shown = err.to_string();
        assert!(shown.len() < 120, "{shown}");
        assert!(
            shown.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{shown}"
        );
        assert!(
            shown.starts_with("Access token algorithm \"?[31mAAA"),
            "{shown}"
        );

        let errors = [
            AccessError::Malformed("not a JWT".into()),
            AccessError::UnknownKey("\"k\"".into()),
            AccessError::BadSignature,
            AccessError::WrongAlgorithm("\"none\"".into()),
            AccessError::WrongIssuer,
            AccessError::WrongAudience,
            AccessError::Expired,
            AccessError::NotYetValid,
            AccessError::NoEmail,
            AccessError::BadJwks("not JSON".into()),
        ];
        for err in errors {
            let shown = err.to_string();
            assert!(!shown.is_empty() && shown.len() < 80, "{shown}");
        }
    }

    /// Every prefix of a valid token, and the token with each character replaced, is an
    /// error (never a panic nor an identity).
    #[test]
    fn access_mutations_never_verify() {
        let (jwks, policy) = (jwks(), policy());
        let valid = token(&claims());
        for end in 0..valid.len() {
            assert!(verify(&valid[..end], &jwks, &policy, NOW).is_err(), "{end}");
            let _ = header_kid(&valid[..end]);
        }
        // Every character of the header and payload (the signature's are covered by RSA).
        let signed_len = valid.rfind('.').unwrap();
        for at in (0..signed_len).step_by(7) {
            let mut bytes = valid.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let mutated = String::from_utf8(bytes).unwrap();
            assert!(verify(&mutated, &jwks, &policy, NOW).is_err(), "{at}");
        }
    }
}
