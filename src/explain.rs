//! `explain <opportunity-id>`: the router's decisions about one opportunity, readably.
//!
//! Owns turning stored explanations into text. Reads only the router's own tables (and the
//! catalog, to read the id in the CRM's form).

use std::fmt::Write;

use tokio_postgres::Client;

use crate::config::Config;

/// The id as the router stored it: the CRM's text form of the id column's type (a uuid in lower
/// case, a char(n) without its padding), whatever form it was typed or pasted in.
async fn stored_id(client: &Client, cfg: &Config, opp_id: &str) -> Result<String, tokio_postgres::Error> {
    let o = &cfg.opportunity;
    let trimmed = opp_id.trim();
    let Some(t) = crate::crm::catalog_type(client, &o.table, &o.id).await?.filter(|t| crate::crm::safe_type(t)) else {
        return Ok(trimmed.to_string());
    };
    // A value that does not fit the type is looked up as typed.
    match client.query_one(&format!("SELECT $1::text::{t}::text"), &[&trimmed]).await {
        Ok(r) => r.try_get(0),
        Err(_) => Ok(trimmed.to_string()),
    }
}

/// Every decision recorded for `opp_id`, oldest first, as text; and whether there was any.
pub async fn explain(client: &Client, cfg: &Config, opp_id: &str) -> Result<(String, bool), tokio_postgres::Error> {
    let s = cfg.router.schema.quoted();
    let opp_id = stored_id(client, cfg, opp_id).await?;
    let select = format!(
        "SELECT decided_at::text, outcome, owner_id, team_id, previous_owner, pipeline, rule_id, rules_version, explanation, opp_id \
         FROM {s}.assignments"
    );
    let mut rows = client.query(&format!("{select} WHERE opp_id = $1 ORDER BY id"), &[&opp_id]).await?;
    let mut out = String::new();
    if rows.is_empty() {
        // A text-like key typed in another letter case: found by a case-insensitive look, and said so.
        rows = client.query(&format!("{select} WHERE lower(opp_id) = lower($1) ORDER BY id"), &[&opp_id]).await?;
        if let Some(found) = rows.first().map(|r| r.try_get::<_, String>(9)).transpose()? {
            let _ = writeln!(out, "(no opportunity `{opp_id}`; showing `{found}`, the same id in another letter case)");
        }
    }
    if rows.is_empty() {
        let _ = writeln!(out, "opportunity {opp_id}: the router has made no decision about it");
        return Ok((out, false));
    }
    let _ = writeln!(out, "opportunity {opp_id}: {} decision(s)", rows.len());
    let names = member_names(cfg);
    for r in rows {
        let at: String = r.try_get(0)?;
        let outcome: String = r.try_get(1)?;
        let owner: Option<String> = r.try_get(2)?;
        let team: Option<String> = r.try_get(3)?;
        let prev: Option<String> = r.try_get(4)?;
        let pipeline: Option<String> = r.try_get(5)?;
        let rule: Option<String> = r.try_get(6)?;
        let version: String = r.try_get(7)?;
        let ex: serde_json::Value = r.try_get(8)?;
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
        let _ = render(&mut out, &ex, &names);
    }
    Ok((out, true))
}

/// Member names by id, from the rule files as they are now (none when they do not load: ids alone
/// still explain).
fn member_names(cfg: &Config) -> std::collections::HashMap<String, String> {
    match crate::load_rules(cfg) {
        Ok(e) => e.members.iter().filter(|m| m.name != m.id).map(|m| (m.id.to_string(), m.name.to_string())).collect(),
        Err(_) => Default::default(),
    }
}

/// One stored explanation as indented text; every member named.
fn render(
    out: &mut String,
    ex: &serde_json::Value,
    names: &std::collections::HashMap<String, String>,
) -> std::fmt::Result {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let who = |v: &serde_json::Value| {
        let id = s(v);
        match names.get(&id) {
            Some(n) => format!("{id} ({n})"),
            None => id,
        }
    };
    if let Some(tags) = ex.get("tags").and_then(|t| t.as_array()) {
        writeln!(out, "  tags: {}", tags.iter().map(s).collect::<Vec<_>>().join(", "))?;
    }
    for t in ex.get("rules").and_then(|v| v.as_array()).into_iter().flatten() {
        let why = t.get("why").map(|w| format!(" ({})", s(w))).unwrap_or_default();
        writeln!(out, "  rule {}: {}{why}", s(&t["rule"]), s(&t["result"]))?;
        if let Some(team) = t.get("team") {
            let ids: Vec<String> = team["ids"].as_array().into_iter().flatten().map(s).collect();
            writeln!(out, "    team {}: {}", ids.join(", "), s(&team["why"]))?;
        }
        for f in t.get("filters").and_then(|v| v.as_array()).into_iter().flatten() {
            let note = f.get("note").map(|n| format!(" ({})", s(n))).unwrap_or_default();
            writeln!(out, "    filter {}: kept {} of {}{note}", s(&f["filter"]), f["kept"], f["of"])?;
        }
        for (why, ids) in t.get("excluded").and_then(|v| v.as_object()).into_iter().flatten() {
            let listed: Vec<String> = ids.as_array().into_iter().flatten().map(who).collect();
            writeln!(out, "    excluded ({why}): {}", listed.join(", "))?;
        }
    }
    if let Some(m) = ex.get("member") {
        let name = s(&m["name"]);
        let id = s(&m["id"]);
        let named = if name.is_empty() || name == id { who(&m["id"]) } else { format!("{id} ({name})") };
        writeln!(out, "  member {named}: {}", s(&m["why"]))?;
    }
    for key in ["fallback", "held", "note"] {
        if let Some(v) = ex.get(key) {
            writeln!(out, "  {key}: {}", s(v))?;
        }
    }
    Ok(())
}
