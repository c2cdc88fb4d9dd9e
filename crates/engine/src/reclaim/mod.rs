//! Reclaim policies and their clock arithmetic: when an assignment is stale, when its owner is
//! warned, which step of the ladder comes next.
//!
//! Owns the compiled reclaim rule of a pipeline (with its per-team overrides) and the pure
//! functions over it. Like the rest of the engine it does no I/O and reads no clock: the idle
//! start, the owner's schedule and "now" are handed in. It must not know where ownership is kept.

mod ladder;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::Schedule;

pub use ladder::{Interaction, Stale, Step, Verdict};

/// What to do with a reclaimed opportunity when the normal path gives nobody, or at the end of the
/// ladder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ReclaimElse {
    /// Leave it with its owner.
    Leave,
    /// Give it to this owner (e.g. a pool owner).
    Owner(String),
}

/// Who must not get a reclaimed opportunity back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Exclude {
    /// The owner losing it.
    Previous,
    /// Every earlier owner of the opportunity.
    AllPrevious,
    /// The last k distinct owners (the one losing it included).
    Last(u32),
}

/// To whom an escalation goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum EscalateTo {
    /// The `lead` of the team the opportunity is in.
    TeamLead,
    /// This CRM user.
    Owner(String),
}

/// The ladder's escalation step: after the last reassignment, the lead gets it for `after` seconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Escalate {
    pub to: EscalateTo,
    pub after: i64,
}

/// Pause a member who lets `lapses` opportunities be reclaimed within `within` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PauseAfter {
    pub lapses: i64,
    pub within: i64,
}

/// The reclaim rule of a pipeline: take back what its owner left untouched.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReclaimPolicy {
    /// Seconds without an interaction before an assignment is stale.
    pub after: i64,
    /// Any activity by anyone counts as an interaction (default: only the owner's).
    pub anyone: bool,
    /// An edit of the opportunity by its owner counts as an interaction.
    pub owner_edits: bool,
    /// The window counts only the owner's working hours (their schedule).
    pub working_hours: bool,
    /// Reassign within the owner's team.
    pub within_team: bool,
    pub exclude: Exclude,
    /// Reassignments before the ladder moves on (escalate, then `then`).
    pub max_reclaims: i32,
    /// Warn the owner when this fraction of the window has passed (0 < f < 1).
    pub warn_at: Option<f64>,
    /// After the reassignments (and the escalation, if any): leave it, or release it to an owner.
    pub then: ReclaimElse,
    /// When nobody else is eligible.
    pub when_nobody: ReclaimElse,
    pub escalate: Option<Escalate>,
    pub pause_after: Option<PauseAfter>,
    /// Teams' overrides, resolved into whole policies, by the team's rule-file id.
    pub by_team: BTreeMap<String, ReclaimPolicy>,
}

/// Where an assignment stands on the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// With a member the rules picked (first assignment or a reassignment).
    Owner,
    /// With the lead, after the escalation step.
    Escalated,
}

impl Stage {
    /// As `ownership.stage` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Owner => "owner",
            Stage::Escalated => "escalated",
        }
    }

    /// From `ownership.stage` (anything but "escalated" is with a member the rules picked).
    pub fn from_text(s: &str) -> Stage {
        if s == "escalated" {
            Stage::Escalated
        } else {
            Stage::Owner
        }
    }
}

/// What the sweep should do with one assignment now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing before this moment.
    NotBefore(DateTime<Utc>),
    /// Warn the owner now; nothing else before the moment given.
    Warn(DateTime<Utc>),
    /// Stale: take the next step of the ladder.
    Stale,
}

impl ReclaimPolicy {
    /// The policy as canonical text (its JSON: fields in order, teams sorted; never `Debug`,
    /// which a dependency may change): what a pipeline's due times depend on is compared
    /// through it across versions.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The policy that applies to an assignment in this team.
    pub fn for_team(&self, team: Option<&str>) -> &ReclaimPolicy {
        team.and_then(|t| self.by_team.get(t)).unwrap_or(self)
    }

    /// The window of this stage, in seconds.
    pub fn window(&self, stage: Stage) -> i64 {
        match (stage, &self.escalate) {
            (Stage::Escalated, Some(e)) => e.after,
            _ => self.after,
        }
    }

    /// A lower bound, in wall-clock seconds after the last interaction, of when any assignment
    /// under this policy (or a team's override) can need a warning or a reclaim. Wall-clock time
    /// is never shorter than working time, so this holds for working-hours windows too.
    pub fn earliest(&self) -> i64 {
        let own = [Some(self.after), self.escalate.as_ref().map(|e| e.after)]
            .into_iter()
            .flatten()
            .map(|w| match self.warn_at {
                Some(f) => ((w as f64) * f).floor() as i64,
                None => w,
            })
            .min()
            .unwrap_or(self.after);
        self.by_team.values().map(ReclaimPolicy::earliest).fold(own, i64::min).max(0)
    }

    /// When the idle spell began: the last interaction that counts under this policy.
    pub fn idle_since(
        &self,
        owner_touch: DateTime<Utc>,
        any_activity: Option<DateTime<Utc>>,
        owner_edit: Option<DateTime<Utc>>,
    ) -> DateTime<Utc> {
        let mut at = owner_touch;
        if self.anyone {
            at = at.max(any_activity.unwrap_or(at));
        }
        if self.owner_edits {
            at = at.max(owner_edit.unwrap_or(at));
        }
        at
    }

    /// The moment `seconds` of counted time have passed since `from`: wall-clock time, or the
    /// owner's working hours when the policy says so and the owner has a schedule.
    pub fn after_counted(&self, from: DateTime<Utc>, seconds: i64, schedule: Option<&Schedule>) -> DateTime<Utc> {
        match schedule {
            Some(s) if self.working_hours => s.after_working(from, seconds),
            _ => from + Duration::seconds(seconds),
        }
    }

    /// What is due for an assignment idle since `idle_since`, at `now`. `warned` says whether the
    /// owner was already warned during this idle spell.
    pub fn due(
        &self,
        stage: Stage,
        idle_since: DateTime<Utc>,
        warned: bool,
        schedule: Option<&Schedule>,
        now: DateTime<Utc>,
    ) -> Due {
        let window = self.window(stage);
        let stale_at = self.after_counted(idle_since, window, schedule);
        if now >= stale_at {
            return Due::Stale;
        }
        match self.warn_at {
            Some(f) if !warned => {
                let warn_at = self.after_counted(idle_since, ((window as f64) * f).floor() as i64, schedule);
                if now >= warn_at {
                    Due::Warn(stale_at)
                } else {
                    Due::NotBefore(warn_at)
                }
            }
            _ => Due::NotBefore(stale_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Schedule {
        let mut week = [None; 7];
        for d in Schedule::parse_days("mon-fri").expect("days") {
            week[d] = Schedule::parse_span("08:00-17:00");
        }
        Schedule {
            tz: "Asia/Ho_Chi_Minh".parse().expect("tz"),
            week,
            out_of_office: vec![Schedule::parse_dates("2026-12-24..2026-12-25").expect("dates")],
        }
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).expect("time").with_timezone(&Utc)
    }

    fn policy(after: i64, working_hours: bool) -> ReclaimPolicy {
        ReclaimPolicy {
            after,
            anyone: false,
            owner_edits: false,
            working_hours,
            within_team: true,
            exclude: Exclude::Previous,
            max_reclaims: 3,
            warn_at: None,
            then: ReclaimElse::Leave,
            when_nobody: ReclaimElse::Leave,
            escalate: None,
            pause_after: None,
            by_team: BTreeMap::new(),
        }
    }

    #[test]
    fn working_time_skips_nights_weekends_and_holidays() {
        let s = office();
        // Friday 16:30 in Hanoi + 2 working hours = Monday 09:30.
        assert_eq!(s.after_working(at("2026-11-27T16:30:00+07:00"), 7200), at("2026-11-30T09:30:00+07:00"));
        // Saturday: the clock starts Monday 08:00.
        assert_eq!(s.after_working(at("2026-11-28T12:00:00+07:00"), 3600), at("2026-11-30T09:00:00+07:00"));
        // Within a day.
        assert_eq!(s.after_working(at("2026-11-23T09:00:00+07:00"), 1800), at("2026-11-23T09:30:00+07:00"));
        // Wednesday 23 Dec 16:00 + 2 h: the 24th and 25th are out of office, the 26th-27th a weekend.
        assert_eq!(s.after_working(at("2026-12-23T16:00:00+07:00"), 7200), at("2026-12-28T09:00:00+07:00"));
        // A whole working day is 9 hours: 48 working hours from Monday 08:00 is the next Monday 11:00.
        assert_eq!(s.after_working(at("2026-11-23T08:00:00+07:00"), 48 * 3600), at("2026-11-30T11:00:00+07:00"));
    }

    #[test]
    fn idle_time_outside_the_owners_hours_does_not_count() {
        let s = office();
        let p = policy(7200, true);
        let since = at("2026-11-27T16:30:00+07:00");
        // Monday 09:00: 30 min on Friday + 1 h on Monday = 1.5 h < 2 h, though 64.5 h have passed.
        assert_eq!(
            p.due(Stage::Owner, since, false, Some(&s), at("2026-11-30T09:00:00+07:00")),
            Due::NotBefore(at("2026-11-30T09:30:00+07:00"))
        );
        assert_eq!(p.due(Stage::Owner, since, false, Some(&s), at("2026-11-30T09:30:00+07:00")), Due::Stale);
        // The same window on the wall clock is long gone.
        assert_eq!(
            policy(7200, false).due(Stage::Owner, since, false, Some(&s), at("2026-11-27T18:31:00+07:00")),
            Due::Stale
        );
        // No schedule: wall-clock time.
        assert_eq!(p.due(Stage::Owner, since, false, None, at("2026-11-27T18:31:00+07:00")), Due::Stale);
    }

    #[test]
    fn the_warning_comes_once_at_its_fraction_of_the_window() {
        let mut p = policy(1000, false);
        p.warn_at = Some(0.75);
        let since = at("2026-11-23T00:00:00Z");
        let t = |s: i64| since + Duration::seconds(s);
        assert_eq!(p.due(Stage::Owner, since, false, None, t(100)), Due::NotBefore(t(750)));
        assert_eq!(p.due(Stage::Owner, since, false, None, t(800)), Due::Warn(t(1000)));
        assert_eq!(p.due(Stage::Owner, since, true, None, t(800)), Due::NotBefore(t(1000)));
        assert_eq!(p.due(Stage::Owner, since, true, None, t(1000)), Due::Stale);
    }

    #[test]
    fn team_overrides_and_the_escalation_window_shape_the_earliest_look() {
        let mut p = policy(48 * 3600, false);
        p.escalate = Some(Escalate { to: EscalateTo::TeamLead, after: 24 * 3600 });
        assert_eq!(p.earliest(), 24 * 3600);
        let mut fast = p.clone();
        fast.after = 3600;
        fast.warn_at = Some(0.5);
        p.by_team.insert("hot".into(), fast);
        assert_eq!(p.earliest(), 1800);
        assert_eq!(p.for_team(Some("hot")).after, 3600);
        assert_eq!(p.for_team(Some("other")).after, 48 * 3600);
        assert_eq!(p.window(Stage::Escalated), 24 * 3600);
    }

    #[test]
    fn which_interactions_count_is_the_policys_choice() {
        let touch = at("2026-11-23T01:00:00Z");
        let activity = Some(at("2026-11-23T02:00:00Z"));
        let edit = Some(at("2026-11-23T03:00:00Z"));
        let mut p = policy(3600, false);
        assert_eq!(p.idle_since(touch, activity, edit), touch);
        p.anyone = true;
        assert_eq!(p.idle_since(touch, activity, edit), at("2026-11-23T02:00:00Z"));
        p.owner_edits = true;
        assert_eq!(p.idle_since(touch, activity, edit), at("2026-11-23T03:00:00Z"));
    }
}
