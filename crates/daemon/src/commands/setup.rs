//! The commands that set a database up: `check`, `install`, `uninstall`, `grants`, `backfill`.
//! They print what they did; the work is `check`'s, `install`'s, `grants`' and `backfill`'s.

use std::path::PathBuf;

use super::logging::init_tracing;
use super::{connect, load_config, CommandError, Invocation};
use crate::config::LogFormat;
use crate::{backfill, check, db, exit, grants, install};

pub async fn check(inv: &Invocation, offline: bool, rules: Option<PathBuf>) -> Result<(), CommandError> {
    let mut cfg = load_config(inv)?;
    if let Some(r) = rules {
        cfg.router.rules_dir = r;
    }
    init_tracing(LogFormat::Text, "warn");
    let report = check::check(&cfg, offline).await;
    for l in &report.lines {
        say!("{l}");
    }
    match report.exit_code() {
        exit::OK => Ok(()),
        exit::UNAVAILABLE => Err(CommandError::Unavailable(String::new())),
        _ => Err(CommandError::Config(String::new())),
    }
}

/// `install --dry-run`: the SQL `install` would run, on stdout.
pub fn install_dry_run(inv: &Invocation) -> Result<(), CommandError> {
    say_raw!("{}", install::dry_run_sql(&load_config(inv)?));
    Ok(())
}

pub async fn install(inv: &Invocation, backfill: bool) -> Result<(), CommandError> {
    let cfg = load_config(inv)?;
    init_tracing(cfg.log_format, &cfg.log_level);
    let mut client = db::connect(&cfg.database, " install").await.map_err(CommandError::connect)?;
    if let Err(e) = crate::crm::prepare(&client, &cfg).await {
        return Err(CommandError::Config(format!("{}: {e}", cfg.path.display())));
    }
    let r = install::install_with(&mut client, &cfg, backfill).await.map_err(CommandError::install)?;
    if r.applied.is_empty() {
        say!("schema {} is up to date", cfg.router.schema.as_str());
    }
    for a in r.applied {
        say!("applied {a}");
    }
    for t in r.triggers {
        say!("trigger {t}");
    }
    if backfill {
        say!("queued {} open, unowned opportunities already in the CRM", r.backfilled);
    }
    Ok(())
}

pub async fn uninstall(inv: &Invocation, dry_run: bool) -> Result<(), CommandError> {
    let cfg = load_config(inv)?;
    init_tracing(cfg.log_format, &cfg.log_level);
    let mut client = db::connect(&cfg.database, " install").await.map_err(CommandError::connect)?;
    if dry_run {
        say_raw!("{}", install::uninstall_sql(&mut client, &cfg).await.map_err(CommandError::install)?);
    } else {
        install::uninstall(&mut client, &cfg).await.map_err(CommandError::install)?;
        say!("uninstalled: the capture triggers and schema {} are gone", cfg.router.schema.as_str());
        say!(
            "the daemon's role still holds its privileges on the CRM's tables: `oppty-router grants --revoke ROLE` \
             prints the REVOKE statements"
        );
    }
    Ok(())
}

pub async fn grants(inv: &Invocation, role: &str, revoke: bool) -> Result<(), CommandError> {
    let (cfg, mut client) = connect(inv, " grants").await?;
    let script = if revoke {
        grants::revoke(&mut client, &cfg, role).await
    } else {
        grants::grants(&mut client, &cfg, role).await
    };
    match script {
        Ok(script) => {
            say_raw!("{script}");
            Ok(())
        }
        Err(grants::GrantsError::Sql(e)) => Err(CommandError::db(e, &cfg)),
        Err(e) => Err(CommandError::Config(format!("{}: {e}", cfg.path.display()))),
    }
}

pub async fn backfill(
    inv: &Invocation,
    since: Option<chrono::DateTime<chrono::Utc>>,
    dry_run: bool,
) -> Result<(), CommandError> {
    let (cfg, client) = connect(inv, " backfill").await?;
    let n = backfill::backfill(&client, &cfg, since, dry_run).await.map_err(|e| match e {
        backfill::BackfillError::Sql(e) => CommandError::db(e, &cfg),
        e => CommandError::Config(format!("{}: {e}", cfg.path.display())),
    })?;
    if dry_run {
        say!("{n} open, unowned opportunities would be queued (dry run: nothing queued)");
    } else {
        say!("queued {n} open, unowned opportunities for routing");
    }
    Ok(())
}
