//! The demo's summary, told from what the router recorded: per team and member, the story
//! (fairness, caps, fallbacks by reason, the reload, the reclaims, simulate of the rules in force),
//! and the latency. It reads and prints; it must not change anything.

use std::collections::HashMap;

use anyhow::Context as _;

use super::{Stage, EDITED_FILE, EDIT_SAID};

/// Per team and member: assigned, open load, fallback.
pub(super) async fn print_loads(stage: &Stage) -> anyhow::Result<()> {
    let s = stage.cfg.router.schema.quoted();
    println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", "team", "member", "assigned", "open load", "fallback");
    let rows = stage
        .client
        .query(
            &format!(
                "WITH a AS (SELECT owner_id, coalesce(team_id, '(fallback)') AS team, count(*) FILTER (WHERE outcome = 'rule') AS ruled, \
                 count(*) FILTER (WHERE outcome = 'fallback') AS fb FROM {s}.assignments WHERE owner_id IS NOT NULL GROUP BY 1, 2) \
                 SELECT a.team, a.owner_id, a.ruled, a.fb, coalesce(m.open_count, 0) AS open FROM a \
                 LEFT JOIN {s}.member_state m ON m.member_id = a.owner_id ORDER BY a.team, a.owner_id"
            ),
            &[],
        )
        .await?;
    let (mut tr, mut tf) = (0i64, 0i64);
    for r in &rows {
        let owner: String = r.try_get("owner_id")?;
        let (ruled, fb): (i64, i64) = (r.try_get("ruled")?, r.try_get("fb")?);
        let (team, open): (String, i32) = (r.try_get("team")?, r.try_get("open")?);
        tr += ruled;
        tf += fb;
        let name = format!("{owner} {}", stage.names.get(&owner).map(String::as_str).unwrap_or(""));
        println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", team, name, ruled + fb, open, fb);
    }
    println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", "total", "", tr + tf, "", tf);
    Ok(())
}

/// The story's outcome: fairness within each team, the caps, why fallbacks happened, the reload,
/// the reclaims, and the page of what happened (what `report --html` writes).
pub(super) async fn print_story(stage: &mut Stage) -> anyhow::Result<()> {
    let (engine, sql) = oppty_router::simulate::rules_as_routed(&stage.client, &stage.cfg, true).await?;
    let opts = oppty_router::simulate::Options {
        since: chrono::Utc::now() - chrono::Duration::days(1),
        ids: None,
        seed: 1,
        window: "the demo's run".into(),
        in_force: false,
    };
    let report = oppty_router::simulate::report(&mut stage.client, &stage.cfg, &sql, &engine, &opts).await?;
    // What the router says it did is what it did: the same decisions replayed with the rules that
    // made them (the reload mid-run included) from what each saw change nothing.
    let again = oppty_router::simulate::Options { in_force: true, ..opts.clone() };
    let replayed = oppty_router::simulate::simulate(&mut stage.client, &stage.cfg, &sql, &engine, &again).await?;
    println!(
        "\n  simulate of the rules in force (`oppty-router simulate --in-force`): {} opportunities replayed from what \
         the router saw, {} would change",
        replayed.opportunities,
        replayed.changes.len()
    );
    // Should one ever differ, it says which and why (a replay that is not the decision is a bug).
    for c in replayed.changes.iter().take(5) {
        println!(
            "    {}: {} by {} then, {} by {} replayed ({}): {}",
            c.opp_id,
            c.before.as_deref().unwrap_or("nobody"),
            c.before_rule.as_deref().unwrap_or("-"),
            c.after.as_deref().unwrap_or("nobody"),
            c.after_rule.as_deref().unwrap_or("-"),
            c.after_outcome,
            c.reason
        );
    }
    println!(
        "\n  fairness within each team (received / expected by the rules, largest over smallest; Gini, 0 = \
         everyone got their share; members count for the time they could receive, by weight):"
    );
    for t in report.teams.iter().filter(|t| t.assigned.before > 0) {
        let shares: Vec<String> = t
            .members
            .iter()
            .map(|m| format!("{} {}/{:.1}", m.label(t.paused.contains(&m.id)), m.assigned.before, m.expected.before))
            .collect();
        let f = &t.fairness.before;
        println!("    {:<17} {:>6} / Gini {:.3}   {}", t.id, f.ratio_text(), f.gini, shares.join(", "));
    }
    print_caps(stage, &engine, &report).await?;
    print_fallbacks(stage).await?;
    print_reload_and_reclaims(stage).await?;
    let page = std::env::temp_dir().join("oppty-router-demo-report.html");
    std::fs::write(&page, oppty_router::report::html::render(&report))
        .with_context(|| format!("writing {}", page.display()))?;
    println!("\n  the report of what happened (`oppty-router report --html FILE`): {}", page.display());
    Ok(())
}

/// Each member's caps, and how full they are: assigned in the run against a windowed cap, open
/// now against an open cap.
pub(super) async fn print_caps(
    stage: &Stage,
    engine: &oppty_router::engine::Engine,
    report: &oppty_router::report::Report,
) -> anyhow::Result<()> {
    let s = stage.cfg.router.schema.quoted();
    let open: HashMap<String, i64> = stage
        .client
        .query(&format!("SELECT member_id, open_count::int8 AS open FROM {s}.member_state"), &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get("member_id")?, r.try_get("open")?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    println!("\n  caps (never passed):");
    for m in engine.members.iter().filter(|m| !m.caps.is_empty()) {
        let assigned = report.members.iter().find(|r| *r.id == *m.id).map_or(0, |r| r.assigned.before as i64);
        let each: Vec<String> = m
            .caps
            .iter()
            .map(|c| match c.window {
                oppty_router::engine::Window::Open => {
                    format!("{} open of {}", open.get(&*m.id).copied().unwrap_or(0), c.max)
                }
                _ => format!("{assigned} of {} per {}", c.max, c.label),
            })
            .collect();
        println!("    {:<28} {}", format!("{} {}", m.id, m.name), each.join(", "));
    }
    Ok(())
}

/// Why opportunities went to a fallback owner: the last rule each tried, and how it went.
pub(super) async fn print_fallbacks(stage: &Stage) -> anyhow::Result<()> {
    let s = stage.cfg.router.schema.quoted();
    let rows = stage
        .client
        .query(
            &format!(
                "SELECT explanation, count(*) AS n FROM {s}.assignments_explained WHERE outcome = 'fallback' \
                 GROUP BY 1 ORDER BY 2 DESC"
            ),
            &[],
        )
        .await?;
    let mut why: std::collections::BTreeMap<String, i64> = Default::default();
    for r in &rows {
        let ex: oppty_router::engine::Explanation = serde_json::from_value(r.try_get("explanation")?)?;
        let last = ex.rules.iter().rev().find(|t| t.result != oppty_router::engine::RuleResult::ConditionsNotMet);
        let reason = match last {
            Some(t) => format!(
                "rule `{}`: {}{}",
                t.rule,
                t.result,
                t.why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
            ),
            None => ex.note.clone().or(ex.fallback.clone()).unwrap_or_else(|| "no rule matched".into()),
        };
        *why.entry(reason).or_insert(0) += r.try_get::<_, i64>("n")?;
    }
    println!("\n  fallbacks by reason ({} in all):", why.values().sum::<i64>());
    let mut why: Vec<(String, i64)> = why.into_iter().collect();
    why.sort_by_key(|(_, n)| -n);
    for (reason, n) in why {
        println!("    {n:>6}  {reason}");
    }
    Ok(())
}

/// The reload the demo caused, and the reclaims the sweeper made.
pub(super) async fn print_reload_and_reclaims(stage: &Stage) -> anyhow::Result<()> {
    if let Some((before, after)) = stage.reloaded.lock().ok().and_then(|r| r.clone()) {
        println!("\n  rules reloaded mid-run: {before} → {after} ({EDITED_FILE}: {EDIT_SAID})");
    }
    let s = stage.cfg.router.schema.quoted();
    let rows = stage
        .client
        .query(
            &format!("SELECT opp_id, previous_owner, owner_id, team_id FROM {s}.assignments WHERE outcome = 'reclaim' ORDER BY id"),
            &[],
        )
        .await?;
    println!("  reclaimed by the sweeper: {}", rows.len());
    for r in &rows {
        let name = |id: Option<String>| {
            id.map(|i| format!("{i} {}", stage.names.get(&i).map(String::as_str).unwrap_or(""))).unwrap_or_default()
        };
        let (opp, team): (String, Option<String>) = (r.try_get("opp_id")?, r.try_get("team_id")?);
        println!(
            "    {}  {} -> {} ({}; idle past the team's 4 h)",
            &opp[..8.min(opp.len())],
            name(r.try_get("previous_owner")?),
            name(r.try_get("owner_id")?),
            team.unwrap_or_default()
        );
    }
    Ok(())
}

/// End-to-end latency (CRM insert → owner decided) of the stream's decisions.
pub(super) async fn print_latency(stage: &Stage, last_assignment: i64) -> anyhow::Result<()> {
    let s = stage.cfg.router.schema.quoted();
    let lat = stage
        .client
        .query_one(
            &format!(
                "SELECT count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, \
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max \
                 FROM (SELECT (extract(epoch FROM a.decided_at - o.\"createdAt\") * 1000)::float8 AS ms FROM {s}.assignments a \
                 JOIN crm.opportunity o ON o.\"oppId\"::text = a.opp_id WHERE a.id <= $1 AND a.outcome <> 'reclaim') x"
            ),
            &[&last_assignment],
        )
        .await?;
    let n: i64 = lat.try_get("n")?;
    let (p50, p99, max): (Option<f64>, Option<f64>, Option<f64>) =
        (lat.try_get("p50")?, lat.try_get("p99")?, lat.try_get("max")?);
    println!(
        "\n  end-to-end latency (CRM insert -> owner decided), {n} decisions: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.unwrap_or(0.0),
        p99.unwrap_or(0.0),
        max.unwrap_or(0.0)
    );
    Ok(())
}
