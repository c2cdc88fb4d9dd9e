-- oppty-router schema, version 4: reclaim. The sweeper finds stale assignments per pipeline with
-- one indexed range scan, and every reclaim (or decision to leave one) is audited.
ALTER TABLE {{schema}}.ownership ADD COLUMN pipeline text;
CREATE INDEX ownership_pipeline_touch ON {{schema}}.ownership (pipeline, last_owner_touch_at);

ALTER TABLE {{schema}}.assignments DROP CONSTRAINT assignments_outcome_check;
ALTER TABLE {{schema}}.assignments ADD CONSTRAINT assignments_outcome_check
    CHECK (outcome IN ('rule', 'fallback', 'held', 'unassigned', 'reclaim', 'kept'));
