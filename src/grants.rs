//! `grants ROLE`: the exact GRANT statements a dedicated daemon role needs, computed from the
//! mapping and this database's catalog, so the daemon never has to run as the CRM's owner.
//!
//! Owns finding what the daemon's statements read and write: each statement it will run against
//! the CRM (context, load recounts, write-back, reclaim, directory queries, ops-written statements)
//! is wrapped in a temporary `BEGIN ATOMIC` function, whose recorded dependencies name every table,
//! view, column and function it uses; `EXPLAIN` names what an ops-written statement modifies. It
//! must not change anything: the probes live in a transaction that is rolled back.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::{Client, Transaction};

use crate::config::{Config, WriteBack};
use crate::crm::{self, CrmSql, Reassign, WriteSql};
use crate::ident::Ident;

#[derive(Debug, thiserror::Error)]
pub enum GrantsError {
    #[error("grants: `{0}` is not a role name: {1}")]
    BadRole(String, String),
    #[error(transparent)]
    Mapping(#[from] crm::CrmError),
    #[error("grants: {key}: {message}")]
    Probe { key: String, message: String },
    #[error("grants: {}", crate::db::describe(.0))]
    Sql(#[from] tokio_postgres::Error),
}

/// What one statement uses, by qualified (quoted) name.
#[derive(Debug, Default)]
struct Uses {
    /// `(schema, qualified name)`.
    relations: BTreeSet<(String, String)>,
    /// Per relation, the columns named (for the targets of ops-written statements).
    columns: BTreeMap<String, BTreeSet<String>>,
    functions: BTreeSet<String>,
    schemas: BTreeSet<String>,
    /// How many parameters the statement takes.
    params: usize,
}

/// A statement the daemon runs, with the config key it comes from.
struct Probe {
    key: String,
    sql: String,
    /// An ops-written data-changing statement: its targets are found with EXPLAIN.
    custom_write: bool,
}

fn probes(cfg: &Config, sql: &CrmSql) -> Vec<Probe> {
    let p = |key: &str, sql: &str, custom_write: bool| Probe { key: key.into(), sql: sql.into(), custom_write };
    let mut out = vec![
        p("opportunity (context query)", &sql.context, false),
        p("opportunity (load recount)", &sql.recount, false),
        p("opportunity (load recount)", &sql.full_count, false),
    ];
    if let Some(a) = &sql.assigned_since {
        out.push(p("opportunity.assigned_at (the CRM's count for caps)", a, false));
    }
    match &sql.write {
        WriteSql::Batch(s) => out.push(p("write_back.set", s, false)),
        WriteSql::PerRow { sql: s, .. } => out.push(p("write_back.statement", s, true)),
    }
    match &sql.reassign {
        Some(Reassign::Batch(s)) => out.push(p("write_back.set (reclaim)", s, false)),
        Some(Reassign::PerRow { sql: s, .. }) => out.push(p("write_back.reclaim_statement", s, true)),
        None => {}
    }
    if let Some(d) = &cfg.directory {
        for (key, q) in [
            ("directory.active_members", &d.active_members),
            ("directory.team_members", &d.team_members),
            ("directory.kpi", &d.kpi),
            ("directory.territories", &d.territories),
            ("directory.team_territories", &d.team_territories),
        ] {
            if let Some(q) = q {
                out.push(p(key, q, false));
            }
        }
    }
    out
}

/// The GRANT script for `role`, as text to run as the database owner.
pub async fn grants(client: &mut Client, cfg: &Config, role: &str) -> Result<String, GrantsError> {
    let role_q = Ident::parse(role).map_err(|e| GrantsError::BadRole(role.into(), e.to_string()))?.quoted();
    let sql = crm::prepare(client, cfg).await?;
    let router_schema = cfg.router.schema.as_str().to_string();
    let tx = client.transaction().await?;
    let mut reads = Uses::default();
    // (operation, relation) → columns
    let mut writes: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (i, probe) in probes(cfg, &sql).iter().enumerate() {
        let uses = probe_uses(&tx, i, probe).await?;
        if probe.custom_write {
            for (op, rel) in modified(&tx, probe, uses.params).await? {
                let rel = canonical(&tx, &rel).await?;
                let cols = uses.columns.get(&rel).cloned().unwrap_or_default();
                writes.entry((op, rel)).or_default().extend(cols);
            }
        }
        reads.relations.extend(uses.relations);
        reads.functions.extend(uses.functions);
        reads.schemas.extend(uses.schemas);
    }
    if matches!(cfg.write_back, WriteBack::Batch { .. }) {
        let o = &cfg.opportunity;
        let mut cols: BTreeSet<String> = BTreeSet::new();
        let mut names = vec![o.owner.as_str()];
        names.extend(o.team.as_ref().map(Ident::as_str));
        if let WriteBack::Batch { set } = &cfg.write_back {
            names.extend(set.iter().map(|(c, _)| c.as_str()));
        }
        for n in names {
            cols.insert(tx.query_one("SELECT quote_ident($1) AS q", &[&n]).await?.try_get("q")?);
        }
        writes.insert(("UPDATE".into(), canonical(&tx, &o.table.quoted()).await?), cols);
    }
    let mut out = Script::new(&tx, cfg, &role_q).await?;
    out.crm_reads(&reads, &router_schema);
    out.crm_writes(&tx, &writes).await?;
    out.router_schema(&tx, cfg).await?;
    tx.rollback().await?;
    Ok(out.finish())
}

/// A relation's name as `format('%I.%I')` writes it (the form the probes use).
async fn canonical(tx: &Transaction<'_>, rel: &str) -> Result<String, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "SELECT format('%I.%I', n.nspname, c.relname) AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = $1::text::regclass",
            &[&rel],
        )
        .await?;
    row.try_get("rel")
}

/// Wrap the statement in a temporary function and read what PostgreSQL recorded it depends on.
async fn probe_uses(tx: &Transaction<'_>, i: usize, probe: &Probe) -> Result<Uses, GrantsError> {
    let fail =
        |e: tokio_postgres::Error| GrantsError::Probe { key: probe.key.clone(), message: crate::db::message(&e) };
    let stmt = tx.prepare(&probe.sql).await.map_err(fail)?;
    let oids: Vec<u32> = stmt.params().iter().map(|t| t.oid()).collect();
    let types: Vec<String> = tx
        .query(
            "SELECT format_type(t, NULL) AS t FROM unnest($1::oid[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
            &[&oids],
        )
        .await?
        .iter()
        .map(|r| r.try_get("t"))
        .collect::<Result<_, _>>()?;
    let name = format!("pg_temp.oppty_router_probe_{i}");
    tx.batch_execute(&format!(
        "CREATE FUNCTION {name}({}) RETURNS void LANGUAGE sql BEGIN ATOMIC\n{};\nEND",
        types.join(", "),
        probe.sql
    ))
    .await
    .map_err(fail)?;
    let oid: u32 = tx.query_one(&format!("SELECT '{name}'::regproc::oid AS oid"), &[]).await?.try_get("oid")?;
    let mut uses = Uses { params: oids.len(), ..Uses::default() };
    let rows = tx
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) AS rel, n.nspname::text AS schema, \
               CASE WHEN d.refobjsubid > 0 THEN quote_ident(a.attname) END AS col \
             FROM pg_depend d JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_proc'::regclass AND d.objid = $1 AND d.refclassid = 'pg_class'::regclass \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[&oid],
        )
        .await?;
    for r in rows {
        let (rel, schema, col): (String, String, Option<String>) =
            (r.try_get("rel")?, r.try_get("schema")?, r.try_get("col")?);
        uses.schemas.insert(schema.clone());
        if let Some(c) = col {
            uses.columns.entry(rel.clone()).or_default().insert(c);
        }
        uses.relations.insert((schema, rel));
    }
    let rows = tx
        .query(
            "SELECT p.oid::regprocedure::text AS function, n.nspname::text AS schema FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE d.classid = 'pg_proc'::regclass AND d.objid = $1 AND d.refclassid = 'pg_proc'::regclass \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[&oid],
        )
        .await?;
    for r in rows {
        uses.functions.insert(r.try_get("function")?);
        uses.schemas.insert(r.try_get("schema")?);
    }
    Ok(uses)
}

/// `(operation, relation)` for every table an ops-written statement inserts into, updates or
/// deletes from, from its plan (run with NULL parameters; nothing is executed).
async fn modified(tx: &Transaction<'_>, probe: &Probe, params: usize) -> Result<Vec<(String, String)>, GrantsError> {
    let nulls: Vec<Option<String>> = vec![None; params];
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        nulls.iter().map(|n| n as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let row = tx.query_one(&format!("EXPLAIN (VERBOSE, FORMAT JSON) {}", probe.sql), &params).await?;
    let plan: serde_json::Value = row.try_get("QUERY PLAN")?;
    let mut out = Vec::new();
    walk_plan(&plan, &mut out);
    Ok(out)
}

fn walk_plan(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| walk_plan(i, out)),
        serde_json::Value::Object(map) => {
            if map.get("Node Type").and_then(|t| t.as_str()) == Some("ModifyTable") {
                let op = map.get("Operation").and_then(|o| o.as_str()).unwrap_or("").to_uppercase();
                let (Some(schema), Some(rel)) =
                    (map.get("Schema").and_then(|s| s.as_str()), map.get("Relation Name").and_then(|s| s.as_str()))
                else {
                    return;
                };
                let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
                out.push((op, format!("{}.{}", q(schema), q(rel))));
            }
            map.values().for_each(|x| walk_plan(x, out));
        }
        _ => {}
    }
}

/// The script being written.
struct Script {
    role: String,
    lines: Vec<String>,
}

impl Script {
    async fn new(tx: &Transaction<'_>, cfg: &Config, role: &str) -> Result<Script, GrantsError> {
        let db: String = tx.query_one("SELECT quote_ident(current_database()) AS db", &[]).await?.try_get("db")?;
        let lines = vec![
            format!("-- oppty-router: what the daemon's role {role} needs in database {db},"),
            format!("-- computed from {} and this database's catalog.", cfg.path.display()),
            "-- Run it as the database owner or a superuser, after `oppty-router install`:".to_string(),
            format!("--   oppty-router grants {} | psql -v ON_ERROR_STOP=1 -d {db}", role.trim_matches('"')),
            "BEGIN;".to_string(),
            format!("GRANT CONNECT ON DATABASE {db} TO {role};"),
        ];
        Ok(Script { role: role.to_string(), lines })
    }

    fn crm_reads(&mut self, reads: &Uses, router_schema: &str) {
        let role = &self.role;
        self.lines.push(
            "-- reading the CRM: mapped tables, and what field expressions, predicates and directory queries read"
                .into(),
        );
        for s in reads.schemas.iter().filter(|s| *s != router_schema) {
            self.lines.push(format!("GRANT USAGE ON SCHEMA \"{}\" TO {role};", s.replace('"', "\"\"")));
        }
        let rels: Vec<&str> =
            reads.relations.iter().filter(|(s, _)| s != router_schema).map(|(_, r)| r.as_str()).collect();
        if !rels.is_empty() {
            let list = rels.join(", ");
            self.lines.push(format!("GRANT SELECT ON TABLE {list} TO {role};"));
        }
        for f in &reads.functions {
            self.lines.push(format!("GRANT EXECUTE ON FUNCTION {f} TO {role};"));
        }
    }

    async fn crm_writes(
        &mut self,
        tx: &Transaction<'_>,
        writes: &BTreeMap<(String, String), BTreeSet<String>>,
    ) -> Result<(), GrantsError> {
        let role = self.role.clone();
        self.lines.push("-- writing owners back (only these columns)".into());
        for ((op, rel), cols) in writes {
            let cols = if cols.is_empty() || op == "DELETE" {
                String::new()
            } else {
                format!(" ({})", cols.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
            };
            self.lines.push(format!("GRANT {op}{cols} ON TABLE {rel} TO {role};"));
            if op == "INSERT" {
                for seq in sequences_of(tx, rel).await? {
                    self.lines.push(format!("GRANT USAGE ON SEQUENCE {seq} TO {role};"));
                }
            }
            for note in write_notes(tx, rel).await? {
                self.lines.push(note);
            }
        }
        Ok(())
    }

    async fn router_schema(&mut self, tx: &Transaction<'_>, cfg: &Config) -> Result<(), GrantsError> {
        let role = &self.role;
        let s = cfg.router.schema.quoted();
        let owner: Option<String> = tx
            .query_opt(
                "SELECT quote_ident(r.rolname) AS owner FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $1",
                &[&cfg.router.schema.as_str()],
            )
            .await?
            .map(|r| r.try_get("owner"))
            .transpose()?;
        self.lines.push("-- the router's own schema: its queue, audit and state".into());
        self.lines.push(format!("GRANT USAGE ON SCHEMA {s} TO {role};"));
        self.lines.push(format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role};"));
        self.lines.push(format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {role};"));
        match owner {
            Some(owner) => {
                self.lines.push("-- and on what a later `install` (an upgrade) adds there".into());
                self.lines.push(format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};"
                ));
                self.lines.push(format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s} GRANT USAGE ON SEQUENCES TO {role};"
                ));
            }
            None => self.lines.push(format!(
                "-- the schema {s} does not exist yet: run `oppty-router install` first, then print these grants again"
            )),
        }
        Ok(())
    }

    fn finish(mut self) -> String {
        self.lines.push("COMMIT;".into());
        self.lines.join("\n") + "\n"
    }
}

/// Sequences that fill a table's serial or identity columns (an INSERT takes their next value).
async fn sequences_of(tx: &Transaction<'_>, rel: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT format('%I.%I', n.nspname, s.relname) AS seq FROM pg_depend d JOIN pg_class s ON s.oid = d.objid \
             JOIN pg_namespace n ON n.oid = s.relnamespace \
             WHERE d.refobjid = $1::text::regclass AND d.classid = 'pg_class'::regclass AND s.relkind = 'S' \
               AND d.deptype IN ('a', 'i') ORDER BY 1",
            &[&rel],
        )
        .await?;
    rows.iter().map(|r| r.try_get("seq")).collect()
}

/// What the grants cannot cover by themselves: the CRM's own triggers on a table the daemon
/// writes (they run with the daemon's rights) and row-level security.
async fn write_notes(tx: &Transaction<'_>, rel: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut notes = Vec::new();
    let row = tx
        .query_one(
            "SELECT c.relrowsecurity AS rls, coalesce(string_agg(quote_ident(t.tgname) || ' (' || p.oid::regprocedure::text || ')', ', ' \
               ORDER BY t.tgname) FILTER (WHERE NOT p.prosecdef), '') AS triggers \
             FROM pg_class c LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal \
             LEFT JOIN pg_proc p ON p.oid = t.tgfoid \
             WHERE c.oid = $1::text::regclass GROUP BY c.relrowsecurity",
            &[&rel],
        )
        .await?;
    let (rls, triggers): (bool, String) = (row.try_get("rls")?, row.try_get("triggers")?);
    if !triggers.is_empty() {
        notes.push(format!(
            "-- note: {rel} has triggers that run with the daemon's rights when it writes: {triggers}; grant what they need"
        ));
    }
    if rls {
        notes.push(format!(
            "-- note: {rel} has row-level security: add a policy letting the daemon's role read and update every row"
        ));
    }
    Ok(notes)
}
