//! Compiling the rule set and judging it: a set that compiles and differs from the one in force
//! is offered to the daemon as a [`Candidate`] (logged as a candidate, never as in force); files
//! that do not compile are refused, with every problem in one ERROR, only once the directory has
//! been quiet for `router.reload_settle` (an editor's save in steps is never a refusal).
//!
//! It must not touch the database nor put a set in force (the daemon does, and says so), and it
//! compiles on a blocking thread, never on the task that routes.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::Utc;

use super::{bounded_problems, digest, people, summarize_digests, Candidate, Digest, ReloadStatus};
use crate::config::Config;
use crate::engine::Engine;
use crate::held::held;
use crate::rules::{Directory, RulesError};

/// The cause given by the daemon's periodic directory refresh (its "no change" is not news).
pub const DIRECTORY_REFRESH: &str = "directory refresh";

/// The cause a SIGHUP gives: someone asked, so a refusal is said again.
pub const SIGHUP: &str = "SIGHUP";

/// The causes the watcher gives begin with this.
pub const FILES_CHANGED: &str = "rule files changed";

/// At most this many quiet spells are waited for one save (a directory that never stops changing
/// is judged as it is then).
const MAX_SETTLES: usize = 30;

/// Compiles rule sets and offers them as candidates; shared by the watcher, SIGHUP and the
/// directory refresh.
pub struct Reloader {
    cfg: Arc<Config>,
    /// The set in force (the daemon alone stores into it): candidates are compared with it.
    live: Arc<ArcSwap<Engine>>,
    /// The latest set compiled from the files (and the CRM's directory), or the set in force
    /// when the files compile to it again.
    candidates: tokio::sync::watch::Sender<Arc<Candidate>>,
    pub directory: Arc<ArcSwap<Directory>>,
    pub status: ArcSwap<ReloadStatus>,
    /// One reload at a time (the watcher, SIGHUP and the directory refresh may ask together);
    /// it keeps the digests of the set in force and of the last candidate, by content hash.
    digests: Mutex<Vec<(String, Arc<Digest>)>>,
    /// Held only while `status` is read, changed and stored (never across a compile).
    status_lock: Mutex<()>,
    /// The candidate the daemon refused last and why: the same refusal again is not news.
    refused_last: Mutex<Option<(String, String)>>,
}

/// The outcome of one reload.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// A set that routes differently from the one in force was offered (its version).
    Candidate(String),
    /// The files compile to the set in force.
    Unchanged,
}

impl Reloader {
    /// A reloader comparing with the set in `rules` (the one the daemon starts with), which is
    /// also its first candidate.
    pub fn new(cfg: Arc<Config>, rules: Arc<ArcSwap<Engine>>, directory: Arc<ArcSwap<Directory>>) -> Reloader {
        let first = rules.load_full();
        let status =
            ReloadStatus { version: first.version.clone(), in_force_since: Some(Utc::now()), ..Default::default() };
        let (candidates, _) = tokio::sync::watch::channel(Arc::new(Candidate::in_force(first)));
        Reloader {
            cfg,
            live: rules,
            candidates,
            directory,
            status: ArcSwap::from_pointee(status),
            digests: Mutex::new(Vec::new()),
            status_lock: Mutex::new(()),
            refused_last: Mutex::new(None),
        }
    }

    /// The latest candidate's set: the last one that compiled (or the set in force).
    pub fn latest(&self) -> Arc<Engine> {
        self.candidates.borrow().engine.clone()
    }

    /// The candidates as they come (the daemon checks and promotes them).
    pub fn candidates(&self) -> tokio::sync::watch::Sender<Arc<Candidate>> {
        self.candidates.clone()
    }

    /// Parse, check, compile and test the whole set; offer it if it routes differently from the
    /// one in force. Files that do not compile (or that lost a file the set in force has) are
    /// judged once the directory has been quiet for `router.reload_settle`; on failure nothing
    /// changes but the recorded error. Reads files, compiles and waits: call it from a blocking
    /// thread ([`Reloader::reload_in_background`] does).
    pub fn reload(&self, why: &str) -> Result<Reloaded, RulesError> {
        let mut digests = held(&self.digests);
        let dir = &self.cfg.router.rules_dir;
        tracing::debug!(cause = why, dir = %dir.display(), "reading the rule files");
        // Counted as the look begins: whoever sees its verdict sees it counted.
        self.update_status(|s| s.looks += 1);
        let mut seen = super::watch::fingerprint(dir);
        let mut result = self.compile(why);
        for _ in 0..MAX_SETTLES {
            let unsure = result.as_ref().map_or(true, |e| self.lost_a_file(e));
            if !unsure {
                break;
            }
            std::thread::sleep(self.cfg.router.reload_settle);
            let now = super::watch::fingerprint(dir);
            if now == seen {
                break;
            }
            tracing::debug!(
                cause = why,
                "the rules directory changed while a save looked unfinished; reading it again"
            );
            seen = now;
            result = self.compile(why);
        }
        match result {
            Ok(engine) => Ok(self.offer(engine, why, &mut digests)),
            Err(e) => Err(self.refuse_files(e, why)),
        }
    }

    /// The rules directory is watched (or no longer is): `status` says so.
    pub fn watching(&self, yes: bool) {
        if self.status.load().watching != yes {
            self.update_status(|s| s.watching = yes);
        }
    }

    fn compile(&self, why: &str) -> Result<Engine, RulesError> {
        let mut dir = (**self.directory.load()).clone();
        dir.tests_warn = why == DIRECTORY_REFRESH && !self.live.load().provisional;
        crate::load_rules_with(&self.cfg, &dir)
    }

    /// A file of the set in force is missing from `new` (a save that renames the file away
    /// first, then writes it): judged only once the directory is quiet.
    fn lost_a_file(&self, new: &Engine) -> bool {
        let live = self.live.load();
        live.sources.iter().any(|(p, _)| !new.sources.iter().any(|(q, _)| q == p))
    }

    /// The digest of `e`, kept for the set in force and the last candidate.
    fn digest_of(digests: &mut Vec<(String, Arc<Digest>)>, e: &Engine) -> Arc<Digest> {
        if let Some((_, d)) = digests.iter().find(|(h, _)| *h == e.hash) {
            return d.clone();
        }
        let d = Arc::new(digest(e));
        digests.push((e.hash.clone(), d.clone()));
        d
    }

    /// A compiled set: offered when it routes differently from the set in force.
    fn offer(&self, engine: Engine, why: &str, digests: &mut Vec<(String, Arc<Digest>)>) -> Reloaded {
        let live = self.live.load_full();
        // The first set compiled with the CRM's directory always goes in force: the one before it
        // never routes, however alike the two look.
        let first_with_directory = live.provisional && !engine.provisional;
        let changes = if engine.hash == live.hash && !first_with_directory {
            None
        } else {
            let (old, new) = (Self::digest_of(digests, &live), Self::digest_of(digests, &engine));
            digests.retain(|(h, _)| *h == live.hash || *h == engine.hash);
            match summarize_digests(&old, &new) {
                None if first_with_directory => Some("compiled with the CRM's directory".to_string()),
                c => c,
            }
        };
        let Some(changes) = changes else { return self.unchanged(live, why) };
        let latest = self.latest();
        if latest.hash == engine.hash && why.starts_with(FILES_CHANGED) {
            // The same save seen again (its last steps): offered once. SIGHUP and the directory
            // refresh offer it again, so a refusal by the CRM is looked at anew.
            tracing::debug!(cause = why, candidate = %latest.version, "the rule files compile to the candidate already offered");
            return Reloaded::Candidate(latest.version.clone());
        }
        let people = if live.provisional { Vec::new() } else { people::changes(&live, &engine) };
        tracing::info!(
            cause = why,
            candidate = %engine.version,
            in_force = %live.version,
            changes = %changes,
            "new rules compiled; they go in force once checked against the CRM"
        );
        let version = engine.version.clone();
        let against = live.hash.clone();
        let candidate = Candidate { engine: Arc::new(engine), against, changes, people, cause: why.to_string() };
        // Counted before it is published: whoever sees the candidate sees it counted.
        self.update_status(|s| s.candidates += 1);
        self.candidates.send_replace(Arc::new(candidate));
        Reloaded::Candidate(version)
    }

    /// The files compile to the set in force: a refusal before this is history, and a candidate
    /// not yet in force is withdrawn.
    fn unchanged(&self, live: Arc<Engine>, why: &str) -> Reloaded {
        if why == DIRECTORY_REFRESH {
            tracing::debug!(cause = why, version = %live.version, "rules reloaded: no change");
        } else {
            tracing::info!(cause = why, version = %live.version, "rules reloaded: no change");
        }
        self.update_status(|s| s.last_error = None);
        *held(&self.refused_last) = None;
        if !Arc::ptr_eq(&self.latest(), &live) {
            self.candidates.send_replace(Arc::new(Candidate::in_force(live)));
        }
        Reloaded::Unchanged
    }

    /// Files that stay broken once the directory is quiet: one ERROR with every problem (the
    /// same problems again on a directory refresh are not news), kept for `status`.
    fn refuse_files(&self, e: RulesError, why: &str) -> RulesError {
        let problems = bounded_problems(&e.problems);
        let kept = self.live.load().version.clone();
        let again = self.status.load().last_error.as_ref().is_some_and(|(_, p)| *p == problems);
        if again && why == DIRECTORY_REFRESH {
            tracing::debug!(cause = why, kept = %kept, "the rule files are still refused");
            return e;
        }
        tracing::error!(cause = why, kept = %kept, problems = %problems, "rules refused; the last good rules stay in force");
        self.record_refusal(problems);
        e
    }

    /// A refusal (of the files, or of a candidate by the CRM): `status` keeps it, the metric counts it.
    fn record_refusal(&self, problems: String) {
        self.update_status(|s| {
            s.last_error = Some((Utc::now(), problems));
            s.refused += 1;
        });
        metrics::counter!("oppty_router_rule_reloads_total", "result" => "refused").increment(1);
    }

    /// [`Reloader::reload`] on a blocking thread, so reading and compiling never hold up the
    /// task that routes (or the one that watches signals).
    pub async fn reload_in_background(self: &Arc<Self>, why: &'static str) -> Result<Reloaded, RulesError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.reload(why)).await.unwrap_or_else(|e| {
            Err(RulesError { problems: vec![format!("the rules reload stopped unexpectedly: {e}")] })
        })
    }

    /// The set in force was given a new version number (the sequence continues after the one a
    /// previous process recorded).
    pub fn renamed(&self, version: &str) {
        self.update_status(|s| s.version = version.to_string());
    }

    /// The daemon put `engine` in force: `status` says so from now on.
    pub fn promoted(&self, engine: &Engine) {
        *held(&self.refused_last) = None;
        self.update_status(|s| {
            s.version = engine.version.clone();
            s.in_force_since = Some(Utc::now());
            s.last_error = None;
            s.reloads += 1;
        });
        metrics::counter!("oppty_router_rule_reloads_total", "result" => "ok").increment(1);
    }

    /// The daemon refused `candidate` (a value the CRM cannot take): recorded for `status`.
    /// Returns whether this is news: not the same candidate refused for the same reasons, unless
    /// someone asked (`asked`: SIGHUP).
    pub fn refused_by_database(&self, problems: &str, candidate: &Engine, asked: bool) -> bool {
        let this = (candidate.hash.clone(), problems.to_string());
        let mut last = held(&self.refused_last);
        if last.as_ref() == Some(&this) && !asked {
            return false;
        }
        *last = Some(this);
        drop(last);
        self.record_refusal(problems.to_string());
        true
    }

    /// Change the reload status: read, changed and stored under a lock held for that alone.
    fn update_status(&self, f: impl FnOnce(&mut ReloadStatus)) {
        let _one_at_a_time = held(&self.status_lock);
        let mut status = (**self.status.load()).clone();
        f(&mut status);
        self.status.store(Arc::new(status));
    }
}
