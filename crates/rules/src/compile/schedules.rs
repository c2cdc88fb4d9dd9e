//! Schedules: working hours per day of the week in a time zone, and days out of office.

use super::{timezone, Resolver};
use crate::format::RawSchedule;
use engine::Schedule;

impl Resolver<'_> {
    pub(super) fn schedules(&mut self, schedules: &[(usize, RawSchedule)]) {
        for (fi, s) in schedules {
            // A bad time zone is one error: the schedule still exists for what refers to it.
            let tz = timezone(&s.timezone).unwrap_or_else(|e| {
                self.cx.err(*fi, &s.timezone, &format!("schedule `{}`.timezone", s.id), e);
                chrono_tz::UTC
            });
            let mut week = [None; 7];
            for (days, span) in &s.week {
                match (Schedule::parse_days(days), Schedule::parse_span(span)) {
                    (Some(ds), Some(sp)) => ds.into_iter().for_each(|d| week[d] = Some(sp)),
                    (None, _) => self.cx.err(
                        *fi,
                        days,
                        &format!("schedule `{}`.week", s.id),
                        format!("`{days}` is not a day or a range of days; write \"mon-fri\", \"sat\" or \"mon,wed\""),
                    ),
                    (_, None) => self.cx.err(
                        *fi,
                        span,
                        &format!("schedule `{}`.week.{days}", s.id),
                        format!("`{span}` is not a time span; write \"08:00-17:30\""),
                    ),
                }
            }
            let mut out_of_office = Vec::new();
            self.dates(*fi, &format!("schedule `{}`.out_of_office", s.id), &s.out_of_office, &mut out_of_office);
            self.schedule_by_id.insert(s.id.clone(), self.schedules.len() as u32);
            self.schedules.push(Schedule { tz, week, out_of_office });
        }
    }

    /// Days out of office ("2026-12-24", "2026-12-30..2027-01-02"), added to `out`.
    pub(super) fn dates(
        &mut self,
        fi: usize,
        key: &str,
        dates: &[String],
        out: &mut Vec<(chrono::NaiveDate, chrono::NaiveDate)>,
    ) {
        for d in dates {
            match Schedule::parse_dates(d) {
                Some(r) => out.push(r),
                None => self.cx.err(
                    fi,
                    d,
                    key,
                    format!("`{d}` is not a date or a range; write \"2026-12-24\" or \"2026-12-30..2027-01-02\""),
                ),
            }
        }
    }
}
