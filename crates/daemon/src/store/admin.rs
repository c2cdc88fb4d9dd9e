//! The admin's statements over the router's tables: lifting a member's pause for lapses, and
//! putting back in the queue what the router left behind. SQL only; `admin` runs them.

use crate::ident::Ident;

/// Lift a member's pause for lapses: `$1` the member, `$2` who lifted it.
pub fn unpause(schema: &Ident) -> String {
    let s = schema.quoted();
    format!(
        "UPDATE {s}.member_pauses SET lifted_at = clock_timestamp(), lifted_by = $2 \
         WHERE member_id = $1 AND lifted_at IS NULL"
    )
}

/// What `requeue` puts back in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The opportunities left unassigned, unless already queued.
    Unassigned,
    /// The dead-lettered events, with their attempts reset.
    DeadLetters,
}

/// Put back in the queue: `$1` since (or NULL), `$2` only these opportunities (or NULL);
/// returns `opp_id` of each one queued.
pub fn requeue(schema: &Ident, what: Requeue) -> String {
    let s = schema.quoted();
    match what {
        Requeue::Unassigned => format!(
            "INSERT INTO {s}.events (kind, opp_id) SELECT 'route', u.opp_id FROM {s}.unrouted u \
             WHERE u.outcome = 'unassigned' AND ($1::timestamptz IS NULL OR u.since >= $1) \
             AND ($2::text[] IS NULL OR u.opp_id = ANY($2)) \
             AND NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.kind = 'route' AND e.opp_id = u.opp_id) \
             RETURNING opp_id"
        ),
        Requeue::DeadLetters => format!(
            "WITH d AS (DELETE FROM {s}.dead_letter WHERE ($1::timestamptz IS NULL OR failed_at >= $1) \
             AND ($2::text[] IS NULL OR opp_id = ANY($2)) RETURNING *) \
             INSERT INTO {s}.events (kind, opp_id, old_owner, new_owner, actor, at, created_at) \
             SELECT kind, opp_id, old_owner, new_owner, actor, at, created_at FROM d RETURNING opp_id"
        ),
    }
}
