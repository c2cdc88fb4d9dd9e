//! `check`: validate the daemon config and the rules offline, then against the database when one
//! is reachable, with the same code the daemon uses.
//!
//! Owns the report an admin or a CI job reads. It must not change anything in the database: every
//! live check is a catalog read or a `PREPARE`.

use crate::config::Config;
use crate::{crm, db, load_rules};

/// The outcome of a check: lines to print, and whether it passed.
pub struct CheckReport {
    pub lines: Vec<String>,
    pub ok: bool,
    pub database_checked: bool,
    /// The database could not be reached (exit 69): nothing was wrong with what could be checked.
    pub unreachable: bool,
}

impl CheckReport {
    /// The exit code: 0, 69 (the database could not be reached), or 78 (something is wrong).
    pub fn exit_code(&self) -> i32 {
        if !self.ok {
            crate::exit::CONFIG
        } else if self.unreachable {
            crate::exit::UNAVAILABLE
        } else {
            crate::exit::OK
        }
    }
}

/// Check a loaded config: its rules, and its mapping against the database unless `offline`.
pub async fn check(cfg: &Config, offline: bool) -> CheckReport {
    let mut lines = Vec::new();
    let mut ok = true;
    lines.push(format!("{}: config OK", cfg.path.display()));
    let engine = match load_rules(cfg) {
        Ok(e) => {
            lines.push(format!(
                "{}: rules OK (version {}, {} pipelines, {} teams, {} members)",
                cfg.router.rules_dir.display(),
                e.version,
                e.pipelines.len(),
                e.teams.len(),
                e.members.len()
            ));
            if e.tests_waiting > 0 && offline {
                lines.push(format!(
                    "{}: {} rule-file test(s) not run: they run against the rules with the CRM's directory \
                     (`[directory]` in the config); run `check` without --offline",
                    cfg.router.rules_dir.display(),
                    e.tests_waiting
                ));
            }
            let reclaiming: Vec<&str> =
                e.pipelines.iter().filter(|(_, p)| p.reclaim.is_some()).map(|(id, _)| id.as_str()).collect();
            if matches!(cfg.write_back, crate::config::WriteBack::Statement { reclaim: None, .. })
                && !reclaiming.is_empty()
            {
                ok = false;
                let mut reclaiming = reclaiming;
                reclaiming.sort_unstable();
                lines.push(format!(
                    "{}: write_back.reclaim_statement: the rules reclaim in pipeline(s) {}, and owners are written by \
                     write_back.statement: add the statement that hands an opportunity on (parameters :opportunity_id, \
                     :owner, :team, :previous_owner; write only while the owner is still :previous_owner)",
                    cfg.path.display(),
                    reclaiming.join(", ")
                ));
            }
            Some(e)
        }
        Err(e) => {
            ok = false;
            lines.extend(e.problems);
            None
        }
    };
    let mut database_checked = false;
    let mut unreachable = false;
    if !offline {
        let client = match db::connect(&cfg.database, " check").await {
            Err(e) if e.kind() == db::ErrorKind::Connection => {
                unreachable = true;
                lines.push(format!("the database cannot be reached, live checks not run: {e}"));
                None
            }
            Err(e) => {
                ok = false;
                lines.push(format!("the database refuses the connection: {e}"));
                None
            }
            Ok(client) => Some(client),
        };
        let client = match client {
            // Not installed is a failure, and the mapping is still checked: every problem at once.
            Some(c) => match live_preliminaries(&c, cfg, &mut lines).await {
                Ok(installed) => {
                    ok &= installed;
                    Some(c)
                }
                Err(e) => {
                    ok = false;
                    lines.push(format!("database error while checking: {}", db::describe(&e)));
                    None
                }
            },
            None => None,
        };
        if let Some(client) = client {
            match crm::prepare(&client, cfg).await {
                Ok(sql) => {
                    database_checked = true;
                    lines.push(format!(
                        "{}: mapping OK against {} (every statement prepared)",
                        cfg.path.display(),
                        cfg.redacted_url()
                    ));
                    let mut engine = engine;
                    if cfg.directory.is_none() && sql.id_form != crate::rules::IdForm::default() {
                        // Read the files' user ids as the CRM writes them (a text owner column: as written).
                        let dir = crate::rules::Directory { ids: sql.id_form, ..crate::directory_flags(cfg) };
                        match crate::load_rules_with(cfg, &dir) {
                            Ok(e) => engine = Some(e),
                            Err(e) => {
                                ok = false;
                                lines.extend(e.problems);
                            }
                        }
                    }
                    if let Some(d) = &cfg.directory {
                        match crm::load_directory(&client, d)
                            .await
                            .map(|dir| crate::rules::Directory { ids: sql.id_form, ..dir })
                        {
                            Ok(dir) => match crate::load_rules_with(cfg, &dir) {
                                Ok(e) => {
                                    if let Err(msg) = crm::check_directory_users(&e, &dir) {
                                        ok = false;
                                        lines.push(format!("{}: {msg}", cfg.router.rules_dir.display()));
                                    }
                                    lines.push(format!(
                                        "{}: directory OK ({} active, {} memberships, {} KPIs); rules OK with it, rule-file tests included",
                                        cfg.path.display(),
                                        dir.active.as_ref().map_or(0, |a| a.len()),
                                        dir.memberships.len(),
                                        dir.kpi.len()
                                    ));
                                    engine = Some(e);
                                }
                                Err(e) => {
                                    ok = false;
                                    lines.push("with the CRM's directory, the rules fail:".to_string());
                                    lines.extend(e.problems);
                                }
                            },
                            Err(p) => {
                                ok = false;
                                lines.push(format!("{}: {p}", cfg.path.display()));
                            }
                        }
                    }
                    if let Some(e) = &engine {
                        if let Err(msg) = crm::check_rule_values(&client, &sql, e).await {
                            ok = false;
                            lines.push(format!("{}: {msg}", cfg.router.rules_dir.display()));
                        }
                    }
                }
                Err(crm::CrmError::Mapping(problems)) => {
                    database_checked = true;
                    ok = false;
                    for p in problems {
                        lines.push(format!("{}: {p}", cfg.path.display()));
                    }
                }
                Err(crm::CrmError::Sql(e)) => {
                    ok = false;
                    lines.push(format!("database error while checking: {}", db::describe(&e)));
                }
            }
        }
    }
    CheckReport { lines, ok, database_checked, unreachable }
}

/// Before the mapping: is the router installed at this binary's version, and who are we.
/// `Ok(false)` when the router's schema is missing or of another version (a line says why).
async fn live_preliminaries(
    client: &tokio_postgres::Client,
    cfg: &Config,
    lines: &mut Vec<String>,
) -> Result<bool, tokio_postgres::Error> {
    if let Some(role) = db::is_superuser(client).await? {
        lines.push(format!(
            "warning: connected as the superuser `{role}`: run the daemon with its own narrow role \
             (`oppty-router grants ROLE` prints what it needs)"
        ));
    }
    match crate::install::check_installed(client, cfg).await? {
        Ok(()) => Ok(true),
        Err(why) => {
            lines.push(format!("{}: router.schema: {why}", cfg.path.display()));
            Ok(false)
        }
    }
}
