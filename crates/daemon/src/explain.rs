//! `explain <opportunity-id>`: the router's decisions about one opportunity, readably.
//!
//! Owns turning stored explanations into text. Reads only the router's own tables (and the
//! catalog, to read the id in the CRM's form).

use std::fmt::Write;

use tokio_postgres::Client;

use crate::config::Config;
use crate::db::row::FromRow;
use crate::engine::Explanation;
use crate::store::{Decision, Skip};

/// The id as the router stored it, whatever form it was typed or pasted in
/// ([`crate::crm::stored_ids`]).
async fn stored_id(client: &Client, cfg: &Config, opp_id: &str) -> Result<String, tokio_postgres::Error> {
    let ids = crate::crm::stored_ids(client, cfg, &[opp_id.to_string()]).await?;
    Ok(ids.into_iter().next().unwrap_or_default())
}

/// The decisions recorded for an id: the id as stored, the same id in another letter case when
/// only that has decisions, and the decisions, oldest first.
async fn lookup(
    client: &Client,
    cfg: &Config,
    opp_id: &str,
) -> Result<(String, Option<String>, Vec<Decision>), tokio_postgres::Error> {
    let sql = crate::store::Reads::new(&cfg.router.schema);
    let opp_id = stored_id(client, cfg, opp_id).await?;
    let rows = Decision::from_rows(&client.query(&sql.decisions, &[&opp_id]).await?)?;
    if !rows.is_empty() {
        return Ok((opp_id, None, rows));
    }
    // A text-like key typed in another letter case: found by a case-insensitive look, and said so.
    let rows = Decision::from_rows(&client.query(&sql.decisions_any_case, &[&opp_id]).await?)?;
    let other = rows.first().map(|r| r.opp_id.clone());
    Ok((opp_id, other, rows))
}

/// The times the router was asked to route `opp_id` (as stored) and wrote nothing, oldest first.
async fn skips(client: &Client, cfg: &Config, opp_id: &str) -> Result<Vec<Skip>, tokio_postgres::Error> {
    let sql = crate::store::Reads::new(&cfg.router.schema);
    Skip::from_rows(&client.query(&sql.skips_of, &[&opp_id]).await?)
}

/// Every decision recorded for `opp_id`, oldest first, and every time it was not written, as
/// text; and whether there was any.
pub async fn explain(client: &Client, cfg: &Config, opp_id: &str) -> Result<(String, bool), tokio_postgres::Error> {
    let (opp_id, other, rows) = lookup(client, cfg, opp_id).await?;
    let skipped = skips(client, cfg, other.as_deref().unwrap_or(&opp_id)).await?;
    let mut out = String::new();
    if let Some(found) = other {
        let _ = writeln!(out, "(no opportunity `{opp_id}`; showing `{found}`, the same id in another letter case)");
    }
    if rows.is_empty() && skipped.is_empty() {
        let _ = writeln!(out, "opportunity {opp_id}: the router has made no decision about it");
        return Ok((out, false));
    }
    let _ = writeln!(out, "opportunity {opp_id}: {} decision(s), not written {} time(s)", rows.len(), skipped.len());
    let names = member_names(cfg);
    for r in rows {
        decision(&mut out, r, &names);
    }
    for s in skipped {
        let seen = s.owner_seen.map(|o| format!("; owner seen: {o}")).unwrap_or_default();
        let _ = writeln!(out, "\n{}  not written: {}{seen}", s.skipped_at, s.reason);
        if let Some(at) = s.event_at {
            let _ = writeln!(out, "  queued at {at}");
        }
    }
    Ok((out, true))
}

/// [`explain`] as JSON: `opportunity`, `found_as` (another letter case), `decisions`, each with
/// its explanation as stored, and `not_written` (the skips, with why); and whether there was any.
pub async fn explain_json(
    client: &Client,
    cfg: &Config,
    opp_id: &str,
) -> Result<(serde_json::Value, bool), tokio_postgres::Error> {
    let (opp_id, other, rows) = lookup(client, cfg, opp_id).await?;
    let skipped = skips(client, cfg, other.as_deref().unwrap_or(&opp_id)).await?;
    let found = !rows.is_empty() || !skipped.is_empty();
    let doc =
        serde_json::json!({ "opportunity": opp_id, "found_as": other, "decisions": rows, "not_written": skipped });
    Ok((doc, found))
}

/// One recorded decision: when, what, who, under which rule and rules version, and why.
fn decision(out: &mut String, r: Decision, names: &Names) {
    let Decision {
        decided_at: at,
        outcome,
        owner_id: owner,
        team_id: team,
        previous_owner: prev,
        pipeline,
        rule_id: rule,
        rules_version: version,
        explanation: ex,
        opp_id: _,
    } = r;
    let _ = writeln!(
        out,
        "\n{at}  {outcome}: owner {}  team {}  (was {})",
        owner.as_deref().unwrap_or("-"),
        team.as_deref().unwrap_or("-"),
        prev.as_deref().unwrap_or("unowned")
    );
    let _ = writeln!(
        out,
        "  pipeline {}  rule {}  rules version {version}",
        pipeline.as_deref().unwrap_or("-"),
        rule.as_deref().unwrap_or("-")
    );
    // Read through the engine's own type; one that does not read (written by another version)
    // is shown as stored.
    let _ = match serde_json::from_value::<Explanation>(ex.clone()) {
        Ok(ex) => render(out, &ex, names),
        Err(e) => writeln!(out, "  explanation (not in this version's form: {e}): {ex}"),
    };
}

type Names = std::collections::HashMap<String, String>;

/// Member names by id, from the rule files as they are now (none when they do not load: ids alone
/// still explain).
fn member_names(cfg: &Config) -> Names {
    match crate::load_rules(cfg) {
        Ok(e) => e.members.iter().filter(|m| m.name != m.id).map(|m| (m.id.to_string(), m.name.to_string())).collect(),
        Err(_) => Default::default(),
    }
}

/// One stored explanation as indented text; every member named.
fn render(out: &mut String, ex: &Explanation, names: &Names) -> std::fmt::Result {
    let who = |id: &str| match names.get(id) {
        Some(n) => format!("{id} ({n})"),
        None => id.to_string(),
    };
    if !ex.tags.is_empty() {
        writeln!(out, "  tags: {}", ex.tags.join(", "))?;
    }
    for t in &ex.rules {
        let why = t.why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default();
        writeln!(out, "  rule {}: {}{why}", t.rule, t.result)?;
        if let Some(team) = &t.team {
            let ids: Vec<&str> = team.ids.iter().map(|i| &**i).collect();
            writeln!(out, "    team {}: {}", ids.join(", "), team.why)?;
        }
        for f in &t.filters {
            let note = f.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
            writeln!(out, "    filter {}: kept {} of {}{note}", f.filter, f.kept, f.of)?;
        }
        for (why, ids) in &t.excluded {
            let listed: Vec<String> = ids.iter().map(|i| who(i)).collect();
            writeln!(out, "    excluded ({why}): {}", listed.join(", "))?;
        }
    }
    if let Some(m) = &ex.member {
        let named = if m.name.is_empty() || m.name == m.id { who(&m.id) } else { format!("{} ({})", m.id, m.name) };
        writeln!(out, "  member {named}: {}", m.why)?;
    }
    for (key, v) in [("fallback", &ex.fallback), ("held", &ex.held), ("note", &ex.note)] {
        if let Some(v) = v {
            writeln!(out, "  {key}: {v}")?;
        }
    }
    Ok(())
}
