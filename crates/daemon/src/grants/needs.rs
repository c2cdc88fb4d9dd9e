//! The privileges the daemon's role needs, one by one: computed from every statement it runs
//! against the CRM (probed, `grants::probe`), the router's own schema and the database, each with
//! the config key that needs it and the role that owns the object (who can grant it).
//!
//! It must not change anything: the probes run in the caller's transaction, rolled back after.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::GenericClient;

use super::probe::{canonical, probe_uses, probes, sequences_of, write_notes};
use super::GrantsError;
use crate::config::Config;
use crate::crm::CrmSql;
use crate::ident::Ident;

/// What a privilege is on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    Database(String),
    Schema(String),
    Table(String),
    Sequence(String),
    Function(String),
}

impl Object {
    /// As GRANT names it: `TABLE crm.opportunity`.
    pub fn sql(&self) -> String {
        match self {
            Object::Database(n) => format!("DATABASE {n}"),
            Object::Schema(n) => format!("SCHEMA {n}"),
            Object::Table(n) => format!("TABLE {n}"),
            Object::Sequence(n) => format!("SEQUENCE {n}"),
            Object::Function(n) => format!("FUNCTION {n}"),
        }
    }
}

/// One privilege: on what (only these columns, when any are named), why, and who owns it.
#[derive(Debug, Clone)]
pub struct Need {
    pub privilege: &'static str,
    pub object: Object,
    /// Quoted column names; empty: the whole object.
    pub columns: BTreeSet<String>,
    /// The config keys (or the router's parts) that need it.
    pub why: BTreeSet<String>,
    /// The role that owns the object, quoted (it, or a superuser, grants it).
    pub owner: String,
}

impl Need {
    /// `UPDATE ("a", b)`.
    pub fn privilege_sql(&self) -> String {
        if self.columns.is_empty() {
            self.privilege.to_string()
        } else {
            format!("{} ({})", self.privilege, self.columns.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
        }
    }

    /// `UPDATE ("a", b) ON TABLE t`.
    pub fn what(&self) -> String {
        format!("{} ON {}", self.privilege_sql(), self.object.sql())
    }
}

/// Everything the daemon's role needs, merged by (privilege, object), and what grants cannot
/// cover (the CRM's triggers on a table it writes, row-level security).
#[derive(Debug, Default)]
pub struct Needs {
    pub list: Vec<Need>,
    pub notes: Vec<String>,
    /// The router's schema, quoted, and its owner (quoted), once installed: default privileges
    /// on what a later `install` adds there.
    pub router: Option<(String, String)>,
}

/// Columns (none: the whole object) and the keys that need them.
type ColumnsWhy = (BTreeSet<String>, BTreeSet<String>);

/// Collects needs, merging those of the same privilege on the same object.
#[derive(Default)]
struct Collect(BTreeMap<(&'static str, Object), ColumnsWhy>);

impl Collect {
    fn add(&mut self, privilege: &'static str, object: Object, columns: &[String], why: &str) {
        let e = self.0.entry((privilege, object)).or_default();
        e.0.extend(columns.iter().cloned());
        e.1.insert(why.to_string());
    }
}

/// Every privilege the daemon needs under this mapping on this database.
pub async fn needs<C: GenericClient>(tx: &C, cfg: &Config, sql: &CrmSql) -> Result<Needs, GrantsError> {
    let router = cfg.router.schema.as_str();
    let mut c = Collect::default();
    let db: String = tx.query_one("SELECT quote_ident(current_database()) AS db", &[]).await?.try_get("db")?;
    c.add("CONNECT", Object::Database(db), &[], "the daemon's sessions");
    let mut notes = Vec::new();
    let installed: bool = tx
        .query_one("SELECT to_regnamespace($1) IS NOT NULL AS found", &[&cfg.router.schema.quoted()])
        .await?
        .try_get("found")?;
    for (i, probe) in probes(cfg, sql, installed).iter().enumerate() {
        let uses = probe_uses(tx, i, probe).await?;
        for s in uses.schemas.iter().filter(|s| s.as_str() != router) {
            c.add("USAGE", Object::Schema(quote(tx, s).await?), &[], &probe.key);
        }
        for (_, rel) in uses.relations.iter().filter(|(s, _)| s != router) {
            c.add("SELECT", Object::Table(rel.clone()), &[], &probe.key);
        }
        for f in &uses.functions {
            c.add("EXECUTE", Object::Function(f.clone()), &[], &probe.key);
        }
        for w in &uses.writes {
            let rel = canonical(tx, &w.relation).await?;
            let cols = quote_all(tx, &w.columns).await?;
            c.add(w.op, Object::Table(rel.clone()), &cols, &probe.key);
            if w.op == "INSERT" {
                for seq in sequences_of(tx, &rel).await? {
                    c.add("USAGE", Object::Sequence(seq), &[], &probe.key);
                }
            }
            notes.extend(write_notes(tx, &rel).await?);
        }
    }
    let router_owner = router_schema(tx, cfg, &mut c).await?;
    notes.sort();
    notes.dedup();
    let mut list = Vec::with_capacity(c.0.len());
    for ((privilege, object), (columns, why)) in c.0 {
        let owner = owner_of(tx, &object).await?;
        list.push(Need { privilege, object, columns, why, owner });
    }
    Ok(Needs { list, notes, router: router_owner.map(|o| (cfg.router.schema.quoted(), o)) })
}

/// The router's own schema: its queue, audit and state, every table and sequence there now.
/// Returns the schema's owner, when it is installed.
async fn router_schema<C: GenericClient>(
    tx: &C,
    cfg: &Config,
    c: &mut Collect,
) -> Result<Option<String>, tokio_postgres::Error> {
    let s = cfg.router.schema.as_str();
    let owner: Option<String> = tx
        .query_opt("SELECT quote_ident(r.rolname) AS owner FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $1", &[&s])
        .await?
        .map(|r| r.try_get("owner"))
        .transpose()?;
    if owner.is_none() {
        return Ok(None);
    }
    let why = "the router's schema";
    c.add("USAGE", Object::Schema(cfg.router.schema.quoted()), &[], why);
    let rows = tx
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) AS rel, c.relkind::text AS kind FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'S') ORDER BY 1",
            &[&s],
        )
        .await?;
    for r in rows {
        let (rel, kind): (String, String) = (r.try_get("rel")?, r.try_get("kind")?);
        if kind == "S" {
            c.add("USAGE", Object::Sequence(rel), &[], why);
        } else if kind == "v" {
            c.add("SELECT", Object::Table(rel), &[], why);
        } else {
            for p in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
                c.add(p, Object::Table(rel.clone()), &[], why);
            }
        }
    }
    Ok(owner)
}

/// Who owns an object (quoted): it, or a superuser, can grant on it.
async fn owner_of<C: GenericClient>(tx: &C, o: &Object) -> Result<String, tokio_postgres::Error> {
    let (sql, name) = match o {
        Object::Database(_) => (
            "SELECT quote_ident(pg_get_userbyid(datdba)) AS o FROM pg_database WHERE datname = current_database()",
            None,
        ),
        Object::Schema(n) => (
            "SELECT quote_ident(pg_get_userbyid(nspowner)) AS o FROM pg_namespace WHERE oid = $1::text::regnamespace",
            Some(n),
        ),
        Object::Table(n) | Object::Sequence(n) => {
            ("SELECT quote_ident(pg_get_userbyid(relowner)) AS o FROM pg_class WHERE oid = $1::text::regclass", Some(n))
        }
        Object::Function(n) => (
            "SELECT quote_ident(pg_get_userbyid(proowner)) AS o FROM pg_proc WHERE oid = $1::text::regprocedure",
            Some(n),
        ),
    };
    let row = match name {
        Some(n) => tx.query_one(sql, &[n]).await?,
        None => tx.query_one(sql, &[]).await?,
    };
    row.try_get("o")
}

async fn quote<C: GenericClient>(tx: &C, name: &str) -> Result<String, tokio_postgres::Error> {
    tx.query_one("SELECT quote_ident($1) AS q", &[&name]).await?.try_get("q")
}

async fn quote_all<C: GenericClient>(tx: &C, names: &[String]) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(quote(tx, n).await?);
    }
    Ok(out)
}

/// A role name as GRANT takes it (quoted), or why it is not one.
pub fn role_ident(role: &str) -> Result<String, String> {
    Ident::parse(role).map(|i| i.quoted()).map_err(|e| e.to_string())
}
