//! Putting opportunities in the queue, so that none is left behind: the backfill of those already
//! in the CRM before the capture triggers (`requeue` of what the router left behind is `admin`'s).
//!
//! Owns the statement that queues a `route` event for every row that is an opportunity
//! (`opportunity.where`), open, not deleted and unowned, and not already queued; `install` runs it
//! in its own transaction (right after creating the triggers, so no row falls between the two),
//! `oppty-router backfill` later. It must not decide anything: the
//! daemon routes what is queued.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::config::Config;
use crate::crm::{deleted_pred, open_pred, unowned_pred, where_pred};

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(
        "--since needs to know when an opportunity was created: set opportunity.created_at to its creation time column"
    )]
    NoCreatedAt,
    #[error("backfill failed: {}", crate::db::describe(.0))]
    Sql(#[from] tokio_postgres::Error),
}

/// The rows to queue, as a `FROM … WHERE …` over the opportunity table `o`; `$1` the oldest
/// creation time wanted (or NULL). Unowned is the CRM's predicate (`unowned_when`).
fn candidates(cfg: &Config) -> String {
    let o = &cfg.opportunity;
    let s = cfg.router.schema.quoted();
    let id = o.id.quoted();
    let since = match &o.created_at {
        Some(c) => format!(" AND ($1::timestamptz IS NULL OR o.{} >= $1::timestamptz)", c.quoted()),
        None => " AND $1::timestamptz IS NULL".to_string(),
    };
    format!(
        "FROM {table} o WHERE coalesce(({is_opp})::bool, false) AND coalesce(({open})::bool, false) \
         AND NOT coalesce(({deleted})::bool, false) AND {unowned}{since} \
         AND NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.kind = 'route' AND e.opp_id = o.{id}::text)",
        table = o.table.quoted(),
        is_opp = where_pred(cfg),
        unowned = unowned_pred(cfg, "o"),
        open = open_pred(cfg),
        deleted = deleted_pred(cfg),
    )
}

fn queue_sql(cfg: &Config) -> String {
    format!(
        "INSERT INTO {}.events (kind, opp_id) SELECT 'route', o.{}::text {}",
        cfg.router.schema.quoted(),
        cfg.opportunity.id.quoted(),
        candidates(cfg)
    )
}

/// The statement as `install --dry-run` prints it (values inline; no `--since`).
pub fn dry_run_sql(cfg: &Config) -> String {
    format!("{};\n", queue_sql(cfg).replace("$1::timestamptz", "NULL::timestamptz"))
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
        let sql = format!("SELECT count(*) AS n {}", candidates(cfg));
        let n: i64 = client.query_one(&sql, &[&since]).await?.try_get("n")?;
        return Ok(n.max(0) as u64);
    }
    Ok(client.execute(&queue_sql(cfg), &[&since]).await?)
}
