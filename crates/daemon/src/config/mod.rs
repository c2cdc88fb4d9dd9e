//! The daemon config (`oppty-router.toml`): where things are in the CRM, and how the daemon runs.
//!
//! Owns parsing and validating that file into a [`Config`]. It is written by ops, so it is the only
//! place SQL fragments may come from (field expressions, open/deleted predicates, write-back).
//! It must not touch the database: checks against a live database live in `crm`.
//!
//! The rooms: `config::file` (the file as written: its serde structs and defaults, which stay
//! here), `config::check` (every problem at once, and the conversion to the checked types below);
//! why a file cannot be read is `access`'s, the connection's settings `db`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::access::unreadable;
pub use crate::db::DatabaseConfig;
use crate::ident::{Ident, TableName};

/// Every problem found in a config file, one per line, as `file:line:column: key: message`
/// (line and column where they are known).
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(msg: String) -> Self {
        ConfigError { problems: vec![msg] }
    }
}

mod check;
mod file;

use check::{build, Problems};
pub use file::LogFormat;
use file::RawConfig;

/// A field the rules may test: a plain column of the opportunity, or an SQL expression over the
/// opportunity row (aliased `o`) that may reach related tables.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSource {
    Column(Ident),
    Sql(String),
}

impl FieldSource {
    /// SQL text for the value, over the opportunity row aliased `o`.
    pub fn expr(&self) -> String {
        match self {
            FieldSource::Column(c) => format!("o.{}", c.quoted()),
            FieldSource::Sql(s) => format!("({s})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub source: FieldSource,
}

/// The named parameters of a custom write-back statement (`write_back.statement`,
/// `reclaim_statement`), in `$n` order.
pub const WRITE_PARAMS: &[&str] = &["opportunity_id", "owner", "team", "previous_owner"];

/// Where the opportunity lives and what its columns mean.
#[derive(Debug, Clone)]
pub struct OpportunityMap {
    pub table: TableName,
    pub id: Ident,
    pub owner: Ident,
    pub team: Option<Ident>,
    pub unowned_values: Vec<String>,
    pub pipeline: Option<FieldSource>,
    /// Which rows of the table are opportunities at all (`opportunity.where`, over `o`): a table
    /// holding leads and opportunities routes and counts only these.
    pub where_: Option<String>,
    pub open_when: Option<String>,
    /// The CRM's own "nobody owns this" over the row `o`, any columns (a second "assigned to"
    /// column too); `None`: the owner column is NULL or one of `unowned_values`.
    pub unowned_when: Option<String>,
    pub deleted_when: Option<String>,
    pub watch_columns: Vec<Ident>,
    /// Who last changed the row (a user id column the CRM sets on every edit): an edit by the
    /// owner is captured as an interaction, for reclaim rules that count owner edits.
    pub edited_by: Option<Ident>,
    /// When the row was created (a timestamp column): `backfill --since` reads it.
    pub created_at: Option<Ident>,
    /// When the owner was last set, by anyone (a timestamp column the CRM keeps): caps with
    /// `count = "crm"` count the rows each member was assigned in their window by it (by
    /// `created_at` when this is not mapped), manual assignments included.
    pub assigned_at: Option<Ident>,
    /// In the order they are fetched; rules refer to them by name.
    pub fields: Vec<FieldDef>,
}

/// How an activity row points at its opportunity.
#[derive(Debug, Clone)]
pub enum ActivityLink {
    /// A foreign-key column holding the opportunity id.
    Column(Ident),
    /// A type column plus an id column (`mail_message(model, res_id)`).
    Polymorphic { type_column: Ident, type_value: String, id_column: Ident },
    /// A query over the activity row `r` returning the opportunity ids it belongs to (a task
    /// linked through a link table), optionally only for rows whose type column holds a value.
    Sql { sql: String, filter: Option<(Ident, String)> },
}

#[derive(Debug, Clone)]
pub struct ActivityMap {
    pub name: String,
    pub table: TableName,
    pub link: ActivityLink,
    /// Who did it: a column, or an SQL expression over the activity row `r` (a partner id mapped
    /// to a user: `(SELECT u.id FROM crm.users u WHERE u.partner_id = r.author_id)`).
    pub actor: RowValue,
    pub at: Option<Ident>,
}

/// A table whose rows complete an opportunity after it is saved (an account link, a product line,
/// an address): an insert or update there re-queues the opportunity while it is unowned.
#[derive(Debug, Clone)]
pub struct RelatedMap {
    pub name: String,
    pub table: TableName,
    pub opportunity: RowValue,
    /// Polymorphic links: only rows whose `type_column` holds `type_value`.
    pub filter: Option<(Ident, String)>,
}

/// Which opportunity a related row belongs to.
#[derive(Debug, Clone)]
pub enum RowValue {
    /// A column holding the opportunity id.
    Column(Ident),
    /// A query over the related row `r` returning opportunity ids (one column), for links that
    /// go through another table; names in it must be schema-qualified.
    Sql(String),
}

/// How the owner is written back.
#[derive(Debug, Clone)]
pub enum WriteBack {
    /// One `UPDATE … FROM unnest(…)` per batch, setting the owner, the team (when mapped) and
    /// these extra columns to these SQL expressions.
    Batch { set: Vec<(Ident, String)> },
    /// An ops-written statement run once per assignment with named parameters
    /// `:opportunity_id`, `:owner`, `:team`, `:previous_owner` (all text), and optionally the one
    /// the reclaim sweeper runs to hand an opportunity on (same parameters; it must write only
    /// while the owner is still `:previous_owner`).
    Statement { sql: String, reclaim: Option<String> },
}

/// What the CRM says about members, by ops-written queries (all optional).
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Returns the ids of active users (one text column); members not returned are inactive.
    pub active_members: Option<String>,
    /// Returns (team crm id, member id) pairs (two text columns), added to the teams with that `crm_id`.
    pub team_members: Option<String>,
    /// Returns (member id, score) pairs (text, float8), for `best_kpi`.
    pub kpi: Option<String>,
    /// Returns the CRM's territory tree, by column name: `id`, and optional `name`, `parent` (or
    /// `lft` and `rgt`, a nested set), `aliases` (text[] or comma-separated text).
    pub territories: Option<String>,
    /// Returns (team crm id, territory id) pairs (two text columns): the territories each team
    /// with that `crm_id` covers, besides those its rule file lists.
    pub team_territories: Option<String>,
    /// How often the queries run again.
    pub refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub schema: Ident,
    pub channel: Ident,
    pub rules_dir: PathBuf,
    pub batch_size: u32,
    /// Connections the leader drains on at once, each claiming batches of its own.
    pub drain_connections: u32,
    pub poll_interval: Duration,
    pub max_attempts: u32,
    /// The first retry's delay, doubled each attempt up to `retry_max_backoff`, jittered.
    pub retry_backoff: Duration,
    pub retry_max_backoff: Duration,
    pub reconnect_max_backoff: Duration,
    pub shutdown_timeout: Duration,
    /// Quiet time after a change in the rules directory before the rules are reloaded.
    pub reload_debounce: Duration,
    /// Rule files that do not compile are judged only once the directory has been quiet this
    /// long (an editor's save in steps is not a refusal); a file removed waits as long.
    pub reload_settle: Duration,
    /// How often the reclaim sweeper looks for stale assignments.
    pub reclaim_interval: Duration,
    /// A leader that has not renewed its lease for this long is taken over by a standby.
    pub leader_lease: Duration,
    /// The longest a statement of the daemon's waits for a lock (rows a CRM transaction holds are
    /// skipped where they can be, and tried again shortly).
    pub lock_timeout: Duration,
    /// The longest a statement of the daemon's runs (a batch's, the sweep's, a recount).
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub database: DatabaseConfig,
    pub router: RouterConfig,
    pub opportunity: OpportunityMap,
    pub activities: Vec<ActivityMap>,
    pub related: Vec<RelatedMap>,
    pub write_back: WriteBack,
    pub directory: Option<DirectoryConfig>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The metrics and health endpoint, when configured.
    pub metrics: Option<MetricsConfig>,
    /// The web console (`oppty-router console`, a process of its own).
    pub console: ConsoleConfig,
}

/// `[console]`: where `oppty-router console` listens, and its accounts file.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub listen: std::net::SocketAddr,
    /// Names, roles and password hashes (default: `console-users.toml` beside the config file).
    pub users: PathBuf,
    /// Every save and revert made in the console (who, when, what), a JSON object a line
    /// (default: `console-journal.jsonl` beside the config file).
    pub journal: PathBuf,
    /// Served over TLS with this certificate chain and key (PEM files), when set.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// `[metrics]`: where to serve `/metrics`, `/livez` and `/readyz`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: std::net::SocketAddr,
    /// `/readyz` says not ready while the leader's oldest waiting event is older than this.
    pub ready_max_lag: Duration,
}

impl Config {
    /// Read and check a config file. Every problem is reported, not just the first.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::one(unreadable(path, &e)))?;
        Self::parse(&text, path)
    }

    /// Check config text; `path` is used in messages and to resolve a relative `rules_dir`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| crate::rules::line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::one(format!("{file}:{line}:{col}: {}", e.message().trim()))
        })?;
        let mut p = Problems { file, text, list: Vec::new() };
        let cfg = build(raw, path, &mut p);
        if p.list.is_empty() {
            if let Some(cfg) = cfg {
                return Ok(cfg);
            }
        }
        Err(ConfigError { problems: p.list })
    }

    /// The database URL without any password (rebuilt from its parsed form), for logs and messages.
    pub fn redacted_url(&self) -> String {
        crate::db::redacted(&self.database.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[database]
url = "host=/tmp dbname=crm user=router password=s3cret"
[opportunity]
table = "crm.opportunity"
id = "oppId"
owner = "accountOwnerId"
"#;

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = Config::parse(MIN, Path::new("/etc/oppty-router/oppty-router.toml")).expect("valid");
        assert_eq!(c.router.batch_size, 500);
        assert_eq!(c.opportunity.owner.quoted(), "\"accountOwnerId\"");
        assert_eq!(c.redacted_url(), "host=/tmp dbname=crm user=router password=***");
    }

    #[test]
    fn syntax_error_has_file_line_column() {
        let err = Config::parse("[database]\nurl = \n", Path::new("x.toml")).expect_err("bad");
        assert!(err.to_string().starts_with("x.toml:2:"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MIN}ownr = \"x\"\n");
        let err = Config::parse(&text, Path::new("x.toml")).expect_err("bad");
        assert!(err.to_string().contains("unknown field `ownr`"), "{err}");
    }

    #[test]
    fn sql_from_the_config_that_cannot_run_is_refused_offline_with_its_key() {
        let text = MIN.replace(
            "owner = \"accountOwnerId\"",
            "owner = \"accountOwnerId\"\nwhere = \"o.kind = 'deal\"\nunowned_when = \"o.\\\"assignedTo\\\" IS NULL\"",
        ) + "[write_back]\nstatement = \"UPDATE t SET o = :owner -- it's\\nWHERE id = :opportunity_idd\"\n";
        let s = Config::parse(&text, Path::new("x.toml")).expect_err("bad").to_string();
        assert!(s.contains("opportunity.where: a string `'` opened at character 10 is never closed"), "{s}");
        assert!(s.contains("opportunity.unowned_when: reads \"assignedTo\", not in opportunity.watch_columns"), "{s}");
        assert!(s.contains("write_back.statement: unknown parameter `:opportunity_idd`"), "{s}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = MIN.replace("owner = \"accountOwnerId\"", "owner = \"\"\nopen_when = \"true; drop table x\"")
            + "[router]\nbatch_size = 0\nmax_attempts = 1000\nretry_backoff = \"1m\"\nretry_max_backoff = \"10s\"\n";
        let err = Config::parse(&text, Path::new("x.toml")).expect_err("bad");
        let s = err.to_string();
        assert!(s.contains("opportunity.owner: `` is empty"), "{s}");
        assert!(s.contains("opportunity.open_when: `;` at character 5: write one expression"), "{s}");
        assert!(s.contains("x.toml:"), "{s}");
        assert!(s.contains("router.batch_size: is 0"), "{s}");
        assert!(s.contains("router.max_attempts: is 1000; use 1 to 100"), "{s}");
        assert!(s.contains("router.retry_max_backoff: use router.retry_backoff to 7d"), "{s}");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        let c = Config::parse(
            &MIN.replace("host=/tmp dbname=crm user=router password=s3cret", "postgres://u:pw@h/db"),
            Path::new("x.toml"),
        )
        .expect("valid");
        assert_eq!(c.redacted_url(), "user=u password=*** host=h dbname=db");
    }

    #[test]
    fn a_bad_connection_string_is_named_without_echoing_it() {
        let text = MIN.replace("password=s3cret", "password='s3cret");
        let err = Config::parse(&text, Path::new("x.toml")).expect_err("bad");
        let s = err.to_string();
        assert!(s.contains("database.url: unterminated quoted value for `password`"), "{s}");
        assert!(!s.contains("s3cret"), "{s}");
        let text = MIN.replace("password=s3cret", "password=s3cret sslmode=verify-full");
        let err = Config::parse(&text, Path::new("x.toml")).expect_err("bad");
        assert!(err.to_string().contains("sslrootcert="), "{err}");
    }
}
