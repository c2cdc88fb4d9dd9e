-- oppty-router schema, version 11: each distinct explanation is stored once. Most decisions share
-- their explanation with many others (the same rule path, the same members passed over), so an
-- assignment names it by key instead of carrying its own copy: the audit row is a fraction of the
-- size, and the server parses each distinct explanation into jsonb once. Read decisions with their
-- explanation from the view `assignments_explained`.
CREATE TABLE {{schema}}.explanations (
    key   bytea PRIMARY KEY,   -- the first 16 bytes of the SHA-256 of the explanation's JSON text
    body  jsonb NOT NULL
);

ALTER TABLE {{schema}}.assignments
    ALTER COLUMN explanation DROP NOT NULL,
    ADD COLUMN explanation_key bytea;

-- Every decision with its explanation, whether stored in the row (before version 11) or once.
CREATE VIEW {{schema}}.assignments_explained AS
SELECT a.id, a.opp_id, a.owner_id, a.team_id, a.previous_owner, a.outcome, a.pipeline, a.rule_id,
       a.rules_version, coalesce(a.explanation, x.body) AS explanation, a.event_at, a.decided_at
FROM {{schema}}.assignments a
LEFT JOIN {{schema}}.explanations x ON x.key = a.explanation_key;

-- Unused since version 6 (the sweeper reads ownership by pipeline and due time), and kept up to
-- date by every assignment and every interaction.
DROP INDEX IF EXISTS {{schema}}.ownership_last_owner_touch;
