//! Rule reloads: watch the rules directory, debounce, compile the whole set, swap it in atomically;
//! on any failure the last good set stays in force and the error is kept for `status`.
//!
//! Owns the watcher (the `notify` crate), how editing patterns are absorbed (rename-over saves,
//! editor temp files, `git checkout`, a ConfigMap's `..data` swap, a directory replaced, a file
//! written in two steps), the reload status, and the "what changed" summary. It must not touch the
//! database, and it never stops routing: the worst a bad save does is leave the old rules running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::Engine;
use crate::rules::Directory;

mod people;
mod summary;
pub use summary::{bounded, digest, summarize, summarize_digests, Digest};

/// A refused set's problems as logged and kept for `status`: the first few, each cut to a
/// readable length, and how many more there were.
fn bounded_problems(e: &crate::rules::RulesError) -> String {
    const MAX_PROBLEMS: usize = 50;
    let mut lines: Vec<String> = e.problems.iter().take(MAX_PROBLEMS).map(|p| bounded(p, 400)).collect();
    if e.problems.len() > MAX_PROBLEMS {
        lines.push(format!("… and {} more problems", e.problems.len() - MAX_PROBLEMS));
    }
    lines.join("\n")
}

/// What `status` shows about the rules.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// The version in force.
    pub version: String,
    pub loaded_at: Option<DateTime<Utc>>,
    /// The last refused reload: when, and every problem (file:line:column: key: message).
    pub last_error: Option<(DateTime<Utc>, String)>,
    pub reloads: u64,
    pub refused: u64,
}

/// Compiles rule sets and publishes them as candidates; shared by the watcher, SIGHUP and the
/// directory refresh. It never puts a set in force: the daemon, which owns the database, checks
/// each candidate against the CRM and promotes it (or refuses it: the last good set stays).
pub struct Reloader {
    cfg: Arc<Config>,
    /// The latest set compiled from the files (and the CRM's directory).
    candidates: tokio::sync::watch::Sender<Arc<Engine>>,
    pub directory: Arc<ArcSwap<Directory>>,
    pub status: ArcSwap<ReloadStatus>,
    /// One reload at a time (the watcher, SIGHUP and the directory refresh may ask together);
    /// it keeps the digest of the set in force, by content hash, so a reload digests only the new.
    in_force: std::sync::Mutex<Option<(String, Digest)>>,
    /// Held only while `status` is read, changed and stored (never across a compile): the daemon
    /// updates it from the runtime's threads.
    status_lock: std::sync::Mutex<()>,
}

/// The outcome of one reload.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// A new set is in force.
    Swapped(String),
    /// The files compile to the set already in force.
    Unchanged,
}

impl Reloader {
    /// A reloader whose first candidate is the set in `rules` (the one the daemon starts with).
    pub fn new(cfg: Arc<Config>, rules: Arc<ArcSwap<Engine>>, directory: Arc<ArcSwap<Directory>>) -> Reloader {
        let first = rules.load_full();
        let status = ReloadStatus { version: first.version.clone(), loaded_at: Some(Utc::now()), ..Default::default() };
        let (candidates, _) = tokio::sync::watch::channel(first);
        Reloader {
            cfg,
            candidates,
            directory,
            status: ArcSwap::from_pointee(status),
            in_force: std::sync::Mutex::new(None),
            status_lock: std::sync::Mutex::new(()),
        }
    }

    /// The latest candidate: the last set that compiled.
    pub fn latest(&self) -> Arc<Engine> {
        self.candidates.borrow().clone()
    }

    /// The candidates as they come (the daemon promotes them).
    pub fn candidates(&self) -> tokio::sync::watch::Sender<Arc<Engine>> {
        self.candidates.clone()
    }

    /// Parse, check, compile and test the whole set; swap it in if it routes differently from the
    /// one in force. On failure nothing changes but the recorded error. Reads files and compiles:
    /// call it from a blocking thread ([`Reloader::reload_in_background`] does).
    pub fn reload(&self, why: &str) -> Result<Reloaded, crate::rules::RulesError> {
        let mut in_force = self.in_force.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut dir = (**self.directory.load()).clone();
        dir.tests_warn = why == DIRECTORY_REFRESH && !self.latest().provisional;
        let result = crate::load_rules_with(&self.cfg, &dir);
        match result {
            Ok(engine) => {
                let old = self.latest();
                // The first set compiled with the CRM's directory always goes in force: the one
                // before it never routes, however alike the two look.
                let first_with_directory = old.provisional && !engine.provisional;
                let changes = if engine.hash == old.hash && !first_with_directory {
                    None
                } else {
                    let old_digest = match in_force.take() {
                        Some((hash, d)) if hash == old.hash => d,
                        _ => digest(&old),
                    };
                    let new_digest = digest(&engine);
                    let changes = summarize_digests(&old_digest, &new_digest);
                    *in_force = Some(if changes.is_some() {
                        (engine.hash.clone(), new_digest)
                    } else {
                        (old.hash.clone(), old_digest)
                    });
                    match changes {
                        None if first_with_directory => Some("compiled with the CRM's directory".to_string()),
                        c => c,
                    }
                };
                let Some(changes) = changes else {
                    if why == DIRECTORY_REFRESH {
                        tracing::debug!(cause = why, version = %old.version, "rules reloaded: no change");
                    } else {
                        tracing::info!(cause = why, version = %old.version, "rules reloaded: no change");
                    }
                    // Good files again: a refusal before this is history.
                    self.update_status(|s| s.last_error = None);
                    return Ok(Reloaded::Unchanged);
                };
                tracing::info!(from = %old.version, to = %engine.version, cause = why, changes = %changes, "rules reloaded");
                let by = if why == DIRECTORY_REFRESH { " by the CRM" } else { "" };
                let people = if old.provisional { Vec::new() } else { people::changes(&old, &engine) };
                for change in people {
                    tracing::info!(version = %engine.version, cause = why, "{change}{by}");
                }
                for w in &engine.warnings {
                    tracing::warn!(version = %engine.version, warning = %w, "the new rules route, with a warning");
                }
                let version = engine.version.clone();
                self.candidates.send_replace(Arc::new(engine));
                self.update_status(|s| {
                    s.last_error = None;
                    s.version = version.clone();
                    s.loaded_at = Some(Utc::now());
                    s.reloads += 1;
                });
                metrics::counter!("oppty_router_rule_reloads_total", "result" => "ok").increment(1);
                Ok(Reloaded::Swapped(version))
            }
            Err(e) => {
                let problems = bounded_problems(&e);
                tracing::error!(cause = why, kept = %self.latest().version, problems = %problems, "rules refused; the last good rules stay in force");
                self.update_status(|s| {
                    s.last_error = Some((Utc::now(), problems));
                    s.refused += 1;
                });
                metrics::counter!("oppty_router_rule_reloads_total", "result" => "refused").increment(1);
                Err(e)
            }
        }
    }

    /// [`Reloader::reload`] on a blocking thread, so reading and compiling never hold up the
    /// task that routes (or the one that watches signals).
    pub async fn reload_in_background(
        self: &Arc<Self>,
        why: &'static str,
    ) -> Result<Reloaded, crate::rules::RulesError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.reload(why)).await.unwrap_or_else(|e| {
            Err(crate::rules::RulesError { problems: vec![format!("the rules reload stopped unexpectedly: {e}")] })
        })
    }
}

/// The cause given by the daemon's periodic directory refresh (its "no change" is not news).
pub const DIRECTORY_REFRESH: &str = "directory refresh";

impl Reloader {
    /// The set in force was given a new version number (the sequence continues after the one a
    /// previous process recorded).
    pub fn renamed(&self, version: &str) {
        self.update_status(|s| s.version = version.to_string());
    }

    /// Change the reload status: read, changed and stored under a lock held for that alone.
    fn update_status(&self, f: impl FnOnce(&mut ReloadStatus)) {
        let _one_at_a_time = self.status_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut status = (**self.status.load()).clone();
        f(&mut status);
        self.status.store(Arc::new(status));
    }

    /// The daemon refused the set in force (its member ids do not fit the CRM's owner column) and
    /// put `kept` back: record it, so `status` tells the truth.
    pub fn refused_by_database(&self, message: &str, kept: &Engine) {
        self.update_status(|s| {
            s.version = kept.version.clone();
            s.last_error = Some((Utc::now(), message.to_string()));
            s.refused += 1;
        });
        metrics::counter!("oppty_router_rule_reloads_total", "result" => "refused").increment(1);
    }
}

/// What the rule files look like on disk (names, sizes, modification times): a save still in
/// progress changes it.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    let m = std::fs::metadata(&p).ok()?;
                    Some((p, m.len(), m.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Watch the rules directory until `shutdown`: every change (after `debounce` of quiet) reloads the
/// whole set. The parent directory is watched too, so replacing the directory or swapping a symlink
/// to it is seen.
pub async fn watch(
    reloader: Arc<Reloader>,
    dir: PathBuf,
    debounce: Duration,
    shutdown: CancellationToken,
) -> Result<(), notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let parent =
        dir.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."));
    let (rules_entry, parent_dir) = (dir.clone(), parent.clone());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        use notify::event::{AccessKind, AccessMode, EventKind};
        // The parent folder is watched only for the rules directory (or symlink) being replaced:
        // anything else there (a log file) is not a change of the rules.
        if let Ok(e) = &res {
            let elsewhere = |p: &PathBuf| p.parent() == Some(parent_dir.as_path()) && *p != rules_entry;
            if !e.paths.is_empty() && e.paths.iter().all(elsewhere) {
                return;
            }
        }
        match res.map(|e| e.kind) {
            // Reading the files (our own reload among them) is not a change.
            Ok(EventKind::Access(AccessKind::Close(AccessMode::Write))) => {
                let _ = tx.send(());
            }
            Ok(EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => tracing::warn!(error = %e, "rules directory watch error"),
        }
    })?;
    watcher.watch(&parent, RecursiveMode::NonRecursive)?;
    let mut watched = rewatch(&mut watcher, &dir, None);
    loop {
        tokio::select! {
            got = rx.recv() => if got.is_none() { return Ok(()) },
            _ = shutdown.cancelled() => return Ok(()),
        }
        // Debounce: wait for a quiet spell (an editor's temp file, rename and chmod; a checkout
        // touching many files), but never longer than 20 spells.
        for _ in 0..20 {
            match tokio::time::timeout(debounce, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return Ok(()),
                Err(_) => break,
            }
        }
        // The directory may have been replaced, or the symlink to it swapped: watch what is there
        // now. File system calls run on a blocking thread, never on the runtime's.
        let (d, old) = (dir.clone(), watched.take());
        let looked = tokio::task::spawn_blocking(move || {
            let now = rewatch(&mut watcher, &d, old);
            (watcher, now, fingerprint(&d))
        })
        .await;
        let Ok((w, now, before)) = looked else { return Ok(()) };
        (watcher, watched) = (w, now);
        let _ = reloader.reload_in_background("rule files changed").await;
        let d = dir.clone();
        if tokio::task::spawn_blocking(move || fingerprint(&d)).await.is_ok_and(|after| after != before) {
            // Written while we read it (a save in two steps): look again after the next quiet spell.
            tokio::time::sleep(debounce).await;
            let _ = reloader.reload_in_background("rule files changed while being read").await;
        }
    }
}

fn rewatch(watcher: &mut notify::RecommendedWatcher, dir: &Path, old: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(o) = &old {
        let _ = watcher.unwatch(o);
    }
    let target = std::fs::canonicalize(dir).ok()?;
    match watcher.watch(&target, RecursiveMode::Recursive) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the rules directory; SIGHUP still reloads");
            None
        }
    }
}
