//! The statements the daemon runs against the CRM's tables, built from the mapping and checked
//! against the live database.
//!
//! Owns reading the catalog (does each table and column exist, what type is each key) and the SQL
//! text of the per-batch statements: context, write-back, load recount. Identifiers are quoted by
//! `ident`; the only SQL fragments are the ops-owned ones of the daemon config; every value is a
//! bound parameter. Problems are reported by the config key they come from.

use tokio_postgres::Client;

mod directory;
mod fit;
pub mod queue;
mod statements;
mod territories;

pub use crate::sql_text::bind_named;
pub use directory::{directory_for, load_directory, DirectoryError};
pub use fit::{check_directory_users, check_rule_values, RuleValuesError};
pub use statements::prepare;

use crate::config::Config;
use crate::ident::{Ident, TableName};

/// A problem found by checking the mapping against the database, named by its config key.
#[derive(Debug, Clone)]
pub struct MappingProblem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for MappingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("the mapping does not match the database:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Mapping(Vec<MappingProblem>),
    #[error("{}", crate::db::describe(.0))]
    Sql(#[from] tokio_postgres::Error),
}

/// How the owner is written back, as prepared SQL.
#[derive(Debug, Clone)]
pub enum WriteSql {
    /// `$1` ids, `$2` owners, `$3` teams (text arrays); writes only rows still unowned
    /// ([`unowned_pred`]) and returns the `id` and `owner` of each row written.
    Batch(String),
    /// Run once per assignment; `params[n]` says which of [`WRITE_PARAMS`] `$n+1` takes.
    PerRow { sql: String, params: Vec<usize> },
}

/// The reclaim write, conditional on the CRM still showing the owner the router assigned.
#[derive(Debug, Clone)]
pub enum Reassign {
    /// `$1` ids, `$2` new owners, `$3` teams, `$4` the owners they must still have, `$5`/`$6`
    /// whether any activity / owner edits count as interactions; returns the `id` and `owner` of
    /// each row written.
    Batch(String),
    /// `write_back.reclaim_statement`, once per opportunity; `params` as in [`WriteSql::PerRow`].
    PerRow { sql: String, params: Vec<usize> },
}

crate::db::row::typed_row! {
    /// One assignment as the CRM records it (`CrmSql::assigned_since`): whose, and when (seconds
    /// since the epoch).
    pub struct CrmAssigned {
        pub owner: String,
        pub at: i64,
    }
}

crate::db::row::typed_row! {
    /// An owner's open load (`CrmSql::recount`, `CrmSql::full_count`).
    pub struct Load {
        pub owner: String,
        pub open: i64,
    }
}

/// Each owner's open opportunities now, counted as the leader counts them when it starts
/// (`CrmSql::full_count`): what the console shows beside each member's caps.
pub async fn open_loads(client: &Client, sql: &CrmSql) -> Result<Vec<Load>, tokio_postgres::Error> {
    use crate::db::row::FromRow as _;
    Load::from_rows(&client.query(&sql.full_count, &[]).await?)
}

/// The statements of one mapping on one database.
#[derive(Debug, Clone)]
pub struct CrmSql {
    /// `$1` text[] of ids → `id`, `owner`, `open`, `deleted`, `opp`, `pipeline`, then the fields
    /// (all text but the flags).
    pub context: String,
    /// The first five columns of `context` alone (no pipeline, no fields): what a change needs,
    /// so a field expression that fails for a row does not fail its owner's changes too.
    pub state: String,
    /// `context` locking the rows it returns and skipping those locked elsewhere; `None` when
    /// the daemon's role may not lock them (no UPDATE privilege: it writes through a function).
    pub context_locking: Option<String>,
    pub write: WriteSql,
    /// Reclaim: how an opportunity is handed on; `None` with a custom write-back statement and no
    /// `write_back.reclaim_statement` (the sweeper then reclaims nothing, and says so).
    pub reassign: Option<Reassign>,
    /// `$1` text[] of owners → their [`Load`]s.
    pub recount: String,
    /// → every owner's [`Load`].
    pub full_count: String,
    /// `$1` text[] of owners, `$2` timestamptz → every [`CrmAssigned`] of theirs since then, by
    /// `opportunity.assigned_at` (else `created_at`): what caps with `count = "crm"` count, manual
    /// assignments included. `None` when neither is mapped.
    pub assigned_since: Option<String>,
    /// `$1` text[] → the same array cast to the owner column's type (fails on a bad id).
    pub owner_cast: String,
    /// `$1` text[] → the same array cast to the team column's type, when a team column is mapped.
    pub team_cast: Option<String>,
    /// The users table the owner column references, and the query naming which of `$1` (text[])
    /// are not users there.
    pub owner_users: Option<(String, String)>,
    pub unowned_values: Vec<String>,
    pub field_names: Vec<String>,
    /// How the owner column writes a user id as text (rule files' ids are read in that form).
    pub id_form: crate::rules::IdForm,
}

impl CrmSql {
    /// Whether an owner value means "nobody": none, or one of `opportunity.unowned_values` (a
    /// queue user). Whether a row is unowned is the CRM's predicate's to say ([`unowned_pred`],
    /// read with the row).
    pub fn unowned(&self, owner: Option<&str>) -> bool {
        owner.is_none_or(|o| self.unowned_values.iter().any(|u| u == o))
    }
}

/// Types are spliced as casts; they come from `format_type` in the catalog, and are checked anyway.
pub fn safe_type(t: &str) -> bool {
    !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || " _(),.\"[]".contains(c))
}

/// A column's type as `format_type` writes it (`None` when there is no such column).
pub async fn catalog_type(
    client: &Client,
    table: &TableName,
    col: &Ident,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT format_type(a.atttypid, a.atttypmod) AS t FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table.quoted(), &col.as_str()],
        )
        .await?;
    row.map(|r| r.try_get("t")).transpose()
}

/// [`catalog_type`], checked safe to splice as a cast; a missing column or an odd type becomes a
/// problem under `key`.
async fn column_type(
    client: &Client,
    table: &TableName,
    col: &Ident,
    key: &str,
    problems: &mut Vec<MappingProblem>,
) -> Result<Option<String>, tokio_postgres::Error> {
    match catalog_type(client, table, col).await? {
        Some(t) => {
            if safe_type(&t) {
                Ok(Some(t))
            } else {
                problems
                    .push(MappingProblem { key: key.into(), message: format!("column type `{t}` is not supported") });
                Ok(None)
            }
        }
        None => {
            let cols: Vec<String> = client
                .query(
                    "SELECT attname::text AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 \
                     AND NOT attisdropped ORDER BY attnum",
                    &[&table.quoted()],
                )
                .await?
                .iter()
                .map(|r| r.try_get("name"))
                .collect::<Result<_, _>>()?;
            problems.push(MappingProblem {
                key: key.into(),
                message: format!(
                    "column `{}` does not exist in {} (its columns: {}); names are case-sensitive",
                    col.as_str(),
                    table.plain(),
                    cols.join(", ")
                ),
            });
            Ok(None)
        }
    }
}

async fn table_exists(
    client: &Client,
    table: &TableName,
    key: &str,
    problems: &mut Vec<MappingProblem>,
) -> Result<bool, tokio_postgres::Error> {
    let row = client.query_one("SELECT to_regclass($1) IS NOT NULL AS found", &[&table.quoted()]).await?;
    let ok: bool = row.try_get("found")?;
    if !ok {
        problems.push(MappingProblem {
            key: key.into(),
            message: format!("table {} does not exist (or this user cannot see it)", table.plain()),
        });
    }
    Ok(ok)
}

/// Prepare `sql`; a failure becomes a problem under `key`.
/// Prepare a statement of the mapping: a failure is a problem of `key`, unless it is about the
/// session (a lost connection, a busy server, a refusal): that is returned, and retried or
/// reported as such, never as a wrong mapping.
async fn try_prepare(
    client: &Client,
    sql: &str,
    key: &str,
    problems: &mut Vec<MappingProblem>,
) -> Result<(), tokio_postgres::Error> {
    match client.prepare(sql).await {
        Ok(_) => Ok(()),
        Err(e) if client.is_closed() || crate::db::kind_of(&e).passes() => Err(e),
        Err(e) => {
            problems.push(MappingProblem { key: key.into(), message: crate::db::message(&e) });
            Ok(())
        }
    }
}

/// Prepare an ops write statement (`write_back.statement`, `reclaim_statement`): it must say
/// what it wrote, as a text column `owner` (`RETURNING o."ownerId"::text AS owner`), so that the
/// audit, the loads and `explain` follow what the CRM now holds, never a row count.
async fn prepare_write(
    client: &Client,
    sql: &str,
    key: &str,
    problems: &mut Vec<MappingProblem>,
) -> Result<(), tokio_postgres::Error> {
    let stmt = match client.prepare(sql).await {
        Ok(stmt) => stmt,
        Err(e) if client.is_closed() || crate::db::kind_of(&e).passes() => return Err(e),
        Err(e) => {
            problems.push(MappingProblem { key: key.into(), message: crate::db::message(&e) });
            return Ok(());
        }
    };
    if let Some(message) = write_returns(stmt.columns()) {
        problems.push(MappingProblem { key: key.into(), message });
    }
    Ok(())
}

/// What is wrong with a write statement's result columns, if anything: it needs a text `owner`.
fn write_returns(columns: &[tokio_postgres::Column]) -> Option<String> {
    use tokio_postgres::types::Type;
    let fix = "end it with `RETURNING <the owner column>::text AS owner` (the owner it set, one row per row it \
               wrote), so that the audit records what was written, not a row count";
    match columns.iter().find(|c| c.name() == "owner") {
        None if columns.is_empty() => Some(format!("returns nothing; {fix}")),
        None => {
            let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
            Some(format!("returns no `owner` column (it returns {}); {fix}", names.join(", ")))
        }
        Some(c) if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(c.type_()) => None,
        Some(c) => Some(format!("returns `owner` as {}; cast it: `RETURNING …::text AS owner`", c.type_())),
    }
}

/// The one column an ops-written query returns: its type, or a problem with it. A lost
/// connection or a refusal is not a problem of the query: it is returned as an error (the
/// session is retried, not stopped as misconfigured).
async fn row_sql_type(
    client: &Client,
    sql: &str,
    key: &str,
    p: &mut Vec<MappingProblem>,
) -> Result<Option<String>, tokio_postgres::Error> {
    match client.prepare(sql).await {
        Ok(stmt) if stmt.columns().len() == 1 => Ok(stmt.columns().first().map(|c| c.type_().name().to_string())),
        Ok(stmt) => {
            p.push(MappingProblem {
                key: key.into(),
                message: format!("returns {} columns; return one", stmt.columns().len()),
            });
            Ok(None)
        }
        Err(e)
            if client.is_closed()
                || crate::db::kind_of(&e).passes()
                || crate::db::kind_of(&e) == crate::db::ErrorKind::Refused =>
        {
            Err(e)
        }
        Err(e) => {
            p.push(MappingProblem { key: key.into(), message: crate::db::message(&e) });
            Ok(None)
        }
    }
}

/// `[[related]]` tables: they exist, their link column (typed like the id: checked with the
/// activity links) or query over `r` returns one column, their type column exists.
async fn check_related(
    client: &Client,
    cfg: &Config,
    links: &mut Vec<(String, Option<String>, Option<String>)>,
    p: &mut Vec<MappingProblem>,
) -> Result<(), tokio_postgres::Error> {
    for (i, r) in cfg.related.iter().enumerate() {
        let key = format!("related[{i}]");
        if !table_exists(client, &r.table, &format!("{key}.table"), p).await? {
            continue;
        }
        if let Some((col, _)) = &r.filter {
            column_type(client, &r.table, col, &format!("{key}.type_column"), p).await?;
        }
        match &r.opportunity {
            crate::config::RowValue::Column(c) => {
                let t = column_type(client, &r.table, c, &format!("{key}.opportunity"), p).await?;
                links.push((key, t, None));
            }
            crate::config::RowValue::Sql(q) => {
                let sql = format!("SELECT q.* FROM {} r, LATERAL ({q}) AS q LIMIT 0", r.table.quoted());
                let t = row_sql_type(client, &sql, &format!("{key}.opportunity.sql"), p).await?;
                links.push((key, t, None));
            }
        }
    }
    Ok(())
}

/// "Unowned", the one definition in SQL, over the row `row` (the table's alias `o`, or `NEW` in a
/// trigger body): `opportunity.unowned_when` (written over `o`), else the owner column NULL or one
/// of `unowned_values` (the config's values, as literals). A predicate that yields NULL says
/// "owned": a row is written only when the CRM's own words say nobody has it.
pub(crate) fn unowned_pred(cfg: &Config, row: &str) -> String {
    let o = &cfg.opportunity;
    match &o.unowned_when {
        Some(w) if row == "o" => format!("coalesce(({w})::bool, false)"),
        Some(w) => format!("coalesce((SELECT ({w})::bool FROM (SELECT {row}.*) AS o), false)"),
        None => {
            let owner = o.owner.quoted();
            let values = crate::ident::text_array(&o.unowned_values);
            format!("({row}.{owner} IS NULL OR {row}.{owner}::text = ANY ({values}))")
        }
    }
}

/// Whether the row `o` would be unowned were its owner column cleared: what a reclaim checks
/// besides the owner it hands on, so that an assignment a person made in another column that
/// `opportunity.unowned_when` reads is never taken. Always true without `unowned_when`.
pub(crate) fn unowned_but_owner_pred(cfg: &Config) -> String {
    let o = &cfg.opportunity;
    match &o.unowned_when {
        None => "true".into(),
        Some(w) => format!(
            "coalesce((SELECT ({w})::bool FROM jsonb_populate_record(o, jsonb_build_object({}::text, NULL)) AS o), false)",
            crate::ident::literal(o.owner.as_str())
        ),
    }
}

pub(crate) fn open_pred(cfg: &Config) -> String {
    cfg.opportunity.open_when.as_ref().map(|s| format!("({s})")).unwrap_or_else(|| "true".into())
}

pub(crate) fn where_pred(cfg: &Config) -> String {
    cfg.opportunity.where_.as_ref().map(|s| format!("({s})")).unwrap_or_else(|| "true".into())
}

pub(crate) fn deleted_pred(cfg: &Config) -> String {
    cfg.opportunity.deleted_when.as_ref().map(|s| format!("({s})")).unwrap_or_else(|| "false".into())
}

pub use crate::config::WRITE_PARAMS;

/// Opportunity ids as the router stores them: the CRM's text form of the id column's type (a uuid
/// in lower case, a char(n) without its padding), whatever form they were typed or pasted in. A
/// value that does not fit the type is kept as typed (trimmed). Run outside a transaction: a cast
/// that fails is tried and dropped.
pub async fn stored_ids(
    client: &Client,
    cfg: &crate::config::Config,
    ids: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let o = &cfg.opportunity;
    let trimmed = ids.iter().map(|i| i.trim().to_string());
    let Some(t) = catalog_type(client, &o.table, &o.id).await?.filter(|t| safe_type(t)) else {
        return Ok(trimmed.collect());
    };
    let cast = format!("SELECT $1::text::{t}::text AS id");
    let mut out = Vec::with_capacity(ids.len());
    for id in trimmed {
        match client.query_one(&cast, &[&id]).await {
            Ok(r) => out.push(r.try_get("id")?),
            Err(_) => out.push(id),
        }
    }
    Ok(out)
}
