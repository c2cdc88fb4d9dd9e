-- oppty-router schema, version 17: a true account. Each routing decision keeps what it saw (the
-- fields and pipeline as read, the moment and the seed of its randomness, the ledger of the
-- members its rules reached), so `simulate` replays the values the router saw, never the values it
-- wrote itself. Each rule set put in force is kept by version (its files and what the CRM's
-- directory said), so `simulate --in-force` replays each decision with the rules that made it.
ALTER TABLE {{schema}}.assignments ADD COLUMN seen jsonb;

CREATE TABLE {{schema}}.rule_sets (
    version     text        PRIMARY KEY,
    hash        text        NOT NULL,
    sources     jsonb       NOT NULL,
    directory   jsonb       NOT NULL,
    in_force_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
