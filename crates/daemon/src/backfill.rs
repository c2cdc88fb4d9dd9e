//! Putting opportunities in the queue, so that none is left behind: the backfill of those already
//! in the CRM before the capture triggers (`requeue` of what the router left behind is `admin`'s).
//!
//! Owns queueing a `route` event for every row that is an opportunity (`opportunity.where`), open,
//! not deleted and unowned, and not already queued (the statement is `crm::queue`'s); `install`
//! runs it in its own transaction (right after creating the triggers, so no row falls between the
//! two), `oppty-router backfill` later. It must not decide anything: the daemon routes what is
//! queued.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::config::Config;
use crate::crm::queue::{count_sql, queue_sql};

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(
        "--since needs to know when an opportunity was created: set opportunity.created_at to its creation time column"
    )]
    NoCreatedAt,
    #[error("backfill failed: {}", crate::db::describe(.0))]
    Sql(#[from] tokio_postgres::Error),
}

/// Queue every open, unowned opportunity not already queued (created since `since`, when given);
/// with `dry_run`, only count them. Returns how many.
pub async fn backfill<C: GenericClient>(
    client: &C,
    cfg: &Config,
    since: Option<DateTime<Utc>>,
    dry_run: bool,
) -> Result<u64, BackfillError> {
    if since.is_some() && cfg.opportunity.created_at.is_none() {
        return Err(BackfillError::NoCreatedAt);
    }
    if dry_run {
        let n: i64 = client.query_one(&count_sql(cfg), &[&since]).await?.try_get("n")?;
        return Ok(n.max(0) as u64);
    }
    Ok(client.execute(&queue_sql(cfg), &[&since]).await?)
}
