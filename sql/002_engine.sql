-- oppty-router schema, version 2: state the routing engine keeps across restarts.

-- A decision may now be "held" (every candidate full or away, and the rule says wait).
ALTER TABLE {{schema}}.assignments DROP CONSTRAINT assignments_outcome_check;
ALTER TABLE {{schema}}.assignments ADD CONSTRAINT assignments_outcome_check
    CHECK (outcome IN ('rule', 'fallback', 'held', 'unassigned'));

-- Rolling-window caps read recent assignments on start.
CREATE INDEX assignments_decided_at ON {{schema}}.assignments (decided_at) WHERE owner_id IS NOT NULL;

-- Round-robin cursors and weighted round-robin weights, per pipeline/rule: they survive restarts
-- and never reset when membership changes (cursors are member ids, not positions).
CREATE TABLE {{schema}}.pick_state (
    rule_key   text        PRIMARY KEY,
    cursor     text,
    weights    jsonb       NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
