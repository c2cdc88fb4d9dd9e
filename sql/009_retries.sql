-- oppty-router schema, version 9: events that failed are retried one by one, apart from fresh
-- batches; this index finds the due ones without scanning a backlog of fresh events.
CREATE INDEX events_retries ON {{schema}}.events (id) WHERE attempts > 0;
