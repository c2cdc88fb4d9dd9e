-- oppty-router schema, version 3: what the leading daemon reports about itself, for
-- `oppty-router status` (and monitoring: updated_at is a heartbeat).
CREATE TABLE {{schema}}.daemon_status (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    host             text        NOT NULL,
    pid              integer     NOT NULL,
    leading_since    timestamptz NOT NULL,
    rules_version    text        NOT NULL,
    rules_loaded_at  timestamptz,
    reloads          bigint      NOT NULL DEFAULT 0,
    refused_reloads  bigint      NOT NULL DEFAULT 0,
    last_error       text,
    last_error_at    timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
