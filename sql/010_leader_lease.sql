-- oppty-router schema, version 10: the leader's lease. The advisory lock decides who leads; the
-- lease tells standbys whether the leader is still alive. A leader renews it every third of
-- `router.leader_lease`; a standby that finds it expired ends the leader's session (whose lock is
-- then released) and takes over. Times are the server's clock only.
CREATE TABLE {{schema}}.leader_lease (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    holder       text        NOT NULL,
    backend_pid  integer     NOT NULL,
    renewed_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
