//! The CRM's directory, read by the daemon config's `[directory]` queries: who is active, who is
//! in which team (with the membership's own pause and cap), KPIs, and the territory tree with
//! the territories each team covers (`crm::directory::territories`: a parent column or a nested
//! set). Rows are read by position (the documented column order) or, for optional columns, by
//! name.
//!
//! It must not change anything, nor judge the rules: `rules` compiles with what it read.

use tokio_postgres::{Client, Row};

use super::{territories, MappingProblem};

/// A directory query that failed: what the admin reads, and, when the server failed it, the kind
/// of that error (a lost connection is not a wrong query).
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct DirectoryError {
    pub problem: MappingProblem,
    pub kind: Option<crate::db::ErrorKind>,
}

/// What the rules are compiled with to route on this CRM: its directory (`[directory]`, when the
/// config has one) or the config's flags alone, with user ids read as the owner column writes them.
pub async fn directory_for(
    client: &Client,
    cfg: &crate::config::Config,
    ids: crate::rules::IdForm,
) -> Result<crate::rules::Directory, DirectoryError> {
    let dir = match &cfg.directory {
        Some(d) => load_directory(client, d).await?,
        None => crate::directory_flags(cfg),
    };
    Ok(crate::rules::Directory { ids, ..dir })
}

pub async fn load_directory(
    client: &Client,
    d: &crate::config::DirectoryConfig,
) -> Result<crate::rules::Directory, DirectoryError> {
    let run = |key: &'static str, sql: &str| {
        let sql = sql.to_string();
        async move { query(client, key, &sql).await }
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
    if let Some(sql) = &d.territories {
        const KEY: &str = "directory.territories";
        out.territories = territories::tree_of(&query(client, KEY, sql).await?).map_err(|w| bad(KEY, &w))?;
    }
    if let Some(sql) = &d.team_territories {
        const KEY: &str = "directory.team_territories";
        out.team_territories = territories::coverage(&query(client, KEY, sql).await?).map_err(|w| bad(KEY, &w))?;
    }
    Ok(out)
}

/// One directory query's rows; a failure names its config key, with the server's error kind.
async fn query(client: &Client, key: &'static str, sql: &str) -> Result<Vec<Row>, DirectoryError> {
    client.query(sql, &[]).await.map_err(|e| DirectoryError {
        problem: MappingProblem {
            key: key.into(),
            message: e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| crate::db::describe(&e)),
        },
        kind: Some(crate::db::kind_of(&e)),
    })
}

/// A query whose rows are not of the documented shape.
fn bad(key: &str, want: &str) -> DirectoryError {
    DirectoryError { problem: MappingProblem { key: key.into(), message: format!("must return {want}") }, kind: None }
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
