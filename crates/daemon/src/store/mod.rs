//! SQL over the router's own tables, and the typed rows it reads: the drain's statements (claim,
//! retry, dead letter, audit, ownership, loads, pick state, what is left unowned), the sweep's
//! (`store::sweep`), leadership's (`store::lease`), what `status` and `explain` read
//! (`store::reads`), the admin's (`store::admin`), and fragments more than one module needs, each written once.
//!
//! Every column a statement returns is named, and read by that name into a struct
//! (`db::row::typed_row!`); statements are prepared once per session (`db::prepared`).
//!
//! It must not hold anything of the CRM's (that is `crm`) nor anything from a rule file: the
//! only name spliced in is the router's schema, validated and quoted by `ident`.

pub mod admin;
mod lease;
mod reads;
mod sweep;

use chrono::{DateTime, Utc};
use tokio_postgres::types::{FromSql, Type};

use crate::db::row::typed_row;
use crate::ident::Ident;
pub use lease::{lane_key, LastLeader, LeaseStatements, StaleLeader, BACKEND_PID, LANE_LOCK};
pub use reads::{
    DaemonRow, DeadLetterGroup, Decision, KeptSet, LapsePause, OutcomeCount, Past, QueueReport, Reads, ReclaimCount,
    Skip, SkipGroup, UnownedGroup,
};
pub use sweep::{AlignChunk, Due, EarlierOwner, Queued, SweepStatements};

/// What a captured change is (the event table's `kind`, which its CHECK constraint limits to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new opportunity, or one whose owner was cleared: route it.
    Route,
    /// Its owner, open-ness or soft delete changed: loads and ownership follow.
    Changed,
    /// A row of an activity table: an interaction with it.
    Activity,
    /// An edit of the opportunity row (who made it is the actor).
    Edit,
}

impl EventKind {
    /// From the table's text.
    pub fn from_text(s: &str) -> EventKind {
        match s {
            "route" => EventKind::Route,
            "changed" => EventKind::Changed,
            "edit" => EventKind::Edit,
            _ => EventKind::Activity,
        }
    }

    /// As the table writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Route => "route",
            EventKind::Changed => "changed",
            EventKind::Activity => "activity",
            EventKind::Edit => "edit",
        }
    }
}

impl<'a> FromSql<'a> for EventKind {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(EventKind::from_text(<&str as FromSql>::from_sql(ty, raw)?))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

typed_row! {
    /// A captured change, as claimed from the event table; a NULL or a type that does not match
    /// the router's schema is an error, never a panic.
    #[derive(Debug, Clone)]
    pub struct Event {
        pub id: i64,
        pub kind: EventKind,
        pub opp_id: String,
        pub old_owner: Option<String>,
        pub new_owner: Option<String>,
        pub actor: Option<String>,
        pub at: Option<DateTime<Utc>>,
        pub created_at: DateTime<Utc>,
        /// Claims so far, this one included (charged as it was claimed).
        pub attempts: i32,
        /// Why its last try failed (`None`: it never failed, or its claimer's session ended).
        pub last_error: Option<String>,
    }
}

typed_row! {
    /// A recent assignment, for windowed caps.
    pub struct Recent {
        pub owner_id: String,
        /// When, in seconds since the epoch.
        pub at: i64,
        /// The team it counts for (a team's own cap), or `None`: the member's own caps.
        pub team_id: Option<String>,
    }
}

typed_row! {
    /// A round-robin cursor and the weights of a rule's smooth weighted pick.
    pub struct PickState {
        pub rule_key: String,
        pub cursor: Option<String>,
        pub weights: serde_json::Value,
    }
}

/// The drain's statements over the router's tables, for one schema.
#[derive(Debug, Clone)]
pub struct Statements {
    /// `$1` batch size, `$2` the leader session's backend (NULL: unfenced) → a fresh batch of
    /// [`Event`]s (never claimed before), charged an attempt and named this session's in the
    /// statement itself (run outside any transaction: the charge stands whatever becomes of the
    /// batch, a crash included). A leader the lease no longer names claims nothing.
    pub claim: String,
    /// `$1` the leader session's backend → one event to try again, alone: one that failed and is
    /// due, or one whose claimer's session is gone (it crashed while routing it), charged an
    /// attempt and named this session's. Locked rows are skipped: lanes never claim (nor charge)
    /// the same event twice.
    pub claim_retry: String,
    /// `$1` event ids → those of them this session claimed, deleted (in the batch's transaction:
    /// locked until it ends, gone once it commits).
    pub take: String,
    /// `$1` event ids, `$2` delay in ms: this session's claim given back uncharged (the batch met
    /// another transaction; it is claimed again after the delay).
    pub refund: String,
    /// Assignments (the audit) and the explanations new to the store: see `AuditCols::insert`.
    pub audit: String,
    /// What the router assigned, and when the sweeper first looks.
    pub own: String,
    /// Forget the ownership of what a person took over, closed or deleted.
    pub release: String,
    /// Interactions: clocks restarted.
    pub touch: String,
    /// Members' open loads and assignment totals.
    pub member_state: String,
    /// Every claim of this session's given back uncharged (its batches were cut short by another
    /// connection's failure).
    pub give_back: String,
    /// `$1` event id, `$2` error, `$3` backoff in ms: tried again after the backoff (the attempt
    /// was charged at the claim).
    pub retry: String,
    /// `$1` event id, `$2` error: moved to the dead letters.
    pub dead_letter: String,
    /// Park what was left unowned (with why); clear what is owned, closed or gone.
    pub unrouted: String,
    /// `$1` ids, `$2` reasons, `$3` owners seen, `$4` event times: opportunities queued to route
    /// that the router did not write, with why.
    pub skips: String,
    /// Opportunities to route again at a given time.
    pub requeue: String,
    /// Round-robin cursors and weights.
    pub pick_state: String,
    /// `$1` member ids, `$2` team ids (NULL: through any team), `$3` how many, `$4` seconds →
    /// per (member, team), its latest [`Recent`] assignments within the window
    /// ([`crate::engine::history::HistoryNeed`]), in no particular order.
    pub history: String,
    /// → every [`PickState`].
    pub pick_states: String,
    /// → `secs`: how long the oldest event due has waited (0 when none is).
    pub oldest_pending: String,
    /// → `n`: the opportunities held now (waiting), found by `unrouted`'s outcome index.
    pub held_now: String,
    /// `$1`: whether the triggers NOTIFY (only while the daemon is idle), `$2`: for how long (ms).
    pub idle: String,
    /// `$1` the leader session's backend pid → a row while the lease names it, which the batch's
    /// transaction then holds (`FOR KEY SHARE`: renewals go on; a takeover's `take` waits).
    pub fence: String,
    /// The reclaim sweep's.
    pub sweep: SweepStatements,
}

impl Statements {
    pub fn new(schema: &Ident) -> Statements {
        let s = schema.quoted();
        Statements {
            claim: claim_sql(&s),
            claim_retry: claim_retry_sql(&s),
            give_back: format!(
                "UPDATE {s}.events SET attempts = greatest(attempts - 1, 0), claimed_by = NULL \
                 WHERE attempts > 0 AND claimed_by = pg_backend_pid()"
            ),
            take: format!(
                "DELETE FROM {s}.events WHERE id = ANY($1::int8[]) AND claimed_by = pg_backend_pid() RETURNING id"
            ),
            refund: format!(
                "UPDATE {s}.events SET attempts = attempts - 1, claimed_by = NULL, \
                 next_attempt_at = greatest(next_attempt_at, clock_timestamp() + $2::float8 * interval '1 millisecond') \
                 WHERE id = ANY($1::int8[]) AND claimed_by = pg_backend_pid()"
            ),
            // The explanations new to the store first (`$11` keys, `$12` their JSON texts, in key
            // order: two batches inserting the same new ones wait for each other, never deadlock).
            audit: format!(
                "WITH x AS (INSERT INTO {s}.explanations (key, body) SELECT n.k, n.b::jsonb \
                   FROM unnest($11::bytea[], $12::text[]) AS n(k, b) ON CONFLICT (key) DO NOTHING) \
                 INSERT INTO {s}.assignments (opp_id, owner_id, team_id, previous_owner, outcome, pipeline, rule_id, \
                 rules_version, explanation_key, event_at, seen) \
                 SELECT u.o, u.w, u.t, u.p, u.c, u.l, u.r, $8, u.e, u.a, u.s::jsonb \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $9::bytea[], $10::timestamptz[], $13::text[]) AS u(o, w, t, p, c, l, r, e, a, s)"
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
            retry: retry_sql(&s),
            dead_letter: dead_letter_sql(&s),
            // Park what was left unowned (with why); clear what is owned, closed or gone.
            unrouted: format!(
                "WITH gone AS (DELETE FROM {s}.unrouted WHERE opp_id = ANY($1::text[])) \
                 INSERT INTO {s}.unrouted AS r (opp_id, outcome, reason, pipeline) \
                 SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) \
                 ON CONFLICT (opp_id) DO UPDATE SET outcome = EXCLUDED.outcome, reason = EXCLUDED.reason, \
                 pipeline = EXCLUDED.pipeline, decided_at = clock_timestamp()"
            ),
            skips: skips_sql(&s),
            requeue: format!(
                "INSERT INTO {s}.events (kind, opp_id, created_at, next_attempt_at) \
                 SELECT 'route', u.o, u.c, u.n FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS u(o, c, n)"
            ),
            pick_state: format!(
                "INSERT INTO {s}.pick_state AS p (rule_key, cursor, weights, updated_at) \
                 SELECT u.k, u.c, u.w::jsonb, clock_timestamp() FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, c, w) \
                 ON CONFLICT (rule_key) DO UPDATE SET cursor = EXCLUDED.cursor, weights = EXCLUDED.weights, updated_at = EXCLUDED.updated_at"
            ),
            history: history_sql(&s),
            pick_states: format!("SELECT rule_key, cursor, weights FROM {s}.pick_state"),
            // The oldest by `created_at` (requeued events keep theirs), found by its index.
            oldest_pending: format!(
                "SELECT coalesce(extract(epoch FROM now() - (SELECT created_at FROM {s}.events \
                 WHERE next_attempt_at <= now() ORDER BY created_at LIMIT 1)), 0)::float8 AS secs"
            ),
            held_now: format!("SELECT count(*) AS n FROM {s}.unrouted WHERE outcome = 'held'"),
            idle: idle_sql(schema),
            fence: format!("SELECT true AS held FROM {s}.leader_lease WHERE singleton AND backend_pid = $1 FOR KEY SHARE"),
            sweep: SweepStatements::new(schema),
        }
    }
}

fn skips_sql(s: &str) -> String {
    format!(
        "INSERT INTO {s}.skips (opp_id, reason, owner_seen, event_at) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])"
    )
}

impl Statements {
    /// Every statement by name, the sweep's included: what a test runs `EXPLAIN` on.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        let mut v: Vec<(&'static str, &str)> = vec![
            ("claim", &self.claim),
            ("claim_retry", &self.claim_retry),
            ("take", &self.take),
            ("refund", &self.refund),
            ("give_back", &self.give_back),
            ("audit", &self.audit),
            ("own", &self.own),
            ("release", &self.release),
            ("touch", &self.touch),
            ("member_state", &self.member_state),
            ("retry", &self.retry),
            ("dead_letter", &self.dead_letter),
            ("unrouted", &self.unrouted),
            ("skips", &self.skips),
            ("requeue", &self.requeue),
            ("pick_state", &self.pick_state),
            ("history", &self.history),
            ("pick_states", &self.pick_states),
            ("oldest_pending", &self.oldest_pending),
            ("held_now", &self.held_now),
            ("idle", &self.idle),
            ("fence", &self.fence),
        ];
        v.extend(self.sweep.named());
        v
    }
}

/// The columns of an [`Event`].
const EVENT_COLUMNS: &str = "id, kind, opp_id, old_owner, new_owner, actor, at, created_at, attempts, last_error";

/// Whether the lease names the leader session `$n` (NULL: unfenced), for the router's schema `s`.
pub(crate) fn leads(s: &str, n: u8) -> String {
    format!("(${n}::int4 IS NULL OR EXISTS (SELECT 1 FROM {s}.leader_lease WHERE singleton AND backend_pid = ${n}))")
}

/// [`Statements::retry`]: only the session that claimed an event records its failure (as `take`
/// and `refund` give it back).
fn retry_sql(s: &str) -> String {
    format!(
        "UPDATE {s}.events SET last_error = $2, claimed_by = NULL, \
         next_attempt_at = clock_timestamp() + $3::float8 * interval '1 millisecond' \
         WHERE id = $1 AND claimed_by = pg_backend_pid()"
    )
}

/// [`Statements::dead_letter`]: moved by the session that claimed it, and no other.
fn dead_letter_sql(s: &str) -> String {
    format!(
        "WITH d AS (DELETE FROM {s}.events WHERE id = $1 AND claimed_by = pg_backend_pid() RETURNING *) \
         INSERT INTO {s}.dead_letter (id, kind, opp_id, old_owner, new_owner, actor, at, created_at, attempts, error) \
         SELECT id, kind, opp_id, old_owner, new_owner, actor, at, created_at, attempts, $2 FROM d"
    )
}

/// [`Statements::claim`]. The ids are collected into an array first (an InitPlan, run once): with
/// `id IN (SELECT … LIMIT)` a nested-loop plan re-runs the LIMIT subquery per row and one statement
/// takes the whole backlog.
fn claim_sql(s: &str) -> String {
    format!(
        "UPDATE {s}.events SET attempts = attempts + 1, claimed_by = pg_backend_pid() \
         WHERE id = ANY(ARRAY(SELECT id FROM {s}.events WHERE attempts = 0 \
         AND next_attempt_at <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)) AND {} RETURNING {EVENT_COLUMNS}",
        leads(s, 2)
    )
}

/// [`Statements::claim_retry`]: a claimer is gone when no server process has its pid. Fewest
/// attempts first: the batch-mates of an event that took their session down go before it.
fn claim_retry_sql(s: &str) -> String {
    format!(
        "UPDATE {s}.events SET attempts = attempts + 1, claimed_by = pg_backend_pid() \
         WHERE id = (SELECT e.id FROM {s}.events e WHERE e.attempts > 0 AND e.next_attempt_at <= now() \
         AND (e.claimed_by IS NULL OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = e.claimed_by)) \
         ORDER BY e.attempts, e.id LIMIT 1 FOR UPDATE OF e SKIP LOCKED) AND {} RETURNING {EVENT_COLUMNS}",
        leads(s, 1)
    )
}

/// [`Statements::history`], for the router's schema `s` (quoted). A LIMIT per member in a LATERAL
/// subquery: one short backward index scan each.
fn history_sql(s: &str) -> String {
    format!(
        "SELECT u.m AS owner_id, h.at, u.t AS team_id FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(m, t, n) \
         CROSS JOIN LATERAL (SELECT extract(epoch FROM a.decided_at)::int8 AS at FROM {s}.assignments a \
           WHERE a.owner_id = u.m AND (u.t IS NULL OR a.team_id = u.t) AND a.owner_id IS NOT NULL \
           AND a.outcome IN ('rule', 'fallback') AND a.decided_at > now() - $4::int8 * interval '1 second' \
           ORDER BY a.decided_at DESC LIMIT u.n) h"
    )
}

/// `$1`: whether the capture triggers NOTIFY (only while a leader waits), `$2` for how long in
/// ms (a waiting leader renews it; a killed one's expires); also what a stopping leader runs
/// with `false`. Its commit does not wait for the WAL flush (`synchronous_commit` off for this
/// statement's transaction alone): the flag is a hint, set again by every new session, and a
/// leader woken by a NOTIFY lowers it before it drains.
pub fn idle_sql(schema: &Ident) -> String {
    format!(
        "UPDATE {}.wakeup SET idle = $1, idle_until = CASE WHEN $1 THEN clock_timestamp() + $2::float8 * interval '1 millisecond' END \
         FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit",
        schema.quoted()
    )
}

/// Whether a queued event `e` (of `<schema>.events`) counts as an interaction by the owner
/// `u.old`, under the policy columns `u.anyone` (any activity counts) and `u.edits` (the owner's
/// edits count): the SQL twin of `engine::ReclaimPolicy::counts` (a test holds the two equal).
pub const COUNTS_AS_INTERACTION: &str = "((e.kind = 'activity' AND (u.anyone OR e.actor = u.old)) \
     OR (e.kind = 'edit' AND u.edits AND e.actor = u.old))";
