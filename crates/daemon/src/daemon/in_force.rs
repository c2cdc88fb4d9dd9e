//! Rule sets at the leader: a candidate the CRM refuses (one ERROR, every value where the files
//! write it), one recorded and put in force (the only place that says `rules N in force`), and
//! what each set tells `status` about people. It must not compile or judge files (`reload` does).

use std::sync::Arc;
use std::time::Duration;

use super::RuleSets;
use crate::config::Config;
use crate::crm;
use crate::engine::Engine;

/// Who a set pauses, disables or caps, as the leader records it for `status`.
pub(super) fn people_of(engine: &Engine) -> Option<String> {
    serde_json::to_string(&crate::status::people::of(engine)).ok()
}

/// How often the CRM's assignments are read for caps that count them: as often as the directory.
pub(super) fn crm_count_every(cfg: &Config) -> Duration {
    cfg.directory.as_ref().map_or(Duration::from_secs(300), |d| d.refresh)
}

/// A candidate the CRM refuses (its member ids do not fit the owner column): it never goes in
/// force; one ERROR says every problem where the files write it, and `status` keeps it until a
/// later set goes in force. The same refusal again (a directory refresh) is not news.
pub(super) fn refuse(sets: &RuleSets, candidate: &crate::reload::Candidate, e: &crm::RuleValuesError) {
    let kept = sets.live.load();
    let problems = crate::reload::bounded_problems(&e.located(&candidate.engine.sources));
    if sets.reloader.refused_by_database(&problems, &candidate.engine, candidate.cause == crate::reload::SIGHUP) {
        tracing::error!(
            cause = %candidate.cause,
            rejected = %candidate.engine.version,
            kept = %kept.version,
            problems = %problems,
            "new rules refused by the CRM; the last good rules stay in force"
        );
    } else {
        tracing::debug!(rejected = %candidate.engine.version, kept = %kept.version, "the CRM still refuses the rules");
    }
}

/// Keep the set in force by its version (its files and what the CRM's directory said), so a
/// replay can compile exactly the rules that made a decision.
pub(super) async fn record_set(
    client: &tokio_postgres::Client,
    cfg: &Config,
    engine: &Engine,
) -> Result<(), tokio_postgres::Error> {
    let sql = crate::store::LeaseStatements::new(&cfg.router.schema).rule_set;
    let files: Vec<(String, &str)> =
        engine.sources.iter().map(|(p, t)| (p.display().to_string(), t.as_str())).collect();
    let sources = serde_json::to_string(&files).unwrap_or_else(|_| "[]".into());
    client.execute(&sql, &[&engine.version, &engine.hash, &sources, &&*engine.directory]).await.map(|_| ())
}

/// Put a candidate the CRM accepted in force: it takes its version (`rules::put_in_force`), and
/// the one log line saying a set is in force names it with what changed (from the set it
/// replaces, computed again if that is not the one the candidate was compared with).
pub(super) async fn put_in_force(sets: &RuleSets, candidate: &crate::reload::Candidate) -> Arc<Engine> {
    let old = sets.live.load_full();
    let engine = crate::rules::put_in_force(&candidate.engine);
    let (changes, people) = if candidate.against == old.hash {
        (candidate.changes.clone(), candidate.people.clone())
    } else {
        let (o, n) = (old.clone(), engine.clone());
        tokio::task::spawn_blocking(move || {
            let changes = crate::reload::summarize(&o, &n).unwrap_or_else(|| "none that routes".into());
            let people = if o.provisional { Vec::new() } else { crate::reload::people_changes(&o, &n) };
            (changes, people)
        })
        .await
        .unwrap_or_default()
    };
    tracing::info!(from = %old.version, cause = %candidate.cause, changes = %changes, "rules {} in force", engine.version);
    let by = if candidate.cause == crate::reload::DIRECTORY_REFRESH { " by the CRM" } else { "" };
    for change in people {
        tracing::info!(version = %engine.version, cause = %candidate.cause, "{change}{by}");
    }
    for w in &engine.warnings {
        tracing::warn!(version = %engine.version, warning = %w, "the rules in force route, with a warning");
    }
    sets.live.store(engine.clone());
    sets.reloader.promoted(&engine);
    crate::systemd::status(&format!("routing with rules {}", engine.version));
    crate::telemetry::rules_in_force(&engine.version);
    engine
}
