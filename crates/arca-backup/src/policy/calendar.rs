//! Calendar events in the systemd/Proxmox syntax (`hourly`, `mon..fri 02:00`, `*:0/15`,
//! `*-*-01 03:30`, `*:*:0/10`), evaluated in a time zone.
//!
//! Grammar (the README's "Backup policies" section repeats it for users):
//!
//! ```text
//! event     = shorthand | [weekdays] [date] [time]        (at least one part, any order kept)
//! shorthand = minutely | hourly | daily | weekly | monthly | quarterly | semiannually
//!           | yearly | annually
//! weekdays  = day ["," day]... with day = NAME | NAME..NAME (mon, tue, ... or monday, ...)
//! date      = [YEAR "-"] MONTH "-" DAY
//! time      = HOUR ":" MINUTE [":" SECOND]
//! a field   = "*" | item ["," item]...
//! item      = N | N..M | N/STEP | N..M/STEP | */STEP
//! ```
//!
//! Omitted parts default as in systemd: no date is every day, no time is 00:00:00, no
//! seconds is :00. Ranges: year 1970..9999, month 1..12, day 1..31, hour 0..23, minute and
//! second 0..59.
//!
//! Evaluation is in civil (wall-clock) time of the zone. Across DST changes:
//! - a civil time that does not exist (the spring-forward gap) fires once, at the transition
//!   (a daily 02:30 in Europe/Berlin runs at 03:00 on that day); several slots inside one gap
//!   fire once together;
//! - a civil time that occurs twice (the fall-back overlap) fires once, at its first
//!   occurrence; the repeated hour has no slots of its own.
//!
//! Fire times therefore always increase and never repeat. In UTC (the default) none of this
//! applies.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// Longest calendar text accepted.
pub const CALENDAR_TEXT_MAX: usize = 256;

const YEAR_MIN: i32 = 1970;
const YEAR_MAX: i32 = 9999;

/// One field's allowed values as a bit set (bit v set: v matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bits(u64);

impl Bits {
    fn has(self, v: u32) -> bool {
        v < 64 && self.0 & (1 << v) != 0
    }

    /// The smallest allowed value >= v (within 0..64).
    fn next_from(self, v: u32) -> Option<u32> {
        if v >= 64 {
            return None;
        }
        let rest = self.0 >> v;
        (rest != 0).then(|| v + rest.trailing_zeros())
    }
}

/// A field item of years: start..=end every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct YearItem {
    start: i32,
    end: i32,
    step: i32,
}

/// A parsed calendar event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// `None`: every year.
    years: Option<Vec<YearItem>>,
    months: Bits,
    days: Bits,
    /// Bit 0 = Monday.
    weekdays: Bits,
    hours: Bits,
    minutes: Bits,
    seconds: Bits,
}

fn all(lo: u32, hi: u32) -> Bits {
    Bits((lo..=hi).fold(0, |b, v| b | (1 << v)))
}

const WEEKDAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WEEKDAY_LONG: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn weekday_index(s: &str) -> Result<u32, String> {
    let l = s.to_ascii_lowercase();
    WEEKDAY_NAMES
        .iter()
        .position(|n| *n == l)
        .or_else(|| WEEKDAY_LONG.iter().position(|n| *n == l))
        .map(|i| i as u32)
        .ok_or_else(|| format!("{s:?} is not a weekday (mon, tue, ... sun)"))
}

fn number(s: &str, what: &str, lo: u32, hi: u32) -> Result<u32, String> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {s:?} is not a number"));
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{what} {s:?} is not a number"))?;
    if v < lo || v > hi {
        return Err(format!("{what} {v} is outside {lo}..{hi}"));
    }
    Ok(v)
}

/// Parses one field (`*`, `1,5`, `1..5`, `0/15`, `*/2`, `8..18/2`) into (start, end, step)
/// items within lo..=hi.
fn field_items(s: &str, what: &str, lo: u32, hi: u32) -> Result<Vec<(u32, u32, u32)>, String> {
    if s.is_empty() {
        return Err(format!("empty {what}"));
    }
    let mut out = Vec::new();
    for item in s.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => {
                let step = number(st, &format!("{what} step"), 1, hi.max(1))?;
                (r, step)
            }
            None => (item, 1),
        };
        let stepped = item.contains('/');
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once("..") {
            let a = number(a, what, lo, hi)?;
            let b = number(b, what, lo, hi)?;
            if a > b {
                return Err(format!("{what} range {a}..{b} is empty"));
            }
            (a, b)
        } else {
            let a = number(range, what, lo, hi)?;
            // `N/STEP` repeats from N to the end of the field.
            (a, if stepped { hi } else { a })
        };
        out.push((a, b, step));
    }
    Ok(out)
}

fn field_bits(s: &str, what: &str, lo: u32, hi: u32) -> Result<Bits, String> {
    let mut bits = 0u64;
    for (a, b, step) in field_items(s, what, lo, hi)? {
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(Bits(bits))
}

fn weekday_bits(s: &str) -> Result<Bits, String> {
    let mut bits = 0u64;
    for item in s.split(',') {
        let (a, b) = match item.split_once("..") {
            Some((a, b)) => (weekday_index(a)?, weekday_index(b)?),
            None => {
                let a = weekday_index(item)?;
                (a, a)
            }
        };
        if a > b {
            return Err(format!("weekday range {item:?} runs backwards"));
        }
        for v in a..=b {
            bits |= 1 << v;
        }
    }
    Ok(Bits(bits))
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A civil second, field by field (the search works on these, not on instants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Civil {
    y: i32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
}

impl Civil {
    fn from_jiff(dt: DateTime) -> Civil {
        Civil {
            y: dt.year() as i32,
            mo: dt.month() as u32,
            d: dt.day() as u32,
            h: dt.hour() as u32,
            mi: dt.minute() as u32,
            s: dt.second() as u32,
        }
    }

    fn to_jiff(self) -> Option<DateTime> {
        DateTime::new(
            self.y as i16,
            self.mo as i8,
            self.d as i8,
            self.h as i8,
            self.mi as i8,
            self.s as i8,
            0,
        )
        .ok()
    }

    fn next_day(&mut self) {
        self.h = 0;
        self.mi = 0;
        self.s = 0;
        self.d += 1;
        if self.d > days_in_month(self.y, self.mo) {
            self.d = 1;
            self.next_month_start();
        }
    }

    fn next_month_start(&mut self) {
        self.d = 1;
        self.h = 0;
        self.mi = 0;
        self.s = 0;
        self.mo += 1;
        if self.mo > 12 {
            self.mo = 1;
            self.y += 1;
        }
    }

    fn plus_one_second(mut self) -> Civil {
        self.s += 1;
        if self.s == 60 {
            self.s = 0;
            self.mi += 1;
            if self.mi == 60 {
                self.mi = 0;
                self.h += 1;
                if self.h == 24 {
                    self.next_day();
                }
            }
        }
        self
    }
}

impl Calendar {
    /// Parses a calendar event; the error says what is wrong with which part.
    pub fn parse(text: &str) -> Result<Calendar, String> {
        if text.len() > CALENDAR_TEXT_MAX {
            return Err(format!(
                "calendar event is longer than {CALENDAR_TEXT_MAX} characters"
            ));
        }
        let t = text.trim();
        let expanded = match t.to_ascii_lowercase().as_str() {
            "minutely" => "*-*-* *:*:00",
            "hourly" => "*-*-* *:00:00",
            "daily" => "*-*-* 00:00:00",
            "weekly" => "mon *-*-* 00:00:00",
            "monthly" => "*-*-01 00:00:00",
            "quarterly" => "*-01,04,07,10-01 00:00:00",
            "semiannually" => "*-01,07-01 00:00:00",
            "yearly" | "annually" => "*-01-01 00:00:00",
            _ => t,
        };
        Calendar::parse_parts(expanded).map_err(|e| format!("calendar event {text:?}: {e}"))
    }

    fn parse_parts(t: &str) -> Result<Calendar, String> {
        let parts: Vec<&str> = t.split_whitespace().collect();
        if parts.is_empty() {
            return Err("empty".into());
        }
        let (mut weekdays, mut date, mut time) = (None, None, None);
        for p in parts {
            let slot = if p.contains(':') {
                &mut time
            } else if p.contains('-') {
                &mut date
            } else if p.starts_with(|c: char| c.is_ascii_alphabetic()) {
                &mut weekdays
            } else {
                return Err(format!(
                    "{p:?} is neither weekdays, a date (Y-M-D) nor a time (H:M[:S])"
                ));
            };
            if slot.replace(p).is_some() {
                return Err(format!("{p:?}: that part is given twice"));
            }
        }
        let mut c = Calendar {
            years: None,
            months: all(1, 12),
            days: all(1, 31),
            weekdays: all(0, 6),
            hours: Bits(1),
            minutes: Bits(1),
            seconds: Bits(1),
        };
        if let Some(w) = weekdays {
            c.weekdays = weekday_bits(w)?;
        }
        if let Some(d) = date {
            let f: Vec<&str> = d.split('-').collect();
            let (y, m, dd) = match f.as_slice() {
                [m, d] => (None, *m, *d),
                [y, m, d] => (Some(*y), *m, *d),
                _ => return Err(format!("date {d:?} is not [YEAR-]MONTH-DAY")),
            };
            if let Some(y) = y.filter(|y| *y != "*") {
                let items = field_items(y, "year", YEAR_MIN as u32, YEAR_MAX as u32)?;
                c.years = Some(
                    items
                        .into_iter()
                        .map(|(a, b, s)| YearItem {
                            start: a as i32,
                            end: b as i32,
                            step: s as i32,
                        })
                        .collect(),
                );
            }
            c.months = field_bits(m, "month", 1, 12)?;
            c.days = field_bits(dd, "day", 1, 31)?;
        }
        if let Some(tm) = time {
            let f: Vec<&str> = tm.split(':').collect();
            let (h, m, s) = match f.as_slice() {
                [h, m] => (*h, *m, "0"),
                [h, m, s] => (*h, *m, *s),
                _ => return Err(format!("time {tm:?} is not HOUR:MINUTE[:SECOND]")),
            };
            c.hours = field_bits(h, "hour", 0, 23)?;
            c.minutes = field_bits(m, "minute", 0, 59)?;
            c.seconds = field_bits(s, "second", 0, 59)?;
        }
        let possible = (1..=12)
            .any(|m| c.months.has(m) && (1..=days_in_month(2000, m)).any(|d| c.days.has(d)));
        if !possible {
            return Err("no month has the days it names".into());
        }
        Ok(c)
    }

    fn year_ok(&self, y: i32) -> bool {
        match &self.years {
            None => true,
            Some(items) => items
                .iter()
                .any(|i| y >= i.start && y <= i.end && (y - i.start) % i.step == 0),
        }
    }

    fn date_ok(&self, c: &Civil) -> bool {
        if !self.days.has(c.d) || c.d > days_in_month(c.y, c.mo) {
            return false;
        }
        let Ok(date) = Date::new(c.y as i16, c.mo as i8, c.d as i8) else {
            return false;
        };
        self.weekdays
            .has(date.weekday().to_monday_zero_offset() as u32)
    }

    /// The first matching civil second at or after `c`, or `None` before year 9999 ends.
    fn next_civil(&self, mut c: Civil) -> Option<Civil> {
        loop {
            if c.y > YEAR_MAX {
                return None;
            }
            if !self.year_ok(c.y) {
                c = Civil {
                    y: c.y + 1,
                    mo: 1,
                    d: 1,
                    h: 0,
                    mi: 0,
                    s: 0,
                };
                continue;
            }
            if !self.months.has(c.mo) {
                match self.months.next_from(c.mo).filter(|m| *m <= 12) {
                    Some(m) => {
                        c.mo = m;
                        c.d = 1;
                        c.h = 0;
                        c.mi = 0;
                        c.s = 0;
                    }
                    None => {
                        c.mo = 12;
                        c.next_month_start();
                    }
                }
                continue;
            }
            if !self.date_ok(&c) {
                c.next_day();
                continue;
            }
            let Some(h) = self.hours.next_from(c.h).filter(|h| *h < 24) else {
                c.next_day();
                continue;
            };
            if h != c.h {
                c.h = h;
                c.mi = 0;
                c.s = 0;
            }
            let Some(mi) = self.minutes.next_from(c.mi).filter(|m| *m < 60) else {
                c.mi = 59;
                c.s = 59;
                c = c.plus_one_second();
                continue;
            };
            if mi != c.mi {
                c.mi = mi;
                c.s = 0;
            }
            let Some(s) = self.seconds.next_from(c.s).filter(|s| *s < 60) else {
                c.s = 59;
                c = c.plus_one_second();
                continue;
            };
            c.s = s;
            return Some(c);
        }
    }

    /// The instant a matching civil time fires at in `tz` (see the module documentation).
    fn resolve(tz: &TimeZone, c: Civil) -> Option<Timestamp> {
        let dt = c.to_jiff()?;
        match tz.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
            // The first occurrence: the offset in force before the clocks went back.
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
            // Read with the later offset the time lies just before the gap; the transition
            // that opens the gap comes next.
            AmbiguousOffset::Gap { after, .. } => {
                let before_gap = after.to_timestamp(dt).ok()?;
                tz.following(before_gap).next().map(|t| t.timestamp())
            }
        }
    }

    /// The first fire time strictly after `after_ms` (milliseconds since the epoch), or
    /// `None` when the event never fires again (before year 9999 ends).
    pub fn next_after(&self, tz: &TimeZone, after_ms: u64) -> Option<u64> {
        let after = Timestamp::from_millisecond(i64::try_from(after_ms).ok()?).ok()?;
        // The civil time of `after` itself fires at or before it (a time of the repeated
        // hour resolves to its first occurrence), and resolution keeps civil order, so the
        // search may start there.
        let mut c = Civil::from_jiff(tz.to_datetime(after));
        loop {
            let m = self.next_civil(c)?;
            let t = Calendar::resolve(tz, m)?;
            let t_ms = u64::try_from(t.as_millisecond()).ok()?;
            if t_ms > after_ms {
                return Some(t_ms);
            }
            c = m.plus_one_second();
        }
    }

    /// The next `count` fire times after `after_ms`.
    pub fn upcoming(&self, tz: &TimeZone, after_ms: u64, count: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(count);
        let mut at = after_ms;
        while out.len() < count {
            match self.next_after(tz, at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }
}

/// A time zone by IANA name (`UTC`, `Europe/Berlin`); the error names it.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| {
        format!("unknown time zone {name:?} (an IANA name such as UTC or Europe/Berlin)")
    })
}

/// An instant in a zone by name, with its offset (`2026-03-29T03:00:00+02:00`); in UTC when
/// the zone is unknown.
pub fn format_local(ms: u64, zone: &str) -> String {
    let tz = time_zone(zone).unwrap_or(TimeZone::UTC);
    match Timestamp::from_millisecond(ms.min(i64::MAX as u64) as i64) {
        Ok(t) => t
            .to_zoned_datetime(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        Err(_) => crate::time::format_ms(ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str, tz: &TimeZone) -> u64 {
        let dt: DateTime = s.parse().unwrap();
        tz.to_ambiguous_timestamp(dt)
            .compatible()
            .unwrap()
            .as_millisecond() as u64
    }

    fn show(ms: u64, tz: &TimeZone) -> String {
        let t = Timestamp::from_millisecond(ms as i64).unwrap();
        let z = t.to_zoned_datetime(tz.clone());
        format!("{} {}", z.datetime(), z.offset())
    }

    fn next_n(cal: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        let tz = time_zone(zone).unwrap();
        let c = Calendar::parse(cal).unwrap();
        c.upcoming(&tz, at(from, &tz), n)
            .into_iter()
            .map(|t| show(t, &tz))
            .collect()
    }

    #[test]
    fn shorthands_and_systemd_examples() {
        assert_eq!(
            next_n("hourly", "UTC", "2026-12-03T15:37:00", 2),
            ["2026-12-03T16:00:00 +00", "2026-12-03T17:00:00 +00"]
        );
        assert_eq!(
            next_n("mon..fri 02:00", "UTC", "2026-12-04T03:00:00", 2),
            ["2026-12-07T02:00:00 +00", "2026-12-08T02:00:00 +00"]
        );
        assert_eq!(
            next_n("*:0/15", "UTC", "2026-12-03T15:37:00", 3),
            [
                "2026-12-03T15:45:00 +00",
                "2026-12-03T16:00:00 +00",
                "2026-12-03T16:15:00 +00"
            ]
        );
        assert_eq!(
            next_n("*-*-01 03:30", "UTC", "2026-12-03T00:00:00", 2),
            ["2027-01-01T03:30:00 +00", "2027-02-01T03:30:00 +00"]
        );
        assert_eq!(
            next_n("*:*:0/10", "UTC", "2026-12-03T15:37:05", 2),
            ["2026-12-03T15:37:10 +00", "2026-12-03T15:37:20 +00"]
        );
        assert_eq!(
            next_n("*-02-29", "UTC", "2026-01-01T00:00:00", 1),
            ["2028-02-29T00:00:00 +00"]
        );
        assert_eq!(
            next_n(
                "sat,sun 2027..2028-*-* 12:00",
                "UTC",
                "2026-12-03T00:00:00",
                1
            ),
            ["2027-01-02T12:00:00 +00"]
        );
        assert_eq!(
            next_n("monthly", "UTC", "2026-12-31T23:59:59", 1),
            ["2027-01-01T00:00:00 +00"]
        );
    }

    #[test]
    fn bad_events_are_refused_with_the_part_named() {
        for (text, says) in [
            ("", "empty"),
            ("25:00", "hour 25 is outside 0..23"),
            ("*-13-01", "month 13"),
            ("*-02-30", "no month has"),
            ("funday", "not a weekday"),
            ("fri..mon", "backwards"),
            ("*:0/0", "step 0 is outside"),
            ("10:00 11:00", "given twice"),
            ("1/2/3", "neither weekdays"),
            ("*:5..1", "empty"),
        ] {
            let e = Calendar::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn past_the_last_year_there_is_no_next_run() {
        let c = Calendar::parse("2027-01-01 00:00").unwrap();
        let tz = TimeZone::UTC;
        let first = c.next_after(&tz, 0).unwrap();
        assert_eq!(c.next_after(&tz, first), None);
    }

    #[test]
    fn spring_forward_gap_fires_once_at_the_transition() {
        // Europe/Berlin jumps from 02:00 +01 to 03:00 +02 on 2026-03-29.
        assert_eq!(
            next_n("02:30", "Europe/Berlin", "2026-03-28T12:00:00", 3),
            [
                "2026-03-29T03:00:00 +02",
                "2026-03-30T02:30:00 +02",
                "2026-03-31T02:30:00 +02"
            ]
        );
        // Four quarter-hour slots fall into the gap: one run at the transition, then on.
        assert_eq!(
            next_n("*:0/15", "Europe/Berlin", "2026-03-29T01:40:00", 4),
            [
                "2026-03-29T01:45:00 +01",
                "2026-03-29T03:00:00 +02",
                "2026-03-29T03:15:00 +02",
                "2026-03-29T03:30:00 +02"
            ]
        );
    }

    #[test]
    fn fall_back_overlap_fires_once_at_the_first_occurrence() {
        // Europe/Berlin goes back from 03:00 +02 to 02:00 +01 on 2026-10-25.
        assert_eq!(
            next_n("02:30", "Europe/Berlin", "2026-10-24T12:00:00", 2),
            ["2026-10-25T02:30:00 +02", "2026-10-26T02:30:00 +01"]
        );
        // Hourly: 02:00 once (first pass), the repeated hour has no slot, then 03:00.
        assert_eq!(
            next_n("hourly", "Europe/Berlin", "2026-10-25T01:30:00", 3),
            [
                "2026-10-25T02:00:00 +02",
                "2026-10-25T03:00:00 +01",
                "2026-10-25T04:00:00 +01"
            ]
        );
        // Asked from inside the second pass: the next run is after the overlap.
        let tz = time_zone("Europe/Berlin").unwrap();
        let c = Calendar::parse("hourly").unwrap();
        let second_pass: Timestamp = "2026-10-25T01:10:00Z".parse().unwrap(); // 02:10 +01
        let n = c
            .next_after(&tz, second_pass.as_millisecond() as u64)
            .unwrap();
        assert_eq!(show(n, &tz), "2026-10-25T03:00:00 +01");
    }

    #[test]
    fn fire_times_always_increase_across_a_year_of_changes() {
        let tz = time_zone("America/New_York").unwrap();
        let c = Calendar::parse("*:0/20").unwrap();
        // Just before midnight, so the year's first slot counts.
        let start = at("2026-01-01T00:00:00", &tz) - 1;
        let times = c.upcoming(&tz, start, 365 * 72);
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        // A year has 365 * 72 slots; the three slots of the spring gap fire at 03:00 with
        // 03:00's own slot (four slots, one run), the autumn overlap adds none.
        let end = at("2027-01-01T00:00:00", &tz);
        assert_eq!(times.iter().filter(|t| **t < end).count(), 365 * 72 - 3);
    }
}
