//! The statements the daemon runs against the CRM's tables, built from the mapping and checked
//! against the live database.
//!
//! Owns reading the catalog (does each table and column exist, what type is each key) and the SQL
//! text of the per-batch statements: context, write-back, load recount. Identifiers are quoted by
//! `ident`; the only SQL fragments are the ops-owned ones of the daemon config; every value is a
//! bound parameter. Problems are reported by the config key they come from.

use tokio_postgres::Client;

mod fit;
pub use fit::{check_directory_users, check_rule_values, RuleValuesError};

use crate::config::{ActivityLink, Config, FieldSource, WriteBack};
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
    /// `$1` ids, `$2` owners, `$3` teams (text arrays), `$4` unowned placeholders; returns the ids
    /// actually written.
    Batch(String),
    /// Run once per assignment; `params[n]` says which of [`WRITE_PARAMS`] `$n+1` takes.
    PerRow { sql: String, params: Vec<usize> },
}

/// The reclaim write, conditional on the CRM still showing the owner the router assigned.
#[derive(Debug, Clone)]
pub enum Reassign {
    /// `$1` ids, `$2` new owners, `$3` teams, `$4` the owners they must still have, `$5`/`$6`
    /// whether any activity / owner edits count as interactions; returns the ids written.
    Batch(String),
    /// `write_back.reclaim_statement`, once per opportunity; `params` as in [`WriteSql::PerRow`].
    PerRow { sql: String, params: Vec<usize> },
}

/// The statements of one mapping on one database.
#[derive(Debug, Clone)]
pub struct CrmSql {
    /// `$1` text[] of ids → id, owner, is_open, is_deleted, is_opportunity, pipeline, fields… (all
    /// text but flags).
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
    /// `$1` text[] of owners → owner, open count.
    pub recount: String,
    /// → owner, open count, for every owner.
    pub full_count: String,
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
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table.quoted(), &col.as_str()],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
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
                    "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 \
                     AND NOT attisdropped ORDER BY attnum",
                    &[&table.quoted()],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
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
    let row = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()]).await?;
    let ok: bool = row.get(0);
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

pub(crate) fn open_pred(cfg: &Config) -> String {
    cfg.opportunity.open_when.as_ref().map(|s| format!("({s})")).unwrap_or_else(|| "true".into())
}

pub(crate) fn where_pred(cfg: &Config) -> String {
    cfg.opportunity.where_.as_ref().map(|s| format!("({s})")).unwrap_or_else(|| "true".into())
}

pub(crate) fn deleted_pred(cfg: &Config) -> String {
    cfg.opportunity.deleted_when.as_ref().map(|s| format!("({s})")).unwrap_or_else(|| "false".into())
}

/// Replace `:name` parameters with `($n::text)` (they are all sent as text), leaving `::casts`, quoted text and identifiers alone.
/// Returns the SQL and, for each `$n`, the index in `names` of the value it takes.
pub fn bind_named(sql: &str, names: &[&str]) -> Result<(String, Vec<usize>), String> {
    let mut used: Vec<usize> = Vec::new();
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            let q = c;
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                if chars[i] == q {
                    break;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == ':' {
            if i + 1 < chars.len() && chars[i + 1] == ':' {
                out.push_str("::");
                i += 2;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    out.push(chars[i]);
                    i += 1;
                }
                continue;
            }
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            if j > start {
                let name: String = chars[start..j].iter().collect();
                match names.iter().position(|n| *n == name) {
                    Some(k) => {
                        let n = match used.iter().position(|u| *u == k) {
                            Some(n) => n,
                            None => {
                                used.push(k);
                                used.len() - 1
                            }
                        };
                        out.push_str(&format!("(${}::text)", n + 1));
                    }
                    None => {
                        return Err(format!(
                            "unknown parameter `:{name}`; use {}",
                            names.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", ")
                        ))
                    }
                }
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Ok((out, used))
}

/// The named parameters of a custom write-back statement, in `$n` order.
pub const WRITE_PARAMS: &[&str] = &["opportunity_id", "owner", "team", "previous_owner"];

/// Check the mapping against the database and build the statements. Every problem is reported.
pub async fn prepare(client: &Client, cfg: &Config) -> Result<CrmSql, CrmError> {
    let o = &cfg.opportunity;
    let mut p = Vec::new();
    if !table_exists(client, &o.table, "opportunity.table", &mut p).await? {
        return Err(CrmError::Mapping(p));
    }
    let table = o.table.quoted();
    let id_t = column_type(client, &o.table, &o.id, "opportunity.id", &mut p).await?;
    let owner_t = column_type(client, &o.table, &o.owner, "opportunity.owner", &mut p).await?;
    let team_t = match &o.team {
        Some(t) => column_type(client, &o.table, t, "opportunity.team", &mut p).await?,
        None => None,
    };
    for (i, c) in o.watch_columns.iter().enumerate() {
        column_type(client, &o.table, c, &format!("opportunity.watch_columns[{i}]"), &mut p).await?;
    }
    let edited_by_t = match &o.edited_by {
        Some(c) => column_type(client, &o.table, c, "opportunity.edited_by", &mut p).await?,
        None => None,
    };
    if let Some(c) = &o.created_at {
        if let Some(t) = column_type(client, &o.table, c, "opportunity.created_at", &mut p).await? {
            if !t.starts_with("timestamp") && t != "date" {
                p.push(MappingProblem {
                    key: "opportunity.created_at".into(),
                    message: format!("column `{}` is {t}; it must be a timestamp or date", c.as_str()),
                });
            }
        }
    }
    let mut field_exprs = Vec::new();
    let mut sources: Vec<(String, &FieldSource)> = Vec::new();
    if let Some(pl) = &o.pipeline {
        sources.push(("opportunity.pipeline".into(), pl));
    }
    for f in &o.fields {
        sources.push((format!("opportunity.fields.{}", f.name), &f.source));
    }
    // Naive timestamps: a field of that type is read in the configured zone (the session's), and
    // handed to the rules with its offset.
    let mut naive: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (key, src) in &sources {
        let t = match src {
            FieldSource::Column(c) => column_type(client, &o.table, c, key, &mut p).await?,
            FieldSource::Sql(_) => {
                let sql = format!("SELECT ({}) FROM {table} o LIMIT 0", src.expr());
                row_sql_type(client, &sql, &format!("{key}.sql"), &mut p).await?
            }
        };
        if matches!(t.as_deref(), Some("timestamp without time zone" | "timestamp")) {
            naive.insert(key.clone());
        }
    }
    for f in &o.fields {
        let key = format!("opportunity.fields.{}", f.name);
        if cfg.database.naive_timestamps.is_some() && naive.contains(&key) {
            field_exprs.push(format!("(({})::timestamptz)::text", f.source.expr()));
        } else {
            field_exprs.push(format!("({})::text", f.source.expr()));
        }
    }
    let open = open_pred(cfg);
    let deleted = deleted_pred(cfg);
    let is_opp = where_pred(cfg);
    for (pred, key) in
        [(&open, "opportunity.open_when"), (&deleted, "opportunity.deleted_when"), (&is_opp, "opportunity.where")]
    {
        match client.prepare(&format!("SELECT {pred} FROM {table} o LIMIT 0")).await {
            Ok(stmt) => {
                if let Some(col) = stmt.columns().first() {
                    if col.type_() != &tokio_postgres::types::Type::BOOL {
                        p.push(MappingProblem {
                            key: key.into(),
                            message: format!(
                                "is of type {}; write a condition (true/false), e.g. `o.status IN ('new', 'open')`",
                                col.type_()
                            ),
                        });
                    }
                }
            }
            Err(e) if client.is_closed() || crate::db::kind_of(&e).passes() => return Err(e.into()),
            Err(e) => {
                let msg = crate::db::message(&e);
                p.push(MappingProblem { key: key.into(), message: msg });
            }
        }
    }

    let mut activity_types = Vec::new();
    for (i, a) in cfg.activities.iter().enumerate() {
        let key = format!("activity[{i}]");
        if !table_exists(client, &a.table, &format!("{key}.table"), &mut p).await? {
            continue;
        }
        let link_t = match &a.link {
            ActivityLink::Column(c) => column_type(client, &a.table, c, &format!("{key}.opportunity"), &mut p).await?,
            ActivityLink::Polymorphic { type_column, id_column, .. } => {
                column_type(client, &a.table, type_column, &format!("{key}.type_column"), &mut p).await?;
                column_type(client, &a.table, id_column, &format!("{key}.opportunity"), &mut p).await?
            }
            ActivityLink::Sql { sql, filter } => {
                if let Some((c, _)) = filter {
                    column_type(client, &a.table, c, &format!("{key}.type_column"), &mut p).await?;
                }
                let q = format!("SELECT q.* FROM {} r, LATERAL ({sql}) AS q LIMIT 0", a.table.quoted());
                row_sql_type(client, &q, &format!("{key}.opportunity.sql"), &mut p).await?
            }
        };
        let actor_t = match &a.actor {
            crate::config::RowValue::Column(c) => {
                column_type(client, &a.table, c, &format!("{key}.actor"), &mut p).await?
            }
            crate::config::RowValue::Sql(e) => {
                let q = format!("SELECT ({e}) FROM {} r LIMIT 0", a.table.quoted());
                row_sql_type(client, &q, &format!("{key}.actor.sql"), &mut p).await?
            }
        };
        activity_types.push((key.clone(), link_t, actor_t));
        if let Some(at) = &a.at {
            if let Some(t) = column_type(client, &a.table, at, &format!("{key}.at"), &mut p).await? {
                if !t.starts_with("timestamp") && t != "date" {
                    p.push(MappingProblem {
                        key: format!("{key}.at"),
                        message: format!("column `{}` is {t}; it must be a timestamp or date", at.as_str()),
                    });
                }
            }
        }
    }

    let (Some(id_t), Some(owner_t)) = (id_t, owner_t) else {
        return Err(CrmError::Mapping(p));
    };
    check_related(client, cfg, &mut activity_types, &mut p).await?;
    let types =
        fit::MappedTypes { id: &id_t, owner: &owner_t, edited_by: edited_by_t.as_deref(), activities: &activity_types };
    fit::check(client, cfg, &types, &mut p).await?;
    if o.team.is_some() && team_t.is_none() {
        return Err(CrmError::Mapping(p));
    }
    let id = o.id.quoted();
    let owner = o.owner.quoted();
    let pipeline = o.pipeline.as_ref().map(|f| format!("({})::text", f.expr())).unwrap_or_else(|| "NULL::text".into());
    let flags = format!(
        "coalesce(({open})::bool, false) AS open, coalesce(({deleted})::bool, false) AS deleted, \
         coalesce(({is_opp})::bool, false) AS opp"
    );
    let wanted = format!("o.{id} = ANY($1::text[]::{id_t}[])");
    // The pipeline and fields only of rows that could be routed (open, not deleted, an
    // opportunity): a field failing for a row does not fail its closing. `OFFSET 0` keeps the
    // flags computed once per row (not copied into each CASE).
    let mut context =
        format!("SELECT o.{id}::text, o.{owner}::text, s.open, s.deleted, s.opp, CASE WHEN s.live THEN {pipeline} END");
    for f in &field_exprs {
        context.push_str(&format!(", CASE WHEN s.live THEN {f} END"));
    }
    context.push_str(&format!(
        " FROM {table} o CROSS JOIN LATERAL (SELECT f.*, f.open AND NOT f.deleted AND f.opp AS live \
         FROM (SELECT {flags} OFFSET 0) f) s WHERE {wanted}"
    ));
    let state = format!("SELECT o.{id}::text, o.{owner}::text, {flags} FROM {table} o WHERE {wanted}");
    // Rows to route are locked as they are read, skipping any a CRM transaction holds: routing
    // never waits on a person's open transaction (those rows are routed again shortly). Locking
    // needs UPDATE on a column; a role writing through a function may have none.
    let may_lock: bool =
        client.query_one("SELECT has_any_column_privilege($1::text::regclass, 'UPDATE')", &[&table]).await?.get(0);
    let context_locking = may_lock.then(|| format!("{context} ORDER BY o.{id} FOR NO KEY UPDATE OF o SKIP LOCKED"));

    let mut reassign = None;
    let write = match &cfg.write_back {
        WriteBack::Batch { set } => {
            let mut sets = vec![format!("{owner} = u.owner::{owner_t}")];
            if let (Some(team), Some(tt)) = (&o.team, &team_t) {
                let q = team.quoted();
                sets.push(format!("{q} = coalesce(u.team::{tt}, o.{q})"));
            }
            for (col, expr) in set {
                column_type(client, &o.table, col, &format!("write_back.set.{}", col.as_str()), &mut p).await?;
                sets.push(format!("{} = ({expr})", col.quoted()));
            }
            let sql = format!(
                "UPDATE {table} AS o SET {} FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, owner, team) \
                 WHERE o.{id} = u.id::{id_t} AND (o.{owner} IS NULL OR o.{owner}::text = ANY($4::text[])) \
                 RETURNING o.{id}::text",
                sets.join(", ")
            );
            try_prepare(client, &sql, "write_back.set", &mut p).await?;
            // Reclaim: only where the CRM still shows the owner the router assigned, and no
            // interaction that counts (u.anyone: any activity; u.edits: owner edits) is queued.
            let rs = cfg.router.schema.quoted();
            let reassign_sql = format!(
                "UPDATE {table} AS o SET {} \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::bool[]) AS u(id, owner, team, old, anyone, edits) \
                 WHERE o.{id} = u.id::{id_t} AND o.{owner}::text = u.old \
                 AND NOT EXISTS (SELECT 1 FROM {rs}.events e WHERE e.opp_id = u.id \
                   AND ((e.kind = 'activity' AND (u.anyone OR e.actor = u.old)) OR (e.kind = 'edit' AND u.edits AND e.actor = u.old))) \
                 RETURNING o.{id}::text",
                sets.join(", ")
            );
            // It reads the router's queue: checkable once `install` has created it.
            let installed: bool =
                client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("{rs}.events")]).await?.get(0);
            if installed {
                try_prepare(client, &reassign_sql, "write_back.set", &mut p).await?;
            }
            reassign = Some(Reassign::Batch(reassign_sql));
            WriteSql::Batch(sql)
        }
        WriteBack::Statement { sql: s, reclaim } => {
            if let Some(r) = reclaim {
                match bind_named(r, WRITE_PARAMS) {
                    Ok((sql, params)) => {
                        try_prepare(client, &sql, "write_back.reclaim_statement", &mut p).await?;
                        reassign = Some(Reassign::PerRow { sql, params });
                    }
                    Err(e) => p.push(MappingProblem { key: "write_back.reclaim_statement".into(), message: e }),
                }
            }
            match bind_named(s, WRITE_PARAMS) {
                Ok((sql, params)) => {
                    try_prepare(client, &sql, "write_back.statement", &mut p).await?;
                    WriteSql::PerRow { sql, params }
                }
                Err(e) => {
                    p.push(MappingProblem { key: "write_back.statement".into(), message: e });
                    WriteSql::PerRow { sql: String::new(), params: Vec::new() }
                }
            }
        }
    };

    let recount = format!(
        "SELECT o.{owner}::text, count(*)::int8 FROM {table} o WHERE o.{owner} = ANY($1::text[]::{owner_t}[]) \
         AND coalesce(({open})::bool, false) AND NOT coalesce(({deleted})::bool, false) \
         AND coalesce(({is_opp})::bool, false) GROUP BY 1"
    );
    let full_count = format!(
        "SELECT o.{owner}::text, count(*)::int8 FROM {table} o WHERE o.{owner} IS NOT NULL \
         AND coalesce(({open})::bool, false) AND NOT coalesce(({deleted})::bool, false) \
         AND coalesce(({is_opp})::bool, false) GROUP BY 1"
    );
    let owner_cast = format!("SELECT $1::text[]::{owner_t}[]");
    let team_cast = team_t.as_ref().map(|t| format!("SELECT $1::text[]::{t}[]"));
    let owner_users = fit::owner_reference(client, cfg, &owner_t).await?;
    if p.is_empty() {
        try_prepare(client, &context, "opportunity (context query)", &mut p).await?;
        try_prepare(client, &state, "opportunity (state query)", &mut p).await?;
        if let Some(c) = &context_locking {
            try_prepare(client, c, "opportunity (context query)", &mut p).await?;
        }
        try_prepare(client, &recount, "opportunity (load recount)", &mut p).await?;
    }
    if !p.is_empty() {
        return Err(CrmError::Mapping(p));
    }
    Ok(CrmSql {
        context,
        context_locking,
        state,
        write,
        reassign,
        recount,
        full_count,
        owner_cast,
        team_cast,
        owner_users,
        unowned_values: o.unowned_values.clone(),
        field_names: o.fields.iter().map(|f| f.name.clone()).collect(),
        id_form: crate::rules::IdForm::of_type(&owner_t),
    })
}

/// A directory query that failed: what the admin reads, and, when the server failed it, the kind
/// of that error (a lost connection is not a wrong query).
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct DirectoryError {
    pub problem: MappingProblem,
    pub kind: Option<crate::db::ErrorKind>,
}

/// Run the directory queries of the daemon config: who is active, who is in which team, KPIs.
pub async fn load_directory(
    client: &Client,
    d: &crate::config::DirectoryConfig,
) -> Result<crate::rules::Directory, DirectoryError> {
    let run = |key: &'static str, sql: &str| {
        let sql = sql.to_string();
        async move {
            client.query(&sql, &[]).await.map_err(|e| DirectoryError {
                problem: MappingProblem {
                    key: key.into(),
                    message: e
                        .as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| crate::db::describe(&e)),
                },
                kind: Some(crate::db::kind_of(&e)),
            })
        }
    };
    let bad = |key: &str, want: &str| DirectoryError {
        problem: MappingProblem { key: key.into(), message: format!("must return {want}") },
        kind: None,
    };
    let mut out = crate::rules::Directory { memberships_from_crm: d.team_members.is_some(), ..Default::default() };
    if let Some(sql) = &d.active_members {
        let mut set = std::collections::HashSet::new();
        for r in run("directory.active_members", sql).await? {
            let id: Option<String> =
                r.try_get(0).map_err(|_| bad("directory.active_members", "one text column (the member id)"))?;
            set.extend(id);
        }
        out.active = Some(set);
    }
    if let Some(sql) = &d.team_members {
        for r in run("directory.team_members", sql).await? {
            let (t, m): (Option<String>, Option<String>) = (
                r.try_get(0).map_err(|_| bad("directory.team_members", "two text columns (team crm id, member id)"))?,
                r.try_get(1).map_err(|_| bad("directory.team_members", "two text columns (team crm id, member id)"))?,
            );
            if let (Some(t), Some(m)) = (t, m) {
                if let Some(rule) = membership_rule(&r, &t, &m).map_err(|message| DirectoryError {
                    problem: MappingProblem { key: "directory.team_members".into(), message },
                    kind: None,
                })? {
                    out.membership_rules.push(rule);
                }
                out.memberships.push((t, m));
            }
        }
    }
    if let Some(sql) = &d.kpi {
        for r in run("directory.kpi", sql).await? {
            let (m, k): (Option<String>, Option<f64>) = (
                r.try_get(0)
                    .map_err(|_| bad("directory.kpi", "a text column (member id) and a float8 column (score)"))?,
                r.try_get(1)
                    .map_err(|_| bad("directory.kpi", "a text column (member id) and a float8 column (score)"))?,
            );
            if let (Some(m), Some(k)) = (m, k) {
                out.kpi.insert(m, k);
            }
        }
    }
    Ok(out)
}

/// The optional columns of a `directory.team_members` row: `paused` (boolean: opted out of
/// automatic assignment in this team), `max_assignments` (integer) and `per` (a duration such as
/// '30d', or an interval): a cap on assignments through this team.
fn membership_rule(
    r: &tokio_postgres::Row,
    team: &str,
    member: &str,
) -> Result<Option<crate::rules::MembershipRule>, String> {
    let col = |name: &str| r.columns().iter().position(|c| c.name() == name);
    let paused = match col("paused") {
        Some(i) => r.try_get::<_, Option<bool>>(i).map_err(|_| "column `paused` must be a boolean".to_string())?,
        None => None,
    }
    .unwrap_or(false);
    let max = match col("max_assignments") {
        Some(i) => r
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(i64::from))
            .or_else(|_| r.try_get::<_, Option<i64>>(i))
            .map_err(|_| "column `max_assignments` must be an integer".to_string())?,
        None => None,
    };
    let per: Option<String> = match col("per") {
        Some(i) => r.try_get(i).map_err(|_| "column `per` must be text (e.g. '30d'; cast an interval with ::text)")?,
        None => None,
    };
    let cap = match (max, per) {
        (None, _) => None,
        (Some(m), _) if m < 0 => return Err(format!("`max_assignments` is {m} for member {member} in team {team}")),
        (Some(_), None) => {
            return Err(format!(
                "member {member} in team {team} has `max_assignments` and no `per`: add a `per` column (e.g. '30d')"
            ))
        }
        (Some(m), Some(p)) => {
            let secs = crate::rules::parse_window(&p)
                .map_err(|e| format!("`per` = '{p}' for member {member} in team {team}: {e}"))?;
            Some((u32::try_from(m).unwrap_or(u32::MAX), secs))
        }
    };
    if !paused && cap.is_none() {
        return Ok(None);
    }
    Ok(Some(crate::rules::MembershipRule { team: team.into(), member: member.into(), paused, cap }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameters_become_positional_and_casts_survive() {
        let sql = "UPDATE t SET owner = :owner::int, note = 'at :owner' WHERE id = :opportunity_id::uuid";
        assert_eq!(
            bind_named(sql, WRITE_PARAMS).expect("binds"),
            (
                "UPDATE t SET owner = ($1::text)::int, note = 'at :owner' WHERE id = ($2::text)::uuid".to_string(),
                vec![1, 0]
            )
        );
        assert!(bind_named("SELECT :nope", WRITE_PARAMS).expect_err("unknown").contains(":opportunity_id"));
    }
}
