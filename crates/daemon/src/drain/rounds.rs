//! A leader's rounds of draining: which connections are still at work in a round, when a round
//! ends, and the heartbeat the lease follows (`Progress`).
//!
//! It must not touch the database nor decide anything about events: it only says when to look
//! again and whether the leader makes progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The drain's heartbeat: whether the leader makes progress. It beats between rounds, while
/// waiting with nothing due, and as each connection ends a batch; a batch under way for longer
/// than the lease on any connection (a statement that never returns) counts as no progress, as
/// does a leader loop that stops beating. A leader whose drain makes no progress for a lease
/// stops renewing it, so a standby takes over (`daemon::lease`).
#[derive(Debug)]
pub struct Progress {
    origin: Instant,
    last_ms: AtomicU64,
    /// When each connection's batch under way began (ms since `origin`, plus one; 0: none).
    batch_since: [AtomicU64; 16],
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// A heartbeat that beat just now.
    pub fn new() -> Progress {
        Progress { origin: Instant::now(), last_ms: AtomicU64::new(0), batch_since: Default::default() }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    /// Progress made now.
    pub fn beat(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Connection `n` begins a batch (`true`), or ended one (progress).
    fn in_batch(&self, n: usize, yes: bool) {
        if let Some(b) = self.batch_since.get(n) {
            b.store(if yes { self.now_ms() } else { 0 }, Ordering::Relaxed);
        }
        if !yes {
            self.beat();
        }
    }

    /// Connection `n` finished a step of its batch (an event tried again alone) and goes on.
    pub(super) fn step(&self, n: usize) {
        self.in_batch(n, false);
        self.in_batch(n, true);
    }

    /// How long the batch under way longest has run (zero when none is).
    fn longest_batch(&self) -> Duration {
        let now = self.now_ms();
        let since = self.batch_since.iter().map(|b| b.load(Ordering::Relaxed)).filter(|s| *s != 0).min();
        Duration::from_millis(since.map_or(0, |s| now.saturating_sub(s)))
    }

    /// How long without progress: since the last beat, or the batch under way longest, whichever
    /// is longer.
    pub fn age(&self) -> Duration {
        let since_beat =
            Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed).max(1)));
        since_beat.max(self.longest_batch())
    }
}

/// When a round of draining ends (besides finding the queue empty).
#[derive(Clone, Copy)]
pub(super) struct Round<'a> {
    pub(super) stop: &'a tokio_util::sync::CancellationToken,
    pub(super) until: Option<Instant>,
    /// Which connections are still at work in this round.
    pub(super) working: &'a Working<'a>,
}

impl Round<'_> {
    pub(super) fn over(&self) -> bool {
        self.stop.is_cancelled() || self.until.is_some_and(|u| Instant::now() >= u)
    }
}

/// The connections at work in a round. A round ends when none is. One that finds nothing more
/// waits for the others; until the round's time is up it looks for new events every poll, and
/// after that only while another connection has been in one batch for longer than
/// [`Working::STUCK`]: a batch that takes long (or never returns) on one connection does not hold
/// up new events on the others, and a round under a steady stream still ends.
pub(super) struct Working<'a> {
    count: std::sync::atomic::AtomicUsize,
    ended: std::sync::atomic::AtomicBool,
    changed: tokio::sync::Notify,
    /// Where each connection's batch under way is noted.
    progress: &'a Progress,
}

impl<'a> Working<'a> {
    const STUCK: Duration = Duration::from_secs(1);

    pub(super) fn new(connections: usize, progress: &'a Progress) -> Working<'a> {
        Working {
            count: std::sync::atomic::AtomicUsize::new(connections),
            ended: std::sync::atomic::AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            progress,
        }
    }

    /// Connection `n` begins a batch (`true`) or is done with it.
    pub(super) fn in_batch(&self, n: usize, yes: bool) {
        self.progress.in_batch(n, yes);
    }

    /// Whether a connection has been in one batch for longer than [`Working::STUCK`].
    pub(super) fn stuck(&self) -> bool {
        self.progress.longest_batch() > Self::STUCK
    }

    /// This connection is done for now; true when it was the last one at work (the round ends).
    pub(super) fn rest(&self) -> bool {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.ended.store(true, Ordering::SeqCst);
            self.changed.notify_waiters();
            return true;
        }
        false
    }

    /// Back at work, unless the round ended meanwhile.
    pub(super) fn resume(&self) -> bool {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.ended.load(Ordering::SeqCst) {
            self.count.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Wait until there is reason to look for new events again (true), or the round ended.
    pub(super) async fn wait(&self, round: &Round<'_>, poll: Duration) -> bool {
        loop {
            let changed = self.changed.notified();
            if self.ended.load(Ordering::SeqCst) || round.stop.is_cancelled() {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = changed => {}
                _ = round.stop.cancelled() => {}
            }
            if self.ended.load(Ordering::SeqCst) || round.stop.is_cancelled() {
                return false;
            }
            if !round.over() || self.stuck() {
                return self.resume();
            }
        }
    }
}

/// A moment before looking again (a recount looking for a moment with no batch in flight).
pub(super) async fn moment() {
    tokio::time::sleep(Duration::from_millis(2)).await;
}
