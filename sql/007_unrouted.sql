-- oppty-router schema, version 7: nothing unowned without a trace.

-- Opportunities the router looked at and left unowned, and why: 'unassigned' (no rule yielded
-- anybody and no fallback owner is set) or 'held' (waiting: caps, the team away, required fields).
-- A row goes when the opportunity is owned, closed or deleted. `oppty-router status` groups them
-- by reason; `oppty-router requeue --unassigned` queues the unassigned ones again.
CREATE TABLE {{schema}}.unrouted (
    opp_id     text        PRIMARY KEY,
    outcome    text        NOT NULL CHECK (outcome IN ('unassigned', 'held')),
    reason     text        NOT NULL,
    pipeline   text,
    since      timestamptz NOT NULL DEFAULT clock_timestamp(),
    decided_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX unrouted_outcome_since ON {{schema}}.unrouted (outcome, since);
CREATE INDEX dead_letter_failed_at ON {{schema}}.dead_letter (failed_at);
