//! The reclaim sweep's statements over the router's tables (`ownership`, `reclaim_state`,
//! `reclaim_warnings`, `member_pauses`, and what it reads of `events` and `assignments`).

use chrono::{DateTime, Utc};

use crate::db::row::typed_row;
use crate::ident::Ident;

use super::COUNTS_AS_INTERACTION;

/// The sweep's statements, for one schema.
#[derive(Debug, Clone)]
pub struct SweepStatements {
    /// → `member_id` of the members paused now.
    pub paused: String,
    /// `$1` pipeline → `fingerprint` its due times were aligned with.
    pub fingerprint: String,
    /// `$1` pipeline, `$2` fingerprint: recorded, `$3` the leader's backend (fenced; NULL: unfenced).
    pub set_fingerprint: String,
    /// `$1` pipeline, `$2` shortest window in seconds → `any`: a due time to bring forward.
    /// Indexed by [`SweepStatements::first`] (the first time a pipeline is seen every row is set).
    pub align_any: [String; 2],
    /// `$1` pipeline, `$2` window, `$3` chunk, `$4` after this id, `$5` the leader's backend (fenced;
    /// NULL: unfenced) → [`AlignChunk`].
    pub align_chunk: [String; 2],
    /// `$1` pipeline, `$2` now, `$3` limit → [`Due`] rows, locked, the locked elsewhere skipped.
    pub due: String,
    /// `$1` ids → [`Queued`] interactions not yet drained.
    pub queued: String,
    /// `$1` ids → `opp_id`, `owner_id` of their assignments, newest first.
    pub earlier_owners: String,
    /// `$1` ids, `$2` old owners, `$3` any activity counts, `$4` owner edits count → `id` of those
    /// with an interaction that counts queued.
    pub interacted: String,
    /// `$1` ids: no longer tracked.
    pub finish: String,
    /// `$1` ids, `$2` now, `$3` next due: the clock restarted.
    pub restart: String,
    /// `$1` ids, `$2` owners, `$3` teams, `$4` stages, `$5` now, `$6` next due: tracked anew.
    pub track: String,
    /// `$1` ids, `$2` due times, `$3` warned, `$4` now.
    pub defer: String,
    /// `$1` ids, `$2` owners, `$3` idle since, `$4` reclaim at, `$5` channel: recorded and notified.
    pub warn: String,
    /// `$1` members, `$2` within (s), `$3` lapses, `$4` within as text → `member_id` paused now.
    pub pause_lapsed: String,
}

typed_row! {
    /// An assignment whose due time has come, as `ownership` holds it.
    pub struct Due {
        pub opp_id: String,
        pub owner_id: String,
        pub team_id: Option<String>,
        pub reclaims: i32,
        pub stage: String,
        pub last_owner_touch_at: DateTime<Utc>,
        pub last_activity_at: Option<DateTime<Utc>>,
        pub last_owner_edit_at: Option<DateTime<Utc>>,
        pub warned_at: Option<DateTime<Utc>>,
    }
}

typed_row! {
    /// An interaction captured and not yet drained.
    pub struct Queued {
        pub opp_id: String,
        pub kind: super::EventKind,
        pub actor: Option<String>,
    }
}

typed_row! {
    /// One chunk of due times brought forward.
    pub struct AlignChunk {
        /// Rows of the chunk.
        pub seen: i64,
        /// Its last id (none when empty).
        pub last: Option<String>,
        /// Rows whose due time moved.
        pub moved: i64,
    }
}

typed_row! {
    /// An earlier owner of an opportunity.
    pub struct EarlierOwner {
        pub opp_id: String,
        pub owner_id: String,
    }
}

impl SweepStatements {
    /// Index of [`SweepStatements::align_any`] and [`SweepStatements::align_chunk`]: whether the pipeline has no
    /// fingerprint yet.
    pub fn first(stored: Option<&str>) -> usize {
        usize::from(stored.is_none())
    }

    pub fn new(schema: &Ident) -> SweepStatements {
        let s = schema.quoted();
        // Brought forward where later than the new lower bound; the first time, every row is set.
        let moves = |cond: &str| {
            format!("(o.due_at IS NULL OR o.due_at {cond} o.last_owner_touch_at + $2::int8 * interval '1 second')")
        };
        let align_any =
            |m: String| format!("SELECT EXISTS (SELECT 1 FROM {s}.ownership o WHERE o.pipeline = $1 AND {m}) AS any");
        // The ids are a CTE (run once, its LIMIT kept); the update finds them by key.
        // Fenced: a leader whose lease is gone moves nothing ($5, or $3 below: its backend).
        let leads = super::leads(&s, 5);
        let align_chunk = |m: String| {
            format!(
                "WITH c AS (SELECT opp_id FROM {s}.ownership WHERE pipeline = $1 AND opp_id > $4 ORDER BY opp_id LIMIT $3), \
                 u AS (UPDATE {s}.ownership o SET due_at = o.last_owner_touch_at + $2::int8 * interval '1 second' \
                 WHERE o.opp_id = ANY(ARRAY(SELECT opp_id FROM c)) AND {m} AND {leads} RETURNING 1) \
                 SELECT (SELECT count(*) FROM c) AS seen, (SELECT max(opp_id) FROM c) AS last, (SELECT count(*) FROM u) AS moved"
            )
        };
        SweepStatements {
            paused: format!("SELECT member_id FROM {s}.member_pauses WHERE lifted_at IS NULL"),
            fingerprint: format!("SELECT fingerprint FROM {s}.reclaim_state WHERE pipeline = $1"),
            set_fingerprint: format!(
                "INSERT INTO {s}.reclaim_state (pipeline, fingerprint) SELECT $1, $2 WHERE {} \
                 ON CONFLICT (pipeline) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, updated_at = clock_timestamp()",
                super::leads(&s, 3)
            ),
            align_any: [align_any(moves(">")), align_any(moves("IS DISTINCT FROM"))],
            align_chunk: [align_chunk(moves(">")), align_chunk(moves("IS DISTINCT FROM"))],
            due: format!(
                "SELECT w.opp_id, w.owner_id, w.team_id, w.reclaims, w.stage, w.last_owner_touch_at, \
                 w.last_activity_at, w.last_owner_edit_at, w.warned_at \
                 FROM {s}.ownership w WHERE w.pipeline = $1 AND w.due_at <= $2 \
                 ORDER BY w.due_at LIMIT $3 FOR UPDATE OF w SKIP LOCKED"
            ),
            queued: format!(
                "SELECT opp_id, kind, actor FROM {s}.events WHERE opp_id = ANY($1) AND kind IN ('activity', 'edit')"
            ),
            earlier_owners: format!(
                "SELECT opp_id, owner_id FROM {s}.assignments WHERE opp_id = ANY($1) AND owner_id IS NOT NULL ORDER BY id DESC"
            ),
            interacted: format!(
                "SELECT u.id FROM unnest($1::text[], $2::text[], $3::bool[], $4::bool[]) AS u(id, old, anyone, edits) \
                 WHERE EXISTS (SELECT 1 FROM {s}.events e WHERE e.opp_id = u.id AND {COUNTS_AS_INTERACTION})"
            ),
            finish: format!("DELETE FROM {s}.ownership WHERE opp_id = ANY($1)"),
            restart: format!(
                "UPDATE {s}.ownership SET last_owner_touch_at = $2, due_at = $3, warned_at = NULL WHERE opp_id = ANY($1)"
            ),
            track: format!(
                "UPDATE {s}.ownership w SET owner_id = u.w, team_id = coalesce(u.t, w.team_id), assigned_at = $5, \
                 last_owner_touch_at = $5, last_activity_at = NULL, last_owner_edit_at = NULL, warned_at = NULL, \
                 due_at = $6, stage = u.s, reclaims = w.reclaims + 1 \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(o, w, t, s) WHERE w.opp_id = u.o"
            ),
            defer: format!(
                "UPDATE {s}.ownership w SET due_at = u.d, warned_at = CASE WHEN u.warn THEN $4 ELSE w.warned_at END \
                 FROM unnest($1::text[], $2::timestamptz[], $3::bool[]) AS u(o, d, warn) WHERE w.opp_id = u.o"
            ),
            warn: format!(
                "WITH i AS (INSERT INTO {s}.reclaim_warnings (opp_id, owner_id, idle_since, reclaim_at) \
                   SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) RETURNING opp_id) \
                 SELECT pg_notify($5, opp_id) FROM i"
            ),
            pause_lapsed: format!(
                "WITH c AS (SELECT DISTINCT ON (u.m) u.m, u.n, u.h, \
                   (SELECT count(*) FROM {s}.assignments a WHERE a.outcome = 'reclaim' AND a.previous_owner = u.m \
                    AND a.decided_at > clock_timestamp() - u.w * interval '1 second') AS lapsed \
                   FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[]) AS u(m, w, n, h) ORDER BY u.m, u.n) \
                 INSERT INTO {s}.member_pauses (member_id, reason) \
                 SELECT m, 'let ' || lapsed || ' opportunities lapse within ' || h || ' (pause_after: ' || n || ')' \
                 FROM c WHERE lapsed >= n \
                 ON CONFLICT (member_id) WHERE lifted_at IS NULL DO NOTHING RETURNING member_id"
            ),
        }
    }

    /// Every statement by name (`Statements::named`).
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("sweep.paused", &self.paused),
            ("sweep.fingerprint", &self.fingerprint),
            ("sweep.set_fingerprint", &self.set_fingerprint),
            ("sweep.align_any[0]", &self.align_any[0]),
            ("sweep.align_any[1]", &self.align_any[1]),
            ("sweep.align_chunk[0]", &self.align_chunk[0]),
            ("sweep.align_chunk[1]", &self.align_chunk[1]),
            ("sweep.due", &self.due),
            ("sweep.queued", &self.queued),
            ("sweep.earlier_owners", &self.earlier_owners),
            ("sweep.interacted", &self.interacted),
            ("sweep.finish", &self.finish),
            ("sweep.restart", &self.restart),
            ("sweep.track", &self.track),
            ("sweep.defer", &self.defer),
            ("sweep.warn", &self.warn),
            ("sweep.pause_lapsed", &self.pause_lapsed),
        ]
    }
}
