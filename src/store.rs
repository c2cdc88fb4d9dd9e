//! SQL over the router's own tables: the drain's statements (claim, retry, dead letter, audit,
//! ownership, loads, pick state, what is left unowned), and fragments more than one module needs,
//! each written once.
//!
//! It must not hold anything of the CRM's (that is `crm`) nor anything from a rule file: the
//! only name spliced in is the router's schema, validated and quoted by `ident`.

use crate::ident::Ident;

/// The drain's statements over the router's tables, for one schema.
#[derive(Debug, Clone)]
pub struct Statements {
    /// `$1` batch size → a fresh batch of events (never retried ones), deleted as claimed.
    pub claim: String,
    /// `$1` limit → events to retry, read only (each is claimed alone by `claim_one`).
    pub claim_retries: String,
    /// `$1` event id → that event, deleted as claimed.
    pub claim_one: String,
    /// Assignments (the audit): ten columns, see `AuditCols::insert`.
    pub audit: String,
    /// What the router assigned, and when the sweeper first looks.
    pub own: String,
    /// Forget the ownership of what a person took over, closed or deleted.
    pub release: String,
    /// Interactions: clocks restarted.
    pub touch: String,
    /// Members' open loads and assignment totals.
    pub member_state: String,
    /// `$1` event id, `$2` error, `$3` backoff in ms → attempts.
    pub retry: String,
    /// `$1` event id, `$2` error: moved to the dead letters.
    pub dead_letter: String,
    /// Park what was left unowned (with why); clear what is owned, closed or gone.
    pub unrouted: String,
    /// Opportunities to route again at a given time.
    pub requeue: String,
    /// Round-robin cursors and weights.
    pub pick_state: String,
    /// `$1` seconds → (owner, assigned at, team) of the recent assignments, oldest first.
    pub history: String,
}

impl Statements {
    pub fn new(schema: &Ident) -> Statements {
        let s = schema.quoted();
        let cols = "id, kind, opp_id, old_owner, new_owner, actor, at, created_at, attempts";
        Statements {
            // The ids are collected into an array first (an InitPlan, run once): with `id IN
            // (SELECT … LIMIT)` a nested-loop plan re-runs the LIMIT subquery per row and one
            // statement takes the whole backlog.
            claim: format!(
                "DELETE FROM {s}.events WHERE id = ANY(ARRAY(SELECT id FROM {s}.events WHERE attempts = 0 \
                 AND next_attempt_at <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)) RETURNING {cols}"
            ),
            // Read only: each is then claimed by id in its own transaction (`claim_one`).
            claim_retries: format!(
                "SELECT {cols} FROM {s}.events WHERE attempts > 0 AND next_attempt_at <= now() ORDER BY id LIMIT $1"
            ),
            claim_one: format!("DELETE FROM {s}.events WHERE id = $1 RETURNING {cols}"),
            audit: format!(
                "INSERT INTO {s}.assignments (opp_id, owner_id, team_id, previous_owner, outcome, pipeline, rule_id, \
                 rules_version, explanation, event_at) \
                 SELECT u.o, u.w, u.t, u.p, u.c, u.l, u.r, $8, u.e::jsonb, u.a \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $9::text[], $10::timestamptz[]) AS u(o, w, t, p, c, l, r, e, a)"
            ),
            own: format!(
                "INSERT INTO {s}.ownership (opp_id, owner_id, team_id, pipeline, assigned_at, last_owner_touch_at, due_at) \
                 SELECT u.o, u.w, u.t, u.p, clock_timestamp(), clock_timestamp(), clock_timestamp() + u.d * interval '1 second' \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[]) AS u(o, w, t, p, d) \
                 ON CONFLICT (opp_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, team_id = EXCLUDED.team_id, \
                 pipeline = EXCLUDED.pipeline, assigned_at = EXCLUDED.assigned_at, \
                 last_owner_touch_at = EXCLUDED.last_owner_touch_at, due_at = EXCLUDED.due_at, stage = 'owner', \
                 last_activity_at = NULL, last_owner_edit_at = NULL, warned_at = NULL"
            ),
            release: format!(
                "DELETE FROM {s}.ownership w USING unnest($1::text[], $2::text[], $3::bool[]) AS u(o, w, open) \
                 WHERE w.opp_id = u.o AND (NOT u.open OR u.w IS DISTINCT FROM w.owner_id)"
            ),
            touch: format!(
                "UPDATE {s}.ownership w SET last_activity_at = greatest(w.last_activity_at, a.any_at), \
                 last_owner_touch_at = greatest(w.last_owner_touch_at, a.owner_at), \
                 last_owner_edit_at = greatest(w.last_owner_edit_at, a.edit_at) \
                 FROM (SELECT u.o, max(u.at) FILTER (WHERE NOT u.edit) AS any_at, \
                       max(u.at) FILTER (WHERE NOT u.edit AND u.actor = x.owner_id) AS owner_at, \
                       max(u.at) FILTER (WHERE u.edit AND u.actor = x.owner_id) AS edit_at \
                       FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bool[]) AS u(o, actor, at, edit) \
                       JOIN {s}.ownership x ON x.opp_id = u.o GROUP BY u.o) a \
                 WHERE w.opp_id = a.o"
            ),
            member_state: format!(
                "INSERT INTO {s}.member_state AS m (member_id, open_count, assigned_total, last_assigned_at, updated_at) \
                 SELECT u.m, u.c, u.a, CASE WHEN u.a > 0 THEN clock_timestamp() END, clock_timestamp() \
                 FROM unnest($1::text[], $2::int4[], $3::int8[]) AS u(m, c, a) \
                 ON CONFLICT (member_id) DO UPDATE SET open_count = EXCLUDED.open_count, \
                 assigned_total = m.assigned_total + EXCLUDED.assigned_total, \
                 last_assigned_at = coalesce(EXCLUDED.last_assigned_at, m.last_assigned_at), updated_at = EXCLUDED.updated_at"
            ),
            retry: format!(
                "UPDATE {s}.events SET attempts = attempts + 1, last_error = $2, \
                 next_attempt_at = clock_timestamp() + $3::float8 * interval '1 millisecond' WHERE id = $1 RETURNING attempts"
            ),
            dead_letter: format!(
                "WITH d AS (DELETE FROM {s}.events WHERE id = $1 RETURNING *) \
                 INSERT INTO {s}.dead_letter (id, kind, opp_id, old_owner, new_owner, actor, at, created_at, attempts, error) \
                 SELECT id, kind, opp_id, old_owner, new_owner, actor, at, created_at, attempts + 1, $2 FROM d"
            ),
            // Park what was left unowned (with why); clear what is owned, closed or gone.
            unrouted: format!(
                "WITH gone AS (DELETE FROM {s}.unrouted WHERE opp_id = ANY($1::text[])) \
                 INSERT INTO {s}.unrouted AS r (opp_id, outcome, reason, pipeline) \
                 SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) \
                 ON CONFLICT (opp_id) DO UPDATE SET outcome = EXCLUDED.outcome, reason = EXCLUDED.reason, \
                 pipeline = EXCLUDED.pipeline, decided_at = clock_timestamp()"
            ),
            requeue: format!(
                "INSERT INTO {s}.events (kind, opp_id, created_at, next_attempt_at) \
                 SELECT 'route', u.o, u.c, u.n FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS u(o, c, n)"
            ),
            pick_state: format!(
                "INSERT INTO {s}.pick_state AS p (rule_key, cursor, weights, updated_at) \
                 SELECT u.k, u.c, u.w::jsonb, clock_timestamp() FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, c, w) \
                 ON CONFLICT (rule_key) DO UPDATE SET cursor = EXCLUDED.cursor, weights = EXCLUDED.weights, updated_at = EXCLUDED.updated_at"
            ),
            history: format!(
                "SELECT owner_id, extract(epoch FROM decided_at)::int8, team_id FROM {s}.assignments \
                 WHERE owner_id IS NOT NULL AND outcome IN ('rule', 'fallback') \
                 AND decided_at > clock_timestamp() - $1::int8 * interval '1 second' ORDER BY decided_at"
            ),
        }
    }
}

/// Whether a queued event `e` (of `<schema>.events`) counts as an interaction by the owner
/// `u.old`, under the policy columns `u.anyone` (any activity counts) and `u.edits` (the owner's
/// edits count): the SQL twin of `engine::ReclaimPolicy::counts` (a test holds the two equal).
pub const COUNTS_AS_INTERACTION: &str = "((e.kind = 'activity' AND (u.anyone OR e.actor = u.old)) \
     OR (e.kind = 'edit' AND u.edits AND e.actor = u.old))";
