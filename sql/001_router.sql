-- oppty-router schema, version 1.
-- Applied by `oppty-router install` inside one transaction; {{schema}} is the router's own schema
-- (config `router.schema`, quoted). Nothing here touches the CRM's tables: the capture triggers on
-- them are generated from the mapping by `install` and dropped by `uninstall`.

-- Changes captured by the triggers. The truth: a NOTIFY is only a hint to look here.
-- kind: 'route' (new or owner-cleared opportunity), 'changed' (owner, open-ness or soft delete
-- changed: loads move), 'activity' (someone interacted with the opportunity).
CREATE TABLE {{schema}}.events (
    id              bigserial PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('route', 'changed', 'activity')),
    opp_id          text        NOT NULL,
    old_owner       text,
    new_owner       text,
    actor           text,
    at              timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
    last_error      text
);

-- Events that failed router.max_attempts times, with the last error. Nothing is lost: an operator
-- can inspect them and re-queue with `INSERT INTO events … SELECT … FROM dead_letter`.
CREATE TABLE {{schema}}.dead_letter (
    id          bigint      PRIMARY KEY,
    kind        text        NOT NULL,
    opp_id      text        NOT NULL,
    old_owner   text,
    new_owner   text,
    actor       text,
    at          timestamptz,
    created_at  timestamptz NOT NULL,
    attempts    integer     NOT NULL,
    error       text        NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Every decision, with its explanation and the rules version that made it (the audit).
-- owner_id is NULL when nothing matched and no fallback owner is configured.
CREATE TABLE {{schema}}.assignments (
    id             bigserial   PRIMARY KEY,
    opp_id         text        NOT NULL,
    owner_id       text,
    team_id        text,
    previous_owner text,
    outcome        text        NOT NULL CHECK (outcome IN ('rule', 'fallback', 'unassigned')),
    pipeline       text,
    rule_id        text,
    rules_version  text        NOT NULL,
    explanation    jsonb       NOT NULL,
    event_at       timestamptz,
    decided_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX assignments_opp_id ON {{schema}}.assignments (opp_id);

-- Opportunities the router owns right now (the reclaim sweeper's working set). A row goes away
-- when a person changes the owner or the opportunity closes.
CREATE TABLE {{schema}}.ownership (
    opp_id              text        PRIMARY KEY,
    owner_id            text        NOT NULL,
    team_id             text,
    assigned_at         timestamptz NOT NULL,
    last_owner_touch_at timestamptz NOT NULL,
    last_activity_at    timestamptz,
    reclaims            integer     NOT NULL DEFAULT 0
);
CREATE INDEX ownership_last_owner_touch ON {{schema}}.ownership (last_owner_touch_at);

-- Open opportunities per member, kept by the router (recounted from the CRM on start and
-- whenever a captured change touches a member). Caps and fewest-open read it.
CREATE TABLE {{schema}}.member_state (
    member_id        text        PRIMARY KEY,
    open_count       integer     NOT NULL DEFAULT 0,
    assigned_total   bigint      NOT NULL DEFAULT 0,
    last_assigned_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row: whether the daemon is idle. Triggers NOTIFY only while it is, so a busy CRM does not
-- pay for a NOTIFY (a cluster-wide lock at commit) on every transaction.
CREATE TABLE {{schema}}.wakeup (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    idle      boolean NOT NULL DEFAULT true
);
INSERT INTO {{schema}}.wakeup DEFAULT VALUES;
