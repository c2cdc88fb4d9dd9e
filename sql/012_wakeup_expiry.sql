-- oppty-router schema, version 12: the idle flag expires. A waiting leader renews it; the
-- triggers NOTIFY only while it is both raised and unexpired, so a daemon killed while it waited
-- (no clean stop to lower the flag) costs the CRM's transactions a NOTIFY for at most a lease.
ALTER TABLE {{schema}}.wakeup ADD COLUMN idle_until timestamptz;
