//! Whether the CRM's columns can hold what the router will put in them or compare them with:
//! checked by `check` and at the daemon's start, so that nothing of this fails at run time.
//!
//! Owns the checks on keys (the id is the primary key, or unique and not null), on types (a team
//! column that can hold every team's `crm_id`, actor and link columns comparable with the owner
//! and the id, `unowned_values` the owner column can hold) and on the rules' owners (every member
//! and fallback id fits the owner column; no fallback owner is itself an "unowned" value). It
//! reads the catalog and casts values; it must not change anything.

use tokio_postgres::Client;

use super::{CrmSql, MappingProblem};
use crate::config::Config;
use crate::engine::Engine;

/// The catalog types of the mapped columns (`format_type` text), as `prepare` found them.
pub struct MappedTypes<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub edited_by: Option<&'a str>,
    /// Per activity table: its config key, the link column's type, the actor column's type.
    pub activities: &'a [(String, Option<String>, Option<String>)],
}

/// What kind of value a column holds, for telling whether two columns can hold the same ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Integer,
    Uuid,
    /// Text of any kind holds the text form of any id.
    Text,
    Other,
}

fn family(t: &str) -> Family {
    let base = t.split('(').next().unwrap_or(t).trim();
    match base {
        "smallint" | "integer" | "bigint" | "numeric" | "int2" | "int4" | "int8" => Family::Integer,
        "uuid" => Family::Uuid,
        "text" | "character varying" | "character" | "name" | "citext" | "varchar" | "bpchar" => Family::Text,
        _ => Family::Other,
    }
}

fn comparable(a: &str, b: &str) -> bool {
    let (fa, fb) = (family(a), family(b));
    fa == fb || fa == Family::Text || fb == Family::Text
}

/// Key and type checks of the mapping; problems are added under their config keys.
pub async fn check(
    client: &Client,
    cfg: &Config,
    types: &MappedTypes<'_>,
    p: &mut Vec<MappingProblem>,
) -> Result<(), tokio_postgres::Error> {
    let o = &cfg.opportunity;
    let mut add = |key: &str, message: String| p.push(MappingProblem { key: key.into(), message });
    if family(types.id) == Family::Other {
        add(
            "opportunity.id",
            format!(
                "column `{}` is {}; the id must be an integer, bigint, uuid, char(36), varchar or text column",
                o.id.as_str(),
                types.id
            ),
        );
    }
    let row = client
        .query_one(
            "SELECT a.attnotnull AS not_null, \
               coalesce(bool_or(i.indisprimary), false) AS pk, \
               coalesce(bool_or(i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL), false) AS uniq \
             FROM pg_attribute a \
             LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indnatts = 1 AND i.indkey[0] = a.attnum \
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2 GROUP BY a.attnotnull",
            &[&o.table.quoted(), &o.id.as_str()],
        )
        .await?;
    let (not_null, primary, unique): (bool, bool, bool) =
        (row.try_get("not_null")?, row.try_get("pk")?, row.try_get("uniq")?);
    let keyed = primary || (unique && not_null);
    if !keyed {
        let what =
            if !not_null { "is nullable and not the primary key" } else { "is neither the primary key nor unique" };
        add(
            "opportunity.id",
            format!(
                "column `{}` {what} of {}: the router finds each opportunity by it; map the primary key \
                 (or a NOT NULL column with a unique index)",
                o.id.as_str(),
                o.table.plain()
            ),
        );
    }
    for (key, link_t, actor_t) in types.activities {
        if let Some(t) = link_t.as_deref().filter(|t| !comparable(t, types.id)) {
            add(
                &format!("{key}.opportunity"),
                format!("is {t} but opportunity.id is {}: its values cannot name an opportunity", types.id),
            );
        }
        if let Some(t) = actor_t.as_deref().filter(|t| !comparable(t, types.owner)) {
            add(
                &format!("{key}.actor"),
                format!(
                    "is {t} but opportunity.owner is {}: an actor could never be the owner, so no owner's \
                     activity would count; map the column holding the user id",
                    types.owner
                ),
            );
        }
    }
    if let Some(t) = types.edited_by.filter(|t| !comparable(t, types.owner)) {
        add(
            "opportunity.edited_by",
            format!("is {t} but opportunity.owner is {}: map the user id column", types.owner),
        );
    }
    let cast = format!("SELECT $1::text[]::{}[]", types.owner);
    for (i, v) in o.unowned_values.iter().enumerate() {
        if let Some(msg) = cast_one(client, &cast, v).await? {
            add(
                &format!("opportunity.unowned_values[{i}]"),
                format!("`{v}` cannot be a value of the owner column ({}): {msg}", types.owner),
            );
        }
    }
    Ok(())
}

/// Why a rule set does not fit the CRM: values it names (a person must fix the rules), or the
/// database failing the check itself (its kind says what to do: see `db::ErrorKind`).
#[derive(Debug, thiserror::Error)]
pub enum RuleValuesError {
    #[error("{}", .0.iter().map(Misfit::to_string).collect::<Vec<_>>().join("\n"))]
    Misfit(Vec<Misfit>),
    #[error("checking the rules' ids against the CRM: {}", crate::db::describe(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// A value of the rules the CRM cannot take: the value as the rules name it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    pub value: String,
    pub why: String,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.value, self.why)
    }
}

impl RuleValuesError {
    /// Every problem as `file:line:column: key: message`, placed where the rule files the set was
    /// compiled from write the value (its definition, else each place it is named, a few at most).
    pub fn located(&self, sources: &[(std::path::PathBuf, String)]) -> Vec<String> {
        let RuleValuesError::Misfit(misfits) = self else { return vec![self.to_string()] };
        let values: Vec<&str> = misfits.iter().map(|m| m.value.as_str()).collect();
        let mut out = Vec::new();
        for (m, places) in misfits.iter().zip(crate::rules::where_written(sources, &values)) {
            if places.is_empty() {
                out.push(m.to_string());
            }
            out.extend(places.into_iter().take(3).map(|(at, key)| format!("{at}: {key}: {m}")));
        }
        out
    }
}

/// A value the cast refuses: `Ok(Some(reason))`; an error about anything but the value: `Err`.
async fn cast_one(client: &Client, cast_sql: &str, value: &str) -> Result<Option<String>, tokio_postgres::Error> {
    match client.query_one(cast_sql, &[&vec![value.to_string()]]).await {
        Ok(_) => Ok(None),
        Err(e) if crate::db::kind_of(&e) == crate::db::ErrorKind::Row => Ok(Some(crate::db::message(&e))),
        Err(e) => Err(e),
    }
}

/// The first of `values` that the cast refuses, with the server's reason.
async fn first_misfit(
    client: &Client,
    cast_sql: &str,
    values: &[String],
) -> Result<Option<(String, String)>, tokio_postgres::Error> {
    // One query for the whole set; only when it fails for a value, one per value to name it.
    match client.query_one(cast_sql, &[&values]).await {
        Ok(_) => return Ok(None),
        Err(e) if crate::db::kind_of(&e) != crate::db::ErrorKind::Row => return Err(e),
        Err(_) => {}
    }
    for v in values {
        if let Some(msg) = cast_one(client, cast_sql, v).await? {
            return Ok(Some((v.clone(), msg)));
        }
    }
    Ok(None)
}

/// With the CRM's directory (`directory.active_members`): the owners the rules name outright
/// (fallback owners, team leads, the reclaim ladder's owners) must be active users, since they
/// get opportunities without the members' scope checks. Members who are not active are only
/// skipped (on leave), never an error.
pub fn check_directory_users(engine: &Engine, directory: &crate::rules::Directory) -> Result<(), String> {
    let Some(active) = &directory.active else { return Ok(()) };
    let members: std::collections::HashSet<&str> = engine.member_ids().collect();
    let mut named: Vec<String> = engine.owner_ids().into_iter().filter(|id| !members.contains(id.as_str())).collect();
    named.retain(|id| !active.contains(id));
    if named.is_empty() {
        return Ok(());
    }
    Err(format!(
        "owner id(s) {} named by the rules (fallback owner, team lead or reclaim owner) are not active users of the CRM \
         (directory.active_members): opportunities would go to nobody who can work them; name an active user",
        named.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
    ))
}

/// The users table the owner column references (a single-column foreign key): `(table, query)`,
/// the query returning which of `$1` (text[]) are not users there.
pub async fn owner_reference(
    client: &Client,
    cfg: &Config,
    owner_t: &str,
) -> Result<Option<(String, String)>, tokio_postgres::Error> {
    let o = &cfg.opportunity;
    let row = client
        .query_opt(
            "SELECT format('%I.%I', n.nspname, c.relname) AS tbl, quote_ident(a.attname) AS col \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = k.confkey[1] \
             WHERE k.conrelid = to_regclass($1) AND k.contype = 'f' AND cardinality(k.conkey) = 1 \
               AND k.conkey[1] = (SELECT attnum FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2) \
             ORDER BY k.conname LIMIT 1",
            &[&o.table.quoted(), &o.owner.as_str()],
        )
        .await?;
    row.map(|r| {
        let (table, col): (String, String) = (r.try_get("tbl")?, r.try_get("col")?);
        let sql = format!(
            "SELECT x FROM unnest($1::text[]) AS x WHERE NOT EXISTS (SELECT 1 FROM {table} u WHERE u.{col} = x::{owner_t}) ORDER BY 1"
        );
        Ok((table, sql))
    })
    .transpose()
}

/// Check a rule set against the CRM: every member and owner id fits the owner column (and is a
/// user of the table it references), every team's `crm_id` fits the team column, and no fallback
/// owner is one of `unowned_values`.
pub async fn check_rule_values(client: &Client, sql: &CrmSql, engine: &Engine) -> Result<(), RuleValuesError> {
    let ids = engine.owner_ids();
    let mut misfits = Vec::new();
    if let Some((id, msg)) = first_misfit(client, &sql.owner_cast, &ids).await? {
        misfits.push(Misfit { value: id, why: format!("is not a valid value of the CRM's owner column: {msg}") });
    } else if let Some((table, missing_sql)) = &sql.owner_users {
        let missing: Vec<String> =
            client.query(missing_sql, &[&ids]).await?.iter().map(|r| r.try_get("x")).collect::<Result<_, _>>()?;
        misfits.extend(missing.into_iter().map(|value| Misfit {
            value,
            why: format!(
                "is not a user in {table} (the owner column's foreign key): an assignment to it would fail; correct \
                 the id, or add the user in the CRM"
            ),
        }));
    }
    if let Some(team_cast) = &sql.team_cast {
        let ids: Vec<String> = engine.teams.iter().filter_map(|t| t.crm_id.clone()).collect();
        if let Some((id, msg)) = first_misfit(client, team_cast, &ids).await? {
            let team = engine.teams.iter().find(|t| t.crm_id.as_deref() == Some(&id)).map(|t| t.id.clone());
            misfits.push(Misfit {
                value: id,
                why: format!(
                    "(crm_id of team `{}`) is not a valid value of the CRM's team column (opportunity.team): {msg}",
                    team.unwrap_or_default()
                ),
            });
        }
    }
    let fallbacks = engine
        .global_fallback
        .iter()
        .map(|f| ("settings", f))
        .chain(engine.pipelines.iter().filter_map(|(id, p)| p.fallback_owner.as_ref().map(|f| (id.as_str(), f))));
    for (pipeline, owner) in fallbacks {
        if sql.unowned_values.iter().any(|u| u == owner) {
            misfits.push(Misfit {
                value: owner.clone(),
                why: format!(
                    "(fallback_owner of `{pipeline}`) is one of opportunity.unowned_values: an opportunity given to \
                     it would still count as unowned; name a real person or queue owner"
                ),
            });
        }
    }
    if misfits.is_empty() {
        Ok(())
    } else {
        Err(RuleValuesError::Misfit(misfits))
    }
}
