//! The ledger while leading: rebuilt from the CRM and the audit when this session becomes leader
//! (`reconcile`), and again when a rule set needing more history goes in force (`swap_engine`);
//! the loads and shares it tells. It must not route anything.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio_postgres::Client;

use crate::db::row::FromRow;
use crate::engine::history::{CrmCountNeed, HistoryNeed};
use crate::engine::{Engine, Ledger};
use crate::held::held;

use super::{clamp_i32, Drain, DrainError};

impl Drain {
    /// Rebuild the ledger from the database (on becoming leader): every member's open load from
    /// the CRM, recent assignments for windowed caps, round-robin state. Stores the loads.
    pub async fn reconcile(&mut self, client: &mut Client) -> Result<(), DrainError> {
        let engine = self.engine.clone();
        let mut ledger = Ledger::for_engine(&engine, None);
        let pg = DrainError::from_pg;
        let loads = self.prep.query(client, &self.sql.full_count, &[]).await.map_err(pg)?;
        for r in crate::crm::Load::from_rows(&loads).map_err(pg)? {
            if let Some(m) = engine.member_index(&r.owner) {
                ledger.open[m] = r.open;
            }
        }
        let need = HistoryNeed::of(&engine);
        self.read_history(client, &engine, &need, &mut ledger).await?;
        self.history = need;
        let states = self.prep.query(client, &self.store.pick_states, &[]).await.map_err(pg)?;
        for r in crate::store::PickState::from_rows(&states).map_err(pg)? {
            if let Some(c) = r.cursor {
                ledger.cursors.insert(r.rule_key.clone(), c);
            }
            if let Ok(w) = serde_json::from_value::<HashMap<String, i64>>(r.weights) {
                if !w.is_empty() {
                    ledger.weights.insert(r.rule_key, w);
                }
            }
        }
        let members: Vec<String> = engine.member_ids().map(str::to_string).collect();
        let counts: Vec<i32> = ledger.open.iter().map(|v| clamp_i32(*v)).collect();
        let zeros = vec![0i64; members.len()];
        self.prep.execute(client, &self.store.member_state, &[&members, &counts, &zeros]).await.map_err(pg)?;
        *held(&self.ledger) = ledger;
        self.refresh_pauses(client).await.map_err(DrainError::from_pg)?;
        self.read_crm_assigned(client).await
    }

    /// Route with a new rule set from the next batch on. The ledger is carried over by member id;
    /// members new to this set have their open load counted from the CRM.
    pub async fn swap_engine(&mut self, client: &mut Client, engine: Arc<Engine>) -> Result<(), DrainError> {
        let mut ledger = Ledger::for_engine(&engine, Some((&self.engine, &held(&self.ledger))));
        let new: Vec<String> =
            engine.member_ids().filter(|id| self.engine.member_index(id).is_none()).map(str::to_string).collect();
        if !new.is_empty() {
            let rows = self.prep.query(client, &self.sql.recount, &[&new]).await.map_err(DrainError::from_pg)?;
            for r in crate::crm::Load::from_rows(&rows).map_err(DrainError::from_pg)? {
                if let Some(m) = engine.member_index(&r.owner) {
                    ledger.open[m] = r.open;
                }
            }
        }
        // Between rounds: every batch committed, so the table holds all the ledger would.
        let need = HistoryNeed::of(&engine);
        if !self.history.covers(&need) {
            self.read_history(client, &engine, &need, &mut ledger).await?;
        }
        self.history = need;
        *held(&self.ledger) = ledger;
        let crm_need_changed = CrmCountNeed::of(&engine) != CrmCountNeed::of(&self.engine);
        self.engine = engine;
        if crm_need_changed {
            self.read_crm_assigned(client).await?;
        }
        Ok(())
    }

    /// Replace the ledger's past with what `need` asks of the assignments table: per member its
    /// latest assignments (oldest first), per membership with a team's own cap those through it.
    pub(super) async fn read_history(
        &self,
        client: &mut Client,
        engine: &Engine,
        need: &HistoryNeed,
        ledger: &mut Ledger,
    ) -> Result<(), DrainError> {
        let pg = DrainError::from_pg;
        let (members, teams, depths) = need.columns();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&members, &teams, &depths, &need.window];
        let rows = self.prep.query(client, &self.store.history, &params).await.map_err(pg)?;
        ledger.recent.iter_mut().for_each(VecDeque::clear);
        ledger.recent_here.clear();
        for r in crate::store::Recent::from_rows(&rows).map_err(pg)? {
            let Some(m) = engine.member_index(&r.owner_id) else { continue };
            match r.team_id.and_then(|t| engine.team_index.get(&t).copied()) {
                Some(t) => ledger.assign_here(&engine.members[m].id, &engine.teams[t].id, r.at),
                None => ledger.recent[m].push_back(r.at),
            }
        }
        ledger.recent.iter_mut().for_each(|q| q.make_contiguous().sort_unstable());
        Ok(())
    }

    /// Each team's open load (its members' open opportunities) as this leader knows it.
    pub fn team_loads(&self) -> Vec<(Arc<str>, i64)> {
        let ledger = held(&self.ledger);
        let open = |m: &usize| ledger.open.get(*m).copied().unwrap_or(0);
        self.engine.teams.iter().map(|t| (t.id.clone(), t.members.iter().map(open).sum())).collect()
    }

    /// Each team's fairness since this leader started (received against expected by the rules).
    pub fn team_fairness(&self) -> Vec<(Arc<str>, crate::report::Fairness)> {
        held(&self.shares).fairness()
    }

    /// The open load of a member as this leader knows it (0 while a transaction has the ledger).
    pub fn load_of(&self, member: &str) -> i64 {
        let Ok(ledger) = self.ledger.try_lock() else { return 0 };
        self.engine.member_index(member).map_or(0, |m| ledger.open.get(m).copied().unwrap_or(0))
    }
}
