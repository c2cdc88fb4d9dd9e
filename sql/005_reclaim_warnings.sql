-- oppty-router schema, version 5: the first step of the reclaim ladder. Before an assignment goes
-- stale, its owner is warned: a row here (the CRM can show it) and a NOTIFY on the channel
-- `<router.channel>_reclaim_warning` with the opportunity id as payload.
ALTER TABLE {{schema}}.ownership ADD COLUMN warned_at timestamptz;

CREATE TABLE {{schema}}.reclaim_warnings (
    id          bigserial   PRIMARY KEY,
    opp_id      text        NOT NULL,
    owner_id    text        NOT NULL,
    idle_since  timestamptz NOT NULL,
    reclaim_at  timestamptz NOT NULL,
    warned_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX reclaim_warnings_owner ON {{schema}}.reclaim_warnings (owner_id, warned_at);
