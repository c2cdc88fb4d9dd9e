-- oppty-router schema, version 15: an attempt is charged when an event is claimed, in the claim's
-- own committed statement, and the claim names the session that made it. An event whose claimer's
-- session is gone (a crash, a kill, an out-of-memory error that ended the session) is claimed
-- again, alone, and charged again: a poisoned event that takes its session down is dead-lettered
-- after router.max_attempts claims instead of stalling the queue. Every router query that looks
-- an opportunity's events up (the reclaim's queued interactions, its reassign's guard) finds them
-- by index, never by scanning a backlog.
ALTER TABLE {{schema}}.events ADD COLUMN claimed_by integer;
CREATE INDEX events_opp_id ON {{schema}}.events (opp_id);
-- How long the oldest event due has waited (`/readyz`, once a second during a backlog): the first
-- due one in created_at order, by index.
CREATE INDEX events_created_at ON {{schema}}.events (created_at);
-- Events to try again are claimed fewest attempts first: the batch-mates of an event that took its
-- session down go before it, not behind it at every try.
DROP INDEX {{schema}}.events_retries;
CREATE INDEX events_retries ON {{schema}}.events (attempts, id) WHERE attempts > 0;
