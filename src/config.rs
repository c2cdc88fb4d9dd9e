//! The daemon config (`oppty-router.toml`): where things are in the CRM, and how the daemon runs.
//!
//! Owns parsing and validating that file into a [`Config`]. It is written by ops, so it is the only
//! place SQL fragments may come from (field expressions, open/deleted predicates, write-back).
//! It must not touch the database: checks against a live database live in `crm`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

// ---------- the file as written ----------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: RawDatabase,
    #[serde(default)]
    router: RawRouter,
    opportunity: RawOpportunity,
    #[serde(default)]
    activity: Vec<RawActivity>,
    #[serde(default)]
    related: Vec<RawRelated>,
    #[serde(default)]
    write_back: RawWriteBack,
    directory: Option<RawDirectory>,
    #[serde(default)]
    log: RawLog,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
    #[serde(default = "default_ready_max_lag", with = "humantime_serde")]
    ready_max_lag: Duration,
}

fn default_ready_max_lag() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    active_members: Option<String>,
    team_members: Option<String>,
    kpi: Option<String>,
    territories: Option<String>,
    team_territories: Option<String>,
    #[serde(default = "default_refresh", with = "humantime_serde")]
    refresh: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    password_file: Option<PathBuf>,
    #[serde(default = "default_app_name")]
    application_name: String,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    connect_timeout: Duration,
    naive_timestamps: Option<String>,
}

fn default_app_name() -> String {
    "oppty-router".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRouter {
    schema: String,
    channel: String,
    rules_dir: PathBuf,
    batch_size: u32,
    drain_connections: u32,
    #[serde(with = "humantime_serde")]
    poll_interval: Duration,
    max_attempts: u32,
    #[serde(with = "humantime_serde")]
    retry_backoff: Duration,
    #[serde(with = "humantime_serde")]
    retry_max_backoff: Duration,
    #[serde(with = "humantime_serde")]
    reconnect_max_backoff: Duration,
    #[serde(with = "humantime_serde")]
    shutdown_timeout: Duration,
    #[serde(with = "humantime_serde")]
    reload_debounce: Duration,
    #[serde(with = "humantime_serde")]
    reload_settle: Duration,
    #[serde(with = "humantime_serde")]
    reclaim_interval: Duration,
    #[serde(with = "humantime_serde")]
    leader_lease: Duration,
    #[serde(with = "humantime_serde")]
    lock_timeout: Duration,
    #[serde(with = "humantime_serde")]
    statement_timeout: Duration,
}

impl Default for RawRouter {
    fn default() -> Self {
        RawRouter {
            schema: "oppty_router".into(),
            channel: "oppty_router_wakeup".into(),
            rules_dir: PathBuf::from("/etc/oppty-router/rules"),
            batch_size: 500,
            drain_connections: 2,
            poll_interval: Duration::from_millis(500),
            max_attempts: 5,
            retry_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(600),
            reconnect_max_backoff: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(20),
            reload_debounce: Duration::from_millis(50),
            reload_settle: Duration::from_secs(1),
            reclaim_interval: Duration::from_secs(60),
            leader_lease: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawField {
    Column(String),
    Spec(RawFieldSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFieldSpec {
    column: Option<String>,
    sql: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpportunity {
    table: String,
    id: String,
    owner: String,
    team: Option<String>,
    #[serde(default)]
    unowned_values: Vec<String>,
    pipeline: Option<RawField>,
    #[serde(rename = "where")]
    where_: Option<String>,
    open_when: Option<String>,
    unowned_when: Option<String>,
    deleted_when: Option<String>,
    #[serde(default)]
    watch_columns: Vec<String>,
    edited_by: Option<String>,
    created_at: Option<String>,
    assigned_at: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActivity {
    name: Option<String>,
    table: String,
    opportunity: RawRowValue,
    type_column: Option<String>,
    type_value: Option<String>,
    actor: RawRowValue,
    at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelated {
    name: Option<String>,
    table: String,
    opportunity: RawRowValue,
    type_column: Option<String>,
    type_value: Option<String>,
}

/// A value of a related row: a column, or `{ sql = "…" }` (a query over the row `r`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRowValue {
    Column(String),
    Sql { sql: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWriteBack {
    #[serde(default)]
    set: BTreeMap<String, String>,
    statement: Option<String>,
    reclaim_statement: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: LogFormat,
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { format: LogFormat::Text, level: "info".into() }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for journald and log shippers.
    Json,
}

// ---------- the checked config ----------

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
pub struct DatabaseConfig {
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub application_name: String,
    pub connect_timeout: Duration,
    /// The zone the CRM's `timestamp without time zone` columns are written in (an IANA name,
    /// usually "UTC"): the router's sessions and capture triggers read them in it.
    pub naive_timestamps: Option<String>,
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

/// Why a file cannot be read, and for a permission problem, who needs to read it and how.
pub fn unreadable(path: &Path, e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return format!("{}: cannot read: {e}", path.display());
    }
    let uid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string());
    let group =
        nix::unistd::Group::from_gid(nix::unistd::getegid()).ok().flatten().map(|g| g.name).unwrap_or(user.clone());
    format!(
        "{p}: cannot read: {e}; this process runs as user `{user}`: make the file (and its directories) readable \
         by it, e.g. `chgrp {group} {p} && chmod 0640 {p}`",
        p = path.display()
    )
}

struct Problems<'a> {
    file: String,
    text: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    /// Record a problem for `key` (a dotted path such as `opportunity.owner`); the line is the
    /// first line that sets the key's last part, which is where an admin will look.
    fn add(&mut self, key: &str, msg: impl std::fmt::Display) {
        let last = key.rsplit('.').next().unwrap_or(key);
        let last = last.split('[').next().unwrap_or(last);
        let line = self
            .text
            .lines()
            .position(|l| {
                let l = l.trim_start();
                l.starts_with(last) && l[last.len()..].trim_start().starts_with('=')
            })
            .map(|i| format!(":{}:1", i + 1))
            .unwrap_or_default();
        self.list.push(format!("{}{line}: {key}: {msg}", self.file));
    }

    fn ident(&mut self, key: &str, raw: &str) -> Option<Ident> {
        match Ident::parse(raw) {
            Ok(i) => Some(i),
            Err(e) => {
                self.add(key, format!("`{raw}` {e}"));
                None
            }
        }
    }

    fn table(&mut self, key: &str, raw: &str) -> Option<TableName> {
        match TableName::parse(raw) {
            Ok(t) => Some(t),
            Err(e) => {
                self.add(key, format!("`{raw}` {e}"));
                None
            }
        }
    }

    fn sql(&mut self, key: &str, raw: &str) -> Option<String> {
        if raw.trim().is_empty() {
            self.add(key, "is empty; write an SQL expression over the opportunity row `o`");
            return None;
        }
        let problems = crate::sql_text::lint(raw, true);
        for m in &problems {
            self.add(key, m.clone());
        }
        problems.is_empty().then(|| raw.trim().to_string())
    }

    /// An ops-written statement with `:name` parameters: what can be told wrong of it offline.
    fn statement(&mut self, key: &str, raw: &str) {
        let problems = crate::sql_text::lint(raw, false);
        for m in &problems {
            self.add(key, m.clone());
        }
        if problems.is_empty() {
            if let Err(m) = crate::sql_text::bind_named(raw, WRITE_PARAMS) {
                self.add(key, m);
            }
        }
    }

    fn field(&mut self, key: &str, raw: RawField) -> Option<FieldSource> {
        match raw {
            RawField::Column(c) => self.ident(key, &c).map(FieldSource::Column),
            RawField::Spec(RawFieldSpec { column: Some(c), sql: None }) => {
                self.ident(&format!("{key}.column"), &c).map(FieldSource::Column)
            }
            RawField::Spec(RawFieldSpec { column: None, sql: Some(s) }) => {
                self.sql(&format!("{key}.sql"), &s).map(FieldSource::Sql)
            }
            RawField::Spec(_) => {
                self.add(key, "give exactly one of `column = \"…\"` or `sql = \"…\"`");
                None
            }
        }
    }
}

fn build(raw: RawConfig, path: &Path, p: &mut Problems<'_>) -> Option<Config> {
    let RawConfig { database, router, opportunity, activity, related, write_back, directory, log, metrics } = raw;
    let database = database_of(p, database);
    let router = router_of(p, router, path);
    let opportunity = opportunity_of(p, opportunity);
    let activities = activity.into_iter().enumerate().filter_map(|(i, a)| activity_of(p, i, a)).collect();
    let related = related.into_iter().enumerate().filter_map(|(i, r)| build_related(i, r, p)).collect();
    let write_back = write_back_of(p, write_back);
    let directory = directory.map(|d| directory_of(p, d));
    let metrics = metrics.and_then(|m| metrics_of(p, m));
    if log.level.parse::<tracing_subscriber::EnvFilter>().is_err() {
        p.add("log.level", format!("`{}` is not a level or filter; use error, warn, info, debug or trace", log.level));
    }
    Some(Config {
        path: path.to_path_buf(),
        database,
        router: router?,
        opportunity: opportunity?,
        activities,
        related,
        write_back,
        directory,
        log_format: log.format,
        log_level: log.level,
        metrics,
    })
}

fn metrics_of(p: &mut Problems<'_>, m: RawMetrics) -> Option<MetricsConfig> {
    match m.listen.trim().parse::<std::net::SocketAddr>() {
        Ok(listen) => Some(MetricsConfig { listen, ready_max_lag: m.ready_max_lag }),
        Err(_) => {
            let hint = "an address and port, e.g. \"127.0.0.1:9187\" (localhost only) or \"0.0.0.0:9187\"";
            p.add("metrics.listen", format!("`{}` is not {hint}", m.listen));
            None
        }
    }
}

fn database_of(p: &mut Problems<'_>, database: RawDatabase) -> DatabaseConfig {
    if database.url.trim().is_empty() {
        p.add("database.url", "is empty; write e.g. `host=/var/run/postgresql dbname=crm user=oppty_router`");
    } else if let Err(e) = crate::db::parse_url(&database.url) {
        // The message never holds the string itself (it may hold a password).
        let e = e.to_string();
        p.add("database.url", e.strip_prefix("database.url: ").unwrap_or(&e));
    }
    if let Some(z) = &database.naive_timestamps {
        if z.parse::<chrono_tz::Tz>().is_err() {
            p.add(
                "database.naive_timestamps",
                format!("`{z}` is not a time zone; use an IANA name such as \"UTC\" or \"Asia/Ho_Chi_Minh\""),
            );
        }
    }
    DatabaseConfig {
        url: database.url,
        password_file: database.password_file,
        application_name: database.application_name,
        connect_timeout: database.connect_timeout,
        naive_timestamps: database.naive_timestamps,
    }
}

/// `[router]`; the rules directory is relative to the config file.
fn router_of(p: &mut Problems<'_>, router: RawRouter, path: &Path) -> Option<RouterConfig> {
    let schema = p.ident("router.schema", &router.schema);
    let channel = p.ident("router.channel", &router.channel);
    if router.batch_size == 0 || router.batch_size > 10_000 {
        p.add("router.batch_size", format!("is {}; use 1 to 10000 (500 is a good start)", router.batch_size));
    }
    if router.drain_connections == 0 || router.drain_connections > 8 {
        p.add(
            "router.drain_connections",
            format!(
                "is {}; use 1 to 8 (2 is a good start; more than the server's cores buys nothing)",
                router.drain_connections
            ),
        );
    }
    if router.max_attempts == 0 || router.max_attempts > 100 {
        p.add("router.max_attempts", format!("is {}; use 1 to 100 (5 is a good start)", router.max_attempts));
    }
    if router.retry_max_backoff < router.retry_backoff || router.retry_max_backoff > Duration::from_secs(7 * 86_400) {
        p.add("router.retry_max_backoff", "use router.retry_backoff to 7d (10m is a good start)");
    }
    if router.reload_debounce < Duration::from_millis(10) || router.reload_debounce > Duration::from_secs(10) {
        p.add("router.reload_debounce", "use 10ms to 10s (50ms is a good start)");
    }
    if router.reload_settle < router.reload_debounce || router.reload_settle > Duration::from_secs(60) {
        p.add("router.reload_settle", "use router.reload_debounce to 60s (1s is a good start)");
    }
    if router.reclaim_interval < Duration::from_millis(100) {
        p.add("router.reclaim_interval", "is below 100ms; use e.g. \"1m\"");
    }
    if router.leader_lease < Duration::from_secs(1) || router.leader_lease > Duration::from_secs(600) {
        p.add("router.leader_lease", "use 1s to 10m (5s is a good start: a frozen leader is taken over after it)");
    }
    if router.lock_timeout < Duration::from_millis(10) || router.lock_timeout > Duration::from_secs(60) {
        p.add(
            "router.lock_timeout",
            "use 10ms to 1m (1s is a good start: a row a person holds is skipped, not waited for)",
        );
    }
    if router.statement_timeout < Duration::from_millis(100)
        || router.statement_timeout > Duration::from_secs(3600)
        || router.statement_timeout <= router.lock_timeout
    {
        p.add(
            "router.statement_timeout",
            "use 100ms to 1h, longer than router.lock_timeout (30s is a good start: longer than any batch takes)",
        );
    }
    if router.poll_interval < Duration::from_millis(10) {
        p.add("router.poll_interval", "is below 10ms; use e.g. \"500ms\"");
    }
    let rules_dir = if router.rules_dir.is_relative() {
        path.parent().unwrap_or(Path::new(".")).join(&router.rules_dir)
    } else {
        router.rules_dir.clone()
    };
    Some(RouterConfig {
        schema: schema?,
        channel: channel?,
        rules_dir,
        batch_size: router.batch_size,
        drain_connections: router.drain_connections,
        poll_interval: router.poll_interval,
        max_attempts: router.max_attempts,
        retry_backoff: router.retry_backoff,
        retry_max_backoff: router.retry_max_backoff,
        reconnect_max_backoff: router.reconnect_max_backoff,
        shutdown_timeout: router.shutdown_timeout,
        reload_debounce: router.reload_debounce,
        reload_settle: router.reload_settle,
        reclaim_interval: router.reclaim_interval,
        leader_lease: router.leader_lease,
        lock_timeout: router.lock_timeout,
        statement_timeout: router.statement_timeout,
    })
}

fn opportunity_of(p: &mut Problems<'_>, o: RawOpportunity) -> Option<OpportunityMap> {
    let table = p.table("opportunity.table", &o.table);
    let id = p.ident("opportunity.id", &o.id);
    let owner = p.ident("opportunity.owner", &o.owner);
    let team = o.team.as_deref().and_then(|t| p.ident("opportunity.team", t));
    let pipeline = o.pipeline.and_then(|f| p.field("opportunity.pipeline", f));
    let where_ = o.where_.as_deref().and_then(|s| p.sql("opportunity.where", s));
    let open_when = o.open_when.as_deref().and_then(|s| p.sql("opportunity.open_when", s));
    let unowned_when = o.unowned_when.as_deref().and_then(|s| p.sql("opportunity.unowned_when", s));
    let deleted_when = o.deleted_when.as_deref().and_then(|s| p.sql("opportunity.deleted_when", s));
    let watch_columns: Vec<Ident> = (o.watch_columns.iter().enumerate())
        .filter_map(|(i, c)| p.ident(&format!("opportunity.watch_columns[{i}]"), c))
        .collect();
    if let Some(w) = &unowned_when {
        unwatched(p, w, &owner, &watch_columns);
    }
    let edited_by = o.edited_by.as_deref().and_then(|c| p.ident("opportunity.edited_by", c));
    let created_at = o.created_at.as_deref().and_then(|c| p.ident("opportunity.created_at", c));
    let assigned_at = o.assigned_at.as_deref().and_then(|c| p.ident("opportunity.assigned_at", c));
    let mut fields = Vec::new();
    for (name, f) in o.fields {
        let key = format!("opportunity.fields.{name}");
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
            p.add(&key, "field names use letters, digits and `_` only");
            continue;
        }
        if let Some(source) = p.field(&key, f) {
            fields.push(FieldDef { name, source });
        }
    }
    Some(OpportunityMap {
        table: table?,
        id: id?,
        owner: owner?,
        team,
        unowned_values: o.unowned_values,
        pipeline,
        where_,
        open_when,
        unowned_when,
        deleted_when,
        watch_columns,
        edited_by,
        created_at,
        assigned_at,
        fields,
    })
}

/// The columns `unowned_when` reads must be watched: a change to one (a person filling or
/// clearing an "assigned to" list) is what the capture trigger must see.
fn unwatched(p: &mut Problems<'_>, when: &str, owner: &Option<Ident>, watched: &[Ident]) {
    let watched: Vec<&str> = watched.iter().chain(owner.as_ref()).map(Ident::as_str).collect();
    let missing: Vec<String> =
        crate::sql_text::columns_of(when, "o").into_iter().filter(|c| !watched.contains(&c.as_str())).collect();
    if !missing.is_empty() {
        let list = missing.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        p.add(
            "opportunity.unowned_when",
            format!(
                "reads {list}, not in opportunity.watch_columns; add {} there, so that a person setting or clearing it is captured",
                if missing.len() == 1 { "it" } else { "them" }
            ),
        );
    }
}

fn activity_of(p: &mut Problems<'_>, i: usize, a: RawActivity) -> Option<ActivityMap> {
    let key = format!("activity[{i}]");
    let table = p.table(&format!("{key}.table"), &a.table);
    let link = activity_link(p, &key, a.opportunity, a.type_column, a.type_value);
    let actor = row_value(p, &format!("{key}.actor"), a.actor);
    let at = a.at.as_deref().and_then(|c| p.ident(&format!("{key}.at"), c));
    let (table, link, actor) = (table?, link?, actor?);
    let name = a.name.unwrap_or_else(|| table.plain());
    Some(ActivityMap { name, table, link, actor, at })
}

fn directory_of(p: &mut Problems<'_>, d: RawDirectory) -> DirectoryConfig {
    let q = |p: &mut Problems<'_>, key: &str, v: Option<String>| {
        v.and_then(|s| {
            let problems = crate::sql_text::lint(&s, true);
            if s.trim().is_empty() {
                p.add(key, "write one SELECT statement, without `;`");
            }
            for m in &problems {
                p.add(key, m.replace("write one expression", "write one SELECT statement"));
            }
            (!s.trim().is_empty() && problems.is_empty()).then(|| s.trim().to_string())
        })
    };
    if d.refresh < Duration::from_secs(1) {
        p.add("directory.refresh", "is below 1s; use e.g. \"5m\"");
    }
    DirectoryConfig {
        active_members: q(p, "directory.active_members", d.active_members),
        team_members: q(p, "directory.team_members", d.team_members),
        kpi: q(p, "directory.kpi", d.kpi),
        territories: q(p, "directory.territories", d.territories),
        team_territories: q(p, "directory.team_territories", d.team_territories),
        refresh: d.refresh,
    }
}

fn write_back_of(p: &mut Problems<'_>, write_back: RawWriteBack) -> WriteBack {
    match write_back.statement {
        Some(s) => {
            if !write_back.set.is_empty() {
                p.add(
                    "write_back.set",
                    "cannot be combined with `write_back.statement`; put those columns in your statement",
                );
            }
            if s.trim().is_empty() {
                p.add("write_back.statement", "is empty");
            }
            p.statement("write_back.statement", &s);
            let reclaim = write_back.reclaim_statement.map(|r| {
                if r.trim().is_empty() {
                    p.add("write_back.reclaim_statement", "is empty; remove it, or write the reclaim statement");
                }
                p.statement("write_back.reclaim_statement", &r);
                r.trim().trim_end_matches(';').to_string()
            });
            WriteBack::Statement { sql: s.trim().trim_end_matches(';').to_string(), reclaim }
        }
        None => {
            if write_back.reclaim_statement.is_some() {
                p.add(
                    "write_back.reclaim_statement",
                    "goes with `write_back.statement`; with `write_back.set` the router builds the reclaim write itself",
                );
            }
            let mut set = Vec::new();
            for (col, expr) in write_back.set {
                let key = format!("write_back.set.{col}");
                if let (Some(c), Some(e)) = (p.ident(&key, &col), p.sql(&key, &expr)) {
                    set.push((c, e));
                }
            }
            WriteBack::Batch { set }
        }
    }
}

/// How an activity row names its opportunity: a column, a type column plus an id column, or a
/// query over the row `r`.
fn activity_link(
    p: &mut Problems<'_>,
    key: &str,
    opportunity: RawRowValue,
    type_column: Option<String>,
    type_value: Option<String>,
) -> Option<ActivityLink> {
    let filter = type_filter(p, key, type_column, type_value)?;
    match (row_value(p, &format!("{key}.opportunity"), opportunity)?, filter) {
        (RowValue::Column(c), None) => Some(ActivityLink::Column(c)),
        (RowValue::Column(id_column), Some((type_column, type_value))) => {
            Some(ActivityLink::Polymorphic { type_column, type_value, id_column })
        }
        (RowValue::Sql(sql), filter) => Some(ActivityLink::Sql { sql, filter }),
    }
}

/// A polymorphic link's `type_column = type_value` filter: `Some(None)` without one, `None` when
/// it is wrong (both or neither must be given).
fn type_filter(
    p: &mut Problems<'_>,
    key: &str,
    type_column: Option<String>,
    type_value: Option<String>,
) -> Option<Option<(Ident, String)>> {
    match (type_column, type_value) {
        (None, None) => Some(None),
        (Some(c), Some(v)) => p.ident(&format!("{key}.type_column"), &c).map(|c| Some((c, v))),
        _ => {
            p.add(key, "a polymorphic link needs both `type_column` and `type_value`");
            None
        }
    }
}

/// A column, or `{ sql = "…" }` over the row `r` (one statement, no `;`).
fn row_value(p: &mut Problems<'_>, key: &str, raw: RawRowValue) -> Option<RowValue> {
    match raw {
        RawRowValue::Column(c) => p.ident(key, &c).map(RowValue::Column),
        RawRowValue::Sql { sql } => {
            if sql.trim().is_empty() || sql.contains(';') {
                p.add(&format!("{key}.sql"), "write one SQL query or expression over the row `r`, without `;`");
                None
            } else {
                Some(RowValue::Sql(sql.trim().to_string()))
            }
        }
    }
}

fn build_related(i: usize, r: RawRelated, p: &mut Problems<'_>) -> Option<RelatedMap> {
    let key = format!("related[{i}]");
    let table = p.table(&format!("{key}.table"), &r.table);
    let opportunity = row_value(p, &format!("{key}.opportunity"), r.opportunity);
    let filter = type_filter(p, &key, r.type_column, r.type_value);
    let (table, opportunity, filter) = (table?, opportunity?, filter?);
    let name = r.name.unwrap_or_else(|| table.plain());
    Some(RelatedMap { name, table, opportunity, filter })
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
