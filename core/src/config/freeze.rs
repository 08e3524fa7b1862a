//! Freeze windows (`progression.freeze`): times, in UTC, during which a progressive rollout
//! takes no automatic step (cuts still happen). Two shapes:
//!
//! - a range: `{"from": "2026-12-24T00:00:00Z", "to": "2026-12-27T00:00:00Z"}` (RFC 3339 in
//!   UTC, `Z`, optional fraction of a second), `from` inclusive, `to` exclusive;
//! - weekly: `{"weekly": {"day": "fri", "from": "16:00", "to": "24:00"}}`, every week on
//!   that day (`mon` … `sun`), `from` 00:00–23:59 inclusive, `to` 00:01–24:00 exclusive,
//!   `from` before `to` (a window over midnight is two windows: they join).
//!
//! Windows that touch or overlap join: a freeze lasts until no window holds.

use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use super::ConfigError;

const DAY_MS: f64 = 86_400_000.0;
const WEEK_MS: f64 = 7.0 * DAY_MS;
/// 1970-01-05, the first Monday after the epoch (a Thursday), in days.
const FIRST_MONDAY_DAYS: f64 = 4.0;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// Most windows a config may list.
pub const MAX_WINDOWS: usize = 50;

/// One freeze window.
#[derive(Debug, Clone, PartialEq)]
pub enum FreezeWindow {
    /// From one instant to another (the strings as given, and their times in ms).
    Range {
        from: String,
        to: String,
        from_ms: f64,
        to_ms: f64,
    },
    /// Every week on `day` (0 = Monday), from minute `from_min` to `to_min` of the day.
    Weekly { day: u8, from_min: u32, to_min: u32 },
}

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl FreezeWindow {
    /// The window as written in the config.
    pub fn to_value(&self) -> Value {
        match self {
            FreezeWindow::Range { from, to, .. } => json!({ "from": from, "to": to }),
            FreezeWindow::Weekly {
                day,
                from_min,
                to_min,
            } => json!({ "weekly": {
                "day": DAYS[usize::from(*day)], "from": hhmm(*from_min), "to": hhmm(*to_min),
            }}),
        }
    }

    /// The window in words: `2026-12-24T00:00:00Z to 2026-12-27T00:00:00Z`, `fri 16:00–24:00 UTC`.
    pub fn describe(&self) -> String {
        match self {
            FreezeWindow::Range { from, to, .. } => format!("{from} to {to}"),
            FreezeWindow::Weekly {
                day,
                from_min,
                to_min,
            } => format!(
                "weekly {} {}–{} UTC",
                DAYS[usize::from(*day)],
                hhmm(*from_min),
                hhmm(*to_min)
            ),
        }
    }

    /// The end of this window's occurrence that holds `t_ms`, if one does.
    pub fn end_if_holds(&self, t_ms: f64) -> Option<f64> {
        match self {
            FreezeWindow::Range { from_ms, to_ms, .. } => {
                (*from_ms <= t_ms && t_ms < *to_ms).then_some(*to_ms)
            }
            FreezeWindow::Weekly {
                day,
                from_min,
                to_min,
            } => {
                let pos = (t_ms - FIRST_MONDAY_DAYS * DAY_MS).rem_euclid(WEEK_MS);
                let day_start = f64::from(*day) * DAY_MS;
                let start = day_start + f64::from(*from_min) * 60_000.0;
                let end = day_start + f64::from(*to_min) * 60_000.0;
                (start <= pos && pos < end).then_some(t_ms - pos + end)
            }
        }
    }

    fn parse(i: usize, v: &Value) -> Result<Self, ConfigError> {
        let bad = |m: String| ConfigError {
            field: "progression.freeze",
            message: format!("window {}: {m}", i + 1),
        };
        let Value::Object(map) = v else {
            return Err(bad(format!(
                "must be {{\"from\", \"to\"}} or {{\"weekly\": {{\"day\", \"from\", \"to\"}}}}, got {v}"
            )));
        };
        if let Some(weekly) = map.get("weekly") {
            if map.len() != 1 {
                return Err(bad("a weekly window has only the field `weekly`".into()));
            }
            let Value::Object(w) = weekly else {
                return Err(bad(format!(
                    "`weekly` must be {{\"day\", \"from\", \"to\"}}, got {weekly}"
                )));
            };
            if let Some(other) = w
                .keys()
                .find(|k| !["day", "from", "to"].contains(&k.as_str()))
            {
                return Err(bad(format!(
                    "unknown field `weekly.{other}`; use day, from and to"
                )));
            }
            let text = |k: &str| {
                w.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("`weekly.{k}` is required (a string)")))
            };
            let day_name = text("day")?;
            let day = DAYS.iter().position(|d| *d == day_name).ok_or_else(|| {
                bad(format!(
                    "`weekly.day` must be one of mon, tue, wed, thu, fri, sat, sun; got {day_name:?}"
                ))
            })? as u8;
            let from_min = parse_hhmm(text("from")?)
                .filter(|m| *m < 24 * 60)
                .ok_or_else(|| bad("`weekly.from` must be HH:MM from 00:00 to 23:59".into()))?;
            let to_min = parse_hhmm(text("to")?)
                .filter(|m| (1..=24 * 60).contains(m))
                .ok_or_else(|| bad("`weekly.to` must be HH:MM from 00:01 to 24:00".into()))?;
            if from_min >= to_min {
                return Err(bad(
                    "`weekly.to` must be after `weekly.from` (over midnight: two windows)".into(),
                ));
            }
            return Ok(FreezeWindow::Weekly {
                day,
                from_min,
                to_min,
            });
        }
        if let Some(other) = map.keys().find(|k| !["from", "to"].contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown field `{other}`; use from and to, or weekly"
            )));
        }
        let instant = |k: &str| -> Result<(String, f64), ConfigError> {
            let s = map
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("`{k}` is required (a UTC time)")))?;
            let ms = parse_utc(s).ok_or_else(|| {
                bad(format!(
                    "`{k}` must be a UTC time like 2026-12-24T00:00:00Z, got {s:?}"
                ))
            })?;
            Ok((s.to_owned(), ms))
        };
        let (from, from_ms) = instant("from")?;
        let (to, to_ms) = instant("to")?;
        if from_ms >= to_ms {
            return Err(bad("`to` must be after `from`".into()));
        }
        Ok(FreezeWindow::Range {
            from,
            to,
            from_ms,
            to_ms,
        })
    }
}

impl Serialize for FreezeWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

/// Parses `progression.freeze`: a list of windows.
pub fn parse_windows(v: &Value) -> Result<Vec<FreezeWindow>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(ConfigError {
            field: "progression.freeze",
            message: format!("must be a list of windows, got {v}"),
        });
    };
    if items.len() > MAX_WINDOWS {
        return Err(ConfigError {
            field: "progression.freeze",
            message: format!("at most {MAX_WINDOWS} windows"),
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(i, w)| FreezeWindow::parse(i, w))
        .collect()
}

/// The freeze that holds at `now_ms`, if any: when it ends (windows that touch or overlap
/// join) and the first window that holds now.
pub fn frozen_until(windows: &[FreezeWindow], now_ms: f64) -> Option<(f64, &FreezeWindow)> {
    let first = windows.iter().find(|w| w.end_if_holds(now_ms).is_some())?;
    let mut until = now_ms;
    // Each round moves `until` to a later end; bounded (weekly windows repeat).
    for _ in 0..=2 * windows.len() + 2 {
        match windows
            .iter()
            .filter_map(|w| w.end_if_holds(until))
            .reduce(f64::max)
        {
            Some(end) if end > until => until = end,
            _ => break,
        }
    }
    Some((until, first))
}

/// `HH:MM` as minutes (24:00 allowed here; the caller bounds it).
fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (digits(h)?, digits(m)?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

fn digits(s: &str) -> Option<u32> {
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC) as ms since the epoch; years 1970–9999.
pub fn parse_utc(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, mo, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || mo.len() != 2 || day.len() != 2 {
        return None;
    }
    let (y, mo, day) = (digits(y)? as i64, digits(mo)? as i64, digits(day)? as i64);
    let (time, fraction) = match time.split_once('.') {
        Some((t, f)) if (1..=3).contains(&f.len()) => {
            (t, f64::from(digits(f)?) * 10f64.powi(3 - f.len() as i32))
        }
        Some(_) => return None,
        None => (time, 0.0),
    };
    let mut t = time.split(':');
    let (h, mi, sec) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || h.len() != 2 || mi.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, mi, sec) = (digits(h)?, digits(mi)?, digits(sec)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || day < 1
        || day > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * DAY_MS + f64::from(h * 3_600_000 + mi * 60_000 + sec * 1000) + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::iso_time;

    fn windows(v: Value) -> Vec<FreezeWindow> {
        parse_windows(&v).unwrap()
    }

    fn at(s: &str) -> f64 {
        parse_utc(s).unwrap()
    }

    #[test]
    fn utc_times_parse_and_round_trip() {
        for s in [
            "1970-01-01T00:00:00.000Z",
            "2026-12-24T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "2000-03-01T12:34:56.100Z",
        ] {
            assert_eq!(iso_time(at(s)), s);
        }
        assert_eq!(at("2026-12-24T00:00:00Z"), at("2026-12-24T00:00:00.000Z"));
        assert_eq!(
            at("2026-12-24T00:00:00.5Z"),
            at("2026-12-24T00:00:00Z") + 500.0
        );
        for bad in [
            "2026-12-24T00:00:00",
            "2026-12-24 00:00:00Z",
            "2026-12-24T00:00:00+01:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-24T24:00:00Z",
            "26-12-24T00:00:00Z",
            "2026-12-24T00:00:00.1234Z",
            "2026-12-+4T00:00:00Z",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn weekly_windows_at_their_boundaries() {
        // 2026-12-25 is a Friday.
        let w = windows(json!([{"weekly": {"day": "fri", "from": "16:00", "to": "24:00"}}]));
        let sat = at("2026-12-26T00:00:00Z");
        let cases = [
            ("2026-12-25T15:59:59.999Z", None),
            ("2026-12-25T16:00:00Z", Some(sat)),
            ("2026-12-25T23:59:59.999Z", Some(sat)),
            ("2026-12-26T00:00:00Z", None),
            ("2026-12-24T18:00:00Z", None),
            // A week later, the same.
            ("2027-01-01T16:00:00Z", Some(at("2027-01-02T00:00:00Z"))),
            ("2027-01-01T15:00:00Z", None),
        ];
        for (t, until) in cases {
            assert_eq!(frozen_until(&w, at(t)).map(|(u, _)| u), until, "{t}");
        }
        // Sunday to the week's end, and Monday from its start, join.
        let w = windows(json!([
            {"weekly": {"day": "sun", "from": "22:00", "to": "24:00"}},
            {"weekly": {"day": "mon", "from": "00:00", "to": "06:00"}},
        ]));
        // 2026-12-27 is a Sunday.
        assert_eq!(
            frozen_until(&w, at("2026-12-27T23:00:00Z")).map(|(u, _)| u),
            Some(at("2026-12-28T06:00:00Z"))
        );
        assert_eq!(
            frozen_until(&w, at("2026-12-28T05:59:00Z")).map(|(u, _)| u),
            Some(at("2026-12-28T06:00:00Z"))
        );
        assert_eq!(frozen_until(&w, at("2026-12-28T06:00:00Z")), None);
        assert_eq!(frozen_until(&w, at("2026-12-27T21:59:59Z")), None);
    }

    #[test]
    fn ranges_and_joined_windows() {
        let w = windows(json!([
            {"from": "2026-12-24T00:00:00Z", "to": "2026-12-27T00:00:00Z"},
            {"from": "2026-12-26T12:00:00Z", "to": "2026-12-28T00:00:00Z"},
        ]));
        assert_eq!(frozen_until(&w, at("2026-12-23T23:59:59Z")), None);
        let (until, first) = frozen_until(&w, at("2026-12-24T00:00:00Z")).unwrap();
        assert_eq!(until, at("2026-12-28T00:00:00Z"));
        assert_eq!(
            first.describe(),
            "2026-12-24T00:00:00Z to 2026-12-27T00:00:00Z"
        );
        assert_eq!(frozen_until(&w, at("2026-12-28T00:00:00Z")), None);
        assert_eq!(
            serde_json::to_value(&w[0]).unwrap(),
            json!({"from": "2026-12-24T00:00:00Z", "to": "2026-12-27T00:00:00Z"})
        );
    }

    #[test]
    fn bad_windows_are_named() {
        for (v, words) in [
            (json!({}), "must be a list"),
            (json!([1]), "window 1: must be"),
            (
                json!([{"from": "2026-12-24T00:00:00Z"}]),
                "`to` is required",
            ),
            (
                json!([{"from": "2026-12-24T00:00:00Z", "to": "2026-12-23T00:00:00Z"}]),
                "`to` must be after `from`",
            ),
            (
                json!([{"from": "tomorrow", "to": "2026-12-23T00:00:00Z"}]),
                "`from` must be a UTC time",
            ),
            (
                json!([{"from": "2026-12-24T00:00:00Z", "to": "2026-12-25T00:00:00Z", "x": 1}]),
                "unknown field `x`",
            ),
            (
                json!([{"weekly": {"day": "friday", "from": "16:00", "to": "24:00"}}]),
                "`weekly.day`",
            ),
            (
                json!([{"weekly": {"day": "fri", "from": "24:00", "to": "24:00"}}]),
                "`weekly.from`",
            ),
            (
                json!([{"weekly": {"day": "fri", "from": "16:00", "to": "24:30"}}]),
                "`weekly.to`",
            ),
            (
                json!([{"weekly": {"day": "fri", "from": "16:00", "to": "15:00"}}]),
                "after `weekly.from`",
            ),
            (
                json!([{"weekly": {"day": "fri", "from": "6:00", "to": "15:00"}}]),
                "`weekly.from`",
            ),
            (
                json!([{"weekly": {"day": "fri", "from": "16:00"}}]),
                "`weekly.to` is required",
            ),
            (
                json!([{"weekly": {"day": "fri", "from": "16:00", "to": "17:00", "tz": "CET"}}]),
                "unknown field `weekly.tz`",
            ),
            (
                json!([{"weekly": {"day": "fri", "from": "16:00", "to": "17:00"}, "from": "x"}]),
                "only the field `weekly`",
            ),
        ] {
            let e = parse_windows(&v).unwrap_err();
            assert_eq!(e.field, "progression.freeze", "{v}");
            assert!(e.message.contains(words), "{v}: {}", e.message);
        }
        let w = windows(json!([{"weekly": {"day": "fri", "from": "16:00", "to": "24:00"}}]));
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!([{"weekly": {"day": "fri", "from": "16:00", "to": "24:00"}}])
        );
        assert_eq!(w[0].describe(), "weekly fri 16:00–24:00 UTC");
    }
}
