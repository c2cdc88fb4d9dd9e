//! The report as text: outcomes, teams with their fairness, members, rules, then the changes.

use std::fmt::Write;

use super::{Fairness, Pair, Report};

/// How many changed opportunities the text lists (the JSON and the page list them all).
const CHANGES_SHOWN: usize = 50;

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n{} · rules {} · {} opportunities", r.title, r.window, r.rules, r.opportunities);
    for (why, n) in &r.skipped {
        let _ = writeln!(out, "  not replayed: {n} ({why})");
    }
    outcomes(&mut out, r);
    teams(&mut out, r);
    members(&mut out, r);
    rules(&mut out, r);
    for (pipeline, n) in &r.reclaims {
        let _ = writeln!(out, "reclaimed in pipeline {pipeline}: {n}");
    }
    changes(&mut out, r);
    out
}

/// `before` alone, or `before → after`.
fn pair<T: std::fmt::Display>(p: &Pair<T>) -> String {
    match &p.after {
        Some(a) => format!("{} → {a}", p.before),
        None => p.before.to_string(),
    }
}

fn fairness(f: &Fairness) -> String {
    let ratio = match f.ratio_text().as_str() {
        "∞" => "∞ (someone who could receive got none)".to_string(),
        "–" => "– (too few to measure)".to_string(),
        r => r.to_string(),
    };
    format!("received/expected max/min {ratio}, Gini {:.3}", f.gini)
}

fn outcomes(out: &mut String, r: &Report) {
    let o = &r.outcomes;
    let side = |f: fn(&super::Outcomes) -> usize| pair(&Pair { before: f(&o.before), after: o.after.as_ref().map(f) });
    let _ = writeln!(
        out,
        "\noutcomes{}, each opportunity once, where it ended: by a rule {}, fallback {}, by a reclaim {}; \
         still waiting (held) {}; unowned: unassigned {}, not written {}; owned, closed or deleted in the CRM first {}",
        if r.compares { " (now → candidate rules)" } else { "" },
        side(|o| o.rule),
        side(|o| o.fallback),
        side(|o| o.reclaimed),
        side(|o| o.held),
        side(|o| o.unassigned),
        side(|o| o.unwritten),
        side(|o| o.elsewhere)
    );
}

fn teams(out: &mut String, r: &Report) {
    let _ = writeln!(out, "\nteams:");
    for t in &r.teams {
        let _ = write!(out, "  {}: {} assigned; {}", t.id, pair(&t.assigned), fairness(&t.fairness.before));
        if let Some(a) = &t.fairness.after {
            let _ = write!(out, " → {}", fairness(a));
        }
        let expected = |p: &Pair<f64>| match p.after {
            Some(a) => format!("{:.1} → {a:.1}", p.before),
            None => format!("{:.1}", p.before),
        };
        let shares: Vec<String> = t
            .members
            .iter()
            .map(|m| {
                format!(
                    "{} {} (expected {})",
                    m.label(t.paused.contains(&m.id)),
                    pair(&m.assigned),
                    expected(&m.expected)
                )
            })
            .collect();
        let _ = writeln!(out, "\n    {}", shares.join(", "));
    }
}

fn members(out: &mut String, r: &Report) {
    let _ = writeln!(out, "\nmembers (assigned in the window; load = open at its start + assigned):");
    for m in &r.members {
        let _ = writeln!(
            out,
            "  {:<24} assigned {:<10} load {}",
            crate::engine::person(&m.id, &m.name),
            pair(&m.assigned),
            pair(&m.load)
        );
    }
}

fn rules(out: &mut String, r: &Report) {
    let _ = writeln!(out, "\nassignments per rule:");
    for x in &r.rules_used {
        let _ = writeln!(out, "  {}/{}: {}", x.pipeline, x.rule, pair(&x.assigned));
    }
}

fn changes(out: &mut String, r: &Report) {
    if !r.compares {
        return;
    }
    let _ = writeln!(out, "\n{} opportunities would change owner", r.changes.len());
    for c in r.changes.iter().take(CHANGES_SHOWN) {
        let who = |o: &Option<String>| r.who(o.as_deref());
        let _ =
            writeln!(out, "  {}: {} → {} ({}): {}", c.opp_id, who(&c.before), who(&c.after), c.after_outcome, c.reason);
    }
    if r.changes.len() > CHANGES_SHOWN {
        let _ = writeln!(out, "  … and {} more (--json or --html list them all)", r.changes.len() - CHANGES_SHOWN);
    }
}
