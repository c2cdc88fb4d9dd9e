//! One batch's transaction on one connection: begin (origin marked, then the fence: the lease row
//! held while it names this leader's session), claim, read the context, then `drain::process` for
//! the phases. It must not decide owners (`engine`) nor keep the ledger (`drain::ledger_tx`).

use std::collections::HashMap;
use std::time::Instant;

use tokio_postgres::{Client, Transaction};

use crate::capture::ORIGIN_SETTING;
use crate::db::prepared::Prepared;
use crate::db::row::FromRow;
use crate::held::held;
use crate::store::Event;

use super::{count_drained, first_cause, BatchReport, Conn, Drain, DrainError, DEFER_DELAY};

/// A batch's transaction and the statements prepared on its connection.
pub(super) struct BatchTx<'t> {
    pub(super) tx: &'t Transaction<'t>,
    pub(super) prep: &'t Prepared,
}

impl BatchTx<'_> {
    pub(super) async fn query(
        &self,
        sql: &str,
        p: crate::db::prepared::Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.prep.query(self.tx, sql, p).await
    }

    pub(super) async fn execute(
        &self,
        sql: &str,
        p: crate::db::prepared::Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        self.prep.execute(self.tx, sql, p).await
    }
}

pub struct Context {
    pub owner: Option<String>,
    pub open: bool,
    pub deleted: bool,
    /// The row is an opportunity at all (`opportunity.where`); leads in a shared table are not.
    pub opportunity: bool,
    /// Nobody owns it, in the CRM's own words (`opportunity.unowned_when`, else the owner column).
    pub unowned: bool,
    /// Nobody would own it were its owner column cleared: no person's assignment elsewhere in the
    /// row, so a reclaim may hand it on.
    pub only_owner: bool,
    pub pipeline: Option<String>,
    pub fields: Vec<Option<String>>,
    /// Read without its fields because a CRM transaction holds the row: not routed now.
    pub locked: bool,
}

/// One row of the context (or state) query: `id`, `owner`, `open`, `deleted`, `opp`, `unowned`,
/// `only_owner`, then the `pipeline` and the fields (the context query only; the fields, a list as long as the mapping's,
/// are read by position after `pipeline`). A row `locked` by a CRM transaction was read by the
/// state query: no pipeline, no fields.
pub fn context_from_row(r: &tokio_postgres::Row, locked: bool) -> Result<(String, Context), tokio_postgres::Error> {
    const FIELDS_FROM: usize = 8;
    let full = !locked && r.len() >= FIELDS_FROM;
    let c = Context {
        owner: r.try_get("owner")?,
        open: r.try_get("open")?,
        deleted: r.try_get("deleted")?,
        opportunity: r.try_get("opp")?,
        unowned: r.try_get("unowned")?,
        only_owner: r.try_get("only_owner")?,
        pipeline: if full { r.try_get("pipeline")? } else { None },
        fields: if full { (FIELDS_FROM..r.len()).map(|i| r.try_get(i)).collect::<Result<_, _>>()? } else { Vec::new() },
        locked,
    };
    Ok((r.try_get("id")?, c))
}

impl Drain {
    /// A transaction of the router's: its writes carry `oppty_router.origin = 'router'`, which
    /// the capture triggers skip (the router never hears its own writes as a person's change).
    /// Fenced, it first holds the lease row while the lease still names this leader's session;
    /// otherwise the session is over (another replica leads).
    pub(super) async fn begin<'c>(
        &self,
        client: &'c mut Client,
        prep: &Prepared,
    ) -> Result<Transaction<'c>, DrainError> {
        let tx = client.transaction().await.map_err(DrainError::from_pg)?;
        self.mark(&tx, prep).await?;
        Ok(tx)
    }

    /// The origin and the fence of a transaction just begun ([`Drain::begin`]), sent together (one
    /// round trip, and the batch's first statement can go with them).
    pub(super) async fn mark(&self, tx: &Transaction<'_>, prep: &Prepared) -> Result<(), DrainError> {
        let pg = DrainError::from_pg;
        let origin = format!("SET LOCAL {ORIGIN_SETTING} = 'router'");
        let Some(pid) = self.fence else {
            return tx.batch_execute(&origin).await.map_err(pg);
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&pid];
        let (set, held) = tokio::join!(tx.batch_execute(&origin), prep.query_opt(tx, &self.store.fence, &params));
        set.map_err(pg)?;
        if held.map_err(pg)?.is_none() {
            return Err(DrainError::Fenced);
        }
        Ok(())
    }

    /// Process the retries that are due, each alone, then claim and process one batch of fresh
    /// events, on the session's connection. Returns how many events were claimed (0 = nothing to do).
    pub async fn batch(&mut self, client: &mut Client) -> Result<BatchReport, DrainError> {
        let prep = std::mem::take(&mut self.prep);
        let result = self.batch_on(&mut Conn { client, prep: &prep }, 0).await;
        self.prep = prep;
        result
    }

    /// One batch on connection `n` of `conn` (0: the session's): the events due again first, each
    /// alone, then a fresh batch; counted in [`Drain::claims_per_connection`], and in
    /// [`Drain::batches_per_connection`] when it claimed anything. (An event that ends the session
    /// charges only itself: the other connections' claims are given back as the session ends.)
    pub(super) async fn batch_on(&self, conn: &mut Conn<'_>, n: usize) -> Result<BatchReport, DrainError> {
        let started = Instant::now();
        let mut report = self.retries(conn, n).await?;
        let fresh = self.fresh(conn).await?;
        report.add(&fresh);
        if report.claimed + report.contended + report.deferred > 0 {
            self.log_batch(&report, started);
        }
        if let Some(b) = held(&self.batches).get_mut(n) {
            b.tried += 1;
            b.claimed += usize::from(report.claimed > 0);
        }
        Ok(report)
    }

    /// Claim a batch of fresh events, charging each an attempt in the claim's own statement (it
    /// stands whatever becomes of the batch: a crash counts), and process them in one transaction;
    /// if it fails for something about the rows, process them one by one.
    pub(super) async fn fresh(&self, conn: &mut Conn<'_>) -> Result<BatchReport, DrainError> {
        let started = Instant::now();
        let limit = i64::from(self.cfg.router.batch_size);
        let prep = conn.prep;
        let rows = prep.query(conn.client, &self.store.claim, &[&limit, &self.fence]).await;
        let events = rows.and_then(|r| Event::from_rows(&r)).map_err(DrainError::from_pg)?;
        if events.is_empty() {
            return Ok(BatchReport::default());
        }
        let mut lent = self.lend();
        let (events, deferred) = self.enter_or_defer(conn, &mut lent, events).await?;
        if events.is_empty() {
            return Ok(BatchReport { deferred, ..Default::default() });
        }
        let tx = conn.client.transaction().await.map_err(DrainError::from_pg)?;
        // The claim taken with the origin and the fence: a fenced batch writes nothing.
        let events = self.take(&tx, prep, events).await?;
        let claim_us = started.elapsed().as_micros() as u64;
        if events.is_empty() {
            tx.rollback().await.map_err(DrainError::from_pg)?;
            return Ok(BatchReport { deferred, ..Default::default() });
        }
        let result = self.process(&BatchTx { tx: &tx, prep }, &events, &mut lent).await;
        if result.as_ref().is_ok_and(|(r, _)| r.deferred > 0) {
            drop((tx, lent)); // nothing was done: rolled back
            self.refund(conn, &events, DEFER_DELAY).await?;
            return Ok(BatchReport { deferred: events.len(), ..Default::default() });
        }
        let result = match result {
            Ok(ok) => {
                let commit_started = Instant::now();
                tx.commit().await.map(|()| (ok, commit_started.elapsed().as_micros() as u64))
            }
            Err(e) => {
                drop(tx); // rolls back
                Err(e)
            }
        };
        let report = match result {
            Ok(((mut report, routed), commit_us)) => {
                lent.commit();
                report.deferred += deferred;
                report.phase_us[0] = claim_us;
                report.phase_us[5] = commit_us;
                report.claimed = events.len();
                count_drained(&events);
                self.publish(routed, &report);
                report
            }
            Err(e) => {
                drop(lent); // undone
                self.batch_failed(conn, &events, e).await?
            }
        };
        Ok(report)
    }

    /// The context of these opportunities: owner, open, deleted, pipeline, fields for those to
    /// route (one query), and the state alone for those that only changed (one more). With
    /// `lock`, the rows to route are locked, and those a CRM transaction holds come back with
    /// their state alone, marked `locked`.
    pub(super) async fn load_context(
        &self,
        t: &BatchTx<'_>,
        ids: &[String],
        state_ids: &[String],
        lock: bool,
    ) -> Result<HashMap<String, Context>, tokio_postgres::Error> {
        let locking = self.sql.context_locking.as_ref().filter(|_| lock);
        let full = async {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            t.query(locking.unwrap_or(&self.sql.context), &[&ids]).await
        };
        let state = async {
            if state_ids.is_empty() {
                return Ok(Vec::new());
            }
            t.query(&self.sql.state, &[&state_ids]).await
        };
        let (full, state) = tokio::join!(full, state);
        let mut both = first_cause([full, state])?.into_iter();
        let (full, state) = (both.next().unwrap_or_default(), both.next().unwrap_or_default());
        let mut ctx = HashMap::with_capacity(full.len() + state.len());
        for r in full.iter().chain(&state) {
            let (id, c) = context_from_row(r, false)?;
            ctx.insert(id, c);
        }
        let skipped: Vec<&String> = ids.iter().filter(|i| !ctx.contains_key(*i)).collect();
        if locking.is_some() && !skipped.is_empty() {
            // Not returned: deleted, or locked by a CRM transaction (then its state says so).
            for r in t.query(&self.sql.state, &[&skipped]).await? {
                let (id, c) = context_from_row(&r, true)?;
                ctx.insert(id, c);
            }
        }
        Ok(ctx)
    }
}
