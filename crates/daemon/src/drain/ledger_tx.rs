//! The ledger lent out: to a batch's transaction a phase at a time as a `LedgerTx` that journals
//! every change and undoes it on drop unless committed (only loads and histories when another
//! batch used the ledger since), or taken out whole by a reclaim batch, which runs alone, as a
//! `LedgerOut`. It must not touch the database: the batch does, and commits or drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{Ledger, Undo};
use crate::held::held;

use super::{rounds, Drain, Explained, ExplanationKey};

/// One change to the ledger made inside a batch, undone if the batch does not commit.
pub(super) enum Journal {
    Assign(Undo),
    /// An assignment taken back because its write did not happen (the row was owned meanwhile).
    Unassigned(usize, i64),
    /// An assignment a write statement made to another member than the one picked.
    Assigned(usize, i64),
    /// A member's open load moved by this much (a recount, a reclaim moving a load).
    Moved(usize, i64),
}

/// Undo a journal, newest first. `alone`: no other transaction used the ledger since, so the pick
/// state and away flags go back as they were too; otherwise only loads and histories are taken
/// back (they add up in any order), and the turns other batches took since stay.
pub(super) fn undo_journal(ledger: &mut Ledger, journal: Vec<Journal>, alone: bool) {
    for j in journal.into_iter().rev() {
        match j {
            Journal::Assign(u) if alone => ledger.undo(&u),
            Journal::Assign(u) => ledger.undo_load(&u),
            Journal::Unassigned(m, at) => ledger.assign(m, at),
            Journal::Assigned(m, at) => ledger.unassign(m, at),
            Journal::Moved(m, by) => ledger.open[m] = (ledger.open[m] - by).max(0),
        }
    }
}

/// Set a member's open load, journaled as the move it is.
pub(super) fn set_open(ledger: &mut Ledger, journal: &mut Vec<Journal>, m: usize, open: i64) {
    journal.push(Journal::Moved(m, open - ledger.open[m]));
    ledger.open[m] = open;
}

/// The ledger lent to one batch's transaction, a phase at a time ([`LedgerTx::with`]): batches on
/// other connections route in between, and see this one's assignments (so caps hold while both are
/// in flight). Its changes are kept by [`LedgerTx::commit`] once the transaction committed and
/// undone otherwise (an error, an early return or a dropped future alike): the ledger never holds
/// what the database does not.
///
/// It also holds the batch's place at the gate ([`LedgerTx::enter`]) until it commits or rolls
/// back: a batch that recounts loads from the CRM does so alone, when no other batch has
/// assignments in flight that the count could not see.
pub(super) struct LedgerTx<'a> {
    pub(super) ledger: &'a std::sync::Mutex<Ledger>,
    /// Bumped by every use of the ledger: whether anybody used it after this transaction did.
    pub(super) uses: &'a AtomicU64,
    pub(super) last_use: u64,
    pub(super) gate: &'a tokio::sync::RwLock<()>,
    pub(super) held: Gate<'a>,
    pub(super) journal: Vec<Journal>,
    /// Explanations this transaction stored, learned when it commits.
    pub(super) explained: &'a Explained,
    pub(super) learned: Vec<ExplanationKey>,
    pub(super) committed: bool,
}

/// A batch's place at the gate.
pub(super) enum Gate<'a> {
    Out,
    /// Held for its drop (the place is given up with it).
    Shared {
        _held: tokio::sync::RwLockReadGuard<'a, ()>,
    },
    Alone {
        held: tokio::sync::RwLockWriteGuard<'a, ()>,
    },
}

impl<'a> LedgerTx<'a> {
    pub(super) fn new(
        ledger: &'a std::sync::Mutex<Ledger>,
        uses: &'a AtomicU64,
        gate: &'a tokio::sync::RwLock<()>,
        explained: &'a Explained,
    ) -> Self {
        let (journal, learned) = (Vec::new(), Vec::new());
        LedgerTx { ledger, uses, last_use: 0, gate, held: Gate::Out, journal, explained, learned, committed: false }
    }

    /// Use the ledger for one phase (never across an await).
    pub(super) fn with<R>(&mut self, f: impl FnOnce(&mut Ledger, &mut Vec<Journal>) -> R) -> R {
        let mut ledger = held(self.ledger);
        self.last_use = self.uses.fetch_add(1, Ordering::SeqCst) + 1;
        f(&mut ledger, &mut self.journal)
    }

    /// Take a place at the gate: alone (no other batch in flight) to recount loads, else shared.
    /// Alone, it never queues (a queued recount would hold up every batch behind one that takes
    /// long): it looks for a moment when no batch is in flight, for at most `wait`; false when
    /// none came (the batch is then given back and claimed again a moment later).
    pub(super) async fn enter(&mut self, alone: bool, wait: Duration) -> bool {
        match self.held {
            Gate::Out => {}
            Gate::Alone { .. } => return true,
            // A shared place is never made exclusive: the batch is given back instead.
            Gate::Shared { .. } => return !alone,
        }
        if !alone {
            self.held = Gate::Shared { _held: self.gate.read().await };
            return true;
        }
        let until = Instant::now() + wait;
        loop {
            if let Ok(held) = self.gate.try_write() {
                self.held = Gate::Alone { held };
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            rounds::moment().await;
        }
    }

    /// The recount is done: other batches may go on beside this one.
    pub(super) fn share(&mut self) {
        self.held = match std::mem::replace(&mut self.held, Gate::Out) {
            Gate::Alone { held } => Gate::Shared { _held: held.downgrade() },
            other => other,
        };
    }

    /// The transaction committed: its changes stay, and the explanations it stored are known.
    pub(super) fn commit(mut self) {
        self.committed = true;
        self.explained.learn(std::mem::take(&mut self.learned));
    }
}

impl Drop for LedgerTx<'_> {
    fn drop(&mut self) {
        if !self.committed && !self.journal.is_empty() {
            let mut ledger = held(self.ledger);
            let alone = self.uses.load(Ordering::SeqCst) == self.last_use;
            undo_journal(&mut ledger, std::mem::take(&mut self.journal), alone);
        }
        // The place at the gate is given up after the undo (the fields drop after this).
    }
}

/// The ledger taken out whole by one transaction that runs alone (a reclaim sweep's batch),
/// put back when it ends: with its changes once [`LedgerOut::commit`] was called, undone
/// otherwise.
pub(super) struct LedgerOut<'a> {
    pub(super) slot: &'a std::sync::Mutex<Ledger>,
    pub(super) ledger: Ledger,
    pub(super) journal: Vec<Journal>,
    pub(super) committed: bool,
}

impl<'a> LedgerOut<'a> {
    pub(super) fn take(slot: &'a std::sync::Mutex<Ledger>) -> LedgerOut<'a> {
        let ledger = std::mem::take(&mut *held(slot));
        LedgerOut { slot, ledger, journal: Vec::new(), committed: false }
    }

    pub(super) fn parts(&mut self) -> (&mut Ledger, &mut Vec<Journal>) {
        (&mut self.ledger, &mut self.journal)
    }

    pub(super) fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for LedgerOut<'_> {
    fn drop(&mut self) {
        if !self.committed {
            undo_journal(&mut self.ledger, std::mem::take(&mut self.journal), true);
        }
        *held(self.slot) = std::mem::take(&mut self.ledger);
    }
}

impl Drain {
    /// The ledger, lent to one transaction.
    pub(super) fn lend(&self) -> LedgerTx<'_> {
        LedgerTx::new(&self.ledger, &self.uses, &self.gate, &self.explained)
    }
}

#[cfg(test)]
mod ledger_tx_tests {
    use super::*;
    use crate::drain::records::explanation_key;
    use crate::engine::Engine;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn engine() -> Engine {
        let text = "[[member]]\nid = \"a\"\n[[member]]\nid = \"b\"\n[[team]]\nid = \"t\"\nmembers = [\"a\", \"b\"]\n\
                    pipelines = [\"p\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"round_robin\"\n";
        crate::rules::compile_texts(&[("r.toml", text)], &[]).expect("rules")
    }

    /// What a drain lends its batches: the ledger, its use count, the gate.
    struct Shared {
        ledger: std::sync::Mutex<Ledger>,
        uses: AtomicU64,
        gate: tokio::sync::RwLock<()>,
        explained: Explained,
    }

    impl Shared {
        fn new(l: Ledger) -> Shared {
            let (uses, gate) = (AtomicU64::new(0), tokio::sync::RwLock::new(()));
            Shared { ledger: std::sync::Mutex::new(l), uses, gate, explained: Explained::default() }
        }

        fn lend(&self) -> LedgerTx<'_> {
            LedgerTx::new(&self.ledger, &self.uses, &self.gate, &self.explained)
        }

        fn now(&self) -> Ledger {
            let mut l = held(&self.ledger).clone();
            l.dirty.clear(); // what to persist next, not state: rewriting a cursor is harmless
            l
        }
    }

    /// Route opportunities through a lent ledger, journaling as a batch does.
    fn route(lent: &mut LedgerTx<'_>, e: &Engine, ids: &[&str]) {
        let now = chrono::Utc::now();
        let mut rng = SmallRng::seed_from_u64(1);
        lent.with(|ledger, journal| {
            for id in ids {
                let opp = crate::engine::Opportunity {
                    id,
                    pipeline: Some("p"),
                    fields: &[],
                    waiting_since: now,
                    exclude: &[],
                    only_team: None,
                };
                let d = e.route(&opp, ledger, now, &mut rng);
                journal.push(Journal::Assign(d.undo.clone()));
            }
        });
    }

    #[tokio::test]
    async fn a_ledger_lent_to_a_transaction_that_does_not_commit_is_as_before() {
        let e = engine();
        let before = Ledger::for_engine(&e, None);
        let shared = Shared::new(before.clone());
        let mut lent = shared.lend();
        route(&mut lent, &e, &["o1", "o2", "o3"]);
        // A load a person moved, recounted in the same transaction.
        lent.with(|l, j| set_open(l, j, 0, l.open[0] + 10));
        assert_ne!(shared.now(), before, "routing changed the ledger");
        drop(lent); // no commit: an error, an early return or a dropped future
        assert!(shared.now() == before, "undone on drop");

        let mut lent = shared.lend();
        route(&mut lent, &e, &["o1", "o2", "o3"]);
        lent.with(|l, j| set_open(l, j, 0, l.open[0] + 10));
        lent.commit();
        assert_eq!(shared.now().open.iter().sum::<i64>(), 13, "kept once committed");
    }

    #[tokio::test]
    async fn a_batch_that_fails_while_another_is_in_flight_takes_back_only_its_own_loads() {
        let e = engine();
        let shared = Shared::new(Ledger::for_engine(&e, None));
        let mut first = shared.lend();
        route(&mut first, &e, &["o1", "o2", "o3"]);
        let mut second = shared.lend();
        route(&mut second, &e, &["o4", "o5"]);
        let turns = shared.now().cursors.clone();
        drop(first); // the first batch rolls back after the second routed
        let after = shared.now();
        assert_eq!(after.open.iter().sum::<i64>(), 2, "the second batch's two assignments stay, the first's three go");
        assert_eq!(after.recent.iter().map(|q| q.len()).sum::<usize>(), 2, "and so do their histories");
        assert_eq!(after.cursors, turns, "the turns the second batch took are not rewound");
        second.commit();
        assert_eq!(shared.now().open.iter().sum::<i64>(), 2);
    }

    #[test]
    fn explanations_a_batch_stored_are_known_once_it_commits_and_not_if_it_rolls_back() {
        let shared = Shared::new(Ledger::default());
        let (a, b) = (explanation_key("{\"rule\":\"a\"}"), explanation_key("{\"rule\":\"b\"}"));
        assert_ne!(a, b);
        let mut rolled_back = shared.lend();
        rolled_back.learned.push(a);
        drop(rolled_back);
        let mut committed = shared.lend();
        committed.learned.push(b);
        committed.commit();
        let known = shared.explained.lock();
        assert!(!known.contains(&a), "a rolled-back batch's explanation is sent again next time");
        assert!(known.contains(&b), "a committed one is not");
    }

    #[tokio::test]
    async fn a_batch_recounts_loads_only_when_no_other_batch_is_in_flight_and_holds_none_up_while_it_looks() {
        let shared = Shared::new(Ledger::default());
        let mut in_flight = shared.lend();
        assert!(in_flight.enter(false, Duration::ZERO).await);
        let mut recounting = shared.lend();
        assert!(
            !recounting.enter(true, Duration::from_millis(100)).await,
            "no recount while another batch is in flight"
        );
        // A recount looking for its moment holds up no batch meanwhile.
        let mut beside = shared.lend();
        let looking = async { recounting.enter(true, Duration::from_millis(300)).await };
        let (alone, shared_now) = tokio::join!(looking, async {
            let entered = tokio::time::timeout(Duration::from_millis(100), beside.enter(false, Duration::ZERO)).await;
            drop(beside);
            entered
        });
        assert!(shared_now.is_ok(), "a batch goes on while a recount looks for its moment");
        assert!(!alone, "still one in flight");
        in_flight.commit();
        assert!(recounting.enter(true, Duration::from_secs(5)).await, "alone once the others committed");
        // While it recounts, a new batch waits; once it shares, the new one goes on beside it.
        let mut next = shared.lend();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), next.enter(false, Duration::ZERO)).await.is_err(),
            "waits for the recount"
        );
        recounting.share();
        tokio::time::timeout(Duration::from_secs(5), next.enter(false, Duration::ZERO))
            .await
            .expect("beside it after the recount");
    }
}
