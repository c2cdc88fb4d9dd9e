//! Rule reloads: watch the rules directory, debounce, compile the whole set and offer it to the
//! daemon as a candidate; on any failure the set in force stays and the error is kept for `status`.
//!
//! Owns the watcher (`reload::watch`: the `notify` crate; how editing patterns are absorbed —
//! rename-over saves, editor temp files, `git checkout`, a ConfigMap's `..data` swap, a directory
//! replaced, a file written in steps), the compile and its judgement (`reload::reloader`: a set
//! that does not compile is refused only once the directory is quiet), the reload status, and the
//! "what changed" summary. It must not touch the database nor put a set in force: the daemon,
//! which checks a candidate against the CRM, is the one authority for "in force" and the one to
//! log it. It never stops routing: the worst a bad save does is leave the old rules running.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::engine::Engine;

mod people;
mod reloader;
mod summary;
mod watch;
pub use people::changes as people_changes;
pub use reloader::{Reloaded, Reloader, DIRECTORY_REFRESH, FILES_CHANGED, SIGHUP};
pub use summary::{bounded, digest, summarize, summarize_digests, Digest};
pub use watch::watch;

/// A refused set's problems as logged and kept for `status`: the first few, each cut to a
/// readable length, and how many more there were.
pub fn bounded_problems(problems: &[String]) -> String {
    const MAX_PROBLEMS: usize = 50;
    let mut lines: Vec<String> = problems.iter().take(MAX_PROBLEMS).map(|p| bounded(p, 400)).collect();
    if problems.len() > MAX_PROBLEMS {
        lines.push(format!("… and {} more problems", problems.len() - MAX_PROBLEMS));
    }
    lines.join("\n")
}

/// What `status` shows about the rules.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// The version in force.
    pub version: String,
    /// When the set in force went in force.
    pub in_force_since: Option<DateTime<Utc>>,
    /// The latest refusal since the set in force went in force: when, and every problem
    /// (file:line:column: key: message). Cleared when a later set goes in force or the files
    /// compile to the set in force again.
    pub last_error: Option<(DateTime<Utc>, String)>,
    /// Sets put in force by this process.
    pub reloads: u64,
    /// Candidates offered: compiled sets that route differently from the one in force then.
    pub candidates: u64,
    pub refused: u64,
    /// Whether the rules directory is watched, so a save reloads by itself (when it is not,
    /// SIGHUP still reloads).
    pub watching: bool,
    /// Times the files were read to be judged (counted as each look begins), whatever came of it.
    pub looks: u64,
}

/// A set compiled from the files (and the CRM's directory), not in force: the daemon checks it
/// against the CRM and puts it in force, or refuses it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub engine: Arc<Engine>,
    /// The hash of the set in force it was compared with: `changes` and `people` are from it.
    pub against: String,
    /// What changes, as the summary says it ("rules ~retail/vip; members +107").
    pub changes: String,
    /// What changes about people, in words.
    pub people: Vec<String>,
    /// What made it: "rule files changed", "SIGHUP", "directory refresh"…
    pub cause: String,
}

impl Candidate {
    /// The set in force offered as itself (a first set, or the files back to it).
    pub fn in_force(engine: Arc<Engine>) -> Candidate {
        let against = engine.hash.clone();
        Candidate { engine, against, changes: String::new(), people: Vec::new(), cause: String::new() }
    }
}
