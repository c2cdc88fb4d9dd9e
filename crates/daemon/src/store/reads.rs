//! What `status` and `explain` read of the router's tables: statements and the rows they return.
//! Nothing here writes.

use crate::db::row::typed_row;
use crate::ident::Ident;

/// The read-only statements of `status` and `explain`, for one schema.
#[derive(Debug, Clone)]
pub struct Reads {
    /// → one [`QueueReport`].
    pub queue: String,
    /// → [`UnownedGroup`]s, by outcome and reason.
    pub unowned: String,
    /// → the ten most common [`DeadLetterGroup`]s.
    pub dead_letters: String,
    /// → [`LapsePause`]s in force, oldest first.
    pub lapse_pauses: String,
    /// → the [`DaemonRow`], if a daemon ever led here.
    pub daemon: String,
    /// `$1` id → its [`Decision`]s, oldest first.
    pub decisions: String,
    /// `$1` id → the [`Decision`]s of the same id in any letter case.
    pub decisions_any_case: String,
    /// `$1` timestamptz → the [`Past`] decision of each opportunity first decided since then
    /// (reclaims aside), and those held since then and never decided, oldest first.
    pub past_since: String,
    /// `$1` text[] ids → their first [`Past`] decision, oldest first (held: its `unrouted` row).
    pub past_of: String,
    /// `$1` text[] versions → `version`, `sources`, `directory` (JSON text) of the rule sets kept.
    pub rule_sets: String,
    /// `$1` int8 limit → the [`KeptSet`]s, the latest put in force first.
    pub rule_sets_latest: String,
    /// `$1` timestamptz → each opportunity first decided since then, as it ended ([`ended_sql`]).
    pub ended_since: String,
    /// `$1` text[] ids → the same for these opportunities.
    pub ended_of: String,
    /// `$1` timestamptz from, `$2` to → the [`crate::store::Recent`] assignments between, for the
    /// windowed caps of a replay starting at `$2`.
    pub recent_between: String,
    /// `$1` timestamptz → [`ReclaimCount`]s by pipeline since then.
    pub reclaims_since: String,
    /// `$1` id → its [`Skip`]s, oldest first.
    pub skips_of: String,
    /// → [`SkipGroup`]s of the last 24 hours, by reason.
    pub skips_lately: String,
    /// → [`OutcomeCount`]s of the decisions of the last hour, by outcome.
    pub decided_lately: String,
}

typed_row! {
    /// Decisions of one outcome.
    #[derive(Debug, Clone, serde::Serialize)]
    pub struct OutcomeCount {
        pub outcome: String,
        pub count: i64,
    }
}

typed_row! {
    /// An opportunity queued to route that the router did not write, and why.
    #[derive(Debug, serde::Serialize)]
    pub struct Skip {
        pub skipped_at: String,
        pub reason: String,
        pub owner_seen: Option<String>,
        pub event_at: Option<String>,
    }
}

typed_row! {
    /// Skips of one reason.
    #[derive(Debug, serde::Serialize)]
    pub struct SkipGroup {
        pub reason: String,
        pub count: i64,
    }
}

typed_row! {
    /// An opportunity's decision (or its hold), as a replay or a report starts from.
    #[derive(Debug, Clone)]
    pub struct Past {
        pub opp_id: String,
        /// When, in seconds since the epoch.
        pub at: f64,
        pub outcome: String,
        pub owner_id: Option<String>,
        pub team_id: Option<String>,
        pub rule_id: Option<String>,
        pub pipeline: Option<String>,
        /// The decision's explanation (JSON), for who could have received it.
        pub explanation: Option<String>,
        /// The rule set that made it.
        pub rules_version: Option<String>,
        /// What it saw (`engine::seen`, JSON): none for a decision made before the router kept it.
        pub seen: Option<String>,
    }
}

typed_row! {
    /// Reclaims in one pipeline.
    #[derive(Debug, Clone)]
    pub struct ReclaimCount {
        pub pipeline: String,
        pub count: i64,
    }
}

typed_row! {
    #[derive(Debug, Default, serde::Serialize)]
    pub struct QueueReport {
        pub waiting: i64,
        pub oldest_waiting_secs: Option<f64>,
        pub held_or_retrying: i64,
        pub dead_lettered: i64,
    }
}

typed_row! {
    #[derive(Debug, serde::Serialize)]
    pub struct UnownedGroup {
        pub outcome: String,
        pub reason: String,
        pub count: i64,
        pub since: String,
    }
}

typed_row! {
    #[derive(Debug, serde::Serialize)]
    pub struct DeadLetterGroup {
        pub error: String,
        pub count: i64,
        pub first: String,
    }
}

typed_row! {
    #[derive(Debug, serde::Serialize)]
    pub struct LapsePause {
        pub member: String,
        pub reason: String,
        pub since: String,
    }
}

typed_row! {
    /// The leading daemon's row of `daemon_status`.
    pub struct DaemonRow {
        pub host: String,
        pub pid: i32,
        pub leading_since: String,
        pub rules_version: String,
        pub rules_loaded_at: Option<String>,
        pub reloads: i64,
        pub refused_reloads: i64,
        pub last_error: Option<String>,
        pub last_error_at: Option<String>,
        pub heartbeat_secs: f64,
        pub stopped_at: Option<String>,
        /// Who the rules in force pause, disable or cap ([`crate::status::People`] as JSON).
        pub people: Option<String>,
    }
}

typed_row! {
    /// One recorded decision.
    #[derive(Debug, serde::Serialize)]
    pub struct Decision {
        pub opp_id: String,
        pub decided_at: String,
        pub outcome: String,
        pub owner_id: Option<String>,
        pub team_id: Option<String>,
        pub previous_owner: Option<String>,
        pub pipeline: Option<String>,
        pub rule_id: Option<String>,
        pub rules_version: String,
        pub explanation: serde_json::Value,
    }
}

impl Reads {
    pub fn new(schema: &Ident) -> Reads {
        let s = schema.quoted();
        let decisions = format!(
            "SELECT opp_id, decided_at::text AS decided_at, outcome, owner_id, team_id, previous_owner, pipeline, rule_id, \
             rules_version, explanation FROM {s}.assignments_explained"
        );
        Reads {
            queue: format!(
                "SELECT count(*) FILTER (WHERE next_attempt_at <= now()) AS waiting, \
                 count(*) FILTER (WHERE next_attempt_at > now()) AS held_or_retrying, \
                 extract(epoch FROM now() - min(created_at) FILTER (WHERE next_attempt_at <= now()))::float8 AS oldest_waiting_secs, \
                 (SELECT count(*) FROM {s}.dead_letter) AS dead_lettered FROM {s}.events"
            ),
            unowned: format!(
                "SELECT outcome, reason, count(*) AS count, min(since)::text AS since FROM {s}.unrouted \
                 GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC, 2"
            ),
            dead_letters: format!(
                "SELECT error, count(*) AS count, min(failed_at)::text AS first FROM {s}.dead_letter \
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
            ),
            lapse_pauses: format!(
                "SELECT member_id AS member, reason, paused_at::text AS since FROM {s}.member_pauses \
                 WHERE lifted_at IS NULL ORDER BY paused_at"
            ),
            daemon: format!(
                "SELECT host, pid, leading_since::text AS leading_since, rules_version, rules_loaded_at::text AS rules_loaded_at, \
                 reloads, refused_reloads, last_error, last_error_at::text AS last_error_at, \
                 extract(epoch FROM clock_timestamp() - updated_at)::float8 AS heartbeat_secs, stopped_at::text AS stopped_at, \
                 people::text AS people FROM {s}.daemon_status"
            ),
            past_since: past_sql(&s, "a.decided_at >= $1", "u.since >= $1"),
            past_of: past_sql(&s, "a.opp_id = ANY($1)", "u.opp_id = ANY($1)"),
            rule_sets: format!(
                "SELECT version, sources::text AS sources, directory::text AS directory FROM {s}.rule_sets \
                 WHERE version = ANY($1)"
            ),
            rule_sets_latest: format!(
                "SELECT version, in_force_at::text AS in_force_at, sources::text AS sources, directory::text AS directory \
                 FROM {s}.rule_sets ORDER BY in_force_at DESC, version DESC LIMIT $1"
            ),
            ended_since: ended_sql(&s, "a.decided_at >= $1", "u.since >= $1"),
            ended_of: ended_sql(&s, "a.opp_id = ANY($1)", "u.opp_id = ANY($1)"),
            recent_between: format!(
                "SELECT owner_id, extract(epoch FROM decided_at)::int8 AS at, team_id FROM {s}.assignments \
                 WHERE owner_id IS NOT NULL AND outcome IN ('rule', 'fallback') AND decided_at >= $1 AND decided_at < $2"
            ),
            reclaims_since: format!(
                "SELECT coalesce(pipeline, '') AS pipeline, count(*) AS count FROM {s}.assignments \
                 WHERE outcome = 'reclaim' AND decided_at >= $1 GROUP BY 1 ORDER BY 1"
            ),
            skips_of: format!(
                "SELECT skipped_at::text AS skipped_at, reason, owner_seen, event_at::text AS event_at \
                 FROM {s}.skips WHERE opp_id = $1 ORDER BY id"
            ),
            skips_lately: format!(
                "SELECT reason, count(*) AS count FROM {s}.skips WHERE skipped_at > now() - interval '24 hours' \
                 GROUP BY 1 ORDER BY 2 DESC, 1"
            ),
            decided_lately: format!(
                "SELECT outcome, count(*) AS count FROM {s}.assignments WHERE decided_at > now() - interval '1 hour' \
                 GROUP BY 1 ORDER BY 2 DESC, 1"
            ),
            decisions_any_case: format!("{decisions} WHERE lower(opp_id) = lower($1) ORDER BY id"),
            decisions: format!("{decisions} WHERE opp_id = $1 ORDER BY id"),
        }
    }
}

/// [`Reads::ended_since`] and [`Reads::ended_of`]: each opportunity whose first decision `decided`
/// selects, at the time of that first decision, as it ended: its last decision (a reclaim's
/// included), unless the router's `unrouted` table holds it now (waiting, unassigned, unwritten);
/// one whose last decision was a hold that nothing holds any more went to a person, closed or was
/// deleted in the CRM first (`skipped`). The holds `held` selects of opportunities never decided
/// come last, as in [`past_sql`].
fn ended_sql(s: &str, decided: &str, held: &str) -> String {
    format!(
        "SELECT f.opp_id, f.at, \
           CASE WHEN u.outcome IS NOT NULL THEN u.outcome WHEN l.outcome = 'held' THEN 'skipped' ELSE l.outcome END AS outcome, \
           CASE WHEN u.outcome IS NULL AND l.outcome IN ('rule', 'fallback', 'reclaim') THEN l.owner_id END AS owner_id, \
           l.team_id, l.rule_id, coalesce(l.pipeline, f.pipeline) AS pipeline, l.explanation, \
           NULL::text AS rules_version, NULL::text AS seen \
         FROM ( \
           SELECT DISTINCT ON (a.opp_id) a.opp_id, extract(epoch FROM a.decided_at)::float8 AS at, a.pipeline \
           FROM {s}.assignments a WHERE {decided} AND a.outcome NOT IN ('reclaim', 'kept') ORDER BY a.opp_id, a.id) f \
         CROSS JOIN LATERAL ( \
           SELECT a.outcome, a.owner_id, a.team_id, a.rule_id, a.pipeline, a.explanation::text AS explanation \
           FROM {s}.assignments_explained a WHERE a.opp_id = f.opp_id AND a.outcome <> 'kept' ORDER BY a.id DESC LIMIT 1) l \
         LEFT JOIN {s}.unrouted u ON u.opp_id = f.opp_id \
         UNION ALL \
         SELECT u.opp_id, extract(epoch FROM u.since)::float8, 'held', NULL, NULL, NULL, u.pipeline, NULL, NULL, NULL \
         FROM {s}.unrouted u \
         WHERE {held} AND u.outcome = 'held' AND NOT EXISTS (SELECT 1 FROM {s}.assignments x WHERE x.opp_id = u.opp_id) \
         ORDER BY 2, 1"
    )
}

/// [`Reads::past_since`] and [`Reads::past_of`]: each opportunity whose first decision `decided`
/// selects (a reclaim is not one: it moves an opportunity already routed), as the router last
/// routed it (its last decision that is not a reclaim's), with the rule set that made it and what
/// it saw; and the holds `held` selects of opportunities never decided, oldest first.
fn past_sql(s: &str, decided: &str, held: &str) -> String {
    format!(
        "SELECT f.opp_id, extract(epoch FROM l.decided_at)::float8 AS at, l.outcome, l.owner_id, l.team_id, l.rule_id, \
           coalesce(l.pipeline, f.pipeline) AS pipeline, l.explanation, l.rules_version, l.seen FROM ( \
           SELECT DISTINCT ON (a.opp_id) a.opp_id, a.pipeline FROM {s}.assignments a \
           WHERE {decided} AND a.outcome NOT IN ('reclaim', 'kept') ORDER BY a.opp_id, a.id) f \
         CROSS JOIN LATERAL ( \
           SELECT a.id, a.decided_at, a.outcome, a.owner_id, a.team_id, a.rule_id, a.pipeline, \
             a.explanation::text AS explanation, a.rules_version, x.seen::text AS seen \
           FROM {s}.assignments_explained a JOIN {s}.assignments x ON x.id = a.id \
           WHERE a.opp_id = f.opp_id AND a.outcome NOT IN ('reclaim', 'kept') ORDER BY a.id DESC LIMIT 1) l \
         UNION ALL \
         SELECT u.opp_id, extract(epoch FROM u.since)::float8, 'held', NULL, NULL, NULL, u.pipeline, NULL, NULL, NULL \
         FROM {s}.unrouted u \
         WHERE {held} AND u.outcome = 'held' AND NOT EXISTS (SELECT 1 FROM {s}.assignments x WHERE x.opp_id = u.opp_id) \
         ORDER BY 2, 1"
    )
}

typed_row! {
    /// A rule set the router kept when it put it in force: its files and what the CRM's directory
    /// said then, as JSON text.
    #[derive(Debug, Clone)]
    pub struct KeptSet {
        pub version: String,
        pub in_force_at: String,
        pub sources: String,
        pub directory: String,
    }
}
