//! `status`: what the leading daemon reports (rules in force, the last refused reload with its
//! errors, its heartbeat) and the queue (backlog, held, dead letters), from the router's tables.
//!
//! Owns the text ops read, and lifting a member's pause for lapses (`unpause`, the one change an
//! admin makes here). It reads only the router's own schema and changes nothing else.

use std::fmt::Write;

use tokio_postgres::Client;

use crate::config::Config;

/// The status report as text, and whether a daemon is leading with a fresh heartbeat.
pub async fn status(client: &Client, cfg: &Config) -> Result<(String, bool), tokio_postgres::Error> {
    let s = cfg.router.schema.quoted();
    let mut out = String::new();
    if let Err(why) = crate::install::check_installed(client, cfg).await? {
        let _ = writeln!(out, "router: {why}");
        return Ok((out, false));
    }
    let row = client
        .query_opt(
            &format!(
                "SELECT host, pid, leading_since::text, rules_version, rules_loaded_at::text, reloads, refused_reloads, \
                 last_error, last_error_at::text, extract(epoch FROM clock_timestamp() - updated_at)::float8, stopped_at::text \
                 FROM {s}.daemon_status"
            ),
            &[],
        )
        .await?;
    let healthy = match &row {
        None => {
            let _ = writeln!(out, "daemon: none has led on this database yet");
            false
        }
        Some(r) => {
            let age: f64 = r.get(9);
            let stopped: Option<String> = r.get(10);
            let fresh = age < 60.0 && stopped.is_none();
            match &stopped {
                Some(at) => {
                    let _ = writeln!(
                        out,
                        "daemon: stopped cleanly at {at} (it ran on {}, pid {}, leading since {}); none is leading",
                        r.get::<_, String>(0),
                        r.get::<_, i32>(1),
                        r.get::<_, String>(2)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "daemon: {} on {} (pid {}), leading since {}, last heartbeat {age:.0} s ago",
                        if fresh { "running" } else { "NOT RESPONDING" },
                        r.get::<_, String>(0),
                        r.get::<_, i32>(1),
                        r.get::<_, String>(2)
                    );
                }
            }
            let _ = writeln!(
                out,
                "rules: version {} in force (loaded {}); {} reloads, {} refused",
                r.get::<_, String>(3),
                r.get::<_, Option<String>>(4).unwrap_or_else(|| "at start".into()),
                r.get::<_, i64>(5),
                r.get::<_, i64>(6)
            );
            if let (Some(err), Some(at)) = (r.get::<_, Option<String>>(7), r.get::<_, Option<String>>(8)) {
                let _ = writeln!(out, "last refused reload, at {at} (the rules above stayed in force):");
                for line in err.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            fresh
        }
    };
    let q = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE next_attempt_at <= now()), count(*) FILTER (WHERE next_attempt_at > now()), \
                 extract(epoch FROM now() - min(created_at) FILTER (WHERE next_attempt_at <= now()))::float8, \
                 (SELECT count(*) FROM {s}.dead_letter) FROM {s}.events"
            ),
            &[],
        )
        .await?;
    let oldest: Option<f64> = q.get(2);
    let _ = writeln!(
        out,
        "queue: {} events waiting{}, {} held or retrying later, {} dead-lettered",
        q.get::<_, i64>(0),
        oldest.map(|o| format!(" (oldest {o:.1} s)")).unwrap_or_default(),
        q.get::<_, i64>(1),
        q.get::<_, i64>(3)
    );
    unowned_section(client, &s, &mut out).await?;
    let paused = client
        .query(
            &format!(
                "SELECT member_id, reason, paused_at::text FROM {s}.member_pauses WHERE lifted_at IS NULL ORDER BY paused_at"
            ),
            &[],
        )
        .await?;
    if paused.is_empty() {
        let _ = writeln!(out, "paused for lapses: nobody");
    } else {
        let _ = writeln!(out, "paused for lapses ({}; lift with `oppty-router unpause <member>`):", paused.len());
        for r in &paused {
            let _ = writeln!(
                out,
                "  {}: {} (since {})",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            );
        }
    }
    Ok((out, healthy))
}

/// Opportunities the router left unowned, grouped by why, and the dead letters grouped by error:
/// every way an opportunity can be left behind shows here.
async fn unowned_section(client: &Client, s: &str, out: &mut String) -> Result<(), tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT outcome, reason, count(*), min(since)::text FROM {s}.unrouted GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC, 2"
            ),
            &[],
        )
        .await?;
    if rows.is_empty() {
        let _ = writeln!(out, "left unowned: none");
    }
    for (outcome, what) in [
        (
            "unassigned",
            "unassigned (no rule yielded anybody, no fallback owner; `oppty-router requeue --unassigned` retries)",
        ),
        ("held", "held (waiting; retried by the daemon)"),
    ] {
        let group: Vec<_> = rows.iter().filter(|r| r.get::<_, String>(0) == outcome).collect();
        if group.is_empty() {
            continue;
        }
        let total: i64 = group.iter().map(|r| r.get::<_, i64>(2)).sum();
        let oldest = group.iter().map(|r| r.get::<_, String>(3)).min().unwrap_or_default();
        let _ = writeln!(out, "left unowned, {what}: {total}, the oldest since {oldest}");
        for r in group {
            let _ = writeln!(out, "  {:>6}  {}", r.get::<_, i64>(2), r.get::<_, String>(1));
        }
    }
    let dead = client
        .query(
            &format!(
                "SELECT error, count(*), min(failed_at)::text FROM {s}.dead_letter GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
            ),
            &[],
        )
        .await?;
    if !dead.is_empty() {
        let _ = writeln!(out, "dead letters by error (`oppty-router requeue --dead-letter` retries them):");
        for r in dead {
            let _ = writeln!(
                out,
                "  {:>6}  {} (first {})",
                r.get::<_, i64>(1),
                r.get::<_, String>(0),
                r.get::<_, String>(2)
            );
        }
    }
    Ok(())
}

/// Lift a member's pause for lapses (an admin's decision; the daemon sees it at its next sweep).
/// Returns whether there was a pause to lift.
pub async fn unpause(client: &Client, cfg: &Config, member: &str, by: &str) -> Result<bool, tokio_postgres::Error> {
    let s = cfg.router.schema.quoted();
    let n = client
        .execute(
            &format!(
                "UPDATE {s}.member_pauses SET lifted_at = clock_timestamp(), lifted_by = $2 \
                 WHERE member_id = $1 AND lifted_at IS NULL"
            ),
            &[&member, &by],
        )
        .await?;
    Ok(n > 0)
}
