//! The tests a rule file carries (`[[test]]`): an opportunity, the state around it, and what
//! routing it must give. They run at every load against the set as it will route; a failing one
//! refuses the set like a syntax error.
//!
//! Owns running one test and wording its differences. It must not read files or a clock (a
//! test's `now` is written in the file, or a fixed default).

use chrono::{DateTime, Utc};

use super::format::RawTest;
use engine::{Engine, Ledger, Opportunity};

const DEFAULT_TEST_NOW: &str = "2030-01-07T03:00:00Z";

/// Run one rule-file test; every difference from what it expects, one line each.
pub(super) fn run_test(engine: &Engine, fields: &[String], t: &RawTest) -> Result<(), Vec<String>> {
    let mut values: Vec<Option<String>> = vec![None; fields.len()];
    for (k, v) in &t.fields {
        match fields.iter().position(|f| f == k) {
            Some(i) => values[i] = Some(v.text()),
            None => {
                return Err(vec![format!(
                    "fields.{k}: unknown field; fields mapped in the daemon config: {}",
                    fields.join(", ")
                )])
            }
        }
    }
    let now_text = t.now.as_deref().unwrap_or(DEFAULT_TEST_NOW);
    let now = DateTime::parse_from_rfc3339(now_text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| vec![format!("now: `{now_text}` is not an RFC 3339 time ({e})")])?;
    let mut e = engine.clone();
    for p in &t.paused {
        match e.member_index(p) {
            Some(i) => e.members[i].paused = true,
            None => return Err(vec![format!("paused: unknown member `{p}`")]),
        }
    }
    let mut ledger = Ledger::for_engine(&e, None);
    for (m, n) in &t.open {
        match e.member_index(m) {
            Some(i) => ledger.open[i] = *n,
            None => return Err(vec![format!("open: unknown member `{m}`")]),
        }
    }
    let opp = Opportunity {
        id: "test",
        pipeline: t.pipeline.as_deref(),
        fields: &values,
        waiting_since: now,
        exclude: &[],
        only_team: None,
    };
    let mut rng = Steps(0);
    let d = e.route(&opp, &mut ledger, now, &mut rng);
    let x = &t.expect;
    let shown = |v: Option<&str>| v.unwrap_or("nobody").to_string();
    let mut wrong: Vec<String> = Vec::new();
    let mut differs = |what: &str, want: &str, got: String| {
        if !want.eq_ignore_ascii_case(&got) {
            wrong.push(format!("{what}: expected {want}, got {got}"));
        }
    };
    if let Some(m) = &x.member {
        differs("member", m, shown(d.owner.as_deref()));
    }
    if let Some(tm) = &x.team {
        differs("team", tm, shown(d.team.as_deref()));
    }
    if let Some(o) = &x.outcome {
        differs("outcome", o, d.outcome.as_str().to_string());
    }
    if let Some(r) = &x.rule {
        differs("rule", r, shown(d.rule_id.as_deref()));
    }
    for tag in x.tags.iter().filter(|tag| !d.tags.contains(&tag.to_lowercase())) {
        let got = if d.tags.is_empty() { "none".to_string() } else { d.tags.join(", ") };
        wrong.push(format!("tags: expected {tag} among them, got {got}"));
    }
    if let Some(s) = &x.explanation_contains {
        let explanation = serde_json::to_string(&d.explanation).unwrap_or_default();
        if !explanation.contains(s.as_str()) {
            wrong.push(format!("explanation: expected it to contain `{s}`, it does not"));
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let why = crate::bounded(&d.explanation.brief(), 300);
    Err(wrong.into_iter().map(|w| format!("{w} ({why})")).collect())
}

/// The randomness a rule-file test routes with: 0, 1, 2, … (so "random" picks the first eligible
/// member first, the same on every run).
struct Steps(u64);

impl rand::TryRng for Steps {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.try_next_u64().map(|v| v as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let v = self.0;
        self.0 = self.0.wrapping_add(1);
        Ok(v)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
