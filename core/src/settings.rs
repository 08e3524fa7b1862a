//! Deployment settings from `wrangler.toml` vars and secrets, read and validated once per
//! isolate. Names here must match `wrangler.toml` and the README.

use std::fmt;

pub const VAR_COHORTS: &str = "COHORTS";
pub const VAR_COOKIE: &str = "COHORT_COOKIE";
pub const VAR_COHORT_HEADER: &str = "COHORT_HEADER";
pub const VAR_USER_KEY_HEADER: &str = "USER_KEY_HEADER";
pub const VAR_SALT: &str = "COHORT_SALT";
/// Secret; signs the cohort cookie. Falls back to the salt when unset (fine for local dev).
pub const SECRET_COOKIE_KEY: &str = "COHORT_SECRET";
pub const VAR_CONFIG_TTL_MS: &str = "CONFIG_TTL_MS";
pub const VAR_KV_TIMEOUT_MS: &str = "KV_TIMEOUT_MS";
pub const VAR_FLOATING_MAX_AGE: &str = "FLOATING_MAX_AGE";
pub const VAR_PINNED_MAX_AGE: &str = "PINNED_MAX_AGE";
pub const VAR_COOKIE_MAX_AGE: &str = "COOKIE_MAX_AGE";
/// Secret; enables the admin API (`/__canary/api/`) when set.
pub const SECRET_ADMIN_TOKEN: &str = "ADMIN_TOKEN";
/// Secret; a read-only API token (status, minutes, files).
pub const SECRET_READ_TOKEN: &str = "READ_TOKEN";
/// Secret; named operators, `name:<hex SHA-256 of the token>` pairs (see `operators`).
pub const SECRET_OPERATOR_TOKENS: &str = "OPERATOR_TOKENS";
/// The host that serves the operator console (and never a bundle).
pub const VAR_CONSOLE_HOST: &str = "CONSOLE_HOST";
/// Cloudflare Access in front of the console host: the team domain
/// (`https://<team>.cloudflareaccess.com`) and the application's audience tag.
pub const VAR_ACCESS_TEAM_DOMAIN: &str = "ACCESS_TEAM_DOMAIN";
pub const VAR_ACCESS_AUD: &str = "ACCESS_AUD";
/// Secret; enables signed overrides (QA, probes) when set.
pub const SECRET_OVERRIDE: &str = "OVERRIDE_SECRET";
/// Signs user keys in the merchant's backend (see `user_key`).
pub const SECRET_USER_KEY: &str = "USER_KEY_SECRET";
/// Secrets; webhooks (`control::notify`): the receivers, and the JSON format's HMAC key.
/// The setting naming the receivers (a secret: Slack URLs are credentials).
pub const SECRET_NOTIFY_URLS: &str = "NOTIFY_URLS";
/// The HMAC key of the JSON format's signature.
pub const SECRET_NOTIFY_SECRET: &str = "NOTIFY_SECRET";
pub const VAR_HEALTH_FLUSH_MS: &str = "HEALTH_FLUSH_MS";
pub const VAR_HEALTH_FLUSH_REQUESTS: &str = "HEALTH_FLUSH_REQUESTS";

pub const MAX_COHORTS: u16 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub cohorts: u16,
    pub cookie_name: String,
    pub cohort_header: String,
    pub user_key_header: String,
    pub salt: String,
    pub cookie_secret: Option<String>,
    pub user_key_secret: Option<String>,
    pub config_ttl_ms: u64,
    /// A KV read slower than this counts as a failure (last good config is served).
    pub kv_timeout_ms: u64,
    pub floating_max_age: u32,
    pub pinned_max_age: u32,
    pub cookie_max_age: u32,
    pub admin_token: Option<String>,
    pub read_token: Option<String>,
    pub operator_tokens: Option<String>,
    /// The operations host (lowercase, no port): the console answers only there, and no
    /// bundle is ever served there. `None`: no console (the bearer-token API still works).
    pub console_host: Option<String>,
    /// Cloudflare Access (team domain, audience tag), when both are set.
    pub access: Option<(String, String)>,
    pub override_secret: Option<String>,
    /// How often an isolate sends its request/error counts to the health monitor.
    pub flush: FlushPolicy,
    /// Webhook receivers (`NOTIFY_URLS`). A bad entry never stops the edge: it is left out
    /// and said in `notify_problem`, which the health monitor logs.
    pub notify: Vec<Target>,
    /// The JSON format's HMAC key (`NOTIFY_SECRET`).
    pub notify_secret: Option<String>,
    /// What is wrong with the webhook settings, if anything (never the URLs themselves).
    pub notify_problem: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cohorts: 10,
            cookie_name: "cohort".into(),
            cohort_header: "X-Cohort".into(),
            user_key_header: "X-User-Key".into(),
            salt: "canary-edge".into(),
            cookie_secret: None,
            user_key_secret: None,
            config_ttl_ms: 5_000,
            kv_timeout_ms: 1_500,
            floating_max_age: 60,
            pinned_max_age: 31_536_000,
            cookie_max_age: 31_536_000,
            admin_token: None,
            read_token: None,
            operator_tokens: None,
            console_host: None,
            access: None,
            override_secret: None,
            flush: FlushPolicy {
                every_ms: 10_000,
                every_requests: 1_000,
            },
            notify: Vec::new(),
            notify_secret: None,
            notify_problem: None,
        }
    }
}

/// A setting that could not be used; names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub var: &'static str,
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "worker misconfigured: var `{}`: {}",
            self.var, self.message
        )
    }
}

impl SettingsError {
    /// What the variable configures, for a public answer that names nothing else: the
    /// admin API (its tokens and Access) or the worker.
    pub fn component(&self) -> &'static str {
        match self.var {
            SECRET_ADMIN_TOKEN
            | SECRET_READ_TOKEN
            | SECRET_OPERATOR_TOKENS
            | VAR_ACCESS_TEAM_DOMAIN
            | VAR_ACCESS_AUD => "the admin API",
            _ => "the worker",
        }
    }
}

impl std::error::Error for SettingsError {}

fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
    var: &'static str,
    raw: Option<String>,
    default: T,
    min: T,
    max: T,
) -> Result<T, SettingsError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(SettingsError {
            var,
            message: format!("must be an integer from {min} to {max}, got {raw:?}"),
        }),
    }
}

/// RFC 7230 token: what a header or cookie name may be made of.
fn token(var: &'static str, raw: Option<String>, default: &str) -> Result<String, SettingsError> {
    let value = raw.unwrap_or_else(|| default.to_owned());
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(value)
    } else {
        Err(SettingsError {
            var,
            message: format!("must be a header/cookie name token, got {value:?}"),
        })
    }
}

/// A response or request header's name: a [`token`], but not `__proto__`, which the
/// entry module's plain header objects would take for their prototype.
fn header_name(
    var: &'static str,
    raw: Option<String>,
    default: &str,
) -> Result<String, SettingsError> {
    let name = token(var, raw, default)?;
    if name.eq_ignore_ascii_case("__proto__") {
        return Err(SettingsError {
            var,
            message: "must not be __proto__".to_owned(),
        });
    }
    Ok(name)
}

/// A host name (no scheme, no port), lowercased; empty is unset.
fn host(raw: Option<String>) -> Result<Option<String>, SettingsError> {
    let Some(raw) = raw
        .map(|r| r.trim().to_ascii_lowercase())
        .filter(|r| !r.is_empty())
    else {
        return Ok(None);
    };
    let ok = raw.len() <= 253
        && raw.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(Some(raw))
    } else {
        Err(SettingsError {
            var: VAR_CONSOLE_HOST,
            message: format!(
                "must be a host name without scheme or port (e.g. ops.example.com), got {raw:?}"
            ),
        })
    }
}

/// Cloudflare Access: both settings or neither.
fn access(
    team: Option<String>,
    aud: Option<String>,
) -> Result<Option<(String, String)>, SettingsError> {
    let team = team
        .map(|t| t.trim().trim_end_matches('/').to_owned())
        .filter(|t| !t.is_empty());
    let aud = aud.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
    match (team, aud) {
        (None, None) => Ok(None),
        (Some(team), Some(aud)) if team.starts_with("https://") || team.starts_with("http://") => {
            Ok(Some((team, aud)))
        }
        (Some(team), Some(_)) => Err(SettingsError {
            var: VAR_ACCESS_TEAM_DOMAIN,
            message: format!(
                "must be a URL like https://<team>.cloudflareaccess.com, got {team:?}"
            ),
        }),
        (Some(_), None) => Err(SettingsError {
            var: VAR_ACCESS_AUD,
            message: "must be set with ACCESS_TEAM_DOMAIN (the Access application's audience tag)"
                .into(),
        }),
        (None, Some(_)) => Err(SettingsError {
            var: VAR_ACCESS_TEAM_DOMAIN,
            message: "must be set with ACCESS_AUD".into(),
        }),
    }
}

impl Settings {
    /// Whether `host` (a URL's host, with or without a port) is the console host.
    pub fn is_console_host(&self, host: &str) -> bool {
        let name = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        });
        self.console_host
            .as_deref()
            .is_some_and(|console| console.eq_ignore_ascii_case(name))
    }

    /// The key the edge signs and hashes with: `COHORT_SECRET`, else the public salt (which
    /// anyone can read: auto canary refuses to act then, see `control::machine::UNSIGNED`).
    pub fn edge_secret(&self) -> &str {
        self.cookie_secret.as_deref().unwrap_or(&self.salt)
    }

    /// Builds every setting from a lookup of vars and secrets (`None` = unset): the control
    /// Worker's, and the CLI's.
    pub fn from_lookup(mut get: impl FnMut(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut settings = Self::edge_from_lookup(&mut get)?;
        settings.access = access(get(VAR_ACCESS_TEAM_DOMAIN), get(VAR_ACCESS_AUD))?;
        (
            settings.notify,
            settings.notify_secret,
            settings.notify_problem,
        ) = notify(get(SECRET_NOTIFY_URLS), get(SECRET_NOTIFY_SECRET));
        Ok(settings)
    }

    /// The settings the routing module reads: all but the control plane's own, Cloudflare
    /// Access (`access`) and the webhooks (`notify*`), which keep their defaults. So a
    /// mistake in those (a half-set Access pair) cannot stop the edge serving bundles, and
    /// their parsers (URLs) are not in the routing wasm, whose first request compiles what
    /// it calls (bench/README.md, "What the first request compiles").
    pub fn edge_from_lookup(
        mut get: impl FnMut(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let d = Settings::default();
        let salt = get(VAR_SALT).unwrap_or(d.salt);
        if salt.is_empty() {
            return Err(SettingsError {
                var: VAR_SALT,
                message: "must not be empty".into(),
            });
        }
        Ok(Self {
            cohorts: number(VAR_COHORTS, get(VAR_COHORTS), d.cohorts, 1, MAX_COHORTS)?,
            cookie_name: token(VAR_COOKIE, get(VAR_COOKIE), &d.cookie_name)?,
            cohort_header: header_name(
                VAR_COHORT_HEADER,
                get(VAR_COHORT_HEADER),
                &d.cohort_header,
            )?,
            user_key_header: header_name(
                VAR_USER_KEY_HEADER,
                get(VAR_USER_KEY_HEADER),
                &d.user_key_header,
            )?,
            salt,
            cookie_secret: get(SECRET_COOKIE_KEY).filter(|s| !s.is_empty()),
            user_key_secret: get(SECRET_USER_KEY).filter(|s| !s.is_empty()),
            config_ttl_ms: number(
                VAR_CONFIG_TTL_MS,
                get(VAR_CONFIG_TTL_MS),
                d.config_ttl_ms,
                0,
                600_000,
            )?,
            kv_timeout_ms: number(
                VAR_KV_TIMEOUT_MS,
                get(VAR_KV_TIMEOUT_MS),
                d.kv_timeout_ms,
                50,
                60_000,
            )?,
            floating_max_age: number(
                VAR_FLOATING_MAX_AGE,
                get(VAR_FLOATING_MAX_AGE),
                d.floating_max_age,
                0,
                3_600,
            )?,
            pinned_max_age: number(
                VAR_PINNED_MAX_AGE,
                get(VAR_PINNED_MAX_AGE),
                d.pinned_max_age,
                60,
                31_536_000,
            )?,
            cookie_max_age: number(
                VAR_COOKIE_MAX_AGE,
                get(VAR_COOKIE_MAX_AGE),
                d.cookie_max_age,
                60,
                34_560_000,
            )?,
            admin_token: get(SECRET_ADMIN_TOKEN).filter(|s| !s.is_empty()),
            read_token: get(SECRET_READ_TOKEN).filter(|s| !s.is_empty()),
            operator_tokens: get(SECRET_OPERATOR_TOKENS).filter(|s| !s.trim().is_empty()),
            console_host: host(get(VAR_CONSOLE_HOST))?,
            access: None,
            override_secret: get(SECRET_OVERRIDE).filter(|s| !s.is_empty()),
            flush: FlushPolicy {
                every_ms: number(
                    VAR_HEALTH_FLUSH_MS,
                    get(VAR_HEALTH_FLUSH_MS),
                    d.flush.every_ms,
                    0,
                    600_000,
                )?,
                every_requests: number(
                    VAR_HEALTH_FLUSH_REQUESTS,
                    get(VAR_HEALTH_FLUSH_REQUESTS),
                    d.flush.every_requests,
                    1,
                    1_000_000,
                )?,
            },
            notify: Vec::new(),
            notify_secret: None,
            notify_problem: None,
        })
    }
}

/// `NOTIFY_URLS` and `NOTIFY_SECRET`: the receivers, the key, and what is wrong, if anything
/// (a bad entry leaves every receiver out: a half-read list would be a surprise).
fn notify(
    urls: Option<String>,
    secret: Option<String>,
) -> (Vec<Target>, Option<String>, Option<String>) {
    let secret = secret.filter(|s| !s.is_empty());
    let targets = match parse_targets(urls.as_deref().unwrap_or_default()) {
        Ok(targets) => targets,
        Err(e) => {
            return (
                Vec::new(),
                secret,
                Some(format!("{SECRET_NOTIFY_URLS}: {e}")),
            )
        }
    };
    let problem = (secret.is_none() && targets.iter().any(|t| t.format == Format::Json))
        .then(|| format!("{SECRET_NOTIFY_SECRET} is not set: JSON deliveries go out unsigned"));
    (targets, secret, problem)
}

/// When an isolate flushes its counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlushPolicy {
    pub every_ms: u64,
    pub every_requests: u64,
}

/// A receiver's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Slack,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Slack => "slack",
            Format::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "slack" => Some(Format::Slack),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// One receiver of `NOTIFY_URLS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub format: Format,
    pub url: String,
}

/// Parses `NOTIFY_URLS`: comma-separated URLs, each optionally prefixed `slack:` or `json:`
/// (default: `slack` for `hooks.slack.com`, else `json`). Empty entries are skipped.
pub fn parse_targets(raw: &str) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (format, url) = if let Some(url) = entry.strip_prefix("slack:") {
            (Some(Format::Slack), url)
        } else if let Some(url) = entry.strip_prefix("json:") {
            (Some(Format::Json), url)
        } else {
            (None, entry)
        };
        let Some(rest) = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
        else {
            // Never echo the entry: it may hold a credential.
            return Err(format!(
                "entry {} is not an http(s) URL (optionally prefixed slack: or json:)",
                targets.len() + 1
            ));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit('@').next().unwrap_or_default();
        let name = host.split(':').next().unwrap_or_default();
        if name.is_empty() || url.contains(char::is_whitespace) {
            return Err(format!("entry {} has no host", targets.len() + 1));
        }
        let format = format.unwrap_or(if name.eq_ignore_ascii_case("hooks.slack.com") {
            Format::Slack
        } else {
            Format::Json
        });
        targets.push(Target {
            format,
            url: url.to_owned(),
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn webhooks_are_read_and_a_bad_entry_never_stops_the_edge() {
        let s = from(&[]).unwrap();
        assert_eq!((s.notify.len(), s.notify_problem), (0, None));
        let s = from(&[
            (
                "NOTIFY_URLS",
                "https://hooks.slack.com/services/x, json:http://127.0.0.1:9/h",
            ),
            ("NOTIFY_SECRET", "k"),
        ])
        .unwrap();
        let formats: Vec<Format> = s.notify.iter().map(|t| t.format).collect();
        assert_eq!(formats, vec![Format::Slack, Format::Json]);
        assert_eq!(
            (s.notify_secret.as_deref(), s.notify_problem),
            (Some("k"), None)
        );
        let s = from(&[("NOTIFY_URLS", "https://example.com/h")]).unwrap();
        assert_eq!(s.notify.len(), 1);
        assert!(s.notify_problem.unwrap().contains("unsigned"));
        let s = from(&[("NOTIFY_URLS", "https://ok.example/h, not-a-url")]).unwrap();
        assert_eq!(s.notify.len(), 0);
        assert!(s
            .notify_problem
            .unwrap()
            .starts_with("NOTIFY_URLS: entry 2"));
    }

    #[test]
    fn the_edge_reads_all_but_the_control_planes_own_settings() {
        let edge = |pairs: &[(&str, &str)]| {
            let map: HashMap<&str, &str> = pairs.iter().copied().collect();
            Settings::edge_from_lookup(|k| map.get(k).map(|v| v.to_string()))
        };
        let base = [
            (VAR_COHORTS, "100"),
            (SECRET_COOKIE_KEY, "s"),
            (VAR_CONSOLE_HOST, "ops.example.com"),
            (VAR_HEALTH_FLUSH_MS, "2000"),
        ];
        // (extra vars, what the control plane's full read says of them: the var it refuses)
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), &'a str>);
        let cases: [Case; 4] = [
            (&[], Ok(())),
            (
                &[
                    (VAR_ACCESS_TEAM_DOMAIN, "https://t.cloudflareaccess.com"),
                    (VAR_ACCESS_AUD, "aud"),
                    (SECRET_NOTIFY_URLS, "json:https://example.com/h"),
                    (SECRET_NOTIFY_SECRET, "k"),
                ],
                Ok(()),
            ),
            // A half-set Access pair stops the control Worker, never the edge.
            (&[(VAR_ACCESS_AUD, "aud")], Err(VAR_ACCESS_TEAM_DOMAIN)),
            (&[(SECRET_NOTIFY_URLS, "not-a-url")], Ok(())),
        ];
        for (extra, full_read) in cases {
            let pairs: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
            let edge = edge(&pairs).unwrap();
            assert_eq!(
                (edge.access.as_ref(), edge.notify.len(), &edge.notify_secret),
                (None, 0, &None),
                "{extra:?}"
            );
            assert_eq!(edge.notify_problem, None, "{extra:?}");
            match (from(&pairs), full_read) {
                (Ok(full), Ok(())) => assert_eq!(
                    Settings {
                        access: None,
                        notify: Vec::new(),
                        notify_secret: None,
                        notify_problem: None,
                        ..full
                    },
                    edge,
                    "{extra:?}"
                ),
                (Err(e), Err(var)) => assert_eq!(e.var, var),
                (got, want) => panic!("{extra:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = from(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.cohorts, 10);
        assert_eq!(s.cookie_name, "cohort");
        assert_eq!(s.cohort_header, "X-Cohort");
        assert_eq!(s.user_key_header, "X-User-Key");
    }

    #[test]
    fn bad_values_name_the_var() {
        let cases = [
            (VAR_COHORTS, "0"),
            (VAR_COHORTS, "1001"),
            (VAR_COHORTS, "ten"),
            (VAR_COOKIE, "bad name"),
            (VAR_COOKIE, ""),
            (VAR_COHORT_HEADER, "X-Cohort:"),
            (VAR_COHORT_HEADER, "__proto__"),
            (VAR_USER_KEY_HEADER, "__PROTO__"),
            (VAR_CONFIG_TTL_MS, "-5"),
            (VAR_KV_TIMEOUT_MS, "10"),
            (VAR_SALT, ""),
            (VAR_FLOATING_MAX_AGE, "86400"),
            (VAR_CONSOLE_HOST, "https://ops.example.com"),
            (VAR_CONSOLE_HOST, "ops.example.com/x"),
            (VAR_CONSOLE_HOST, "a..b"),
        ];
        for (var, value) in cases {
            let err = from(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn overrides_apply() {
        let s = from(&[
            (VAR_COHORTS, "100"),
            (VAR_CONFIG_TTL_MS, "0"),
            (SECRET_COOKIE_KEY, "k"),
        ])
        .unwrap();
        assert_eq!(s.cohorts, 100);
        assert_eq!(s.config_ttl_ms, 0);
        assert_eq!(s.cookie_secret.as_deref(), Some("k"));
    }

    #[test]
    fn the_console_host_is_one_host_name() {
        let s = from(&[(VAR_CONSOLE_HOST, " Ops.Example.com ")]).unwrap();
        assert_eq!(s.console_host.as_deref(), Some("ops.example.com"));
        for (host, console) in [
            ("ops.example.com", true),
            ("OPS.example.com:8443", true),
            ("sdk.example.com", false),
            ("ops.example.com.evil.net", false),
            ("", false),
        ] {
            assert_eq!(s.is_console_host(host), console, "{host}");
        }
        assert!(!from(&[]).unwrap().is_console_host("localhost"));
        let a = from(&[
            (VAR_ACCESS_TEAM_DOMAIN, "https://team.cloudflareaccess.com/"),
            (VAR_ACCESS_AUD, "aud"),
        ])
        .unwrap();
        assert_eq!(
            a.access,
            Some(("https://team.cloudflareaccess.com".into(), "aud".into()))
        );
        assert_eq!(
            from(&[(VAR_ACCESS_TEAM_DOMAIN, "team"), (VAR_ACCESS_AUD, "aud")])
                .unwrap_err()
                .var,
            VAR_ACCESS_TEAM_DOMAIN
        );
        let half = from(&[(VAR_ACCESS_AUD, "aud")]).unwrap_err();
        assert_eq!(half.var, VAR_ACCESS_TEAM_DOMAIN, "names the missing one");
    }

    #[test]
    fn targets_parse_with_prefixes_and_defaults() {
        type Parsed = Result<Vec<(Format, &'static str)>, ()>;
        let cases: &[(&str, Parsed)] = &[
            ("", Ok(vec![])),
            (" , ", Ok(vec![])),
            (
                "https://hooks.slack.com/services/T/B/x",
                Ok(vec![(
                    Format::Slack,
                    "https://hooks.slack.com/services/T/B/x",
                )]),
            ),
            (
                "https://example.com/hook",
                Ok(vec![(Format::Json, "https://example.com/hook")]),
            ),
            (
                "slack:http://127.0.0.1:9/a, json:https://hooks.slack.com/x",
                Ok(vec![
                    (Format::Slack, "http://127.0.0.1:9/a"),
                    (Format::Json, "https://hooks.slack.com/x"),
                ]),
            ),
            ("ftp://example.com", Err(())),
            ("slack:", Err(())),
            ("https:///nohost", Err(())),
        ];
        for (raw, want) in cases {
            let got = parse_targets(raw)
                .map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.format, t.url))
                        .collect::<Vec<_>>()
                })
                .map_err(|_| ());
            let want = want.clone().map(|v| {
                v.into_iter()
                    .map(|(f, u)| (f, u.to_owned()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{raw:?}");
        }
        // A refusal never echoes the entry (it may hold a credential).
        let e = parse_targets("https://ok.example, hooks.slack.com/secret").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
