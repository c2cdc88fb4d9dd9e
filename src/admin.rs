//! The admin's one-shot changes to the router's own tables: lifting a member's pause for lapses
//! (`unpause`), and putting back in the queue what the router left behind (`requeue` of the
//! unassigned and the dead-lettered, once the cause is fixed; see `status`).
//!
//! It must not change anything of the CRM's, nor decide anything: the daemon routes what is
//! queued and sees a lifted pause at its next sweep.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient};

use crate::config::Config;

/// Lift a member's pause for lapses (an admin's decision; the daemon sees it at its next sweep).
/// Returns whether there was a pause to lift.
pub async fn unpause(client: &Client, cfg: &Config, member: &str, by: &str) -> Result<bool, tokio_postgres::Error> {
    let s = cfg.router.schema.quoted();
    let n = client
        .execute(
            &format!(
                "UPDATE {s}.member_pauses SET lifted_at = clock_timestamp(), lifted_by = $2 \
                 WHERE member_id = $1 AND lifted_at IS NULL"
            ),
            &[&member, &by],
        )
        .await?;
    Ok(n > 0)
}

/// Queue again the opportunities the router left unassigned (since `since`, when given), unless
/// already queued. Returns how many.
pub async fn requeue_unassigned<C: GenericClient>(
    client: &C,
    cfg: &Config,
    since: Option<DateTime<Utc>>,
    ids: Option<&[String]>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let s = cfg.router.schema.quoted();
    let sql = format!(
        "INSERT INTO {s}.events (kind, opp_id) SELECT 'route', u.opp_id FROM {s}.unrouted u \
         WHERE u.outcome = 'unassigned' AND ($1::timestamptz IS NULL OR u.since >= $1) \
         AND ($2::text[] IS NULL OR u.opp_id = ANY($2)) \
         AND NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.kind = 'route' AND e.opp_id = u.opp_id) \
         RETURNING opp_id"
    );
    ids_of(client.query(&sql, &[&since, &ids]).await?)
}

fn ids_of(rows: Vec<tokio_postgres::Row>) -> Result<Vec<String>, tokio_postgres::Error> {
    rows.iter().map(|r| r.try_get("opp_id")).collect()
}

/// Move dead-lettered events (failed since `since`, when given) back into the queue with their
/// attempts reset. Returns the opportunity of each event moved.
pub async fn requeue_dead_letters<C: GenericClient>(
    client: &C,
    cfg: &Config,
    since: Option<DateTime<Utc>>,
    ids: Option<&[String]>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let s = cfg.router.schema.quoted();
    let sql = format!(
        "WITH d AS (DELETE FROM {s}.dead_letter WHERE ($1::timestamptz IS NULL OR failed_at >= $1) \
         AND ($2::text[] IS NULL OR opp_id = ANY($2)) RETURNING *) \
         INSERT INTO {s}.events (kind, opp_id, old_owner, new_owner, actor, at, created_at) \
         SELECT kind, opp_id, old_owner, new_owner, actor, at, created_at FROM d RETURNING opp_id"
    );
    ids_of(client.query(&sql, &[&since, &ids]).await?)
}
