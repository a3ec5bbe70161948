//! Schedules of Scheduled Jobs (`on.schedule`), as Copilot writes them: a five-field cron
//! expression (`*/5 * * * *`, minute hour day-of-month month day-of-week, in UTC), a macro
//! (`@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`) or
//! `@every DURATION` (`@every 1h`, `@every 10s`: ticks that far apart, from the deploy).
//!
//! Pure: [`Schedule::next_after`] and [`Schedule::latest_due`] take unix milliseconds.

use std::fmt;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Ticks `interval_ms` apart, counted from an anchor (the job's deploy, then its last
    /// tick).
    Every {
        interval_ms: u64,
    },
    Cron(Cron),
}

/// A five-field cron expression: the allowed values of each field as bit sets.
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day-of-month and day-of-week both restricted: a day matches either (as cron does).
    either_day: bool,
    text: String,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.text)
    }
}

/// The shortest `@every` interval.
pub const MIN_EVERY_MS: u64 = 1000;
/// The longest `@every` interval (100 years: longer would overflow the clock's arithmetic
/// and is no schedule anyway).
pub const MAX_EVERY_MS: u64 = 100 * 366 * 86_400_000;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

impl Schedule {
    /// Parses a schedule; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        let hint = "write a cron expression (minute hour day month weekday, UTC: \"0 3 * * *\"), @hourly, @daily, @weekly, @monthly, @yearly or @every DURATION (\"@every 1h\")";
        if let Some(rest) = t.strip_prefix("@every") {
            let d = humantime::parse_duration(rest.trim())
                .map_err(|e| format!("{t:?}: {e}; {hint}"))?;
            let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
            if ms < MIN_EVERY_MS {
                return Err(format!("{t:?}: @every needs at least 1s"));
            }
            if ms > MAX_EVERY_MS {
                return Err(format!("{t:?}: @every takes at most 100 years"));
            }
            return Ok(Schedule::Every { interval_ms: ms });
        }
        let expr = match t.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            s if s.starts_with('@') => return Err(format!("{t:?} is not a schedule; {hint}")),
            _ => t.to_owned(),
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{t:?} has {} fields, a cron expression has 5; {hint}",
                fields.len()
            ));
        }
        let field = |i: usize, lo: u32, hi: u32, names: &[&str]| {
            parse_field(fields[i], lo, hi, names).map_err(|m| format!("{t:?}: {m}; {hint}"))
        };
        const MONTHS: &[&str] = &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let minutes = field(0, 0, 59, &[])?;
        let hours = field(1, 0, 23, &[])?;
        let days = field(2, 1, 31, &[])?;
        let months = field(3, 1, 12, MONTHS)?;
        let mut weekdays = field(4, 0, 7, DAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        let cron = Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            either_day: !fields[2].starts_with('*') && !fields[4].starts_with('*'),
            text: t.to_owned(),
        };
        let s = Schedule::Cron(cron);
        // A date that never comes (`0 0 30 2 *`) would never run.
        if s.next_after(0).is_none() {
            return Err(format!("{t:?} never fires (no such date)"));
        }
        Ok(s)
    }

    /// The first tick after `t` (for `@every`, with ticks counted from `t`).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Schedule::Every { interval_ms } => t.checked_add(*interval_ms as i64),
            Schedule::Cron(c) => c.next_after(t),
        }
    }

    /// The latest tick `d` with `anchor < d <= now` (ticks counted from `anchor`), if one
    /// is due. Ticks missed while nothing looked (the server was down) are one tick: the
    /// latest.
    pub fn latest_due(&self, anchor: i64, now: i64) -> Option<i64> {
        match self {
            Schedule::Every { interval_ms } => {
                let iv = *interval_ms as i64;
                let k = (now - anchor).div_euclid(iv);
                (k >= 1).then(|| anchor + k * iv)
            }
            Schedule::Cron(c) => {
                let mut due = None;
                let mut t = anchor;
                while let Some(n) = c.next_after(t) {
                    if n > now {
                        break;
                    }
                    due = Some(n);
                    // Far behind: jump close to `now` instead of walking every tick.
                    t = if now - n > 2 * DAY_MS {
                        now - 2 * DAY_MS
                    } else {
                        n
                    };
                }
                due
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every { interval_ms } => write!(
                f,
                "@every {}",
                humantime::format_duration(std::time::Duration::from_millis(*interval_ms))
            ),
            Schedule::Cron(c) => f.write_str(&c.text),
        }
    }
}

fn parse_field(f: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let l = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == l) {
            return Ok(i as u32 + if lo == 1 { 1 } else { 0 });
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number between {lo} and {hi}"))?;
        if !(lo..=hi).contains(&v) {
            return Err(format!("{v} is out of range {lo}-{hi}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| format!("step {s:?} must be a positive number"))?;
                (r, s)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if part.contains('/') { hi } else { v })
        };
        if a > b {
            return Err(format!("range {range:?} is reversed"));
        }
        // `v + step` overflows for a step near u32::MAX (`5/4294967295`): stop there.
        let mut v = Some(a);
        while let Some(x) = v.filter(|x| *x <= b) {
            bits |= 1 << x;
            v = x.checked_add(step);
        }
    }
    Ok(bits)
}

impl Cron {
    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let dom = self.days & (1 << day) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    fn next_after(&self, t: i64) -> Option<i64> {
        // The next whole minute after t.
        let mut m = t.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS;
        for _ in 0..200_000 {
            let days = m.div_euclid(DAY_MS);
            let (y, mo, d) = civil_from_days(days);
            let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            let in_day = m.rem_euclid(DAY_MS);
            let (hour, minute) = (
                (in_day / 3_600_000) as u32,
                ((in_day / MINUTE_MS) % 60) as u32,
            );
            if self.months & (1 << mo) == 0 {
                let (ny, nm) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
                m = days_from_civil(ny, nm, 1) * DAY_MS;
            } else if !self.day_matches(d, weekday) {
                m = (days + 1) * DAY_MS;
            } else if self.hours & (1 << hour) == 0 {
                m = days * DAY_MS + i64::from(hour + 1) * 3_600_000;
            } else if self.minutes & (1 << minute) == 0 {
                m += MINUTE_MS;
            } else {
                return Some(m);
            }
        }
        None
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-12-07 07:30:00 UTC, a Monday.
    const MON: i64 = 1_796_628_600_000;

    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY_MS + h * 3_600_000 + mi * MINUTE_MS
    }

    #[test]
    fn the_anchor_date_is_right() {
        assert_eq!(at(2026, 12, 7, 7, 30), MON);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn cron_expressions_and_macros() {
        let next = |s: &str| Schedule::parse(s).unwrap().next_after(MON).unwrap();
        assert_eq!(next("*/5 * * * *"), at(2026, 12, 7, 7, 35));
        assert_eq!(next("0 3 * * *"), at(2026, 12, 8, 3, 0));
        assert_eq!(next("@hourly"), at(2026, 12, 7, 8, 0));
        assert_eq!(next("@daily"), at(2026, 12, 8, 0, 0));
        assert_eq!(next("@weekly"), at(2026, 12, 13, 0, 0)); // Sunday
        assert_eq!(next("@monthly"), at(2027, 1, 1, 0, 0));
        assert_eq!(next("@yearly"), at(2027, 1, 1, 0, 0));
        assert_eq!(next("30 9 * * mon-fri"), at(2026, 12, 7, 9, 30));
        assert_eq!(next("0 0 * * 7"), at(2026, 12, 13, 0, 0));
        assert_eq!(next("0 12 29 feb *"), at(2028, 2, 29, 12, 0));
        assert_eq!(next("15,45 7 * * *"), at(2026, 12, 7, 7, 45));
        assert_eq!(next("5/20 * * * *"), at(2026, 12, 7, 7, 45));
        // Day of month or day of week when both are given.
        assert_eq!(next("0 0 1 * fri"), at(2026, 12, 11, 0, 0));
        assert_eq!(
            Schedule::parse("@every 1h").unwrap(),
            Schedule::Every {
                interval_ms: 3_600_000
            }
        );
    }

    #[test]
    fn bad_schedules_say_how_to_write_one() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "@every",
            "@every 10ms",
            "@every 999999999y",
            "@every 101y",
            "@sometimes",
            "0 0 30 2 *",
            "x * * * *",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.contains('"'), "{bad}: {e}");
        }
    }

    /// Found by fuzzing the manifest (issue 20): a step near `u32::MAX` overflowed
    /// `v + step` (a panic in debug builds, a wrapped walk in release ones).
    #[test]
    fn huge_steps_mean_the_first_value_only() {
        let s = Schedule::parse("5/4294967295 * * * *").unwrap();
        assert_eq!(s.next_after(MON), Some(at(2026, 12, 7, 8, 5)));
        let s = Schedule::parse("0-59/4294967295 * * * *").unwrap();
        assert_eq!(s.next_after(MON), Some(at(2026, 12, 7, 8, 0)));
        assert!(Schedule::parse("0/4294967296 * * * *").is_err());
    }

    #[test]
    fn missed_ticks_are_one_tick() {
        let s = Schedule::parse("@every 10s").unwrap();
        assert_eq!(s.latest_due(0, 9_999), None);
        assert_eq!(s.latest_due(0, 10_000), Some(10_000));
        assert_eq!(s.latest_due(0, 95_000), Some(90_000));
        let c = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(c.latest_due(MON, MON + 10 * 60_000), None);
        // Down for three days: one run, at the latest hour.
        assert_eq!(
            c.latest_due(MON, MON + 3 * DAY_MS + 5 * 60_000),
            Some(at(2026, 12, 10, 7, 0))
        );
    }

    proptest! {
        #[test]
        fn next_is_after_and_matches_and_nothing_between(
            min in 0u32..60, hour in 0u32..24, step in 1u32..30,
            t in 0i64..4_000_000_000_000,
        ) {
            let exprs = [
                format!("{min} {hour} * * *"),
                format!("*/{step} * * * *"),
                format!("{min} */{} * * mon,thu", step.min(23)),
                format!("{min} {hour} {} * *", step),
            ];
            for e in exprs {
                let s = Schedule::parse(&e).unwrap();
                let n = s.next_after(t).unwrap();
                prop_assert!(n > t && n % MINUTE_MS == 0, "{e}: {n} after {t}");
                prop_assert!(n - t <= 400 * DAY_MS, "{e}: too far");
                // No tick in between: the tick after the minute before n is n.
                let prev = s.next_after(n - MINUTE_MS).unwrap();
                prop_assert_eq!(prev, n);
                // And latest_due from t up to n is n.
                prop_assert_eq!(s.latest_due(t, n), Some(n));
                prop_assert_eq!(s.latest_due(t, n - 1), None);
            }
        }

        #[test]
        fn civil_dates_round_trip(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn every_is_a_fixed_grid(iv in 1_000u64..100_000_000, anchor in 0i64..1_000_000_000, dt in 0i64..10_000_000_000) {
            let s = Schedule::Every { interval_ms: iv };
            let now = anchor + dt;
            match s.latest_due(anchor, now) {
                Some(d) => {
                    prop_assert!(d > anchor && d <= now && d + iv as i64 > now);
                    prop_assert_eq!((d - anchor) % iv as i64, 0);
                }
                None => prop_assert!(dt < iv as i64),
            }
        }
    }
}
