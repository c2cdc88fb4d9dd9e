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
    }
}

typed_row! {
    /// One recorded decision.
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
                 extract(epoch FROM clock_timestamp() - updated_at)::float8 AS heartbeat_secs, stopped_at::text AS stopped_at \
                 FROM {s}.daemon_status"
            ),
            decisions_any_case: format!("{decisions} WHERE lower(opp_id) = lower($1) ORDER BY id"),
            decisions: format!("{decisions} WHERE opp_id = $1 ORDER BY id"),
        }
    }
}
