-- oppty-router schema, version 16: every event ends with a record. An opportunity queued to route
-- that the router did not write (owned by the CRM's own words before or during the write, closed,
-- deleted, gone, or refused by the write statement's own condition) is recorded here with why; a
-- write statement that refused a row that is unowned and open leaves it in `unrouted` as
-- 'unwritten'. `oppty-router explain` shows both; `status` counts them.
CREATE TABLE {{schema}}.skips (
    id         bigserial   PRIMARY KEY,
    opp_id     text        NOT NULL,
    reason     text        NOT NULL,
    owner_seen text,
    event_at   timestamptz,
    skipped_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX skips_opp_id ON {{schema}}.skips (opp_id);
CREATE INDEX skips_skipped_at ON {{schema}}.skips (skipped_at);

ALTER TABLE {{schema}}.unrouted DROP CONSTRAINT unrouted_outcome_check;
ALTER TABLE {{schema}}.unrouted ADD CONSTRAINT unrouted_outcome_check
    CHECK (outcome IN ('unassigned', 'held', 'unwritten'));
