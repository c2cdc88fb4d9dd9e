//! `check`: validate the daemon config and the rules offline, then against the database when one
//! is reachable, with the same code the daemon uses.
//!
//! Owns the report an admin or a CI job reads. It must not change anything in the database: every
//! live check is a catalog read or a `PREPARE`.

use crate::config::Config;
use crate::engine::Engine;
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

impl CheckReport {
    fn say(&mut self, line: String) {
        self.lines.push(line);
    }

    /// A line that fails the check.
    fn fail(&mut self, line: String) {
        self.ok = false;
        self.lines.push(line);
    }
}

/// Check a loaded config: its rules, and its mapping against the database unless `offline`.
pub async fn check(cfg: &Config, offline: bool) -> CheckReport {
    let mut r = CheckReport { lines: Vec::new(), ok: true, database_checked: false, unreachable: false };
    r.say(format!("{}: config OK", cfg.path.display()));
    let engine = rules(cfg, offline, &mut r);
    if offline {
        return r;
    }
    if let Some(client) = connect(cfg, &mut r).await {
        live(&client, cfg, engine, &mut r).await;
    }
    r
}

/// The rules as compiled offline; a pipeline that reclaims needs a way to hand opportunities on.
fn rules(cfg: &Config, offline: bool, r: &mut CheckReport) -> Option<Engine> {
    let e = match load_rules(cfg) {
        Ok(e) => e,
        Err(e) => {
            r.ok = false;
            r.lines.extend(e.problems);
            return None;
        }
    };
    let dir = cfg.router.rules_dir.display();
    r.say(format!(
        "{dir}: rules OK (version {}, {} pipelines, {} teams, {} members)",
        e.version,
        e.pipelines.len(),
        e.teams.len(),
        e.members.len()
    ));
    for w in &e.warnings {
        r.say(format!("{dir}: warning: {w}"));
    }
    if e.tests_waiting > 0 && offline {
        r.say(format!(
            "{dir}: {} rule-file test(s) not run: they run against the rules with the CRM's directory \
             (`[directory]` in the config); run `check` without --offline",
            e.tests_waiting
        ));
    }
    let mut reclaiming: Vec<&str> =
        e.pipelines.iter().filter(|(_, p)| p.reclaim.is_some()).map(|(id, _)| id.as_str()).collect();
    if matches!(cfg.write_back, crate::config::WriteBack::Statement { reclaim: None, .. }) && !reclaiming.is_empty() {
        reclaiming.sort_unstable();
        r.fail(format!(
            "{}: write_back.reclaim_statement: the rules reclaim in pipeline(s) {}, and owners are written by \
             write_back.statement: add the statement that hands an opportunity on (parameters :opportunity_id, \
             :owner, :team, :previous_owner; write only while the owner is still :previous_owner)",
            cfg.path.display(),
            reclaiming.join(", ")
        ));
    }
    Some(e)
}

/// A connection, and whether the router is installed at this version (not installed is a
/// failure, and the mapping is still checked: every problem at once).
async fn connect(cfg: &Config, r: &mut CheckReport) -> Option<tokio_postgres::Client> {
    let client = match db::connect(&cfg.database, " check").await {
        Ok(c) => c,
        Err(e) if e.kind() == db::ErrorKind::Connection => {
            r.unreachable = true;
            r.say(format!("the database cannot be reached, live checks not run: {e}"));
            return None;
        }
        Err(e) => {
            r.fail(format!("the database refuses the connection: {e}"));
            return None;
        }
    };
    match live_preliminaries(&client, cfg, &mut r.lines).await {
        Ok(installed) => {
            r.ok &= installed;
            Some(client)
        }
        Err(e) if db::kind_of(&e) == db::ErrorKind::Refused => {
            r.fail(format!(
                "{}: the router's schema cannot be read as this role: {} — give the role what \
                 `oppty-router grants ROLE` prints (run by the owners it names)",
                cfg.path.display(),
                db::describe(&e)
            ));
            None
        }
        Err(e) => {
            r.fail(format!("database error while checking: {}", db::describe(&e)));
            None
        }
    }
}

/// The mapping against the database, then the rules as the daemon will route with them: user
/// ids in the CRM's form, the CRM's directory, the values the CRM must hold.
async fn live(client: &tokio_postgres::Client, cfg: &Config, mut engine: Option<Engine>, r: &mut CheckReport) {
    let sql = match crm::prepare(client, cfg).await {
        Ok(sql) => sql,
        Err(crm::CrmError::Mapping(problems)) => {
            r.database_checked = true;
            for p in problems {
                r.fail(format!("{}: {p}", cfg.path.display()));
            }
            return;
        }
        Err(crm::CrmError::Sql(e)) => return r.fail(format!("database error while checking: {}", db::describe(&e))),
    };
    r.database_checked = true;
    r.say(format!("{}: mapping OK against {} (every statement prepared)", cfg.path.display(), cfg.redacted_url()));
    rights(client, cfg, &sql, r).await;
    if cfg.directory.is_none() && sql.id_form != crate::rules::IdForm::default() {
        // Read the files' user ids as the CRM writes them (a text owner column: as written).
        let dir = crate::rules::Directory { ids: sql.id_form, ..crate::directory_flags(cfg) };
        match crate::load_rules_with(cfg, &dir) {
            Ok(e) => engine = Some(e),
            Err(e) => {
                r.ok = false;
                r.lines.extend(e.problems);
            }
        }
    }
    if cfg.directory.is_some() {
        if let Some(e) = with_directory(client, cfg, sql.id_form, r).await {
            engine = Some(e);
        }
    }
    if let Some(e) = &engine {
        match crm::check_rule_values(client, &sql, e).await {
            Ok(()) => {}
            Err(e @ crm::RuleValuesError::Db(_)) => r.fail(format!("{}: {e}", cfg.router.rules_dir.display())),
            Err(misfit) => {
                r.ok = false;
                r.lines.extend(misfit.located(&e.sources));
            }
        }
    }
}

/// Every privilege the daemon's statements need, held by the role `check` connects as (the one
/// the daemon will run as): what is missing is named with the GRANT that fixes it.
async fn rights(client: &tokio_postgres::Client, cfg: &Config, sql: &crm::CrmSql, r: &mut CheckReport) {
    match crate::grants::lacking(client, cfg, sql).await {
        Ok(missing) if missing.is_empty() => {
            r.say(format!("{}: rights OK (every privilege the daemon's statements need is held)", cfg.path.display()))
        }
        Ok(missing) => {
            r.fail(format!(
                "{}: this role lacks {} privilege(s) the daemon's statements need; the GRANTs that fix it \
                 (`oppty-router grants ROLE` prints them all, in parts by who runs them):",
                cfg.path.display(),
                missing.len()
            ));
            for m in missing {
                r.fail(format!("  {m}"));
            }
        }
        Err(e) => r.fail(format!("{}: the rights could not be checked: {e}", cfg.path.display())),
    }
}

/// The CRM's directory read, and the rules compiled with it (their tests included).
async fn with_directory(
    client: &tokio_postgres::Client,
    cfg: &Config,
    ids: crate::rules::IdForm,
    r: &mut CheckReport,
) -> Option<Engine> {
    let dir = match crm::directory_for(client, cfg, ids).await {
        Ok(dir) => dir,
        Err(p) => {
            r.fail(format!("{}: {p}", cfg.path.display()));
            return None;
        }
    };
    let e = match crate::load_rules_with(cfg, &dir) {
        Ok(e) => e,
        Err(e) => {
            r.fail("with the CRM's directory, the rules fail:".to_string());
            r.lines.extend(e.problems);
            return None;
        }
    };
    if let Err(msg) = crm::check_directory_users(&e, &dir) {
        r.fail(format!("{}: {msg}", cfg.router.rules_dir.display()));
    }
    r.say(format!(
        "{}: directory OK ({} active, {} memberships, {} KPIs); rules OK with it, rule-file tests included",
        cfg.path.display(),
        dir.active.as_ref().map_or(0, |a| a.len()),
        dir.memberships.len(),
        dir.kpi.len()
    ));
    Some(e)
}

/// Before the mapping: is the router installed at this binary's version, and who are we.
/// `Ok(false)` when the router's schema is missing or of another version (a line says why).
async fn live_preliminaries(
    client: &tokio_postgres::Client,
    cfg: &Config,
    lines: &mut Vec<String>,
) -> Result<bool, tokio_postgres::Error> {
    if let Some(role) = crate::grants::is_superuser(client).await? {
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
