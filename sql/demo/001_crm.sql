-- A sample legacy CRM, as found in the wild: quoted camelCase columns, a uuid primary key, a
-- char(36) account key, a stage table with is_won / is_lost flags, soft deletes, integer user ids
-- with a "queue" placeholder user that new records get by default, a team link, two activity
-- tables (one by foreign key, one polymorphic like Odoo's mail_message).
-- Used by `oppty-router demo` and the tests. The router never changes these tables' structure.

CREATE SCHEMA crm;

CREATE TABLE crm.users (
    id      integer PRIMARY KEY,
    login   text    NOT NULL UNIQUE,
    "fullName" text NOT NULL,
    active  boolean NOT NULL DEFAULT true
);

CREATE TABLE crm.sales_team (
    id   integer PRIMARY KEY,
    name text NOT NULL
);

-- Who is in which sales team, as the CRM's admin screens keep it (the router can load it), with
-- the membership's own settings: opted out of automatic assignment in this team, and a maximum of
-- assignments per 30 days through this team.
CREATE TABLE crm.sales_team_member (
    "teamId" integer NOT NULL REFERENCES crm.sales_team (id),
    "userId" integer NOT NULL REFERENCES crm.users (id),
    "autoAssign" boolean NOT NULL DEFAULT true,
    "maxPer30Days" integer,
    PRIMARY KEY ("teamId", "userId")
);

CREATE TABLE crm.province (
    code text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE crm.account (
    "accountId"    character(36) PRIMARY KEY,
    name           text NOT NULL,
    "provinceCode" text REFERENCES crm.province (code),
    segment        text,
    "ownerId"      integer REFERENCES crm.users (id)
);

CREATE TABLE crm.stage (
    id       integer PRIMARY KEY,
    pipeline text    NOT NULL,
    name     text    NOT NULL,
    seq      integer NOT NULL,
    is_won   boolean NOT NULL DEFAULT false,
    is_lost  boolean NOT NULL DEFAULT false
);

CREATE TABLE crm.product (
    code     text PRIMARY KEY,
    name     text NOT NULL,
    category text NOT NULL
);

CREATE TABLE crm.opportunity (
    "oppId"          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title            text NOT NULL,
    "accountId"      character(36) REFERENCES crm.account ("accountId"),
    "pipelineCode"   text NOT NULL,
    "stageId"        integer NOT NULL REFERENCES crm.stage (id),
    "accountOwnerId" integer NOT NULL DEFAULT 1 REFERENCES crm.users (id),
    "salesTeamId"    integer REFERENCES crm.sales_team (id),
    "assignedAt"     timestamptz,
    "productCode"    text REFERENCES crm.product (code),
    source           text,
    "leadScore"      integer,
    amount           numeric(14, 2),
    "createdAt"      timestamptz NOT NULL DEFAULT clock_timestamp(),
    "deletedAt"      timestamptz,
    "lastModifiedBy" integer REFERENCES crm.users (id)
);
CREATE INDEX opportunity_owner ON crm.opportunity ("accountOwnerId");
CREATE INDEX opportunity_account ON crm.opportunity ("accountId", "createdAt");
-- The router's "last owner" and "last team" fields look for a customer's latest owned deal:
-- partial indexes keep that lookup short however many unowned deals pile up.
CREATE INDEX opportunity_account_owned ON crm.opportunity ("accountId", "createdAt") WHERE "accountOwnerId" <> 1;
CREATE INDEX opportunity_account_team ON crm.opportunity ("accountId", "createdAt") WHERE "salesTeamId" IS NOT NULL;

CREATE TABLE crm.activity (
    id              bigserial PRIMARY KEY,
    "opportunityId" uuid NOT NULL REFERENCES crm.opportunity ("oppId"),
    kind            text NOT NULL,
    "userId"        integer REFERENCES crm.users (id),
    "createdAt"     timestamptz NOT NULL DEFAULT clock_timestamp(),
    note            text
);

CREATE TABLE crm.mail_message (
    id        serial PRIMARY KEY,
    model     text NOT NULL,
    res_id    text NOT NULL,
    author_id integer REFERENCES crm.users (id),
    date      timestamp NOT NULL DEFAULT localtimestamp,
    body      text
);
