//! The statement that queues the CRM's rows still to route: every row that is an opportunity
//! (`opportunity.where`), open, not deleted and unowned (the CRM's predicates), and not already
//! queued. SQL only: `backfill` and `install` run it.

use crate::config::Config;
use crate::crm::{deleted_pred, open_pred, unowned_pred, where_pred};

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

pub fn queue_sql(cfg: &Config) -> String {
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

/// How many rows [`queue_sql`] would queue (`backfill --dry-run`).
pub fn count_sql(cfg: &Config) -> String {
    format!("SELECT count(*) AS n {}", candidates(cfg))
}
