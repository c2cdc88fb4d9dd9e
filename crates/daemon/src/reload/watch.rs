//! Watching the rules directory: every change, after a quiet spell, compiles the whole set again
//! (through the [`Reloader`]). The parent directory is watched too, so replacing the directory or
//! swapping a symlink to it is seen. It must not compile on the task that routes, nor judge a set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Reloader;

/// What the rule files look like on disk (names, sizes, modification times): a save still in
/// progress changes it.
pub(super) fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
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
/// to it is seen. While it watches, the reload status says so (`watching`).
pub async fn watch(
    reloader: Arc<Reloader>,
    dir: PathBuf,
    debounce: Duration,
    shutdown: CancellationToken,
) -> Result<(), notify::Error> {
    let watched = watching(&reloader, dir, debounce, shutdown).await;
    reloader.watching(false);
    watched
}

async fn watching(
    reloader: &Arc<Reloader>,
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
    reloader.watching(watched.is_some());
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
        reloader.watching(watched.is_some());
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
