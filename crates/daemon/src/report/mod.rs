//! The routing report: who got how many opportunities, per team and member, per rule and over
//! time; how fair each team's shares were; and, for `simulate`, the same beside what a candidate
//! rule set would have done, with every opportunity whose owner would change and why.
//!
//! Owns the report's model, its figures (fairness: max/min ratio and Gini) and its renderings
//! (`text`, JSON through serde, `html`: one self-contained page, charts as inline SVG). It must
//! not read the database, a file or a clock: `simulate` and `report` hand it the decisions.

pub mod html;
mod text;

use std::collections::BTreeMap;

use serde::Serialize;

/// One opportunity's decision, as the audit recorded it or as a replay made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Routed {
    pub opp_id: String,
    /// When it was decided (seconds since the epoch).
    pub at: i64,
    /// Where it ended: `rule`, `fallback`, `reclaim` (owned by a reclaim's pick), `held`
    /// (waiting), `unassigned`, `unwritten` (the write statement refused it) or `skipped` (owned,
    /// closed or deleted in the CRM before the router wrote).
    pub outcome: String,
    pub owner: Option<String>,
    pub team: Option<String>,
    pub pipeline: String,
    pub rule: Option<String>,
    /// The decision in one line (a replay's explanation); empty for the audit's.
    pub reason: String,
    /// Each member's share of this decision by the rules that made it (`Engine::entitlement`):
    /// who could have received it, by weight.
    #[serde(skip)]
    pub entitled: Vec<(String, f64)>,
}

/// What goes into a report besides the decisions.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub title: String,
    /// The window replayed or reported, as the user reads it.
    pub window: String,
    /// The candidate rules' version (`simulate`), or the rules in force (`report`).
    pub rules: String,
    /// Each member's open load when the window began.
    pub start_loads: BTreeMap<String, i64>,
    /// Teams and their members, in the rules' order.
    pub teams: Vec<(String, Vec<String>)>,
    /// Member id → display name.
    pub names: BTreeMap<String, String>,
    /// Members paused in the rules (on leave): listed, left out of their teams' fairness.
    pub paused: std::collections::BTreeSet<String>,
    /// Reclaims by pipeline in the window (`report`).
    pub reclaims: BTreeMap<String, i64>,
    /// Opportunities that could not be replayed, by why (deleted since, no longer an opportunity).
    pub skipped: BTreeMap<String, usize>,
    /// Width of a time bucket of the fallback chart, in seconds.
    pub bucket_secs: i64,
}

/// How many opportunities ended each way: each counted once, by where it ended (for `report`,
/// its last decision, or why it is still unowned; for a replay, the replay's decision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Owned by a rule's pick.
    pub rule: usize,
    /// Owned by a fallback owner.
    pub fallback: usize,
    /// Owned by the member a reclaim gave it to.
    pub reclaimed: usize,
    /// Still waiting (held: for capacity, an away team or required fields); not an end.
    pub held: usize,
    /// Unowned: no rule yielded anybody and there is no fallback owner.
    pub unassigned: usize,
    /// Unowned: the write statement refused it.
    pub unwritten: usize,
    /// Owned by a person, closed or deleted in the CRM before the router wrote (`explain` says).
    pub elsewhere: usize,
}

impl Outcomes {
    fn count(rows: &[Routed]) -> Outcomes {
        let mut o = Outcomes::default();
        for r in rows {
            match r.outcome.as_str() {
                "rule" => o.rule += 1,
                "fallback" => o.fallback += 1,
                "reclaim" => o.reclaimed += 1,
                "held" => o.held += 1,
                "unwritten" => o.unwritten += 1,
                "skipped" => o.elsewhere += 1,
                _ => o.unassigned += 1,
            }
        }
        o
    }
}

/// A figure before, and after when the report compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pair<T> {
    pub before: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<T>,
}

/// One member: opportunities received in the window, and the load it makes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberRow {
    pub id: String,
    pub name: String,
    pub start_load: i64,
    pub assigned: Pair<usize>,
    /// `start_load` plus what the window gave them (closings in the window are not counted).
    pub load: Pair<i64>,
}

/// How evenly a team's members were given work, measured against what each could expect by the
/// rules (their entitlement: the decisions they could have received, by weight): the largest
/// received/expected over the smallest, and the Gini coefficient of the same (0 = everyone got
/// exactly their share, towards 1 = one member got everything). A member who could not receive
/// (disabled, paused, away, full) is counted for the part of the window they could; a team
/// configured 2:1 that gives 2:1 reads as fair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Fairness {
    /// Over the members who could expect at least one; `None` when one of them got nothing (the
    /// ratio is unbounded) or nobody could expect one.
    pub max_min: Option<f64>,
    pub gini: f64,
    /// How many members could expect at least one (those the ratio compares).
    pub measured: usize,
}

impl Fairness {
    /// From each member's (received, expected).
    /// Expectations and figures are taken to a millionth, so sums made in another order (the
    /// daemon's, as decisions commit; the report's, by time) give the very same figure.
    pub fn of(shares: &[(usize, f64)]) -> Fairness {
        let shares: Vec<(usize, f64)> = shares.iter().map(|(r, e)| (*r, micro(*e))).collect();
        let due: Vec<f64> = shares.iter().filter(|(_, e)| *e >= 1.0).map(|(r, e)| *r as f64 / e).collect();
        let (max, min) = due.iter().fold((f64::MIN, f64::MAX), |(hi, lo), x| (hi.max(*x), lo.min(*x)));
        let max_min = (!due.is_empty() && min > 0.0).then(|| micro(max / min));
        Fairness { max_min, gini: micro(weighted_gini(&shares)), measured: due.len() }
    }

    /// The ratio as people read it: "1.25", "∞" (someone who could expect one got none), or "–"
    /// (too few decisions to measure).
    pub fn ratio_text(&self) -> String {
        match self.max_min {
            Some(x) => format!("{x:.2}"),
            None if self.measured == 0 => "–".to_string(),
            None => "∞".to_string(),
        }
    }
}

impl Report {
    /// A member as people read them: "Bình (102)", the id alone when no name is known, or
    /// "nobody".
    pub fn who(&self, id: Option<&str>) -> String {
        let Some(id) = id else { return "nobody".into() };
        let name = self.members.iter().find(|m| m.id == id).map_or("", |m| m.name.as_str());
        crate::engine::person(id, name)
    }
}

impl TeamMember {
    /// "Bình (11)", or the id alone when the rules give no name; "(paused)" when on leave.
    pub fn label(&self, paused: bool) -> String {
        let who = crate::engine::person(&self.id, &self.name);
        if paused {
            format!("{who} (paused)")
        } else {
            who
        }
    }
}

/// `x` to a millionth.
pub fn micro(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The Gini coefficient of received/expected, each member weighing what they could expect:
/// Σᵢ Σⱼ |Eⱼ rᵢ − Eᵢ rⱼ| / (2 · ΣE · Σr). With equal expectations it is the plain Gini of the counts.
pub fn weighted_gini(shares: &[(usize, f64)]) -> f64 {
    let counted: Vec<(f64, f64)> = shares.iter().filter(|(_, e)| *e > 1e-9).map(|(r, e)| (*r as f64, *e)).collect();
    let expected: f64 = counted.iter().map(|(_, e)| e).sum();
    let received: f64 = counted.iter().map(|(r, _)| r).sum();
    if counted.len() < 2 || received == 0.0 {
        return 0.0;
    }
    let mut sum = 0.0;
    for (ri, ei) in &counted {
        for (rj, ej) in &counted {
            sum += (ej * ri - ei * rj).abs();
        }
    }
    sum / (2.0 * expected * received)
}

/// One member of a team: what they received through it, and what they could expect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamMember {
    pub id: String,
    pub name: String,
    pub assigned: Pair<usize>,
    /// Their entitlement: the team's decisions they could have received, by weight.
    pub expected: Pair<f64>,
}

/// One team: what each member received through it, and how fair that was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamRow {
    pub id: String,
    pub members: Vec<TeamMember>,
    /// Members paused in the rules: listed above; they could expect nothing while paused.
    pub paused: Vec<String>,
    pub assigned: Pair<usize>,
    pub fairness: Pair<Fairness>,
}

/// One rule of one pipeline: how many opportunities it gave an owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleRow {
    pub pipeline: String,
    pub rule: String,
    pub assigned: Pair<usize>,
}

/// Fallbacks in one time bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The bucket's start, RFC 3339.
    pub start: String,
    pub decisions: usize,
    pub fallbacks: Pair<usize>,
}

/// An opportunity whose owner the candidate rules would change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub opp_id: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub before_rule: Option<String>,
    pub after_rule: Option<String>,
    pub after_outcome: String,
    pub reason: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub title: String,
    pub window: String,
    pub rules: String,
    /// Whether this compares with a candidate rule set (`simulate`).
    pub compares: bool,
    pub opportunities: usize,
    pub skipped: BTreeMap<String, usize>,
    pub outcomes: Pair<Outcomes>,
    pub members: Vec<MemberRow>,
    pub teams: Vec<TeamRow>,
    pub rules_used: Vec<RuleRow>,
    pub fallbacks_over_time: Vec<Bucket>,
    pub reclaims: BTreeMap<String, i64>,
    /// Every opportunity whose owner would change (`simulate`), oldest first.
    pub changes: Vec<Change>,
}

impl Report {
    /// The report of `before` (what happened), compared with `after` (the same opportunities,
    /// in the same order, as the candidate rules decide them) when given.
    pub fn build(inputs: Inputs, before: &[Routed], after: Option<&[Routed]>) -> Report {
        let members = member_rows(&inputs, before, after);
        let teams = inputs.teams.iter().map(|(id, ms)| team_row(&inputs, id, ms, before, after)).collect();
        Report {
            compares: after.is_some(),
            opportunities: before.len(),
            outcomes: Pair { before: Outcomes::count(before), after: after.map(Outcomes::count) },
            members,
            teams,
            rules_used: rule_rows(before, after),
            fallbacks_over_time: buckets(inputs.bucket_secs, before, after),
            changes: after.map(|a| changes(before, a)).unwrap_or_default(),
            title: inputs.title,
            window: inputs.window,
            rules: inputs.rules,
            skipped: inputs.skipped,
            reclaims: inputs.reclaims,
        }
    }

    /// The report as text, for a terminal.
    pub fn text(&self) -> String {
        text::render(self)
    }
}

/// How many of `rows` `key` counts for each value it gives.
fn tally<K: Ord>(rows: &[Routed], key: impl Fn(&Routed) -> Option<K>) -> BTreeMap<K, usize> {
    let mut m = BTreeMap::new();
    for k in rows.iter().filter_map(key) {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn pair_of<K: Ord>(before: &BTreeMap<K, usize>, after: Option<&BTreeMap<K, usize>>, k: &K) -> Pair<usize> {
    Pair { before: before.get(k).copied().unwrap_or(0), after: after.map(|a| a.get(k).copied().unwrap_or(0)) }
}

/// Every member of the teams and every owner in either side, in id order.
fn member_rows(inputs: &Inputs, before: &[Routed], after: Option<&[Routed]>) -> Vec<MemberRow> {
    let owner = |r: &Routed| r.owner.clone();
    let b = tally(before, owner);
    let a = after.map(|a| tally(a, owner));
    let mut ids: Vec<&String> = inputs.teams.iter().flat_map(|(_, ms)| ms).collect();
    ids.extend(b.keys());
    ids.extend(a.iter().flat_map(|a| a.keys()));
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let assigned = pair_of(&b, a.as_ref(), id);
            let start_load = inputs.start_loads.get(id).copied().unwrap_or(0);
            let load = |n: usize| start_load + n as i64;
            MemberRow {
                id: id.clone(),
                name: inputs.names.get(id).cloned().unwrap_or_else(|| id.clone()),
                start_load,
                assigned,
                load: Pair { before: load(assigned.before), after: assigned.after.map(load) },
            }
        })
        .collect()
}

fn team_row(inputs: &Inputs, id: &str, members: &[String], before: &[Routed], after: Option<&[Routed]>) -> TeamRow {
    let here = |r: &Routed| (r.team.as_deref() == Some(id)).then(|| r.owner.clone()).flatten();
    let b = tally(before, here);
    let a = after.map(|a| tally(a, here));
    let (eb, ea) = (expected_in(id, before), after.map(|a| expected_in(id, a)));
    let rows: Vec<TeamMember> = members
        .iter()
        .map(|m| TeamMember {
            id: m.clone(),
            name: inputs.names.get(m).cloned().unwrap_or_else(|| m.clone()),
            assigned: pair_of(&b, a.as_ref(), m),
            expected: Pair {
                before: micro(eb.get(m).copied().unwrap_or(0.0)),
                after: ea.as_ref().map(|e| micro(e.get(m).copied().unwrap_or(0.0))),
            },
        })
        .collect();
    let before_shares: Vec<(usize, f64)> = rows.iter().map(|r| (r.assigned.before, r.expected.before)).collect();
    let after_shares: Option<Vec<(usize, f64)>> = a
        .as_ref()
        .map(|_| rows.iter().map(|r| (r.assigned.after.unwrap_or(0), r.expected.after.unwrap_or(0.0))).collect());
    let total = |f: fn(&Pair<usize>) -> usize| rows.iter().map(|r| f(&r.assigned)).sum::<usize>();
    TeamRow {
        id: id.to_string(),
        assigned: Pair { before: total(|p| p.before), after: a.as_ref().map(|_| total(|p| p.after.unwrap_or(0))) },
        fairness: Pair { before: Fairness::of(&before_shares), after: after_shares.as_deref().map(Fairness::of) },
        paused: members.iter().filter(|m| inputs.paused.contains(*m)).cloned().collect(),
        members: rows,
    }
}

/// Each member's entitlement summed over the decisions that gave an owner through `team`.
fn expected_in(team: &str, rows: &[Routed]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| r.team.as_deref() == Some(team) && r.owner.is_some()) {
        for (m, share) in &r.entitled {
            *out.entry(m.clone()).or_insert(0.0) += share;
        }
    }
    out
}

/// Opportunities given an owner by each rule, in pipeline and rule order.
fn rule_rows(before: &[Routed], after: Option<&[Routed]>) -> Vec<RuleRow> {
    let key = |r: &Routed| r.rule.clone().filter(|_| r.owner.is_some()).map(|rule| (r.pipeline.clone(), rule));
    let b = tally(before, key);
    let a = after.map(|a| tally(a, key));
    let mut keys: Vec<&(String, String)> = b.keys().chain(a.iter().flat_map(|a| a.keys())).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| RuleRow { pipeline: k.0.clone(), rule: k.1.clone(), assigned: pair_of(&b, a.as_ref(), k) })
        .collect()
}

/// Fallbacks per time bucket, from the first decision's bucket to the last's.
fn buckets(width: i64, before: &[Routed], after: Option<&[Routed]>) -> Vec<Bucket> {
    let width = width.max(1);
    let slot = |r: &Routed| r.at.div_euclid(width);
    let (Some(first), Some(last)) = (before.iter().map(slot).min(), before.iter().map(slot).max()) else {
        return Vec::new();
    };
    let fallback = |r: &Routed| (r.outcome == "fallback").then(|| slot(r));
    let all = tally(before, |r| Some(slot(r)));
    let b = tally(before, fallback);
    let a = after.map(|a| tally(a, fallback));
    (first..=last)
        .map(|s| Bucket {
            start: chrono::DateTime::from_timestamp(s * width, 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
            decisions: all.get(&s).copied().unwrap_or(0),
            fallbacks: pair_of(&b, a.as_ref(), &s),
        })
        .collect()
}

/// The opportunities whose owner differs, with the candidate rules' reason.
fn changes(before: &[Routed], after: &[Routed]) -> Vec<Change> {
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.owner != a.owner)
        .map(|(b, a)| Change {
            opp_id: b.opp_id.clone(),
            before: b.owner.clone(),
            after: a.owner.clone(),
            before_rule: b.rule.clone(),
            after_rule: a.rule.clone(),
            after_outcome: a.outcome.clone(),
            reason: a.reason.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain Gini coefficient (mean absolute difference over twice the mean): the weighted one
    /// must equal it when every member could expect the same.
    fn gini(counts: &[usize]) -> f64 {
        let n = counts.len() as f64;
        let total: f64 = counts.iter().map(|c| *c as f64).sum();
        if counts.len() < 2 || total == 0.0 {
            return 0.0;
        }
        let mut sorted: Vec<f64> = counts.iter().map(|c| *c as f64).collect();
        sorted.sort_by(f64::total_cmp);
        // Σ (2i − n − 1) x_i over the sorted values, i from 1.
        let weighted: f64 = sorted.iter().enumerate().map(|(i, x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x).sum();
        weighted / (n * total)
    }

    #[test]
    fn gini_is_zero_for_equal_shares_and_grows_as_one_member_takes_more() {
        assert_eq!(gini(&[5, 5, 5, 5]), 0.0);
        assert!((gini(&[0, 0, 0, 12]) - 0.75).abs() < 1e-9, "{}", gini(&[0, 0, 0, 12]));
        assert!((gini(&[1, 3]) - 0.25).abs() < 1e-9);
        // With equal expectations the weighted Gini is the plain one.
        let shares = |c: &[usize]| {
            let e = c.iter().sum::<usize>() as f64 / c.len() as f64;
            c.iter().map(|c| (*c, e)).collect::<Vec<_>>()
        };
        for c in [&[5, 5, 5, 5][..], &[0, 0, 0, 12], &[1, 3], &[7, 2, 9]] {
            assert!((weighted_gini(&shares(c)) - gini(c)).abs() < 1e-9, "{c:?}");
        }
        assert_eq!(Fairness::of(&shares(&[4, 2])).max_min, Some(2.0));
        assert_eq!(Fairness::of(&shares(&[4, 0])).max_min, None);
        assert_eq!(Fairness::of(&[]), Fairness::default());
    }

    #[test]
    fn fairness_is_measured_against_what_each_could_expect() {
        // A team configured 2:1 that gave 20 and 10 is fair by its own rules.
        let f = Fairness::of(&[(20, 20.0), (10, 10.0)]);
        assert_eq!((f.max_min, f.gini), (Some(1.0), 0.0));
        // Someone on leave all window could expect nothing: left out, not "∞".
        let f = Fairness::of(&[(15, 15.0), (15, 15.0), (0, 0.0)]);
        assert_eq!((f.max_min, f.gini, f.measured), (Some(1.0), 0.0, 2));
        // Away half the window: counted for the half they could receive.
        let f = Fairness::of(&[(12, 12.5), (13, 12.5), (5, 5.0)]);
        assert!(f.max_min.is_some_and(|r| r < 1.1) && f.gini < 0.03, "{f:?}");
        // Someone who could have received ten and got none is unfair.
        let f = Fairness::of(&[(20, 10.0), (0, 10.0)]);
        assert_eq!(f.max_min, None);
        assert!((f.gini - 0.5).abs() < 1e-9, "{f:?}");
    }

    fn routed(id: &str, at: i64, outcome: &str, owner: Option<&str>, team: Option<&str>) -> Routed {
        Routed {
            opp_id: id.into(),
            at,
            outcome: outcome.into(),
            owner: owner.map(Into::into),
            team: team.map(Into::into),
            pipeline: "default".into(),
            rule: (outcome == "rule").then(|| "r".to_string()),
            reason: format!("why {id}"),
            // Both members of the team could receive each decision, alike.
            entitled: vec![("a".into(), 0.5), ("b".into(), 0.5)],
        }
    }

    #[test]
    fn a_comparison_counts_each_side_per_member_team_rule_and_hour_and_lists_the_changes() {
        let before = vec![
            routed("1", 0, "rule", Some("a"), Some("t")),
            routed("2", 10, "rule", Some("a"), Some("t")),
            routed("3", 3_700, "fallback", Some("boss"), None),
        ];
        let after = vec![
            routed("1", 0, "rule", Some("a"), Some("t")),
            routed("2", 10, "rule", Some("b"), Some("t")),
            routed("3", 3_700, "rule", Some("b"), Some("t")),
        ];
        let inputs = Inputs {
            teams: vec![("t".into(), vec!["a".into(), "b".into()])],
            start_loads: [("a".to_string(), 3)].into(),
            bucket_secs: 3_600,
            ..Default::default()
        };
        let r = Report::build(inputs.clone(), &before, Some(&after));
        let a = r.members.iter().find(|m| m.id == "a").expect("a");
        assert_eq!((a.assigned, a.load), (Pair { before: 2, after: Some(1) }, Pair { before: 5, after: Some(4) }));
        assert_eq!(r.teams[0].assigned, Pair { before: 2, after: Some(3) });
        assert_eq!(r.teams[0].fairness.before.max_min, None, "b could expect one and got nothing before");
        assert_eq!(r.teams[0].fairness.after.and_then(|f| f.max_min), Some(2.0));
        assert_eq!(r.teams[0].members[1].expected, Pair { before: 1.0, after: Some(1.5) });
        assert_eq!(r.outcomes.after.map(|o| o.fallback), Some(0));
        assert_eq!(r.fallbacks_over_time.len(), 2);
        assert_eq!(r.fallbacks_over_time[1].fallbacks, Pair { before: 1, after: Some(0) });
        let changed: Vec<&str> = r.changes.iter().map(|c| c.opp_id.as_str()).collect();
        assert_eq!(changed, ["2", "3"]);
        assert_eq!(r.changes[1].reason, "why 3");
        // A member on leave is listed, and left out of the fairness.
        let on_leave = Inputs { paused: ["b".to_string()].into(), ..inputs };
        let r = Report::build(on_leave, &before, None);
        assert_eq!(r.teams[0].paused, vec!["b".to_string()]);
        assert_eq!(r.teams[0].assigned.before, 2);
    }
}
