-- oppty-router schema, version 6: the rest of the reclaim ladder.

-- Owner edits of the opportunity (the CRM's "last changed by" column), captured when the daemon
-- config maps `opportunity.edited_by`: an interaction for rules that count them.
ALTER TABLE {{schema}}.events DROP CONSTRAINT events_kind_check;
ALTER TABLE {{schema}}.events ADD CONSTRAINT events_kind_check
    CHECK (kind IN ('route', 'changed', 'activity', 'edit'));
ALTER TABLE {{schema}}.ownership ADD COLUMN last_owner_edit_at timestamptz;

-- The sweeper looks only at rows whose due_at has come: a lower bound of when the assignment
-- can need a warning or a reclaim (set at assignment from the shortest window; moved to the exact
-- moment, in the owner's working hours where the rule says so, when the sweeper finds it early).
ALTER TABLE {{schema}}.ownership ADD COLUMN due_at timestamptz;
UPDATE {{schema}}.ownership SET due_at = last_owner_touch_at;
DROP INDEX {{schema}}.ownership_pipeline_touch;
CREATE INDEX ownership_pipeline_due ON {{schema}}.ownership (pipeline, due_at);

-- Where the assignment is on the ladder: 'owner' (a member the rules picked) or 'escalated'
-- (with the team lead, on the lead's own window).
ALTER TABLE {{schema}}.ownership ADD COLUMN stage text NOT NULL DEFAULT 'owner'
    CHECK (stage IN ('owner', 'escalated'));

-- The reclaim rule each pipeline's due_at values were computed under: when it changes, the
-- sweeper brings them forward once, so a shorter window is never missed.
CREATE TABLE {{schema}}.reclaim_state (
    pipeline    text PRIMARY KEY,
    fingerprint text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Lapses per member, counted for pause_after.
CREATE INDEX assignments_reclaimed ON {{schema}}.assignments (previous_owner, decided_at) WHERE outcome = 'reclaim';

-- Members paused for letting opportunities lapse (a reclaim rule's pause_after). Visible in
-- `oppty-router status`; lifted by an admin with `oppty-router unpause <member>` (which sets
-- lifted_at). While a row here has no lifted_at, the router gives the member nothing new.
CREATE TABLE {{schema}}.member_pauses (
    id         bigserial   PRIMARY KEY,
    member_id  text        NOT NULL,
    reason     text        NOT NULL,
    paused_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    lifted_at  timestamptz,
    lifted_by  text
);
CREATE UNIQUE INDEX member_pauses_active ON {{schema}}.member_pauses (member_id) WHERE lifted_at IS NULL;
