//! Times and durations, the one place they are formatted and parsed: RFC 3339 in UTC with
//! milliseconds (`2026-11-29T01:02:03.456Z`, backups and pairs) or seconds
//! (`2026-11-29T01:02:03Z`, volumes, snapshots, jobs, and the backup layer's messages) on
//! output; RFC 3339 with any offset (or a bare date, meaning midnight UTC) on input; durations
//! like `30d` or `12h 30m`. The API and the CLI use it too, so that the CLI can refuse a bad
//! time as a usage error before asking the daemon.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::retention::civil_from_unix;

/// Milliseconds since the epoch now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The last millisecond humantime (and so this API) reads: 9999-12-31T23:59:59.999Z.
pub const TIME_MAX_MS: u64 = 253_402_300_800_000 - 1;

/// `ms` since the epoch as RFC 3339 UTC with milliseconds. Total: any `u64` prints (years past
/// 9999 with more digits), so a stored value can never make a response fail.
pub fn format_ms(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(ms / 1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

/// Seconds since the epoch as RFC 3339 UTC with second precision, e.g. `2026-11-28T13:05:09Z`.
/// Total, like [`format_ms`].
pub fn format_secs(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// The basic ISO 8601 form for names, e.g. `20261128T130509Z`.
pub fn format_compact(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Reads an RFC 3339 time (`2026-11-29T01:02:03Z`, `2026-11-29T01:02:03.456+02:00`, lower case
/// `t`/`z`, or a space for the `T`) or a bare date (`2026-11-29`, midnight UTC) as milliseconds
/// since the epoch. Times before 1970 or after 9999 are refused.
pub fn parse_time(input: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!(
            "invalid time {input:?}: {why} (expected RFC 3339, e.g. 2026-11-29T01:02:03Z, or a \
             date, e.g. 2026-11-29)"
        )
    };
    let s = input.trim();
    if !s.is_ascii() {
        return Err(bad("unexpected characters"));
    }
    let mut s = s.to_ascii_uppercase();
    if s.len() == 10 {
        s.push_str("T00:00:00Z");
    }
    // An offset other than Z: read it, parse the time as UTC, then shift.
    let mut offset_secs: i64 = 0;
    if s.len() > 19 && !s.ends_with('Z') {
        let tail = &s[s.len() - 6..];
        let b = tail.as_bytes();
        if (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            let hh: i64 = tail[1..3].parse().map_err(|_| bad("bad offset"))?;
            let mm: i64 = tail[4..6].parse().map_err(|_| bad("bad offset"))?;
            if hh > 23 || mm > 59 || !tail[1..3].bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad("bad offset"));
            }
            offset_secs = (hh * 3600 + mm * 60) * if b[0] == b'-' { -1 } else { 1 };
            s.truncate(s.len() - 6);
            s.push('Z');
        }
    }
    let t = humantime::parse_rfc3339_weak(&s).map_err(|e| bad(&e.to_string()))?;
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| bad("before 1970"))?;
    // Whole milliseconds: a finer fraction is dropped.
    let ms = i128::from(u64::try_from(d.as_millis()).map_err(|_| bad("out of range"))?)
        - i128::from(offset_secs) * 1000;
    if ms < 0 {
        return Err(bad("before 1970"));
    }
    if ms > i128::from(TIME_MAX_MS) {
        return Err(bad("after 9999"));
    }
    Ok(ms as u64)
}

/// Reads a duration (`30d`, `12h`, `1w 2d`, `90min`) as milliseconds; zero is refused.
pub fn parse_duration(input: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(input.trim()).map_err(|e| {
        format!("invalid duration {input:?}: {e} (expected e.g. 30d, 12h, 1w 2d, 90min)")
    })?;
    let ms = u64::try_from(d.as_millis())
        .map_err(|_| format!("invalid duration {input:?}: too long"))?;
    if ms == 0 {
        return Err(format!(
            "invalid duration {input:?}: must be at least 1 millisecond"
        ));
    }
    Ok(ms)
}

/// `now + duration`, refused past the last time the API can write.
pub fn after(now_ms: u64, duration_ms: u64, what: &str) -> Result<u64, String> {
    match now_ms.checked_add(duration_ms) {
        Some(t) if t <= TIME_MAX_MS => Ok(t),
        _ => Err(format!("{what} ends after the year 9999")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_795_906_923_456), "2026-11-28T23:02:03.456Z");
        assert_eq!(format_ms(86_400_000), "1970-01-02T00:00:00.000Z");
        assert_eq!(format_ms(TIME_MAX_MS), "9999-12-31T23:59:59.999Z");
        // Never panics, whatever is stored.
        assert!(format_ms(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn formats_with_seconds_and_compact() {
        assert_eq!(format_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_secs(1_795_871_109), "2026-11-28T13:05:09Z");
        assert_eq!(format_secs(4_107_542_400), "2100-03-01T00:00:00Z"); // 2100 is not leap
        assert_eq!(format_secs(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(format_secs(253_402_300_800), "10000-01-01T00:00:00Z");
        assert!(format_secs(u64::MAX).ends_with("T07:00:15Z"));
        assert_eq!(format_compact(1_795_871_109), "20261128T130509Z");
    }

    #[test]
    fn parses_rfc3339_offsets_and_dates() {
        let t = 1_795_906_923_456;
        assert_eq!(parse_time("2026-11-28T23:02:03.456Z"), Ok(t));
        assert_eq!(parse_time("2026-11-28t23:02:03.456z"), Ok(t));
        assert_eq!(parse_time("2026-11-29T01:02:03.456+02:00"), Ok(t));
        assert_eq!(parse_time("2026-11-28T22:02:03.456-01:00"), Ok(t));
        assert_eq!(parse_time("2026-11-28 23:02:03.456"), Ok(t));
        assert_eq!(parse_time("2026-11-28T23:02:03Z"), Ok(t - 456));
        assert_eq!(parse_time("2026-11-28"), Ok(1_795_824_000_000));
        assert_eq!(format_ms(parse_time(&format_ms(t)).unwrap()), format_ms(t));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-28T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2026-11-28T23:02:03+0200",
            "2026-11-28T23:02:03+99:00",
            "2026-11-28T23:02:03é",
            "10000-01-01T00:00:00Z",
        ] {
            let e = parse_time(bad).unwrap_err();
            assert!(e.contains("invalid time"), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_duration("12h 30m"), Ok(45_000_000));
        assert!(parse_duration("0s").is_err());
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(parse_duration("").is_err());
        assert!(after(TIME_MAX_MS, 1, "keep-for").is_err());
        assert_eq!(after(1, 2, "x"), Ok(3));
    }
}
