//! Rule reloads: watch the rules directory, debounce, compile the whole set, swap it in atomically;
//! on any failure the last good set stays in force and the error is kept for `status`.
//!
//! Owns the watcher (the `notify` crate), how editing patterns are absorbed (rename-over saves,
//! editor temp files, `git checkout`, a ConfigMap's `..data` swap, a directory replaced, a file
//! written in two steps), the reload status, and the "what changed" summary. It must not touch the
//! database, and it never stops routing: the worst a bad save does is leave the old rules running.

use std::collections::BTreeMap;
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

/// Compiles and swaps rule sets; shared by the watcher, SIGHUP and the directory refresh.
pub struct Reloader {
    cfg: Arc<Config>,
    pub rules: Arc<ArcSwap<Engine>>,
    pub directory: Arc<ArcSwap<Directory>>,
    pub status: ArcSwap<ReloadStatus>,
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
    pub fn new(cfg: Arc<Config>, rules: Arc<ArcSwap<Engine>>, directory: Arc<ArcSwap<Directory>>) -> Reloader {
        let status =
            ReloadStatus { version: rules.load().version.clone(), loaded_at: Some(Utc::now()), ..Default::default() };
        Reloader { cfg, rules, directory, status: ArcSwap::from_pointee(status) }
    }

    /// Parse, check, compile and test the whole set; swap it in if it differs from the one in
    /// force. On failure nothing changes but the recorded error.
    pub fn reload(&self, why: &str) -> Result<Reloaded, crate::rules::RulesError> {
        let dir = self.directory.load();
        let result = crate::load_rules_with(&self.cfg, &dir);
        let mut status = (**self.status.load()).clone();
        match result {
            Ok(engine) => {
                let old = self.rules.load_full();
                if engine.hash == old.hash {
                    return Ok(Reloaded::Unchanged);
                }
                let changes = summarize(&old, &engine);
                tracing::info!(from = %old.version, to = %engine.version, cause = why, changes = %changes, "rules reloaded");
                let version = engine.version.clone();
                self.rules.store(Arc::new(engine));
                status.version = version.clone();
                status.loaded_at = Some(Utc::now());
                status.reloads += 1;
                self.status.store(Arc::new(status));
                Ok(Reloaded::Swapped(version))
            }
            Err(e) => {
                tracing::error!(cause = why, kept = %self.rules.load().version, problems = %e, "rules refused; the last good rules stay in force");
                status.last_error = Some((Utc::now(), e.to_string()));
                status.refused += 1;
                self.status.store(Arc::new(status));
                Err(e)
            }
        }
    }
}

impl Reloader {
    /// The daemon refused the set in force (its member ids do not fit the CRM's owner column) and
    /// put `kept` back: record it, so `status` tells the truth.
    pub fn refused_by_database(&self, message: &str, kept: &Engine) {
        let mut status = (**self.status.load()).clone();
        status.version = kept.version.clone();
        status.last_error = Some((Utc::now(), message.to_string()));
        status.refused += 1;
        self.status.store(Arc::new(status));
    }
}

/// "pipelines +wealth ~retail; rules +retail/x; members -103 ~101" (added, removed, changed).
pub fn summarize(old: &Engine, new: &Engine) -> String {
    fn diff(old: BTreeMap<String, String>, new: BTreeMap<String, String>, what: &str, out: &mut Vec<String>) {
        let mut parts = Vec::new();
        for (k, v) in &new {
            match old.get(k) {
                None => parts.push(format!("+{k}")),
                Some(o) if o != v => parts.push(format!("~{k}")),
                _ => {}
            }
        }
        for k in old.keys().filter(|k| !new.contains_key(*k)) {
            parts.push(format!("-{k}"));
        }
        if !parts.is_empty() {
            out.push(format!("{what} {}", parts.join(" ")));
        }
    }
    let pipelines = |e: &Engine| {
        e.pipelines.iter().map(|(k, p)| (k.clone(), format!("{:?}{:?}", p.fallback_owner, p.rules.len()))).collect()
    };
    let rules = |e: &Engine| {
        e.pipelines
            .values()
            .flat_map(|p| {
                p.rules.iter().map(|r| {
                    (
                        r.key.clone(),
                        format!(
                            "{:?}{:?}{:?}{:?}{:?}{:?}",
                            r.when, r.team, r.filters, r.pick, r.when_full, r.when_away
                        ),
                    )
                })
            })
            .collect()
    };
    let members = |e: &Engine| {
        e.members
            .iter()
            .map(|m| {
                (
                    m.id.to_string(),
                    format!("{:?}", (m.paused, m.active, &m.caps, m.weight, m.kpi, &m.products, &m.tags, m.schedule)),
                )
            })
            .collect()
    };
    let teams = |e: &Engine| {
        e.teams
            .iter()
            .map(|t| {
                (
                    t.id.to_string(),
                    format!(
                        "{:?}",
                        (&t.crm_id, t.members.iter().map(|m| &e.members[*m].id).collect::<Vec<_>>(), &t.territories)
                    ),
                )
            })
            .collect()
    };
    let mut out = Vec::new();
    diff(pipelines(old), pipelines(new), "pipelines", &mut out);
    diff(rules(old), rules(new), "rules", &mut out);
    diff(teams(old), teams(new), "teams", &mut out);
    diff(members(old), members(new), "members", &mut out);
    if out.is_empty() {
        "settings or tests only".into()
    } else {
        out.join("; ")
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
        // The directory may have been replaced, or the symlink to it swapped: watch what is there now.
        watched = rewatch(&mut watcher, &dir, watched);
        let before = fingerprint(&dir);
        let _ = reloader.reload("rule files changed");
        if fingerprint(&dir) != before {
            // Written while we read it (a save in two steps): look again after the next quiet spell.
            tokio::time::sleep(debounce).await;
            let _ = reloader.reload("rule files changed while being read");
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
