//! The admin's one-shot changes to the router's own tables: lifting a member's pause for lapses
//! (`unpause`), and putting back in the queue what the router left behind (`requeue` of the
//! unassigned and the dead-lettered, once the cause is fixed; see `status`). The statements are
//! `store::admin`'s.
//!
//! It must not change anything of the CRM's, nor decide anything: the daemon routes what is
//! queued and sees a lifted pause at its next sweep.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient};

use crate::config::Config;
pub use crate::store::admin::Requeue;

/// Lift a member's pause for lapses (an admin's decision; the daemon sees it at its next sweep).
/// Returns whether there was a pause to lift.
pub async fn unpause(client: &Client, cfg: &Config, member: &str, by: &str) -> Result<bool, tokio_postgres::Error> {
    let sql = crate::store::admin::unpause(&cfg.router.schema);
    Ok(client.execute(&sql, &[&member, &by]).await? > 0)
}

/// Queue again what `what` names (since `since`, only `ids`, when given): the unassigned unless
/// already queued, or the dead-lettered with their attempts reset. Returns the opportunity of each.
pub async fn requeue<C: GenericClient>(
    client: &C,
    cfg: &Config,
    what: Requeue,
    since: Option<DateTime<Utc>>,
    ids: Option<&[String]>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let sql = crate::store::admin::requeue(&cfg.router.schema, what);
    let rows = client.query(&sql, &[&since, &ids]).await?;
    rows.iter().map(|r| r.try_get("opp_id")).collect()
}
