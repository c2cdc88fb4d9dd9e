//! `revert`: the rules directory given back the files of a version that was in force (as the
//! router kept them), checked first as the daemon will check them; `--list` the versions kept,
//! `--dry-run` the plan and its diff without writing. The work is `history`'s and `rule_files`';
//! this only says what it does.

use super::{connect, CommandError, Invocation};
use crate::history::{self, Version};

/// How many versions `--list` shows, and a revert looks among.
const KEPT: i64 = 200;

pub async fn revert(inv: &Invocation, to: Option<&str>, dry_run: bool, list: bool) -> Result<(), CommandError> {
    let (cfg, client) = connect(inv, " revert").await?;
    let versions = history::latest(&client, &cfg, KEPT).await.map_err(|e| CommandError::db(e, &cfg))?;
    if list || to.is_none() {
        print_list(&cfg, &versions);
        return Ok(());
    }
    let to = to.unwrap_or_default();
    let Some(v) = versions.iter().find(|v| v.version == to || v.version.split('-').next() == Some(to)) else {
        return Err(CommandError::Failure(format!(
            "no version `{to}` was kept (`oppty-router revert --list` shows the {} kept; versions put in force before \
             the router kept them cannot be reverted to)",
            versions.len()
        )));
    };
    let dir = &cfg.router.rules_dir;
    let now = rules::read_files(dir).map_err(|e| CommandError::Config(e.to_string()))?;
    let plan = history::plan(dir, &now, v);
    if plan.is_empty() {
        say!("{}: already holds the files of {}; nothing to do", dir.display(), v.version);
        return Ok(());
    }
    for (p, _) in &plan.write {
        say!("write    {}", p.display());
    }
    for p in &plan.set_aside {
        say!("set aside {} (not in {}; kept as a hidden file beside it)", p.display(), v.version);
    }
    if dry_run {
        say!("\n{}", history::diff(&now, &v.files));
        say!("dry run: nothing written");
        return Ok(());
    }
    let hash = checked(&client, &cfg, dir, &now, &plan).await?;
    history::apply(dir, &plan, &v.version).map_err(|e| CommandError::Failure(format!("{}: {e}", dir.display())))?;
    let who = crate::rule_files::person();
    let said = format!("revert to {} (in force from {})", v.version, v.in_force_at);
    let commit =
        crate::rule_files::commit(dir, &plan.paths(), &who, &format!("{said} (oppty-router revert, by {who})"));
    crate::rule_files::record(&cfg.console.journal, "revert", &who, &plan.paths(), &[said], &hash);
    match commit {
        Ok(Some(c)) => say!("committed to the rules' git repository as {c}"),
        Ok(None) => {}
        Err(e) => say!("written, but not committed to git: {e}"),
    }
    say!(
        "reverted to {}: the daemon reloads the files and puts them in force as the version ending in {hash}",
        v.version
    );
    Ok(())
}

/// The files as the revert leaves them, compiled as the daemon will compile them (the CRM's
/// directory now): the hash they go in force with, or why the daemon would refuse them.
async fn checked(
    client: &tokio_postgres::Client,
    cfg: &crate::config::Config,
    dir: &std::path::Path,
    now: &[(std::path::PathBuf, String)],
    plan: &history::Revert,
) -> Result<String, CommandError> {
    let files = plan.applied_to(now);
    let directory = match crate::simulate::directory_as_routed(client, cfg).await {
        Ok((d, _)) => d,
        Err(e) => return Err(CommandError::Config(e.to_string())),
    };
    crate::compile_rules_with(cfg, &files, &directory).map(|e| e.hash).map_err(|e| {
        CommandError::Config(format!(
            "{}: the daemon would refuse these files with the CRM as it is now; nothing was written:\n{}",
            dir.display(),
            e.problems.join("\n")
        ))
    })
}

fn print_list(cfg: &crate::config::Config, versions: &[Version]) {
    if versions.is_empty() {
        say!("no rule set has been kept yet (the daemon keeps each one it puts in force)");
        return;
    }
    for (v, summary) in versions.iter().zip(history::summaries(cfg, versions)) {
        say!("{:<24} in force from {}  {summary}", v.version, v.in_force_at);
    }
}
