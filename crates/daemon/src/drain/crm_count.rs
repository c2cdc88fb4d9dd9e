//! The CRM's own record of assignments, for caps with `count = "crm"`: read on the leader's
//! connection between rounds (every batch committed, so each assignment the router made before
//! the read is in it), at start, when a rule set needing it goes in force, and every
//! `directory.refresh` (5 minutes without `[directory]`); the ledger adds the router's own
//! assignments made since.
//!
//! It must not decide anything, nor read while a batch is in flight.

use chrono::Utc;
use tokio_postgres::Client;

use super::{Drain, DrainError};
use crate::db::row::FromRow;
use crate::engine::history::CrmCountNeed;
use crate::held::held;

impl Drain {
    /// Read the CRM's assignments of the members whose caps count them, within the longest such
    /// window, into the ledger. Nothing to do when no cap counts the CRM's.
    pub async fn read_crm_assigned(&self, client: &mut Client) -> Result<(), DrainError> {
        let need = CrmCountNeed::of(&self.engine);
        let Some(sql) = self.sql.assigned_since.as_ref().filter(|_| !need.members.is_empty()) else {
            return Ok(());
        };
        let read_at = Utc::now();
        let since = read_at - chrono::Duration::seconds(need.window);
        let pg = DrainError::from_pg;
        let rows = self.prep.query(client, sql, &[&need.members, &since]).await.map_err(pg)?;
        let rows = crate::crm::CrmAssigned::from_rows(&rows).map_err(pg)?;
        let engine = self.engine.clone();
        let counted = rows.into_iter().filter_map(|r| engine.member_index(&r.owner).map(|m| (m, r.at)));
        held(&self.ledger).set_crm_assigned(&engine, counted, read_at.timestamp());
        tracing::debug!(members = need.members.len(), "the CRM's assignments read for caps that count them");
        Ok(())
    }
}
