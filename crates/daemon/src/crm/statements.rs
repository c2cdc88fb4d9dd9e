//! Building the per-batch statements of one mapping on one database, step by step: the
//! opportunity table's columns and types, the field expressions, the open/deleted/opportunity
//! conditions, the activity tables, then the SQL text of the context, write-back, reclaim and
//! recount statements, each prepared once to prove it fits. Every problem is reported by its
//! config key, all at once.
//!
//! It must not run anything but catalog reads, casts and `PREPARE`.

use std::collections::HashSet;

use tokio_postgres::Client;

use super::{
    bind_named, check_related, column_type, deleted_pred, fit, open_pred, prepare_write, row_sql_type, table_exists,
    try_prepare, unowned_but_owner_pred, unowned_pred, where_pred, CrmError, CrmSql, MappingProblem, Reassign,
    WriteSql, WRITE_PARAMS,
};
use crate::config::{ActivityLink, Config, FieldSource, WriteBack};

/// The opportunity table's key columns' types (`format_type`), where they exist.
struct KeyTypes {
    id: Option<String>,
    owner: Option<String>,
    team: Option<String>,
    edited_by: Option<String>,
}

/// An activity table's config key, link column type, actor type.
type ActivityTypes = Vec<(String, Option<String>, Option<String>)>;

/// Check the mapping against the database and build the statements. Every problem is reported.
pub async fn prepare(client: &Client, cfg: &Config) -> Result<CrmSql, CrmError> {
    let o = &cfg.opportunity;
    let mut p = Vec::new();
    if !table_exists(client, &o.table, "opportunity.table", &mut p).await? {
        return Err(CrmError::Mapping(p));
    }
    let keys = key_types(client, cfg, &mut p).await?;
    let field_exprs = field_exprs(client, cfg, &mut p).await?;
    check_predicates(client, cfg, &mut p).await?;
    let mut activity_types = activity_types(client, cfg, &mut p).await?;
    let (Some(id_t), Some(owner_t)) = (keys.id.clone(), keys.owner.clone()) else {
        return Err(CrmError::Mapping(p));
    };
    check_related(client, cfg, &mut activity_types, &mut p).await?;
    let types = fit::MappedTypes {
        id: &id_t,
        owner: &owner_t,
        edited_by: keys.edited_by.as_deref(),
        activities: &activity_types,
    };
    fit::check(client, cfg, &types, &mut p).await?;
    if o.team.is_some() && keys.team.is_none() {
        return Err(CrmError::Mapping(p));
    }
    let (context, state) = context_sql(cfg, &id_t, &field_exprs);
    // Rows to route are locked as they are read, skipping any a CRM transaction holds: routing
    // never waits on a person's open transaction (those rows are routed again shortly). Locking
    // needs UPDATE on a column; a role writing through a function may have none.
    let table = o.table.quoted();
    let may_lock: bool = client
        .query_one("SELECT has_any_column_privilege($1::text::regclass, 'UPDATE') AS may", &[&table])
        .await?
        .try_get("may")?;
    let id = o.id.quoted();
    let context_locking = may_lock.then(|| format!("{context} ORDER BY o.{id} FOR NO KEY UPDATE OF o SKIP LOCKED"));
    let (write, reassign) = write_sql(client, cfg, &keys, &id_t, &owner_t, &mut p).await?;
    let (recount, full_count) = count_sql(cfg, &owner_t);
    let assigned_since = assigned_sql(cfg, &owner_t);
    let owner_users = fit::owner_reference(client, cfg, &owner_t).await?;
    if p.is_empty() {
        try_prepare(client, &context, "opportunity (context query)", &mut p).await?;
        try_prepare(client, &state, "opportunity (state query)", &mut p).await?;
        if let Some(c) = &context_locking {
            try_prepare(client, c, "opportunity (context query)", &mut p).await?;
        }
        try_prepare(client, &recount, "opportunity (load recount)", &mut p).await?;
        if let Some(a) = &assigned_since {
            try_prepare(client, a, "opportunity.assigned_at (the CRM's count for caps)", &mut p).await?;
        }
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
        assigned_since,
        owner_cast: format!("SELECT $1::text[]::{owner_t}[]"),
        team_cast: keys.team.as_ref().map(|t| format!("SELECT $1::text[]::{t}[]")),
        owner_users,
        unowned_values: o.unowned_values.clone(),
        field_names: o.fields.iter().map(|f| f.name.clone()).collect(),
        id_form: crate::rules::IdForm::of_type(&owner_t),
    })
}

/// The opportunity table's mapped columns: each exists; the key types; `created_at` a time.
async fn key_types(client: &Client, cfg: &Config, p: &mut Vec<MappingProblem>) -> Result<KeyTypes, CrmError> {
    let o = &cfg.opportunity;
    let id = column_type(client, &o.table, &o.id, "opportunity.id", p).await?;
    let owner = column_type(client, &o.table, &o.owner, "opportunity.owner", p).await?;
    let team = match &o.team {
        Some(t) => column_type(client, &o.table, t, "opportunity.team", p).await?,
        None => None,
    };
    for (i, c) in o.watch_columns.iter().enumerate() {
        column_type(client, &o.table, c, &format!("opportunity.watch_columns[{i}]"), p).await?;
    }
    let edited_by = match &o.edited_by {
        Some(c) => column_type(client, &o.table, c, "opportunity.edited_by", p).await?,
        None => None,
    };
    for (c, key) in [(&o.created_at, "opportunity.created_at"), (&o.assigned_at, "opportunity.assigned_at")] {
        let Some(c) = c else { continue };
        if let Some(t) = column_type(client, &o.table, c, key, p).await? {
            time_column(&t, c.as_str(), key, p);
        }
    }
    Ok(KeyTypes { id, owner, team, edited_by })
}

/// A column that must hold a moment: a timestamp or a date.
fn time_column(t: &str, column: &str, key: &str, p: &mut Vec<MappingProblem>) {
    if !t.starts_with("timestamp") && t != "date" {
        let message = format!("column `{column}` is {t}; it must be a timestamp or date");
        p.push(MappingProblem { key: key.into(), message });
    }
}

/// Each field (and the pipeline) as a text expression. A naive timestamp is read in the
/// configured zone (the session's) and handed to the rules with its offset.
async fn field_exprs(client: &Client, cfg: &Config, p: &mut Vec<MappingProblem>) -> Result<Vec<String>, CrmError> {
    let o = &cfg.opportunity;
    let table = o.table.quoted();
    let mut sources: Vec<(String, &FieldSource)> = Vec::new();
    if let Some(pl) = &o.pipeline {
        sources.push(("opportunity.pipeline".into(), pl));
    }
    for f in &o.fields {
        sources.push((format!("opportunity.fields.{}", f.name), &f.source));
    }
    let mut naive: HashSet<String> = HashSet::new();
    for (key, src) in &sources {
        let t = match src {
            FieldSource::Column(c) => column_type(client, &o.table, c, key, p).await?,
            FieldSource::Sql(_) => {
                let sql = format!("SELECT ({}) FROM {table} o LIMIT 0", src.expr());
                row_sql_type(client, &sql, &format!("{key}.sql"), p).await?
            }
        };
        if matches!(t.as_deref(), Some("timestamp without time zone" | "timestamp")) {
            naive.insert(key.clone());
        }
    }
    let exprs = o.fields.iter().map(|f| {
        let key = format!("opportunity.fields.{}", f.name);
        if cfg.database.naive_timestamps.is_some() && naive.contains(&key) {
            format!("(({})::timestamptz)::text", f.source.expr())
        } else {
            format!("({})::text", f.source.expr())
        }
    });
    Ok(exprs.collect())
}

/// `open_when`, `unowned_when`, `deleted_when` and `where` are conditions the database accepts.
async fn check_predicates(client: &Client, cfg: &Config, p: &mut Vec<MappingProblem>) -> Result<(), CrmError> {
    let table = cfg.opportunity.table.quoted();
    let unowned = cfg.opportunity.unowned_when.as_ref().map_or_else(|| "true".into(), |w| format!("({w})"));
    let preds = [
        (open_pred(cfg), "opportunity.open_when"),
        (unowned, "opportunity.unowned_when"),
        (deleted_pred(cfg), "opportunity.deleted_when"),
        (where_pred(cfg), "opportunity.where"),
    ];
    for (pred, key) in preds {
        match client.prepare(&format!("SELECT {pred} FROM {table} o LIMIT 0")).await {
            Ok(stmt) => {
                let Some(col) = stmt.columns().first() else { continue };
                if col.type_() != &tokio_postgres::types::Type::BOOL {
                    let message = format!(
                        "is of type {}; write a condition (true/false), e.g. `o.status IN ('new', 'open')`",
                        col.type_()
                    );
                    p.push(MappingProblem { key: key.into(), message });
                }
            }
            Err(e) if client.is_closed() || crate::db::kind_of(&e).passes() => return Err(e.into()),
            Err(e) => p.push(MappingProblem { key: key.into(), message: crate::db::message(&e) }),
        }
    }
    Ok(())
}

/// Each activity table: it exists, and the types of its link to the opportunity and its actor.
async fn activity_types(client: &Client, cfg: &Config, p: &mut Vec<MappingProblem>) -> Result<ActivityTypes, CrmError> {
    let mut out = Vec::new();
    for (i, a) in cfg.activities.iter().enumerate() {
        let key = format!("activity[{i}]");
        if !table_exists(client, &a.table, &format!("{key}.table"), p).await? {
            continue;
        }
        let link_t = match &a.link {
            ActivityLink::Column(c) => column_type(client, &a.table, c, &format!("{key}.opportunity"), p).await?,
            ActivityLink::Polymorphic { type_column, id_column, .. } => {
                column_type(client, &a.table, type_column, &format!("{key}.type_column"), p).await?;
                column_type(client, &a.table, id_column, &format!("{key}.opportunity"), p).await?
            }
            ActivityLink::Sql { sql, filter } => {
                if let Some((c, _)) = filter {
                    column_type(client, &a.table, c, &format!("{key}.type_column"), p).await?;
                }
                let q = format!("SELECT q.* FROM {} r, LATERAL ({sql}) AS q LIMIT 0", a.table.quoted());
                row_sql_type(client, &q, &format!("{key}.opportunity.sql"), p).await?
            }
        };
        let actor_t = match &a.actor {
            crate::config::RowValue::Column(c) => column_type(client, &a.table, c, &format!("{key}.actor"), p).await?,
            crate::config::RowValue::Sql(e) => {
                let q = format!("SELECT ({e}) FROM {} r LIMIT 0", a.table.quoted());
                row_sql_type(client, &q, &format!("{key}.actor.sql"), p).await?
            }
        };
        out.push((key.clone(), link_t, actor_t));
        if let Some(at) = &a.at {
            if let Some(t) = column_type(client, &a.table, at, &format!("{key}.at"), p).await? {
                time_column(&t, at.as_str(), &format!("{key}.at"), p);
            }
        }
    }
    Ok(out)
}

/// The flags of a row `o`, as columns `open`, `deleted`, `opp`, `unowned` (nobody has it, by
/// `unowned_when`) and `only_owner` (nobody would, were its owner column cleared: a reclaim may
/// hand it on).
fn flags(cfg: &Config) -> String {
    let (open, deleted, is_opp) = (open_pred(cfg), deleted_pred(cfg), where_pred(cfg));
    format!(
        "coalesce(({open})::bool, false) AS open, coalesce(({deleted})::bool, false) AS deleted, \
         coalesce(({is_opp})::bool, false) AS opp, {} AS unowned, {} AS only_owner",
        unowned_pred(cfg, "o"),
        unowned_but_owner_pred(cfg)
    )
}

/// The context query (state, pipeline and fields) and the state query (the flags alone). Their
/// columns: `id`, `owner`, `open`, `deleted`, `opp`, `unowned`, `only_owner`, then (context only)
/// `pipeline` and the fields, in `opportunity.fields` order.
fn context_sql(cfg: &Config, id_t: &str, field_exprs: &[String]) -> (String, String) {
    let o = &cfg.opportunity;
    let (table, id, owner) = (o.table.quoted(), o.id.quoted(), o.owner.quoted());
    let pipeline = o.pipeline.as_ref().map(|f| format!("({})::text", f.expr())).unwrap_or_else(|| "NULL::text".into());
    let flags = flags(cfg);
    let wanted = format!("o.{id} = ANY($1::text[]::{id_t}[])");
    // The pipeline and fields only of rows that could be routed (open, not deleted, an
    // opportunity): a field failing for a row does not fail its closing. `OFFSET 0` keeps the
    // flags computed once per row (not copied into each CASE).
    let mut context = format!(
        "SELECT o.{id}::text AS id, o.{owner}::text AS owner, s.open, s.deleted, s.opp, s.unowned, s.only_owner, \
         CASE WHEN s.live THEN {pipeline} END AS pipeline"
    );
    for f in field_exprs {
        context.push_str(&format!(", CASE WHEN s.live THEN {f} END"));
    }
    context.push_str(&format!(
        " FROM {table} o CROSS JOIN LATERAL (SELECT f.*, f.open AND NOT f.deleted AND f.opp AS live \
         FROM (SELECT {flags} OFFSET 0) f) s WHERE {wanted}"
    ));
    let state = format!("SELECT o.{id}::text AS id, o.{owner}::text AS owner, {flags} FROM {table} o WHERE {wanted}");
    (context, state)
}

/// How owners are written back, and how a reclaim hands an opportunity on.
async fn write_sql(
    client: &Client,
    cfg: &Config,
    keys: &KeyTypes,
    id_t: &str,
    owner_t: &str,
    p: &mut Vec<MappingProblem>,
) -> Result<(WriteSql, Option<Reassign>), CrmError> {
    match &cfg.write_back {
        WriteBack::Batch { set } => {
            let o = &cfg.opportunity;
            let mut sets = vec![format!("{} = u.owner::{owner_t}", o.owner.quoted())];
            if let (Some(team), Some(tt)) = (&o.team, &keys.team) {
                let q = team.quoted();
                sets.push(format!("{q} = coalesce(u.team::{tt}, o.{q})"));
            }
            for (col, expr) in set {
                column_type(client, &o.table, col, &format!("write_back.set.{}", col.as_str()), p).await?;
                sets.push(format!("{} = ({expr})", col.quoted()));
            }
            batch_write_sql(client, cfg, &sets.join(", "), id_t, p).await
        }
        WriteBack::Statement { sql: s, reclaim } => {
            let mut reassign = None;
            if let Some(r) = reclaim {
                match bind_named(r, WRITE_PARAMS) {
                    Ok((sql, params)) => {
                        prepare_write(client, &sql, "write_back.reclaim_statement", p).await?;
                        reassign = Some(Reassign::PerRow { sql, params });
                    }
                    Err(e) => p.push(MappingProblem { key: "write_back.reclaim_statement".into(), message: e }),
                }
            }
            let write = match bind_named(s, WRITE_PARAMS) {
                Ok((sql, params)) => {
                    prepare_write(client, &sql, "write_back.statement", p).await?;
                    WriteSql::PerRow { sql, params }
                }
                Err(e) => {
                    p.push(MappingProblem { key: "write_back.statement".into(), message: e });
                    WriteSql::PerRow { sql: String::new(), params: Vec::new() }
                }
            };
            Ok((write, reassign))
        }
    }
}

/// The batch write (only rows still unowned) and the batch reassign (only where the CRM still
/// shows the owner the router assigned, and no interaction that counts is queued: `u.anyone`,
/// any activity; `u.edits`, owner edits).
async fn batch_write_sql(
    client: &Client,
    cfg: &Config,
    sets: &str,
    id_t: &str,
    p: &mut Vec<MappingProblem>,
) -> Result<(WriteSql, Option<Reassign>), CrmError> {
    let o = &cfg.opportunity;
    let (table, id, owner) = (o.table.quoted(), o.id.quoted(), o.owner.quoted());
    let sql = format!(
        "UPDATE {table} AS o SET {sets} FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, owner, team) \
         WHERE o.{id} = u.id::{id_t} AND {unowned} RETURNING o.{id}::text AS id, o.{owner}::text AS owner",
        unowned = unowned_pred(cfg, "o")
    );
    try_prepare(client, &sql, "write_back.set", p).await?;
    let rs = cfg.router.schema.quoted();
    let reassign = format!(
        "UPDATE {table} AS o SET {sets} \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::bool[]) AS u(id, owner, team, old, anyone, edits) \
         WHERE o.{id} = u.id::{id_t} AND o.{owner}::text = u.old AND {only_owner} \
         AND NOT EXISTS (SELECT 1 FROM {rs}.events e WHERE e.opp_id = u.id AND {}) \
         RETURNING o.{id}::text AS id, o.{owner}::text AS owner",
        crate::store::COUNTS_AS_INTERACTION,
        only_owner = unowned_but_owner_pred(cfg)
    );
    // It reads the router's queue: checkable once `install` has created it.
    let installed: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL AS found", &[&format!("{rs}.events")])
        .await?
        .try_get("found")?;
    if installed {
        try_prepare(client, &reassign, "write_back.set", p).await?;
    }
    Ok((WriteSql::Batch(sql), Some(Reassign::Batch(reassign))))
}

/// Every assignment of some owners (`$1`) since `$2`, by when the CRM says the owner was set (or
/// the row created): manual ones included, closed ones too (a cap counts what was given), deleted
/// ones not.
fn assigned_sql(cfg: &Config, owner_t: &str) -> Option<String> {
    let o = &cfg.opportunity;
    let at = o.assigned_at.as_ref().or(o.created_at.as_ref())?.quoted();
    let (table, owner) = (o.table.quoted(), o.owner.quoted());
    let (deleted, is_opp) = (deleted_pred(cfg), where_pred(cfg));
    Some(format!(
        "SELECT o.{owner}::text AS owner, extract(epoch FROM o.{at}::timestamptz)::int8 AS at FROM {table} o \
         WHERE o.{owner} = ANY($1::text[]::{owner_t}[]) AND o.{at} >= $2::timestamptz \
         AND NOT coalesce(({deleted})::bool, false) AND ({is_opp})::bool ORDER BY 2"
    ))
}

/// The open load of some owners (`$1`), and of every owner.
fn count_sql(cfg: &Config, owner_t: &str) -> (String, String) {
    let o = &cfg.opportunity;
    let (table, owner) = (o.table.quoted(), o.owner.quoted());
    let (open, deleted, is_opp) = (open_pred(cfg), deleted_pred(cfg), where_pred(cfg));
    // Top-level conjuncts of the WHERE (a NULL drops the row there, as false would), so the
    // planner can turn an `EXISTS` of the mapping into a join and scan in parallel; wrapped in
    // coalesce it stays a subplan the planner cannot split, with an estimate large enough to JIT.
    let live = format!("({open})::bool AND NOT coalesce(({deleted})::bool, false) AND ({is_opp})::bool");
    let recount = format!(
        "SELECT o.{owner}::text AS owner, count(*)::int8 AS open FROM {table} o WHERE o.{owner} = ANY($1::text[]::{owner_t}[]) \
         AND {live} GROUP BY 1"
    );
    let full = format!(
        "SELECT o.{owner}::text AS owner, count(*)::int8 AS open FROM {table} o WHERE o.{owner} IS NOT NULL AND {live} GROUP BY 1"
    );
    (recount, full)
}
