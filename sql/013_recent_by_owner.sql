-- oppty-router schema, version 13: the leader reads, per member, only the latest assignments its
-- caps can count (a cap of N needs the latest N), newest first, from an index by owner; the index
-- by time alone served only the old whole-window read.
CREATE INDEX assignments_owner_recent ON {{schema}}.assignments (owner_id, decided_at)
    WHERE owner_id IS NOT NULL AND outcome IN ('rule', 'fallback');
DROP INDEX {{schema}}.assignments_decided_at;
