-- oppty-router schema, version 8: a daemon that stops cleanly (SIGTERM) says so, so `status` can
-- tell "stopped" from "not responding".
ALTER TABLE {{schema}}.daemon_status ADD COLUMN stopped_at timestamptz;
