-- oppty-router schema, version 14: the leader records who is paused, disabled or capped by the
-- rules in force (the rule files and the CRM's directory as last read), so `status` shows exactly
-- what routes, not a second reading of the files and the CRM.
ALTER TABLE {{schema}}.daemon_status ADD COLUMN people jsonb;
