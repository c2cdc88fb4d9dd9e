//! `explain <opportunity-id>`: the router's decisions about one opportunity, readably.
//!
//! Owns turning stored explanations into text. Reads only the router's own tables.

use std::fmt::Write;

use tokio_postgres::Client;

use crate::config::Config;

/// Every decision recorded for `opp_id`, oldest first, as text.
pub async fn explain(client: &Client, cfg: &Config, opp_id: &str) -> Result<String, tokio_postgres::Error> {
    let s = cfg.router.schema.quoted();
    let rows = client
        .query(
            &format!(
                "SELECT decided_at::text, outcome, owner_id, team_id, previous_owner, pipeline, rule_id, rules_version, explanation \
                 FROM {s}.assignments WHERE opp_id = $1 ORDER BY id"
            ),
            &[&opp_id],
        )
        .await?;
    let mut out = String::new();
    if rows.is_empty() {
        let _ = writeln!(out, "opportunity {opp_id}: the router has made no decision about it");
        return Ok(out);
    }
    let _ = writeln!(out, "opportunity {opp_id}: {} decision(s)", rows.len());
    for r in rows {
        let at: String = r.get(0);
        let outcome: String = r.get(1);
        let owner: Option<String> = r.get(2);
        let team: Option<String> = r.get(3);
        let prev: Option<String> = r.get(4);
        let pipeline: Option<String> = r.get(5);
        let rule: Option<String> = r.get(6);
        let version: String = r.get(7);
        let ex: serde_json::Value = r.get(8);
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
        if let Some(rules) = ex.get("rules").and_then(|v| v.as_array()) {
            for t in rules {
                let _ = writeln!(
                    out,
                    "  rule {}: {}{}",
                    t["rule"].as_str().unwrap_or("?"),
                    t["result"].as_str().unwrap_or("?"),
                    t.get("why").and_then(|w| w.as_str()).map(|w| format!(" ({w})")).unwrap_or_default()
                );
            }
        }
        if let Some(team) = ex.get("team") {
            let _ =
                writeln!(out, "  team {}: {}", team["id"].as_str().unwrap_or("?"), team["why"].as_str().unwrap_or(""));
        }
        if let Some(ex_map) = ex.get("excluded").and_then(|v| v.as_object()) {
            for (why, who) in ex_map {
                let _ = writeln!(
                    out,
                    "  excluded ({why}): {}",
                    who.as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(m) = ex.get("member") {
            let _ = writeln!(
                out,
                "  member {} {}: {}",
                m["id"].as_str().unwrap_or("?"),
                m["name"].as_str().unwrap_or(""),
                m["why"].as_str().unwrap_or("")
            );
        }
        if let Some(f) = ex.get("fallback") {
            let _ = writeln!(out, "  fallback: {}", f["why"].as_str().unwrap_or(""));
        }
        if let Some(n) = ex.get("note").and_then(|n| n.as_str()) {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    Ok(out)
}
