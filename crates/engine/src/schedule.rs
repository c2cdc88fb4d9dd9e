//! Working hours in a time zone, and out-of-office dates.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Minutes from local midnight, `[from, to)`, per weekday (Monday = 0).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Schedule {
    #[serde(serialize_with = "tz_name")]
    pub tz: Tz,
    pub week: [Option<(u32, u32)>; 7],
    /// Inclusive local date ranges.
    pub out_of_office: Vec<(NaiveDate, NaiveDate)>,
}

/// A time zone by its IANA name.
pub(super) fn tz_name<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl Schedule {
    /// The schedule as canonical text (its JSON: time zone by name, spans per weekday, days out
    /// of office), for fingerprints that must not depend on `Debug` output.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// On holiday at `now` (in the schedule's time zone)?
    pub fn out_of_office(&self, now: DateTime<Utc>) -> bool {
        let d = now.with_timezone(&self.tz).date_naive();
        self.out_of_office.iter().any(|(a, b)| d >= *a && d <= *b)
    }

    /// Inside working hours at `now` (and not on holiday)?
    pub fn working(&self, now: DateTime<Utc>) -> bool {
        if self.out_of_office(now) {
            return false;
        }
        let local = now.with_timezone(&self.tz);
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = local.hour() * 60 + local.minute();
        self.week[day].is_some_and(|(a, b)| minute >= a && minute < b)
    }

    /// The next moment working hours start, within two weeks (for "wait").
    pub fn next_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.spans(now, 15).map(|(open, _)| open).find(|open| *open > now)
    }

    /// The moment `seconds` of working time have passed since `from` (out-of-office days do not
    /// count). A schedule with no working hours at all, or none in ten years, counts wall-clock
    /// time, so nothing waits forever on a schedule typo.
    pub fn after_working(&self, from: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
        let mut left = seconds.max(0);
        if self.week.iter().any(Option::is_some) {
            for (open, close) in self.spans(from, 3660) {
                let open = open.max(from);
                if close <= open {
                    continue;
                }
                let span = (close - open).num_seconds();
                if left <= span {
                    return open + Duration::seconds(left);
                }
                left -= span;
            }
        }
        from + Duration::seconds(seconds)
    }

    /// Working spans `[open, close)` in UTC, day by day from the local day of `from` for `days`
    /// days, skipping days without hours and out-of-office dates.
    fn spans(&self, from: DateTime<Utc>, days: i64) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let first = from.with_timezone(&self.tz).date_naive();
        (0..days).filter_map(move |offset| {
            let date = first + Duration::days(offset);
            let (a, b) = self.week[date.weekday().num_days_from_monday() as usize]?;
            if self.out_of_office.iter().any(|(x, y)| date >= *x && date <= *y) {
                return None;
            }
            let at = |minute: u32| {
                let naive =
                    date.and_hms_opt(minute / 60 % 24, minute % 60, 0)? + Duration::days(i64::from(minute / (24 * 60)));
                Some(self.tz.from_local_datetime(&naive).earliest()?.with_timezone(&Utc))
            };
            Some((at(a)?, at(b)?))
        })
    }

    /// Parse `"08:00-17:30"`.
    pub fn parse_span(s: &str) -> Option<(u32, u32)> {
        let (a, b) = s.trim().split_once('-')?;
        let hm = |x: &str| -> Option<u32> {
            let (h, m) = x.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        let (a, b) = (hm(a)?, hm(b)?);
        (a < b).then_some((a, b))
    }

    /// Parse `"mon-fri"`, `"sat"`, `"mon,wed,fri"` into weekday indexes (Monday = 0).
    pub fn parse_days(s: &str) -> Option<Vec<usize>> {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let idx = |d: &str| NAMES.iter().position(|n| *n == d.trim().to_lowercase().get(..3).unwrap_or(""));
        let mut out = Vec::new();
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (idx(a)?, idx(b)?);
                    if a > b {
                        return None;
                    }
                    out.extend(a..=b);
                }
                None => out.push(idx(part)?),
            }
        }
        Some(out)
    }

    /// Parse `"2026-12-24"` or `"2026-12-30..2027-01-02"`.
    pub fn parse_dates(s: &str) -> Option<(NaiveDate, NaiveDate)> {
        let p = |x: &str| NaiveDate::parse_from_str(x.trim(), "%Y-%m-%d").ok();
        match s.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (p(a)?, p(b)?);
                (a <= b).then_some((a, b))
            }
            None => p(s).map(|d| (d, d)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Schedule {
        let mut week = [None; 7];
        for d in Schedule::parse_days("mon-fri").expect("days") {
            week[d] = Schedule::parse_span("08:00-17:30");
        }
        Schedule {
            tz: "Asia/Ho_Chi_Minh".parse().expect("tz"),
            week,
            out_of_office: vec![Schedule::parse_dates("2026-12-24..2026-12-26").expect("dates")],
        }
    }

    #[test]
    fn working_hours_are_local_and_holidays_count() {
        let s = office();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).expect("time").with_timezone(&Utc);
        assert!(s.working(at("2026-11-23T02:00:00Z")), "Monday 09:00 in Hanoi");
        assert!(!s.working(at("2026-11-23T11:00:00Z")), "Monday 18:00 in Hanoi");
        assert!(!s.working(at("2026-11-22T03:00:00Z")), "Sunday");
        assert!(!s.working(at("2026-12-24T03:00:00Z")), "on holiday");
        assert_eq!(s.next_start(at("2026-11-23T11:00:00Z")), Some(at("2026-11-24T01:00:00Z")));
        assert_eq!(
            s.next_start(at("2026-12-24T03:00:00Z")),
            Some(at("2026-12-28T01:00:00Z")),
            "after the holiday and the weekend"
        );
    }

    #[test]
    fn bad_spans_and_days_are_refused() {
        assert_eq!(Schedule::parse_span("17:00-08:00"), None);
        assert_eq!(Schedule::parse_span("8-17"), None);
        assert_eq!(Schedule::parse_days("fri-mon"), None);
        assert_eq!(Schedule::parse_days("funday"), None);
        assert_eq!(Schedule::parse_dates("2026-12-30..2026-12-01"), None);
    }
}
