//! `status`: what the leading daemon reports (rules in force, the last refused reload with its
//! errors, its heartbeat) and the queue (backlog, held, dead letters), from the router's tables.
//!
//! Owns the text ops read. It reads only the router's own schema and changes nothing (the
//! admin's changes are `admin`'s).

use std::fmt::Write;

use tokio_postgres::Client;

use crate::config::Config;
use crate::db::row::FromRow;
use crate::store::{DaemonRow, Reads};
pub use crate::store::{DeadLetterGroup, LapsePause, OutcomeCount, QueueReport, SkipGroup, UnownedGroup};
pub use people::People;

pub mod people;

/// Everything `status` shows, for the text and for `status --json`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Why the router cannot be read here (not installed, another schema version); nothing else
    /// is filled in then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_installed: Option<String>,
    /// The leading daemon as it last reported; `None` when none has led on this database.
    pub daemon: Option<DaemonReport>,
    /// A daemon is leading with a fresh heartbeat (the exit code of `status`).
    pub healthy: bool,
    pub queue: QueueReport,
    /// Opportunities the router left unowned, by outcome and reason.
    pub unowned: Vec<UnownedGroup>,
    /// Dead letters by error (the ten most common).
    pub dead_letters: Vec<DeadLetterGroup>,
    /// Opportunities queued to route and not written in the last 24 hours, by why.
    pub skipped_lately: Vec<SkipGroup>,
    /// Members paused by the reclaim ladder for letting opportunities lapse.
    pub paused_for_lapses: Vec<LapsePause>,
    /// The router's decisions of the last hour, by outcome.
    pub decided_last_hour: Vec<OutcomeCount>,
    /// Who the rules in force pause, disable or cap: as the leader recorded it, or (no leader
    /// running) as the files and the CRM say now.
    pub people: People,
    /// Where [`Report::people`] comes from, in words.
    pub people_source: String,
}

#[derive(Debug, serde::Serialize)]
pub struct DaemonReport {
    pub host: String,
    pub pid: i32,
    pub leading_since: String,
    pub last_heartbeat_secs: f64,
    /// When it stopped cleanly (SIGTERM); `None` while it runs.
    pub stopped_at: Option<String>,
    pub rules_version: String,
    pub rules_in_force_since: Option<String>,
    pub reloads: i64,
    pub refused_reloads: i64,
    /// The last refused reload while its rules are still on disk: when, and every problem.
    pub last_refused: Option<(String, String)>,
    /// Who its rules in force pause, disable or cap, as it recorded them.
    pub people: Option<People>,
}

/// The status report as text, and whether a daemon is leading with a fresh heartbeat.
pub async fn status(client: &Client, cfg: &Config) -> Result<(String, bool), tokio_postgres::Error> {
    let r = report(client, cfg).await?;
    Ok((r.text(), r.healthy))
}

/// Read everything `status` shows from the router's tables (and the rule files, for who is paused
/// there).
pub async fn report(client: &Client, cfg: &Config) -> Result<Report, tokio_postgres::Error> {
    if let Err(why) = crate::install::check_installed(client, cfg).await? {
        return Ok(Report { not_installed: Some(why), ..Default::default() });
    }
    let sql = Reads::new(&cfg.router.schema);
    let mut r = Report { daemon: daemon(client, &sql).await?, ..Default::default() };
    r.healthy = r.daemon.as_ref().is_some_and(|d| d.last_heartbeat_secs < 60.0 && d.stopped_at.is_none());
    r.queue = QueueReport::from_row(&client.query_one(&sql.queue, &[]).await?)?;
    r.unowned = UnownedGroup::from_rows(&client.query(&sql.unowned, &[]).await?)?;
    r.dead_letters = DeadLetterGroup::from_rows(&client.query(&sql.dead_letters, &[]).await?)?;
    r.skipped_lately = SkipGroup::from_rows(&client.query(&sql.skips_lately, &[]).await?)?;
    r.paused_for_lapses = LapsePause::from_rows(&client.query(&sql.lapse_pauses, &[]).await?)?;
    r.decided_last_hour = OutcomeCount::from_rows(&client.query(&sql.decided_lately, &[]).await?)?;
    let recorded = r.daemon.as_ref().filter(|_| r.healthy).and_then(|d| d.people.clone());
    match recorded {
        Some(p) => {
            r.people_source = format!("as the rules in force route ({})", p.rules_version);
            r.people = p;
        }
        None => people_now(client, cfg, &mut r).await,
    }
    Ok(r)
}

/// No leader running: who the files and the CRM's directory pause, disable or cap now (nothing
/// when the rules do not load; the rule files alone when the directory cannot be read).
async fn people_now(client: &Client, cfg: &Config, r: &mut Report) {
    let mut dir = crate::directory_flags(cfg);
    r.people_source = "as the rule files say now (no daemon is leading)".into();
    if let Some(d) = &cfg.directory {
        if let Ok(loaded) = crate::crm::load_directory(client, d).await {
            dir = loaded;
            r.people_source = "as the rule files and the CRM say now (no daemon is leading)".into();
        }
    }
    match crate::load_rules_with(cfg, &dir) {
        Ok(e) => r.people = people::of(&e),
        Err(_) => r.people_source = "unknown: the rule files on disk do not load (no daemon is leading)".into(),
    }
}

async fn daemon(client: &Client, sql: &Reads) -> Result<Option<DaemonReport>, tokio_postgres::Error> {
    let Some(row) = client.query_opt(&sql.daemon, &[]).await? else { return Ok(None) };
    let r = DaemonRow::from_row(&row)?;
    Ok(Some(DaemonReport {
        host: r.host,
        pid: r.pid,
        leading_since: r.leading_since,
        rules_version: r.rules_version,
        rules_in_force_since: r.rules_loaded_at,
        reloads: r.reloads,
        refused_reloads: r.refused_reloads,
        last_refused: r.last_error_at.zip(r.last_error),
        last_heartbeat_secs: r.heartbeat_secs,
        stopped_at: r.stopped_at,
        people: r.people.and_then(|p| serde_json::from_str(&p).ok()),
    }))
}

impl Report {
    /// The report as ops read it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.not_installed {
            let _ = writeln!(out, "router: {why}");
            return out;
        }
        self.daemon_text(&mut out);
        let q = &self.queue;
        let _ = writeln!(
            out,
            "queue: {} events waiting{}, {} held or retrying later, {} dead-lettered",
            q.waiting,
            q.oldest_waiting_secs.map(|o| format!(" (oldest {o:.1} s)")).unwrap_or_default(),
            q.held_or_retrying,
            q.dead_lettered
        );
        let decided: Vec<String> =
            self.decided_last_hour.iter().map(|o| format!("{} {}", o.outcome, o.count)).collect();
        let decided = if decided.is_empty() { "none".to_string() } else { decided.join(", ") };
        let _ = writeln!(out, "decisions in the last hour: {decided}");
        self.unowned_text(&mut out);
        if self.paused_for_lapses.is_empty() {
            let _ = writeln!(out, "paused for lapses: nobody");
        } else {
            let _ = writeln!(
                out,
                "paused for lapses ({}; lift with `oppty-router unpause <member>`):",
                self.paused_for_lapses.len()
            );
            for p in &self.paused_for_lapses {
                let _ = writeln!(out, "  {}: {} (since {})", p.member, p.reason, p.since);
            }
        }
        self.people.text(&self.people_source, &mut out);
        out
    }

    fn daemon_text(&self, out: &mut String) {
        let Some(d) = &self.daemon else {
            let _ = writeln!(out, "daemon: none has led on this database yet");
            return;
        };
        match &d.stopped_at {
            Some(at) => {
                let _ = writeln!(
                    out,
                    "daemon: stopped cleanly at {at} (it ran on {}, pid {}, leading since {}); none is leading",
                    d.host, d.pid, d.leading_since
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "daemon: {} on {} (pid {}), leading since {}, last heartbeat {:.0} s ago",
                    if self.healthy { "running" } else { "NOT RESPONDING" },
                    d.host,
                    d.pid,
                    d.leading_since,
                    d.last_heartbeat_secs
                );
            }
        }
        let _ = writeln!(
            out,
            "rules: version {} in force since {}; {} sets put in force, {} refused",
            d.rules_version,
            d.rules_in_force_since.as_deref().unwrap_or("start"),
            d.reloads,
            d.refused_reloads
        );
        if let Some((at, err)) = &d.last_refused {
            let _ = writeln!(out, "latest refusal, at {at} (the rules above stay in force until the files are fixed):");
            for line in err.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }

    /// Every way an opportunity can be left behind shows here.
    fn unowned_text(&self, out: &mut String) {
        if self.unowned.is_empty() {
            let _ = writeln!(out, "left unowned: none");
        }
        for (outcome, what) in [
            (
                "unassigned",
                "unassigned (no rule yielded anybody, no fallback owner; `oppty-router requeue --unassigned` retries)",
            ),
            ("held", "held (waiting; retried by the daemon)"),
            (
                "unwritten",
                "unwritten (write_back.statement wrote nothing though the row is unowned; fix it, then `oppty-router backfill`)",
            ),
        ] {
            let group: Vec<&UnownedGroup> = self.unowned.iter().filter(|g| g.outcome == outcome).collect();
            if group.is_empty() {
                continue;
            }
            let total: i64 = group.iter().map(|g| g.count).sum();
            let oldest = group.iter().map(|g| g.since.as_str()).min().unwrap_or_default();
            let _ = writeln!(out, "left unowned, {what}: {total}, the oldest since {oldest}");
            for g in group {
                let _ = writeln!(out, "  {:>6}  {}", g.count, g.reason);
            }
        }
        if self.skipped_lately.is_empty() {
            let _ = writeln!(out, "not written in the last 24 h: none");
        } else {
            let total: i64 = self.skipped_lately.iter().map(|g| g.count).sum();
            let _ = writeln!(out, "not written in the last 24 h (queued to route; `explain <id>` says more): {total}");
            for g in &self.skipped_lately {
                let _ = writeln!(out, "  {:>6}  {}", g.count, g.reason);
            }
        }
        if !self.dead_letters.is_empty() {
            let _ = writeln!(out, "dead letters by error (`oppty-router requeue --dead-letter` retries them):");
            for g in &self.dead_letters {
                let _ = writeln!(out, "  {:>6}  {} (first {})", g.count, g.error, g.first);
            }
        }
    }
}
