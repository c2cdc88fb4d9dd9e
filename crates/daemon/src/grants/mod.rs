//! `grants ROLE` and `grants --revoke ROLE`: exactly the privileges the daemon's role needs,
//! computed from the mapping and this database's catalog (only the columns it writes), printed in
//! parts by who can grant each (the owner of the CRM's tables, of the router's schema, the
//! database owner; a superuser can run them all); and `lacking`, which of them the connected role
//! does not hold (`check`, and `run` at start), each with the GRANT that fixes it.
//!
//! Owns the set of needs and how it is said. It must not change anything: the probes live in a
//! transaction that is rolled back.

mod needs;
mod probe;
mod written;

use std::collections::BTreeMap;
use std::fmt::Write;

use tokio_postgres::{Client, GenericClient};

pub use needs::{Need, Needs, Object};

use crate::config::Config;
use crate::crm::{self, CrmSql};

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

/// The GRANT script for `role`: one part per role that owns what it grants.
pub async fn grants(client: &mut Client, cfg: &Config, role: &str) -> Result<String, GrantsError> {
    script(client, cfg, role, false).await
}

/// The REVOKE script undoing [`grants`] for `role` (run it before `uninstall`, or after: a
/// privilege on an object `uninstall` dropped went with it).
pub async fn revoke(client: &mut Client, cfg: &Config, role: &str) -> Result<String, GrantsError> {
    script(client, cfg, role, true).await
}

async fn script(client: &mut Client, cfg: &Config, role: &str, revoke: bool) -> Result<String, GrantsError> {
    let role_q = needs::role_ident(role).map_err(|e| GrantsError::BadRole(role.into(), e))?;
    let sql = crm::prepare(client, cfg).await?;
    let tx = client.transaction().await?;
    let needs = needs::needs(&tx, cfg, &sql).await?;
    let db: String = tx.query_one("SELECT quote_ident(current_database()) AS db", &[]).await?.try_get("db")?;
    tx.rollback().await?;
    Ok(render(cfg, &needs, &role_q, &db, revoke))
}

/// The script: a header, then per owning role its statements (one per object) in a transaction
/// of their own.
fn render(cfg: &Config, needs: &Needs, role: &str, db: &str, revoke: bool) -> String {
    // (database's part last, owner) → object → (privileges with their columns, why)
    type Lines<'n> = BTreeMap<&'n Object, (Vec<String>, std::collections::BTreeSet<&'n str>)>;
    let mut grouped: BTreeMap<(bool, &str), Lines<'_>> = BTreeMap::new();
    for n in &needs.list {
        let is_db = matches!(n.object, Object::Database(_));
        let e = grouped.entry((is_db, n.owner.as_str())).or_default().entry(&n.object).or_default();
        e.0.push(n.privilege_sql());
        e.1.extend(n.why.iter().map(String::as_str));
    }
    let mut parts: BTreeMap<(bool, &str), Vec<String>> = BTreeMap::new();
    for (key, objects) in grouped {
        let lines = parts.entry(key).or_default();
        for (object, (privileges, why)) in objects {
            let what = format!("{} ON {}", privileges.join(", "), object.sql());
            lines.push(if revoke {
                format!("REVOKE {what} FROM {role};")
            } else {
                format!("GRANT {what} TO {role};  -- {}", why.into_iter().collect::<Vec<_>>().join(", "))
            });
        }
    }
    if let Some((schema, owner)) = &needs.router {
        let (verb, to) = if revoke { ("REVOKE", "FROM") } else { ("GRANT", "TO") };
        let lines = parts.entry((false, owner.as_str())).or_default();
        lines.push(format!("-- and on what a later `install` (an upgrade) adds to {schema}"));
        for what in ["SELECT, INSERT, UPDATE, DELETE ON TABLES", "USAGE ON SEQUENCES"] {
            lines.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} {verb} {what} {to} {role};"
            ));
        }
    }
    let mut out = String::new();
    let name = role.trim_matches('"');
    let verb = if revoke { "withdraws what" } else { "is what" };
    let _ = writeln!(out, "-- oppty-router: this {verb} the daemon's role {role} needs in database {db},");
    let _ = writeln!(out, "-- computed from {} and this database's catalog.", cfg.path.display());
    let _ = writeln!(
        out,
        "-- Each part is run by the role it names (the owner of what it grants), or all of it by a superuser:"
    );
    let flag = if revoke { " --revoke" } else { "" };
    let _ = writeln!(out, "--   oppty-router grants{flag} {name} | psql -v ON_ERROR_STOP=1 -d {db}");
    if !revoke {
        let _ = writeln!(out, "-- `oppty-router grants --revoke {name}` prints the statements that withdraw them.");
        if needs.router.is_none() {
            let _ = writeln!(
                out,
                "-- the schema {} does not exist yet: run `oppty-router install` first, then print these grants again",
                cfg.router.schema.quoted()
            );
        }
    }
    for (i, ((is_db, owner), lines)) in parts.iter().enumerate() {
        let who = if *is_db { format!("{owner} (the database owner)") } else { owner.to_string() };
        let _ = writeln!(out, "\n-- part {}: as {who}, or a superuser", i + 1);
        let _ = writeln!(out, "BEGIN;");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = writeln!(out, "COMMIT;");
    }
    for note in needs.notes.iter().filter(|_| !revoke) {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// Which privileges the connected role lacks for the daemon's statements under this mapping, each
/// as the GRANT that fixes it with what needs it. Empty for a superuser. Runs in a transaction of
/// its own, rolled back.
pub async fn lacking(client: &Client, cfg: &Config, sql: &CrmSql) -> Result<Vec<String>, GrantsError> {
    if is_superuser(client).await?.is_some() {
        return Ok(Vec::new());
    }
    client.batch_execute("BEGIN").await?;
    let found = lacking_in(client, cfg, sql).await;
    client.batch_execute("ROLLBACK").await?;
    found
}

async fn lacking_in(client: &Client, cfg: &Config, sql: &CrmSql) -> Result<Vec<String>, GrantsError> {
    let needs = needs::needs(client, cfg, sql).await?;
    let me: String = client.query_one("SELECT quote_ident(current_user) AS me", &[]).await?.try_get("me")?;
    let mut out = Vec::new();
    for n in &needs.list {
        if !holds(client, n).await? {
            let why = n.why.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
            out.push(format!("GRANT {} TO {me};  -- {why}; run as {} or a superuser", n.what(), n.owner));
        }
    }
    Ok(out)
}

/// Whether the connected role holds a need (a column privilege: on each of its columns).
async fn holds<C: GenericClient>(c: &C, n: &Need) -> Result<bool, tokio_postgres::Error> {
    let p = n.privilege;
    let (sql, name) = match &n.object {
        Object::Database(_) => {
            let row = c.query_one("SELECT has_database_privilege(current_database(), $1) AS ok", &[&p]).await?;
            return row.try_get("ok");
        }
        Object::Schema(s) => ("SELECT has_schema_privilege($1::text::regnamespace::oid, $2) AS ok", s.clone()),
        Object::Sequence(s) => ("SELECT has_sequence_privilege($1::text::regclass, $2) AS ok", s.clone()),
        Object::Function(f) => ("SELECT has_function_privilege($1::text::regprocedure, $2) AS ok", f.clone()),
        Object::Table(t) if n.columns.is_empty() => {
            ("SELECT has_table_privilege($1::text::regclass, $2) AS ok", t.clone())
        }
        Object::Table(t) => {
            let cols: Vec<String> = n.columns.iter().cloned().collect();
            let row = c
                .query_one(
                    "SELECT bool_and(has_column_privilege($1::text::regclass, a.attnum, $3)) AS ok FROM pg_attribute a \
                     WHERE a.attrelid = $1::text::regclass AND quote_ident(a.attname) = ANY($2::text[])",
                    &[t, &cols, &p],
                )
                .await?;
            return Ok(row.try_get::<_, Option<bool>>("ok")?.unwrap_or(false));
        }
    };
    c.query_one(sql, &[&name, &p]).await?.try_get("ok")
}

/// Whether the session's role is a superuser (the daemon should not be: it gets the grants it needs).
pub async fn is_superuser(client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    let sql = "SELECT current_user::text AS name, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user";
    let row = client.query_one(sql, &[]).await?;
    Ok(if row.try_get("superuser")? { Some(row.try_get("name")?) } else { None })
}
