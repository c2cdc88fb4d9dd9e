//! Probing what one statement of the daemon's uses: it is wrapped in a temporary `BEGIN ATOMIC`
//! function, whose recorded dependencies name every table, view, column and function it uses,
//! and whose deparsed body names what it writes. The caller's transaction is rolled back: nothing
//! stays.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::GenericClient;

use super::GrantsError;
use crate::config::Config;
use crate::crm::{CrmSql, Reassign, WriteSql};

/// What one statement uses, by qualified (quoted) name.
#[derive(Debug, Default)]
pub(super) struct Uses {
    /// `(schema, qualified name)`.
    pub relations: BTreeSet<(String, String)>,
    /// Per relation, the columns named (for the targets of ops-written statements).
    pub columns: BTreeMap<String, BTreeSet<String>>,
    pub functions: BTreeSet<String>,
    pub schemas: BTreeSet<String>,
    /// What it writes, from its deparsed body: `(operation, relation as written, columns)`.
    pub writes: Vec<super::written::Target>,
}

/// A statement the daemon runs, with the config key it comes from.
pub(super) struct Probe {
    pub key: String,
    pub sql: String,
}

/// Every statement the daemon runs against the CRM, by the config key it comes from (the batch
/// reclaim reads the router's queue too: probed once `installed`; what it writes is the batch
/// write's).
pub(super) fn probes(cfg: &Config, sql: &CrmSql, installed: bool) -> Vec<Probe> {
    let p = |key: &str, sql: &str| Probe { key: key.into(), sql: sql.into() };
    let mut out = vec![
        p("opportunity (context query)", sql.context_locking.as_ref().unwrap_or(&sql.context)),
        p("opportunity (load recount)", &sql.recount),
        p("opportunity (load recount)", &sql.full_count),
    ];
    if let Some(a) = &sql.assigned_since {
        out.push(p("opportunity.assigned_at (the CRM's count for caps)", a));
    }
    if let Some((_, q)) = &sql.owner_users {
        out.push(p("opportunity.owner (the users its foreign key references, read to check ids)", q));
    }
    match &sql.write {
        WriteSql::Batch(s) => out.push(p("write_back.set", s)),
        WriteSql::PerRow { sql: s, .. } => out.push(p("write_back.statement", s)),
    }
    match &sql.reassign {
        Some(Reassign::Batch(s)) if installed => out.push(p("write_back.set (reclaim)", s)),
        Some(Reassign::Batch(_)) => {}
        Some(Reassign::PerRow { sql: s, .. }) => out.push(p("write_back.reclaim_statement", s)),
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
                out.push(p(key, q));
            }
        }
    }
    out
}

/// A relation's name as `format('%I.%I')` writes it (the form the probes use), read in the
/// session's search path.
pub(super) async fn canonical<C: GenericClient>(tx: &C, rel: &str) -> Result<String, tokio_postgres::Error> {
    let row = tx
        .query_opt(
            "SELECT format('%I.%I', n.nspname, c.relname) AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1)",
            &[&rel],
        )
        .await?;
    row.map_or_else(|| Ok(rel.to_string()), |r| r.try_get("rel"))
}

/// Wrap the statement in a temporary function and read what PostgreSQL recorded it depends on,
/// and what its body writes.
pub(super) async fn probe_uses<C: GenericClient>(tx: &C, i: usize, probe: &Probe) -> Result<Uses, GrantsError> {
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
    let mut uses = Uses::default();
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
    let body: String = tx.query_one("SELECT pg_get_functiondef($1::oid) AS body", &[&oid]).await?.try_get("body")?;
    uses.writes = super::written::targets(&body);
    Ok(uses)
}

/// Sequences that fill a table's serial or identity columns (an INSERT takes their next value).
pub(super) async fn sequences_of<C: GenericClient>(tx: &C, rel: &str) -> Result<Vec<String>, tokio_postgres::Error> {
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
pub(super) async fn write_notes<C: GenericClient>(tx: &C, rel: &str) -> Result<Vec<String>, tokio_postgres::Error> {
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
