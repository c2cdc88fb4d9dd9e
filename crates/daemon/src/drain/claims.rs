//! The life of a claimed event: charged as it is claimed (`store::Statements::claim`, its own
//! committed statement), taken in its batch's transaction, given back uncharged when it was not
//! its doing (contention, a refusal, another connection's failure, a recount with no moment to
//! run), tried again alone when its batch failed or its claimer's session ended, retried with
//! backoff, and dead-lettered at last.
//!
//! Owns the order of the claims' statements and their bookkeeping; it must not decide owners (that
//! is `engine`), nor process a batch's contents (that is `drain::process`).

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use super::{
    count_drained, db_message, ends_session, process, BatchReport, BatchTx, Conn, Drain, DrainError, Event, LedgerTx,
    Routed, DEFER_DELAY, RETRIES_PER_BATCH,
};
use crate::db::prepared::Prepared;
use crate::db::row::FromRow;
use crate::held::held;

impl Drain {
    /// Events to try again (they failed and are due, or their claimer's session ended while
    /// routing them), each claimed and charged alone, then processed in a transaction of its own:
    /// a failing event never again takes a batch of healthy ones down with it. One claimed more
    /// often than `router.max_attempts` is dead-lettered without another try.
    pub(super) async fn retries(&self, conn: &mut Conn<'_>, n: usize) -> Result<BatchReport, DrainError> {
        let mut total = BatchReport::default();
        for _ in 0..RETRIES_PER_BATCH {
            self.progress.step(n);
            let row = conn.prep.query_opt(conn.client, &self.store.claim_retry, &[&self.fence]).await;
            let Some(row) = row.map_err(DrainError::from_pg)? else { break };
            let ev = Event::from_row(&row).map_err(DrainError::from_pg)?;
            if ev.attempts > self.cfg.router.max_attempts as i32 {
                let msg = never_finished(&ev);
                self.dead_letter(conn, &ev, &msg).await?;
                total.claimed += 1;
                total.dead_lettered += 1;
                continue;
            }
            total.add(&self.isolate(conn, std::slice::from_ref(&ev)).await?);
        }
        Ok(total)
    }

    /// The claimed `events` this session still holds, deleted in the batch's transaction `tx`
    /// (gone once it commits), which is marked (origin, fence) in the same round trip.
    pub(super) async fn take(
        &self,
        tx: &Transaction<'_>,
        prep: &Prepared,
        events: Vec<Event>,
    ) -> Result<Vec<Event>, DrainError> {
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
        let (marked, taken) = tokio::join!(self.mark(tx, prep), prep.query(tx, &self.store.take, &params));
        marked?;
        let taken: HashSet<i64> = (taken.map_err(DrainError::from_pg)?.iter())
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()
            .map_err(DrainError::from_pg)?;
        Ok(events.into_iter().filter(|e| taken.contains(&e.id)).collect())
    }

    /// The batch's place at the gate for a recount, taken before its transaction begins. When some of its events
    /// move loads a person changed (their owners are recounted from the CRM, alone) and no moment
    /// comes without another batch in flight (one that takes long, or never returns), those are
    /// given back for a moment and the others go on now: new opportunities are not held up
    /// behind a stuck batch. Returns the events to process and how many were given back.
    pub(super) async fn enter_or_defer(
        &self,
        conn: &mut Conn<'_>,
        lent: &mut LedgerTx<'_>,
        events: Vec<Event>,
    ) -> Result<(Vec<Event>, usize), DrainError> {
        let recounts = events.iter().any(|e| self.needs_recount(e));
        if !recounts || lent.enter(true, process::RECOUNT_WAIT).await {
            return Ok((events, 0));
        }
        let (later, now): (Vec<Event>, Vec<Event>) = events.into_iter().partition(|e| self.needs_recount(e));
        self.refund(conn, &later, DEFER_DELAY).await?;
        Ok((now, later.len()))
    }

    /// A fresh batch rolled back: the session ends (its claims are tried again alone by whoever
    /// leads next), another transaction was in the way (the claims are given back uncharged and
    /// the batch is claimed again at once), or its events are processed one by one.
    pub(super) async fn batch_failed(
        &self,
        conn: &mut Conn<'_>,
        events: &[Event],
        e: tokio_postgres::Error,
    ) -> Result<BatchReport, DrainError> {
        if ends_session(&e) {
            return Err(self.ended_by(conn, events, e).await);
        }
        let lock_wait = e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE);
        if crate::db::kind_of(&e) == crate::db::ErrorKind::Contention && !lock_wait {
            self.refund(conn, events, Duration::ZERO).await?;
            tracing::warn!(error = %db_message(&e), events = events.len(), "batch met another transaction; trying again");
            return Ok(BatchReport { contended: events.len(), ..Default::default() });
        }
        tracing::warn!(error = %db_message(&e), events = events.len(), "batch failed; isolating its events");
        Ok(BatchReport { isolated: events.len(), ..self.isolate(conn, events).await? })
    }

    /// The session ends for `e`, met while processing `events`. A refusal or a mapping that no
    /// longer fits is not the events' doing: their claims are given back uncharged (they wait,
    /// queued, for the fix). A lost connection leaves them charged: it may be theirs (a row that
    /// crashes the server's process).
    pub(super) async fn ended_by(&self, conn: &mut Conn<'_>, events: &[Event], e: tokio_postgres::Error) -> DrainError {
        let err = DrainError::from_pg(e);
        if matches!(err, DrainError::Refused(_) | DrainError::Mapping(_)) {
            if let Err(r) = self.refund(conn, events, Duration::ZERO).await {
                tracing::debug!(error = %r, "could not give the claims back; they are tried again alone");
            }
        }
        err
    }

    /// Claims of this session's given back uncharged, claimed again after `delay`.
    pub(super) async fn refund(
        &self,
        conn: &mut Conn<'_>,
        events: &[Event],
        delay: Duration,
    ) -> Result<(), DrainError> {
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        let ms = delay.as_secs_f64() * 1000.0;
        conn.prep.execute(conn.client, &self.store.refund, &[&ids, &ms]).await.map_err(DrainError::from_pg)?;
        Ok(())
    }

    /// The session ends for an error on connection `failed`: the claims of the other connections,
    /// whose batches were dropped unfinished, are given back uncharged (the error was not their
    /// events' doing). Best effort: a connection that cannot leaves them to be tried again alone.
    pub(super) async fn give_back_all_but(&self, client: &Client, failed: usize) {
        let clients = std::iter::once(client).chain(self.lanes.iter().map(|l| &l.client));
        for (n, c) in clients.enumerate().filter(|(n, c)| *n != failed && !c.is_closed()) {
            match c.execute(&self.store.give_back, &[]).await {
                Ok(0) => {}
                Ok(given) => tracing::info!(connection = n, given, "claims of a batch cut short given back uncharged"),
                Err(e) => tracing::debug!(connection = n, error = %crate::db::describe(&e), "claims not given back"),
            }
        }
    }

    /// Move an event this session claimed to the dead letters, with why.
    pub(super) async fn dead_letter(&self, conn: &mut Conn<'_>, ev: &Event, why: &str) -> Result<(), DrainError> {
        (conn.prep)
            .execute(conn.client, &self.store.dead_letter, &[&ev.id, &why])
            .await
            .map_err(DrainError::from_pg)?;
        tracing::error!(event = ev.id, opportunity = %ev.opp_id, attempts = ev.attempts, error = %why, "event moved to dead letter");
        Ok(())
    }

    /// Process each of these claimed events in its own transaction, so one poisoned event cannot
    /// block the others; a failing event is retried with backoff, then moved to the dead letter.
    pub(super) async fn isolate(&self, conn: &mut Conn<'_>, events: &[Event]) -> Result<BatchReport, DrainError> {
        let mut total = BatchReport { claimed: events.len(), ..Default::default() };
        for ev in events {
            let mut lent = self.lend();
            let outcome = self.one_alone(conn, ev, &mut lent).await?;
            if matches!(outcome, Ok(Some(_))) {
                lent.commit();
                count_drained(std::slice::from_ref(ev));
            } else {
                drop(lent); // undone
            }
            match outcome {
                Ok(None) => {}
                Ok(Some((report, routed))) => {
                    self.publish(routed, &report);
                    let claimed = total.claimed;
                    total.add(&report);
                    total.claimed = claimed;
                }
                Err(e) if ends_session(&e) => return Err(self.ended_by(conn, std::slice::from_ref(ev), e).await),
                Err(e) if crate::db::kind_of(&e) == crate::db::ErrorKind::Contention => {
                    // Given back uncharged: claimed again after a moment.
                    self.refund(conn, std::slice::from_ref(ev), self.cfg.router.retry_backoff).await?;
                    tracing::warn!(event = ev.id, opportunity = %ev.opp_id, error = %db_message(&e), "event met another transaction; it stays queued");
                    total.contended += 1;
                }
                Err(e) => {
                    let msg = db_message(&e);
                    if ev.attempts >= self.cfg.router.max_attempts as i32 {
                        self.dead_letter(conn, ev, &msg).await?;
                        total.dead_lettered += 1;
                    } else {
                        self.retry_later(conn, ev, &msg).await?;
                        total.retried += 1;
                    }
                }
            }
        }
        Ok(total)
    }

    /// An event that failed alone, tried again after its backoff (capped, jittered).
    pub(super) async fn retry_later(&self, conn: &mut Conn<'_>, ev: &Event, msg: &str) -> Result<(), DrainError> {
        let r = &self.cfg.router;
        let jitter = rand::RngExt::random::<f64>(&mut *held(&self.rng));
        let wait = crate::retry::backoff(r.retry_backoff, ev.attempts.max(1) as u32, r.retry_max_backoff, jitter);
        let backoff = wait.as_secs_f64() * 1000.0;
        (conn.prep)
            .execute(conn.client, &self.store.retry, &[&ev.id, &msg, &backoff])
            .await
            .map_err(DrainError::from_pg)?;
        tracing::warn!(event = ev.id, opportunity = %ev.opp_id, attempts = ev.attempts, retry_in_ms = backoff as u64, error = %msg, "event failed; will retry");
        Ok(())
    }

    /// One event this session claimed, processed in a transaction of its own. The outer error
    /// ends the session (the transaction could not begin); the inner one is the event's.
    #[allow(clippy::type_complexity)]
    pub(super) async fn one_alone(
        &self,
        conn: &mut Conn<'_>,
        ev: &Event,
        lent: &mut LedgerTx<'_>,
    ) -> Result<Result<Option<(BatchReport, Vec<Routed>)>, tokio_postgres::Error>, DrainError> {
        let prep = conn.prep;
        let tx = conn.client.transaction().await.map_err(DrainError::from_pg)?;
        let one = self.take(&tx, prep, vec![ev.clone()]).await?;
        if one.is_empty() {
            return Ok(Ok(None)); // no longer this session's
        }
        let done = self.process(&BatchTx { tx: &tx, prep }, &one, lent).await.map(Some);
        if matches!(&done, Ok(Some((r, _))) if r.deferred > 0) {
            drop(tx); // nothing was done: rolled back
            self.refund(conn, std::slice::from_ref(ev), DEFER_DELAY).await?;
            return Ok(Ok(None));
        }
        Ok(match done {
            Ok(v) => tx.commit().await.map(|()| v),
            Err(e) => Err(e), // rolled back as `tx` drops
        })
    }
}

/// Why an event claimed more often than `router.max_attempts` is dead-lettered.
fn never_finished(ev: &Event) -> String {
    let last = ev.last_error.as_deref().map(|e| format!("; its last error: {e}")).unwrap_or_default();
    format!(
        "claimed {} times and never finished: the session routing it ended each time (a crash, a kill, an error \
         that ended the session){last}",
        ev.attempts - 1
    )
}
