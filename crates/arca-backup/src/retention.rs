//! Retention planning for backup pruning: which backups to keep, and why.
//!
//! [`plan`] is pure (no I/O, no clock, std only): the caller passes the candidates, the
//! policy and "now", and gets one [`Decision`] per candidate, in the input order. The
//! semantics follow restic's `forget` and Proxmox's prune, all in UTC:
//!
//! * Candidates are ranked newest first by creation, `(generation, time_unix, id)`: a clock
//!   moved back gives a newer backup an earlier point in time, but never a lower generation.
//!   The time and then the id break ties (only candidates from different counters tie), so
//!   the outcome does not depend on input order.
//! * `keep_last N` keeps the N newest backups ([`Reason::Last`], rank 1 = newest).
//! * `keep_hourly`/`daily`/`weekly`/`monthly`/`yearly N` place each backup in the period
//!   holding its point in time and keep, for each of the N most recent periods that
//!   *contain* a backup, that period's newest backup by the ranking above; periods without
//!   backups do not use up the count. Weeks are ISO-8601 weeks (Monday first, labelled with
//!   the ISO week-year, e.g. `2026-W01` starts on 2025-12-29); years and months are civil
//!   ones.
//! * A count of 0 is allowed and keeps nothing for that rule. Giving no count rule at all
//!   is an error: a prune without rules would remove every unprotected backup, which is
//!   almost certainly a caller mistake. `keep_newest_verified` alone does not count as a
//!   rule (callers turn it on by default, so it would defeat that check).
//! * The rules are evaluated independently over all candidates, so one backup may carry
//!   several reasons; they are listed in the order Last, Hourly, Daily, Weekly, Monthly,
//!   Yearly, then the protections Hold, KeepUntil, LockUntil.
//! * Protections keep a backup on top of the rules, and do not use up any rule's count:
//!   a hold, a `keep_until` later than now, a `lock_until` later than now. A time equal
//!   to now has expired.
//! * `keep_newest_verified` keeps the newest backup whose last verification was good, so
//!   that pruning never leaves only unverified copies. It is added only when nothing else
//!   keeps that backup, so the reasons stay minimal: [`Reason::NewestVerified`] therefore
//!   only ever appears alone.
//! * A backup is kept iff it has at least one reason.
//!
//! Calendar arithmetic is the proleptic Gregorian calendar on day numbers, done in `i64`,
//! so every `u64` timestamp (including 0 and `u64::MAX`) is handled without overflow or
//! panic; years past 9999 simply print with more digits.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

const SECS_PER_HOUR: u64 = 3_600;
const SECS_PER_DAY: u64 = 86_400;

/// One backup as retention sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    pub id: u64,
    /// Creation order among the candidates (a volume's backup generation): higher is newer.
    pub generation: u64,
    /// The backup's point in time, seconds since the Unix epoch (UTC).
    pub time_unix: u64,
    /// The last verification of this backup succeeded.
    pub verified_good: bool,
    /// An explicit hold: kept whatever the policy says.
    pub hold: bool,
    /// Retention set on the backup itself: kept while this is later than now.
    pub keep_until_unix: Option<u64>,
    /// Immutability lock: kept while this is later than now.
    pub lock_until_unix: Option<u64>,
}

/// How many backups each rule keeps. `None` means the rule is not in use.
#[derive(Default, Clone, Debug)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Keep the newest backup whose last verification was good, even if no rule keeps it
    /// (default true in callers). Only recorded as a reason when nothing else keeps it.
    pub keep_newest_verified: bool,
}

impl Policy {
    /// Refuses a policy without any count rule: its prune would remove every unprotected
    /// backup.
    pub fn check(&self) -> Result<(), String> {
        if self.keep_last.is_some() || Period::ALL.iter().any(|p| p.count(self).is_some()) {
            return Ok(());
        }
        Err(
            "retention policy has no keep rule (keep-last, keep-hourly, keep-daily, \
             keep-weekly, keep-monthly or keep-yearly): refusing to plan a prune that would \
             remove every unprotected backup"
                .to_string(),
        )
    }
}

/// Why a backup is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Among the `keep_last` newest; rank 1 is the newest.
    Last { rank: u32 },
    /// Newest of its hour, e.g. `2026-11-28T13`.
    Hourly(String),
    /// Newest of its day, e.g. `2026-11-28`.
    Daily(String),
    /// Newest of its ISO week, e.g. `2026-W48`.
    Weekly(String),
    /// Newest of its month, e.g. `2026-11`.
    Monthly(String),
    /// Newest of its year, e.g. `2026`.
    Yearly(String),
    /// The newest backup known to verify good, kept by `keep_newest_verified`.
    NewestVerified,
    /// Held explicitly.
    Hold,
    /// Its own retention time has not passed yet.
    KeepUntil(u64),
    /// Its immutability lock has not expired yet.
    LockUntil(u64),
}

impl Reason {
    /// Short human text, e.g. `keep-daily 2026-11-28` or `keep-until 2026-12-01T00:00:00Z`.
    pub fn describe(&self) -> String {
        match self {
            Reason::Last { rank } => format!("keep-last #{rank}"),
            Reason::Hourly(b) => format!("keep-hourly {b}"),
            Reason::Daily(b) => format!("keep-daily {b}"),
            Reason::Weekly(b) => format!("keep-weekly {b}"),
            Reason::Monthly(b) => format!("keep-monthly {b}"),
            Reason::Yearly(b) => format!("keep-yearly {b}"),
            Reason::NewestVerified => "newest verified backup".to_string(),
            Reason::Hold => "hold".to_string(),
            Reason::KeepUntil(t) => format!("keep-until {}", crate::time::format_secs(*t)),
            Reason::LockUntil(t) => format!("lock-until {}", crate::time::format_secs(*t)),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The verdict for one candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub id: u64,
    pub keep: bool,
    /// Why it is kept; empty iff the backup is to be removed.
    pub reasons: Vec<Reason>,
}

/// Plans a prune: one decision per candidate, in the order of `candidates`.
///
/// Fails only when the policy has no count rule at all (see the module documentation).
pub fn plan(
    candidates: &[Candidate],
    policy: &Policy,
    now_unix: u64,
) -> Result<Vec<Decision>, String> {
    policy.check()?;

    // Indices newest first; the stable sort leaves exact duplicates in input order.
    let rank_key = |i: usize| {
        let c = &candidates[i];
        (c.generation, c.time_unix, c.id)
    };
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| Reverse(rank_key(i)));

    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); candidates.len()];

    if let Some(n) = policy.keep_last {
        // Zipping with 1..=n stops after n and yields the rank without casts.
        for (&i, rank) in order.iter().zip(1..=n) {
            reasons[i].push(Reason::Last { rank });
        }
    }

    for period in Period::ALL {
        let Some(count) = period.count(policy) else {
            continue;
        };
        // Each period's newest backup: walking newest first, the first seen in it. Times
        // need not fall while walking (a clock moved back), so periods are ordered apart.
        let mut newest_of: BTreeMap<Reverse<i64>, usize> = BTreeMap::new();
        for &i in &order {
            newest_of
                .entry(Reverse(period.key(candidates[i].time_unix)))
                .or_insert(i);
        }
        for &i in newest_of.values().take(count as usize) {
            reasons[i].push(period.reason(candidates[i].time_unix));
        }
    }

    for (c, r) in candidates.iter().zip(reasons.iter_mut()) {
        if c.hold {
            r.push(Reason::Hold);
        }
        if let Some(t) = c.keep_until_unix.filter(|&t| t > now_unix) {
            r.push(Reason::KeepUntil(t));
        }
        if let Some(t) = c.lock_until_unix.filter(|&t| t > now_unix) {
            r.push(Reason::LockUntil(t));
        }
    }

    if policy.keep_newest_verified
        && let Some(&i) = order.iter().find(|&&i| candidates[i].verified_good)
        && reasons[i].is_empty()
    {
        reasons[i].push(Reason::NewestVerified);
    }

    Ok(candidates
        .iter()
        .zip(reasons)
        .map(|(c, reasons)| Decision {
            id: c.id,
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect())
}

/// The calendar periods of the bucket rules, in reason order.
#[derive(Clone, Copy)]
enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    fn count(self, policy: &Policy) -> Option<u32> {
        match self {
            Period::Hourly => policy.keep_hourly,
            Period::Daily => policy.keep_daily,
            Period::Weekly => policy.keep_weekly,
            Period::Monthly => policy.keep_monthly,
            Period::Yearly => policy.keep_yearly,
        }
    }

    /// A number identifying the period containing `unix`, non-decreasing in `unix`;
    /// cheaper to compare than the label, which is only built for kept backups.
    fn key(self, unix: u64) -> i64 {
        match self {
            // u64::MAX / 3600 is far below i64::MAX, so the cast is exact.
            Period::Hourly => (unix / SECS_PER_HOUR) as i64,
            Period::Daily => day_number(unix),
            Period::Weekly => {
                let days = day_number(unix);
                days - weekday_from_monday(days)
            }
            Period::Monthly => {
                let (y, m, ..) = civil_from_unix(unix);
                y * 12 + i64::from(m)
            }
            Period::Yearly => civil_from_unix(unix).0,
        }
    }

    fn reason(self, unix: u64) -> Reason {
        let (y, m, d, h, ..) = civil_from_unix(unix);
        match self {
            Period::Hourly => Reason::Hourly(format!("{y:04}-{m:02}-{d:02}T{h:02}")),
            Period::Daily => Reason::Daily(format!("{y:04}-{m:02}-{d:02}")),
            Period::Weekly => {
                let (wy, w) = iso_week(unix);
                Reason::Weekly(format!("{wy:04}-W{w:02}"))
            }
            Period::Monthly => Reason::Monthly(format!("{y:04}-{m:02}")),
            Period::Yearly => Reason::Yearly(format!("{y:04}")),
        }
    }
}

/// `unix` broken down in UTC: (year, month 1-12, day 1-31, hour, minute, second).
pub fn civil_from_unix(unix: u64) -> (i64, u32, u32, u32, u32, u32) {
    let (y, m, d) = civil_from_days(day_number(unix));
    let secs = unix % SECS_PER_DAY;
    // All three are below 86400, so the casts are exact.
    (
        y,
        m,
        d,
        (secs / SECS_PER_HOUR) as u32,
        (secs % SECS_PER_HOUR / 60) as u32,
        (secs % 60) as u32,
    )
}

/// The ISO-8601 week of `unix` (UTC): (ISO week-year, week 1-53). Week 1 is the week
/// holding the year's first Thursday, so Jan 1-3 may belong to the previous ISO year and
/// Dec 29-31 to the next.
pub fn iso_week(unix: u64) -> (i64, u32) {
    let days = day_number(unix);
    // An ISO week belongs to the year its Thursday falls in.
    let thursday = days - weekday_from_monday(days) + 3;
    let (year, ..) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
    (year, week as u32) // 1..=53
}

/// Days since 1970-01-01 of `unix`; at most about 2.1e14, so it fits i64 with room to spare.
fn day_number(unix: u64) -> i64 {
    (unix / SECS_PER_DAY) as i64
}

/// 0 for Monday .. 6 for Sunday; day 0 (1970-01-01) was a Thursday.
fn weekday_from_monday(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

/// Day number (days since 1970-01-01) of a proleptic Gregorian date.
///
/// Years are shifted to start in March so the leap day is the last day of the year, and
/// counted in 400-year eras of 146097 days.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // 0..=399
    let mp = (i64::from(month) + 9) % 12; // March = 0 .. February = 11
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // 0..=365
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // 0..=146096
    era * 146_097 + doe - 719_468 // 719468 days from 0000-03-01 to 1970-01-01
}

/// Inverse of [`days_from_civil`]: (year, month 1-12, day 1-31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // 0..=146096
    // Correct for the leap days before this day of the era to find the year of the era.
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // 0..=11, March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600;
    const DAY: u64 = 86_400;

    fn cand(id: u64, time_unix: u64) -> Candidate {
        Candidate {
            id,
            time_unix,
            ..Candidate::default()
        }
    }

    fn kept_ids(decisions: &[Decision]) -> Vec<u64> {
        let mut ids: Vec<u64> = decisions.iter().filter(|d| d.keep).map(|d| d.id).collect();
        ids.sort_unstable();
        ids
    }

    fn reasons_of(decisions: &[Decision], id: u64) -> Vec<Reason> {
        decisions
            .iter()
            .find(|d| d.id == id)
            .expect("decision for id")
            .reasons
            .clone()
    }

    /// Hourly backups for 400 days, 2025-01-01T00:00Z .. 2026-02-04T23:00Z, with the
    /// expected survivors picked by hand from a calendar (timestamps from `date -u`).
    #[test]
    fn calendar_of_hourly_backups_over_400_days() {
        let start = 1_735_689_600; // 2025-01-01T00:00:00Z
        let candidates: Vec<Candidate> = (0..400 * 24)
            .map(|i| cand(start + i * HOUR, start + i * HOUR))
            .collect();
        assert_eq!(candidates.last().unwrap().time_unix, 1_770_246_000);
        let policy = Policy {
            keep_last: Some(3),
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(6),
            keep_yearly: Some(2),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &policy, start + 400 * DAY).unwrap();

        // The id is the timestamp, so the kept ids are the kept times.
        let mut expected = vec![
            1_770_246_000, // 2026-02-04T23 last #1, day, 2026-W06, 2026-02, 2026
            1_770_242_400, // 2026-02-04T22 last #2
            1_770_238_800, // 2026-02-04T21 last #3
            1_770_159_600, // 2026-02-03T23 day
            1_770_073_200, // 2026-02-02T23 day (Monday)
            1_769_986_800, // 2026-02-01T23 day, 2026-W05 (Sunday)
            1_769_900_400, // 2026-01-31T23 day, 2026-01
            1_769_814_000, // 2026-01-30T23 day
            1_769_727_600, // 2026-01-29T23 day (7th)
            1_769_382_000, // 2026-01-25T23 2026-W04
            1_768_777_200, // 2026-01-18T23 2026-W03
            1_767_222_000, // 2025-12-31T23 2025-12, 2025 (ISO week 2026-W01, not kept weekly)
            1_764_543_600, // 2025-11-30T23 2025-11
            1_761_951_600, // 2025-10-31T23 2025-10
            1_759_273_200, // 2025-09-30T23 2025-09 (6th month)
        ];
        expected.sort_unstable();
        assert_eq!(kept_ids(&decisions), expected);

        assert_eq!(
            reasons_of(&decisions, 1_770_246_000),
            vec![
                Reason::Last { rank: 1 },
                Reason::Daily("2026-02-04".into()),
                Reason::Weekly("2026-W06".into()),
                Reason::Monthly("2026-02".into()),
                Reason::Yearly("2026".into()),
            ]
        );
        assert_eq!(
            reasons_of(&decisions, 1_770_238_800),
            vec![Reason::Last { rank: 3 }]
        );
        assert_eq!(
            reasons_of(&decisions, 1_769_986_800),
            vec![
                Reason::Daily("2026-02-01".into()),
                Reason::Weekly("2026-W05".into())
            ]
        );
        assert_eq!(
            reasons_of(&decisions, 1_767_222_000),
            vec![
                Reason::Monthly("2025-12".into()),
                Reason::Yearly("2025".into())
            ]
        );
        assert_eq!(
            reasons_of(&decisions, 1_759_273_200),
            vec![Reason::Monthly("2025-09".into())]
        );
        for d in &decisions {
            assert_eq!(d.keep, !d.reasons.is_empty());
        }
    }

    #[test]
    fn empty_periods_do_not_use_up_the_count() {
        let base = 1_795_824_000; // 2026-11-28T00:00:00Z
        let candidates = vec![
            cand(1, base + 10 * HOUR + 5 * 60),
            cand(2, base + 10 * HOUR + 45 * 60), // newest of 10:00
            cand(3, base + 13 * HOUR + 20 * 60), // newest of 13:00
            cand(4, base + 17 * HOUR),
            cand(5, base + 17 * HOUR + 59 * 60 + 59), // newest of 17:00
        ];
        let policy = Policy {
            keep_hourly: Some(3),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &policy, base + DAY).unwrap();
        assert_eq!(kept_ids(&decisions), vec![2, 3, 5]);
        assert_eq!(
            reasons_of(&decisions, 3),
            vec![Reason::Hourly("2026-11-28T13".into())]
        );

        // Days with gaps behave the same way.
        let candidates = vec![
            cand(1, base - 30 * DAY),
            cand(2, base - 3 * DAY),
            cand(3, base),
        ];
        let policy = Policy {
            keep_daily: Some(2),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &policy, base).unwrap();
        assert_eq!(kept_ids(&decisions), vec![2, 3]);
        assert_eq!(
            reasons_of(&decisions, 2),
            vec![Reason::Daily("2026-11-25".into())]
        );
    }

    #[test]
    fn iso_week_edge_cases() {
        // (date as unix at 12:00Z, expected ISO week) from `date -u +%G-W%V`.
        let day = |y, m, d| (days_from_civil(y, m, d) as u64) * DAY + 12 * HOUR;
        assert_eq!(iso_week(day(2020, 12, 31)), (2020, 53));
        assert_eq!(iso_week(day(2021, 1, 3)), (2020, 53));
        assert_eq!(iso_week(day(2021, 1, 4)), (2021, 1));
        assert_eq!(iso_week(day(2024, 12, 30)), (2025, 1));
        assert_eq!(iso_week(day(2024, 12, 29)), (2024, 52));
        assert_eq!(iso_week(day(2015, 12, 31)), (2015, 53));
        assert_eq!(iso_week(day(2016, 1, 3)), (2015, 53));
        assert_eq!(iso_week(day(2008, 12, 29)), (2009, 1));
        assert_eq!(iso_week(day(2026, 11, 28)), (2026, 48));
        assert_eq!(iso_week(0), (1970, 1)); // a Thursday
        assert_eq!(iso_week(1_767_222_000), (2026, 1)); // 2025-12-31
        // Sunday 23:59:59 and Monday 00:00:00 fall in consecutive weeks.
        assert_eq!(iso_week(1_769_990_399), (2026, 5)); // 2026-02-01T23:59:59Z
        assert_eq!(iso_week(1_769_990_400), (2026, 6)); // 2026-02-02T00:00:00Z
    }

    /// Walks every day from 1970 to 2400 with a naive day-by-day calendar (month lengths and
    /// a weekday counter, nothing shared with the code under test) and checks the civil date
    /// and ISO week of each.
    #[test]
    fn calendar_matches_naive_day_by_day_walk() {
        fn is_leap(y: i64) -> bool {
            (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        }
        fn month_len(y: i64, m: u32) -> u32 {
            match m {
                2 if is_leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            }
        }
        // An ISO year has 53 weeks iff Jan 1 is a Thursday, or a Wednesday in a leap year.
        fn iso_weeks_in(y: i64, jan1_weekday: u32) -> u32 {
            if jan1_weekday == 3 || (jan1_weekday == 2 && is_leap(y)) {
                53
            } else {
                52
            }
        }

        let (mut y, mut m, mut d) = (1970_i64, 1_u32, 1_u32);
        let mut weekday = 3_u32; // 0 = Monday; 1970-01-01 was a Thursday
        let mut jan1_weekday = std::collections::HashMap::new();
        let (mut iso_y, mut iso_w) = (1970_i64, 1_u32);
        let mut n: u64 = 0;
        while y <= 2400 {
            if m == 1 && d == 1 {
                jan1_weekday.insert(y, weekday);
            }
            if weekday == 0 && n > 0 {
                if iso_w == iso_weeks_in(iso_y, jan1_weekday[&iso_y]) {
                    iso_y += 1;
                    iso_w = 1;
                } else {
                    iso_w += 1;
                }
            }
            let t = n * DAY + 13 * HOUR + 5 * 60 + 9;
            assert_eq!(civil_from_unix(t), (y, m, d, 13, 5, 9), "day {n}");
            assert_eq!(civil_from_unix(n * DAY), (y, m, d, 0, 0, 0), "day {n}");
            assert_eq!(
                civil_from_unix(n * DAY + DAY - 1),
                (y, m, d, 23, 59, 59),
                "day {n}"
            );
            assert_eq!(iso_week(t), (iso_y, iso_w), "{y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), n as i64);

            n += 1;
            weekday = (weekday + 1) % 7;
            d += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        for t in [0, 1, u64::MAX, u64::MAX - 1, u64::MAX / 2, i64::MAX as u64] {
            let (y, m, d, h, mi, s) = civil_from_unix(t);
            assert!(y >= 1970 && (1..=12).contains(&m) && (1..=31).contains(&d));
            let secs = t % DAY;
            assert_eq!(
                (h, mi, s),
                (
                    (secs / 3600) as u32,
                    (secs % 3600 / 60) as u32,
                    (secs % 60) as u32
                )
            );
            let (wy, w) = iso_week(t);
            assert!((1..=53).contains(&w) && (wy - y).abs() <= 1);
        }
        let candidates = vec![
            Candidate {
                keep_until_unix: Some(u64::MAX),
                lock_until_unix: Some(0),
                ..cand(1, u64::MAX)
            },
            cand(2, 0),
            cand(3, u64::MAX - 1),
        ];
        let policy = Policy {
            keep_last: Some(u32::MAX),
            keep_hourly: Some(u32::MAX),
            keep_daily: Some(1),
            keep_weekly: Some(1),
            keep_monthly: Some(1),
            keep_yearly: Some(u32::MAX),
            keep_newest_verified: true,
        };
        for now in [0, u64::MAX] {
            let decisions = plan(&candidates, &policy, now).unwrap();
            assert!(decisions.iter().all(|d| d.keep));
        }
    }

    #[test]
    fn protections_keep_with_reasons() {
        let now = 1_795_871_109;
        let candidates = vec![
            cand(1, now - HOUR), // newest: keep-last
            Candidate {
                hold: true,
                ..cand(2, now - 2 * HOUR)
            },
            Candidate {
                keep_until_unix: Some(now + 1),
                ..cand(3, now - 3 * HOUR)
            },
            Candidate {
                keep_until_unix: Some(now),
                ..cand(4, now - 4 * HOUR)
            }, // expired
            Candidate {
                lock_until_unix: Some(now + DAY),
                ..cand(5, now - 5 * HOUR)
            },
            Candidate {
                lock_until_unix: Some(now - 1),
                ..cand(6, now - 6 * HOUR)
            }, // expired
            Candidate {
                hold: true,
                keep_until_unix: Some(now + 2),
                lock_until_unix: Some(now + 3),
                ..cand(7, now - 7 * HOUR)
            },
            cand(8, now - 8 * HOUR),
        ];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &policy, now).unwrap();
        assert_eq!(kept_ids(&decisions), vec![1, 2, 3, 5, 7]);
        assert_eq!(reasons_of(&decisions, 2), vec![Reason::Hold]);
        assert_eq!(reasons_of(&decisions, 3), vec![Reason::KeepUntil(now + 1)]);
        assert_eq!(
            reasons_of(&decisions, 5),
            vec![Reason::LockUntil(now + DAY)]
        );
        assert_eq!(
            reasons_of(&decisions, 7),
            vec![
                Reason::Hold,
                Reason::KeepUntil(now + 2),
                Reason::LockUntil(now + 3)
            ]
        );
        assert!(reasons_of(&decisions, 4).is_empty());
        assert!(reasons_of(&decisions, 6).is_empty());
    }

    #[test]
    fn protections_do_not_use_up_rule_counts_and_reasons_are_ordered() {
        let base = 1_795_824_000; // 2026-11-28T00:00:00Z
        let candidates = vec![
            Candidate {
                hold: true,
                lock_until_unix: Some(base + DAY),
                ..cand(1, base + HOUR)
            },
            cand(2, base - DAY + HOUR),
            cand(3, base - 2 * DAY + HOUR),
        ];
        let policy = Policy {
            keep_last: Some(1),
            keep_daily: Some(2),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &policy, base).unwrap();
        assert_eq!(kept_ids(&decisions), vec![1, 2]);
        assert_eq!(
            reasons_of(&decisions, 1),
            vec![
                Reason::Last { rank: 1 },
                Reason::Daily("2026-11-28".into()),
                Reason::Hold,
                Reason::LockUntil(base + DAY),
            ]
        );
    }

    #[test]
    fn newest_verified_is_kept_only_when_nothing_else_keeps_it() {
        let t = 1_795_871_109;
        let candidates = vec![
            Candidate {
                verified_good: true,
                ..cand(1, t - 3 * DAY)
            },
            Candidate {
                verified_good: true,
                ..cand(2, t - 2 * DAY)
            },
            cand(3, t - DAY),
            cand(4, t),
        ];
        let mut policy = Policy {
            keep_last: Some(1),
            keep_newest_verified: true,
            ..Policy::default()
        };
        let decisions = plan(&candidates, &policy, t).unwrap();
        assert_eq!(kept_ids(&decisions), vec![2, 4]);
        assert_eq!(reasons_of(&decisions, 2), vec![Reason::NewestVerified]);

        // Already kept by a rule: no extra reason, and the older verified one is not kept.
        policy.keep_last = Some(3);
        let decisions = plan(&candidates, &policy, t).unwrap();
        assert_eq!(kept_ids(&decisions), vec![2, 3, 4]);
        assert_eq!(reasons_of(&decisions, 2), vec![Reason::Last { rank: 3 }]);

        // Already kept by a protection: likewise.
        policy.keep_last = Some(1);
        let mut held = candidates.clone();
        held[1].hold = true;
        let decisions = plan(&held, &policy, t).unwrap();
        assert_eq!(kept_ids(&decisions), vec![2, 4]);
        assert_eq!(reasons_of(&decisions, 2), vec![Reason::Hold]);

        // Turned off: nothing protects it.
        policy.keep_newest_verified = false;
        let decisions = plan(&candidates, &policy, t).unwrap();
        assert_eq!(kept_ids(&decisions), vec![4]);

        // No verified backup at all: nothing to add.
        policy.keep_newest_verified = true;
        let decisions = plan(&candidates[2..], &policy, t).unwrap();
        assert_eq!(kept_ids(&decisions), vec![4]);
    }

    #[test]
    fn no_rule_is_an_error_but_zero_counts_are_allowed() {
        let candidates = vec![
            cand(1, 100),
            Candidate {
                hold: true,
                ..cand(2, 50)
            },
        ];
        let err = plan(&candidates, &Policy::default(), 200).unwrap_err();
        assert!(err.contains("no keep rule"), "{err}");
        let only_verified = Policy {
            keep_newest_verified: true,
            ..Policy::default()
        };
        assert!(plan(&candidates, &only_verified, 200).is_err());
        assert!(plan(&[], &Policy::default(), 200).is_err());

        let zeros = Policy {
            keep_last: Some(0),
            keep_hourly: Some(0),
            keep_daily: Some(0),
            keep_weekly: Some(0),
            keep_monthly: Some(0),
            keep_yearly: Some(0),
            keep_newest_verified: false,
        };
        let decisions = plan(&candidates, &zeros, 200).unwrap();
        assert_eq!(kept_ids(&decisions), vec![2]);
        let only_daily_zero = Policy {
            keep_daily: Some(0),
            ..Policy::default()
        };
        assert_eq!(
            kept_ids(&plan(&candidates, &only_daily_zero, 200).unwrap()),
            vec![2]
        );
        assert!(plan(&[], &zeros, 200).unwrap().is_empty());
    }

    #[test]
    fn order_is_preserved_and_ties_break_by_id() {
        let t = 1_795_871_109;
        // Same time for ids 7 and 9: 9 counts as newer.
        let candidates = vec![
            cand(3, t - 10),
            cand(9, t),
            cand(1, t - 20),
            cand(7, t),
            cand(5, t - 5),
        ];
        let policy = Policy {
            keep_last: Some(3),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &policy, t).unwrap();
        let ids: Vec<u64> = decisions.iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![3, 9, 1, 7, 5]);
        assert_eq!(reasons_of(&decisions, 9), vec![Reason::Last { rank: 1 }]);
        assert_eq!(reasons_of(&decisions, 7), vec![Reason::Last { rank: 2 }]);
        assert_eq!(reasons_of(&decisions, 5), vec![Reason::Last { rank: 3 }]);
        assert_eq!(kept_ids(&decisions), vec![5, 7, 9]);

        // The same-bucket tie also goes to the higher id.
        let policy = Policy {
            keep_daily: Some(1),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &policy, t).unwrap();
        assert_eq!(kept_ids(&decisions), vec![9]);
    }

    /// The clock ran a day ahead for generations 2 and 3, then was corrected: generations 4
    /// and 5 have earlier points in time but are the newest backups.
    #[test]
    fn a_clock_moved_back_ranks_by_generation_and_buckets_by_time() {
        let base = 1_795_824_000; // 2026-11-28T00:00:00Z
        let gen_time = [
            (1, base),
            (2, base + DAY + 10 * HOUR), // 11-29T10, clock ahead
            (3, base + DAY + 11 * HOUR), // 11-29T11, clock ahead
            (4, base + HOUR),            // 11-28T01, corrected
            (5, base + 2 * HOUR),        // 11-28T02
        ];
        let candidates: Vec<Candidate> = gen_time
            .iter()
            .map(|&(g, t)| Candidate {
                generation: g,
                ..cand(100 + g, t)
            })
            .collect();
        let last_one = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &last_one, base + 3 * DAY).unwrap();
        assert_eq!(kept_ids(&decisions), vec![105], "the newest generation");

        let last_three = Policy {
            keep_last: Some(3),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &last_three, base + 3 * DAY).unwrap();
        assert_eq!(kept_ids(&decisions), vec![103, 104, 105]);
        assert_eq!(reasons_of(&decisions, 104), vec![Reason::Last { rank: 2 }]);

        // Days come from the points in time; within a day the newest generation wins, so
        // 11-28 keeps generation 5 (not 1) and 11-29 keeps generation 3.
        let daily = Policy {
            keep_daily: Some(2),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &daily, base + 3 * DAY).unwrap();
        assert_eq!(kept_ids(&decisions), vec![103, 105]);
        assert_eq!(
            reasons_of(&decisions, 105),
            vec![Reason::Daily("2026-11-28".into())]
        );
        let one_day = Policy {
            keep_daily: Some(1),
            ..Policy::default()
        };
        let decisions = plan(&candidates, &one_day, base + 3 * DAY).unwrap();
        assert_eq!(
            kept_ids(&decisions),
            vec![103],
            "the most recent day by time"
        );

        // Newest verified: by generation too.
        let mut verified = candidates.clone();
        verified[2].verified_good = true; // generation 3
        verified[3].verified_good = true; // generation 4
        let policy = Policy {
            keep_last: Some(1),
            keep_newest_verified: true,
            ..Policy::default()
        };
        let decisions = plan(&verified, &policy, base + 3 * DAY).unwrap();
        assert_eq!(kept_ids(&decisions), vec![104, 105]);
    }

    #[test]
    fn describe_texts() {
        assert_eq!(Reason::Last { rank: 1 }.describe(), "keep-last #1");
        assert_eq!(
            Reason::Hourly("2026-11-28T13".into()).describe(),
            "keep-hourly 2026-11-28T13"
        );
        assert_eq!(
            Reason::Daily("2026-11-28".into()).describe(),
            "keep-daily 2026-11-28"
        );
        assert_eq!(
            Reason::Weekly("2026-W48".into()).describe(),
            "keep-weekly 2026-W48"
        );
        assert_eq!(
            Reason::Monthly("2026-11".into()).describe(),
            "keep-monthly 2026-11"
        );
        assert_eq!(Reason::Yearly("2026".into()).describe(), "keep-yearly 2026");
        assert_eq!(Reason::NewestVerified.describe(), "newest verified backup");
        assert_eq!(Reason::Hold.describe(), "hold");
        assert_eq!(
            Reason::KeepUntil(1_796_083_200).describe(),
            "keep-until 2026-12-01T00:00:00Z"
        );
        assert_eq!(
            Reason::LockUntil(0).describe(),
            "lock-until 1970-01-01T00:00:00Z"
        );
        assert_eq!(Reason::Hold.to_string(), "hold");
    }

    /// Tiny LCG (Knuth's MMIX constants) so the property test needs no dependency.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 11
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn opt_count(&mut self) -> Option<u32> {
            match self.below(4) {
                0 => None,
                1 => Some(0),
                2 => Some(self.below(5) as u32),
                _ => Some(self.below(60) as u32),
            }
        }
        fn time(&mut self, now: u64) -> u64 {
            match self.below(10) {
                0 => 0,
                1 => u64::MAX - self.below(3),
                2 => self.next() << 11 | self.below(2048),
                // Mostly clustered near now so buckets collide and ties happen.
                _ => now.saturating_sub(self.below(3 * 365 * DAY)) / 600 * 600,
            }
        }
    }

    #[test]
    fn random_inputs_never_panic_and_keep_last_keeps_exactly_the_newest() {
        let mut rng = Lcg(0x00c0_ffee);
        let now = 1_795_871_109;
        for round in 0..2_000 {
            let len = rng.below(40) as usize;
            let candidates: Vec<Candidate> = (0..len)
                .map(|_| Candidate {
                    id: rng.below(30),
                    // Often equal, so time and id still break ties.
                    generation: rng.below(4),
                    time_unix: rng.time(now),
                    verified_good: rng.below(3) == 0,
                    hold: rng.below(10) == 0,
                    keep_until_unix: (rng.below(4) == 0).then(|| rng.time(now)),
                    lock_until_unix: (rng.below(4) == 0).then(|| rng.time(now)),
                })
                .collect();
            let mut policy = Policy {
                keep_last: rng.opt_count(),
                keep_hourly: rng.opt_count(),
                keep_daily: rng.opt_count(),
                keep_weekly: rng.opt_count(),
                keep_monthly: rng.opt_count(),
                keep_yearly: rng.opt_count(),
                keep_newest_verified: rng.below(2) == 0,
            };
            let now_for_round = if rng.below(8) == 0 {
                rng.time(now)
            } else {
                now
            };
            let result = plan(&candidates, &policy, now_for_round);
            let any_rule = [
                policy.keep_last,
                policy.keep_hourly,
                policy.keep_daily,
                policy.keep_weekly,
                policy.keep_monthly,
                policy.keep_yearly,
            ]
            .iter()
            .any(Option::is_some);
            assert_eq!(result.is_ok(), any_rule, "round {round}");
            let Ok(decisions) = result else {
                policy.keep_last = Some(0);
                assert!(plan(&candidates, &policy, now_for_round).is_ok());
                continue;
            };

            assert_eq!(decisions.len(), candidates.len());
            for (c, d) in candidates.iter().zip(&decisions) {
                assert_eq!(c.id, d.id);
                assert_eq!(d.keep, !d.reasons.is_empty());
                let protected = c.hold
                    || c.keep_until_unix.is_some_and(|t| t > now_for_round)
                    || c.lock_until_unix.is_some_and(|t| t > now_for_round);
                assert_eq!(d.reasons.contains(&Reason::Hold), c.hold);
                if protected {
                    assert!(d.keep);
                }
                if d.reasons.contains(&Reason::NewestVerified) {
                    assert_eq!(d.reasons.len(), 1);
                    assert!(c.verified_good);
                }
            }

            // keep_last N marks exactly the min(N, len) newest by (generation, time, id),
            // ranked 1.. Computed here by brute force: a candidate's rank is 1 + the number
            // of candidates strictly newer, or equal and earlier in the input.
            let key = |c: &Candidate| (c.generation, c.time_unix, c.id);
            if let Some(n) = policy.keep_last {
                let mut last_marked = 0;
                for (i, c) in candidates.iter().enumerate() {
                    let newer = candidates
                        .iter()
                        .enumerate()
                        .filter(|&(j, o)| key(o) > key(c) || (key(o) == key(c) && j < i))
                        .count();
                    let rank = newer as u32 + 1;
                    let got: Vec<_> = decisions[i]
                        .reasons
                        .iter()
                        .filter(|r| matches!(r, Reason::Last { .. }))
                        .cloned()
                        .collect();
                    if rank <= n {
                        assert_eq!(got, vec![Reason::Last { rank }], "round {round}");
                        last_marked += 1;
                    } else {
                        assert!(got.is_empty(), "round {round}");
                    }
                }
                assert_eq!(last_marked, (n as usize).min(candidates.len()));
            }

            // Each bucket rule keeps at most its count, in distinct buckets.
            type Pick = fn(&Reason) -> Option<&String>;
            let rules: [(Option<u32>, Pick); 5] = [
                (policy.keep_hourly, |r| {
                    if let Reason::Hourly(b) = r {
                        Some(b)
                    } else {
                        None
                    }
                }),
                (policy.keep_daily, |r| {
                    if let Reason::Daily(b) = r {
                        Some(b)
                    } else {
                        None
                    }
                }),
                (policy.keep_weekly, |r| {
                    if let Reason::Weekly(b) = r {
                        Some(b)
                    } else {
                        None
                    }
                }),
                (policy.keep_monthly, |r| {
                    if let Reason::Monthly(b) = r {
                        Some(b)
                    } else {
                        None
                    }
                }),
                (policy.keep_yearly, |r| {
                    if let Reason::Yearly(b) = r {
                        Some(b)
                    } else {
                        None
                    }
                }),
            ];
            for (count, pick) in rules {
                let mut buckets: Vec<&String> = decisions
                    .iter()
                    .flat_map(|d| d.reasons.iter().filter_map(pick))
                    .collect();
                let total = buckets.len();
                assert!(total <= count.unwrap_or(0) as usize, "round {round}");
                buckets.sort();
                buckets.dedup();
                assert_eq!(buckets.len(), total, "round {round}");
                if count.is_some_and(|n| n > 0) && !candidates.is_empty() {
                    assert!(total >= 1);
                }
            }
        }
    }
}
