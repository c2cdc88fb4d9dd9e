//! Leadership and what the leader reports: the lease row and `daemon_status`.

use crate::db::row::typed_row;
use crate::ident::Ident;

/// The lease's and the daemon status's statements, for one schema.
#[derive(Debug, Clone)]
pub struct LeaseStatements {
    /// `$1` the lock's key → `got`: this session holds the advisory lock now.
    pub lock: String,
    /// `$1` holder, `$2` lease in ms: the lease names this session. It first locks the lease row
    /// against the old leader's batches still in flight (each holds it, `Statements::fence`).
    pub take: String,
    /// `$1` the lanes' key → `ended`: the sessions of the lanes still open, which belong to a
    /// leader that is gone (run by the new leader before it takes the lease, before it has lanes).
    pub end_lanes: String,
    /// `$1` the lock's key → the [`StaleLeader`] holding the lock past its lease, if any.
    pub stale: String,
    /// `$1` backend pid → `ended`.
    pub terminate: String,
    /// `$1` lease in ms, `$2` the leader's backend pid: renewed (no row: the lease names another).
    pub renew: String,
    /// `$1` pid: stopped cleanly.
    pub stopped: String,
    /// → the [`LastLeader`] recorded.
    pub last_leader: String,
    /// `$1` version, `$2` hash, `$3` sources (JSON text), `$4` directory (JSON text): a rule set
    /// put in force, kept once per version.
    pub rule_set: String,
    /// `$1` host … `$9` last error at: this leader's state.
    pub report: String,
}

typed_row! {
    /// A leader whose lease expired.
    pub struct StaleLeader {
        pub pid: i32,
        pub holder: String,
        pub silent_ms: i64,
    }
}

typed_row! {
    /// The leader `daemon_status` last recorded.
    pub struct LastLeader {
        pub rules_version: Option<String>,
        pub host: Option<String>,
        pub pid: Option<i32>,
    }
}

/// The key of a granted advisory lock of this database, as `pg_locks` row `l` shows it (NULL for
/// any other lock): compared with `hashtextextended(key, 0)`.
const ADVISORY_KEY: &str = "(CASE WHEN l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     THEN (l.classid::int8 << 32) | l.objid::int8 END)";

/// The session's backend process id (the lease names the leader's session by it).
pub const BACKEND_PID: &str = "SELECT pg_backend_pid() AS pid";

/// `$1` the lanes' key ([`lane_key`]): a lane holds it (shared) while it is open.
pub const LANE_LOCK: &str = "SELECT pg_advisory_lock_shared(hashtextextended($1, 0))";

/// The key of the lanes' advisory lock, for the router's `schema`.
pub fn lane_key(schema: &Ident) -> String {
    format!("oppty-router lanes {}", schema.as_str())
}

impl LeaseStatements {
    pub fn new(schema: &Ident) -> LeaseStatements {
        let s = schema.quoted();
        LeaseStatements {
            lock: "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS got".into(),
            take: format!(
                "WITH held AS (SELECT singleton FROM {s}.leader_lease WHERE singleton FOR UPDATE) \
                 INSERT INTO {s}.leader_lease (singleton, holder, backend_pid, renewed_at, expires_at) \
                 SELECT true, $1, pg_backend_pid(), clock_timestamp(), clock_timestamp() + $2 * interval '1 millisecond' \
                 FROM (SELECT count(*) FROM held) AS h \
                 ON CONFLICT (singleton) DO UPDATE SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid, \
                 renewed_at = EXCLUDED.renewed_at, expires_at = EXCLUDED.expires_at"
            ),
            stale: format!(
                "SELECT l.pid, x.holder, (extract(epoch FROM clock_timestamp() - x.renewed_at) * 1000)::int8 AS silent_ms \
                 FROM pg_locks l JOIN {s}.leader_lease x ON x.backend_pid = l.pid \
                 WHERE {ADVISORY_KEY} = hashtextextended($1, 0) AND x.expires_at < clock_timestamp()"
            ),
            terminate: "SELECT pg_terminate_backend($1) AS ended".into(),
            end_lanes: format!(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(l.pid)) AS ended FROM pg_locks l \
                 WHERE {ADVISORY_KEY} = hashtextextended($1, 0) AND l.pid <> pg_backend_pid()"
            ),
            renew: format!(
                "UPDATE {s}.leader_lease SET renewed_at = clock_timestamp(), \
                 expires_at = clock_timestamp() + $1 * interval '1 millisecond' WHERE singleton AND backend_pid = $2"
            ),
            stopped: format!("UPDATE {s}.daemon_status SET stopped_at = clock_timestamp() WHERE pid = $1"),
            last_leader: format!("SELECT rules_version, host, pid FROM {s}.daemon_status WHERE singleton"),
            rule_set: format!(
                "INSERT INTO {s}.rule_sets (version, hash, sources, directory) \
                 VALUES ($1, $2, $3::text::jsonb, $4::text::jsonb) ON CONFLICT (version) DO NOTHING"
            ),
            report: format!(
                "INSERT INTO {s}.daemon_status (singleton, host, pid, leading_since, rules_version, rules_loaded_at, reloads, \
                 refused_reloads, last_error, last_error_at, people, updated_at) VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, clock_timestamp()) \
                 ON CONFLICT (singleton) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, leading_since = EXCLUDED.leading_since, \
                 rules_version = EXCLUDED.rules_version, rules_loaded_at = EXCLUDED.rules_loaded_at, reloads = EXCLUDED.reloads, \
                 refused_reloads = EXCLUDED.refused_reloads, last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at, people = EXCLUDED.people, \
                 updated_at = EXCLUDED.updated_at, stopped_at = NULL"
            ),
        }
    }
}
