//! `install` / `uninstall`: the router's own schema (versioned files in `sql/`) and the capture
//! triggers on the CRM's tables.
//!
//! Owns applying schema versions once each, idempotently, under an advisory lock, in one
//! transaction. Uninstall removes exactly what install added: the triggers whose functions live in
//! the router's schema, then that schema. It must never drop or alter anything else of the CRM's.

use tokio_postgres::Client;

use crate::capture;
use crate::config::Config;

/// The versioned schema files, compiled in so the binary is all ops need to deploy.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "001_router.sql", include_str!("../../../sql/001_router.sql")),
    (2, "002_engine.sql", include_str!("../../../sql/002_engine.sql")),
    (3, "003_status.sql", include_str!("../../../sql/003_status.sql")),
    (4, "004_reclaim.sql", include_str!("../../../sql/004_reclaim.sql")),
    (5, "005_reclaim_warnings.sql", include_str!("../../../sql/005_reclaim_warnings.sql")),
    (6, "006_reclaim_ladder.sql", include_str!("../../../sql/006_reclaim_ladder.sql")),
    (7, "007_unrouted.sql", include_str!("../../../sql/007_unrouted.sql")),
    (8, "008_daemon_stopped.sql", include_str!("../../../sql/008_daemon_stopped.sql")),
    (9, "009_retries.sql", include_str!("../../../sql/009_retries.sql")),
    (10, "010_leader_lease.sql", include_str!("../../../sql/010_leader_lease.sql")),
    (11, "011_explanations.sql", include_str!("../../../sql/011_explanations.sql")),
    (12, "012_wakeup_expiry.sql", include_str!("../../../sql/012_wakeup_expiry.sql")),
    (13, "013_recent_by_owner.sql", include_str!("../../../sql/013_recent_by_owner.sql")),
    (14, "014_people_in_force.sql", include_str!("../../../sql/014_people_in_force.sql")),
    (15, "015_claims.sql", include_str!("../../../sql/015_claims.sql")),
    (16, "016_skips.sql", include_str!("../../../sql/016_skips.sql")),
    (17, "017_seen.sql", include_str!("../../../sql/017_seen.sql")),
];

/// Advisory-lock key serialising concurrent installs.
const INSTALL_LOCK: i64 = 0x6f70_7074_795f_7231;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("install failed: {}{}", crate::db::describe(.0), install_hint(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error(
        "the database has router schema version {found}, newer than this binary knows ({known}); upgrade oppty-router"
    )]
    TooNew { found: i32, known: i32 },
    #[error(transparent)]
    Backfill(#[from] crate::backfill::BackfillError),
    #[error("uninstall failed: {}", crate::db::describe(.0))]
    Uninstall(tokio_postgres::Error),
    /// `uninstall` needs to own what it drops: these, named with their owners.
    #[error(
        "uninstall needs to own what it drops, and the role {role} owns neither {}: run it as their owner or a superuser \
         (nothing was changed)", .missing.join(", ")
    )]
    NotOwner { role: String, missing: Vec<String> },
}

impl InstallError {
    /// The error's kind ([`crate::db::ErrorKind`]): what the command's exit code follows.
    pub fn kind(&self) -> crate::db::ErrorKind {
        match self {
            InstallError::Sql(e) | InstallError::Uninstall(e) => crate::db::kind_of(e),
            InstallError::Backfill(crate::backfill::BackfillError::Sql(e)) => crate::db::kind_of(e),
            InstallError::NotOwner { .. } => crate::db::ErrorKind::Refused,
            InstallError::TooNew { .. } | InstallError::Backfill(_) => crate::db::ErrorKind::Mapping,
        }
    }
}

fn install_hint(e: &tokio_postgres::Error) -> &'static str {
    match e.as_db_error().map(|d| d.code().code()) {
        Some("42501") => {
            " (install needs CREATE on the database and ownership of the CRM tables it puts triggers on: \
             run it as the CRM's owner or a DBA; the daemon itself runs with a narrower role, see `oppty-router grants`)"
        }
        _ => "",
    }
}

/// Whether the router's schema is installed here at the version this binary knows: `Ok(Err(why))`
/// when it is not (a config error: run `install`, or upgrade the binary), `Err` when asking failed.
pub async fn check_installed(client: &Client, cfg: &Config) -> Result<Result<(), String>, tokio_postgres::Error> {
    let schema = cfg.router.schema.as_str();
    let table = format!("{}.schema_version", cfg.router.schema.quoted());
    let exists: bool =
        client.query_one("SELECT to_regclass($1) IS NOT NULL AS found", &[&table]).await?.try_get("found")?;
    if !exists {
        return Ok(Err(format!(
            "the router's schema `{schema}` is not installed in this database (or this role cannot see it): \
             run `oppty-router install` as the database owner, then grant the daemon's role what \
             `oppty-router grants ROLE` prints"
        )));
    }
    let found: i32 =
        client.query_one(&format!("SELECT coalesce(max(version), 0) AS v FROM {table}"), &[]).await?.try_get("v")?;
    let known = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
    Ok(match found.cmp(&known) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(format!(
            "the router's schema `{schema}` is at version {found}; this binary needs {known}: run `oppty-router install` to upgrade it"
        )),
        std::cmp::Ordering::Greater => Err(format!(
            "the router's schema `{schema}` is at version {found}, newer than this binary knows ({known}): upgrade oppty-router"
        )),
    })
}

/// What an install did.
#[derive(Debug, Default)]
pub struct InstallReport {
    pub applied: Vec<String>,
    pub triggers: Vec<String>,
    /// Open, unowned opportunities that were already there, queued for routing.
    pub backfilled: u64,
}

fn render(cfg: &Config, text: &str) -> String {
    text.replace("{{schema}}", &cfg.router.schema.quoted())
}

fn header_sql(cfg: &Config) -> String {
    let s = cfg.router.schema.quoted();
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};\n\
         CREATE TABLE IF NOT EXISTS {s}.schema_version (\n    version integer PRIMARY KEY,\n    \
         name text NOT NULL,\n    applied_at timestamptz NOT NULL DEFAULT now()\n);\n"
    )
}

/// The whole script `install` runs on an empty database (for `--dry-run`).
pub fn dry_run_sql(cfg: &Config) -> String {
    let s = cfg.router.schema.quoted();
    let mut out = String::from(
        "-- oppty-router install (as run on a database without the router)\nBEGIN;\nSET LOCAL standard_conforming_strings = on;\n",
    );
    out.push_str(&header_sql(cfg));
    for (v, name, text) in MIGRATIONS {
        out.push_str(&format!("\n-- {name}\n{}", render(cfg, text)));
        out.push_str(&format!("INSERT INTO {s}.schema_version (version, name) VALUES ({v}, '{name}');\n"));
    }
    out.push_str("\n-- capture triggers, generated from the mapping\n");
    let fragments = capture::config_fragments(cfg);
    if fragments.is_empty() {
        out.push_str("-- (no SQL from the config runs inside them: names and values only)\n");
    } else {
        out.push_str("-- SQL from the config that runs inside them, with every write the CRM makes:\n");
        for (key, sql) in fragments {
            out.push_str(&format!("--   {key}: {}\n", sql.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
    }
    out.push_str(&capture::install_sql(cfg));
    out.push_str("\n-- the opportunities already open and unowned, queued for routing (not with --no-backfill)\n");
    out.push_str(&crate::crm::queue::dry_run_sql(cfg));
    out.push_str("COMMIT;\n");
    out
}

/// Apply missing schema versions, (re)create the capture triggers, and queue the open, unowned
/// opportunities already there. Safe to run again (nothing already queued is queued twice).
pub async fn install(client: &mut Client, cfg: &Config) -> Result<InstallReport, InstallError> {
    install_with(client, cfg, true).await
}

/// [`install`], with or without queuing the opportunities already there (`--no-backfill`).
pub async fn install_with(client: &mut Client, cfg: &Config, backfill: bool) -> Result<InstallReport, InstallError> {
    let s = cfg.router.schema.quoted();
    let tx = client.transaction().await?;
    // Literals in the generated SQL read as written, whatever the role's or database's setting.
    tx.batch_execute("SET LOCAL standard_conforming_strings = on").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK]).await?;
    tx.batch_execute(&header_sql(cfg)).await?;
    let current: i32 = tx
        .query_one(&format!("SELECT coalesce(max(version), 0) AS v FROM {s}.schema_version"), &[])
        .await?
        .try_get("v")?;
    let known = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
    if current > known {
        return Err(InstallError::TooNew { found: current, known });
    }
    let mut report = InstallReport::default();
    for (v, name, text) in MIGRATIONS {
        if *v > current {
            tx.batch_execute(&render(cfg, text)).await?;
            tx.execute(&format!("INSERT INTO {s}.schema_version (version, name) VALUES ($1, $2)"), &[v, name]).await?;
            report.applied.push((*name).to_string());
        }
    }
    // Drop the triggers of an earlier mapping, then create this mapping's.
    for (table, trigger) in find_triggers(&tx, cfg).await? {
        tx.batch_execute(&format!(
            "DROP TRIGGER {} ON {table}",
            crate::ident::Ident::parse(&trigger).map(|i| i.quoted()).unwrap_or(trigger)
        ))
        .await?;
    }
    tx.batch_execute(&capture::install_sql(cfg)).await?;
    report.triggers = find_triggers(&tx, cfg).await?.into_iter().map(|(t, n)| format!("{n} on {t}")).collect();
    // In the same transaction as the triggers (whose creation locks the CRM's writers out until
    // commit): every row is either seen here or captured by a trigger, none falls in between.
    if backfill {
        report.backfilled = crate::backfill::backfill(&tx, cfg, None, false).await?;
    }
    tx.commit().await?;
    Ok(report)
}

async fn find_triggers(
    tx: &tokio_postgres::Transaction<'_>,
    cfg: &Config,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = tx.query(capture::FIND_TRIGGERS_SQL, &[&cfg.router.schema.as_str()]).await?;
    rows.iter().map(|r| Ok((r.try_get("tbl")?, r.try_get("name")?))).collect()
}

/// The SQL `uninstall` would run on this database.
pub async fn uninstall_sql(client: &mut Client, cfg: &Config) -> Result<String, InstallError> {
    let tx = client.transaction().await.map_err(InstallError::Uninstall)?;
    let mut out = String::from("BEGIN;\n");
    for (table, trigger) in find_triggers(&tx, cfg).await.map_err(InstallError::Uninstall)? {
        let trig = crate::ident::Ident::parse(&trigger).map(|i| i.quoted()).unwrap_or(trigger);
        out.push_str(&format!("DROP TRIGGER IF EXISTS {trig} ON {table};\n"));
    }
    out.push_str(&format!("DROP SCHEMA IF EXISTS {} CASCADE;\nCOMMIT;\n", cfg.router.schema.quoted()));
    tx.rollback().await.map_err(InstallError::Uninstall)?;
    Ok(out)
}

/// What `uninstall` would drop that the connected role does not own (tables it takes triggers
/// off, the router's schema), each with its owner.
async fn not_owned(client: &Client, cfg: &Config) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT format('%s (owned by %I)', c.oid::regclass, pg_get_userbyid(c.relowner)) AS what FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = $1 AND NOT pg_has_role(current_user, c.relowner, 'USAGE') \
             UNION SELECT format('schema %I (owned by %I)', n.nspname, pg_get_userbyid(n.nspowner)) FROM pg_namespace n \
             WHERE n.nspname = $1 AND NOT pg_has_role(current_user, n.nspowner, 'USAGE') ORDER BY 1",
            &[&cfg.router.schema.as_str()],
        )
        .await?;
    rows.iter().map(|r| r.try_get("what")).collect()
}

/// Remove the triggers and the router's schema. The CRM's tables and data are left as they were.
/// A role that does not own all of it changes nothing and is told whose it is.
pub async fn uninstall(client: &mut Client, cfg: &Config) -> Result<String, InstallError> {
    let sql = uninstall_sql(client, cfg).await?;
    if crate::grants::is_superuser(client).await.map_err(InstallError::Uninstall)?.is_none() {
        let missing = not_owned(client, cfg).await.map_err(InstallError::Uninstall)?;
        if !missing.is_empty() {
            let role: String = (client.query_one("SELECT quote_ident(current_user) AS me", &[]).await)
                .and_then(|r| r.try_get("me"))
                .map_err(InstallError::Uninstall)?;
            return Err(InstallError::NotOwner { role, missing });
        }
    }
    client.execute("SELECT pg_advisory_lock($1)", &[&INSTALL_LOCK]).await.map_err(InstallError::Uninstall)?;
    let result = client.batch_execute(&sql).await;
    if result.is_err() {
        // The script's transaction is aborted: end it, so the unlock below runs (and the error
        // said is the script's own, not "current transaction is aborted").
        let _ = client.batch_execute("ROLLBACK").await;
    }
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&INSTALL_LOCK]).await;
    result.map_err(InstallError::Uninstall)?;
    unlocked.map_err(InstallError::Uninstall)?;
    Ok(sql)
}
