//! The daemon config file as written: the serde structs it is read into, with their defaults.
//! They stay in `config`: the rest of the daemon sees only the checked types. It must not check
//! meaning (`config::check` does).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) router: RawRouter,
    pub(super) opportunity: RawOpportunity,
    #[serde(default)]
    pub(super) activity: Vec<RawActivity>,
    #[serde(default)]
    pub(super) related: Vec<RawRelated>,
    #[serde(default)]
    pub(super) write_back: RawWriteBack,
    pub(super) directory: Option<RawDirectory>,
    #[serde(default)]
    pub(super) log: RawLog,
    pub(super) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(super) console: RawConsole,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    #[serde(default = "default_console_listen")]
    pub(super) listen: String,
    pub(super) users: Option<PathBuf>,
    pub(super) journal: Option<PathBuf>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
}

impl Default for RawConsole {
    fn default() -> Self {
        RawConsole { listen: default_console_listen(), users: None, journal: None, tls_cert: None, tls_key: None }
    }
}

pub(super) fn default_console_listen() -> String {
    "127.0.0.1:9188".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: String,
    #[serde(default = "default_ready_max_lag", with = "humantime_serde")]
    pub(super) ready_max_lag: Duration,
}

pub(super) fn default_ready_max_lag() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    pub(super) active_members: Option<String>,
    pub(super) team_members: Option<String>,
    pub(super) kpi: Option<String>,
    pub(super) territories: Option<String>,
    pub(super) team_territories: Option<String>,
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub(super) refresh: Duration,
}

pub(super) fn default_refresh() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: String,
    pub(super) password_file: Option<PathBuf>,
    #[serde(default = "default_app_name")]
    pub(super) application_name: String,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub(super) connect_timeout: Duration,
    pub(super) naive_timestamps: Option<String>,
}

pub(super) fn default_app_name() -> String {
    "oppty-router".into()
}
pub(super) fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRouter {
    pub(super) schema: String,
    pub(super) channel: String,
    pub(super) rules_dir: PathBuf,
    pub(super) batch_size: u32,
    pub(super) drain_connections: u32,
    #[serde(with = "humantime_serde")]
    pub(super) poll_interval: Duration,
    pub(super) max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub(super) retry_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) retry_max_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) reconnect_max_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) shutdown_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) reload_debounce: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) reload_settle: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) reclaim_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) leader_lease: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) lock_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) statement_timeout: Duration,
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
pub(super) enum RawField {
    Column(String),
    Spec(RawFieldSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFieldSpec {
    pub(super) column: Option<String>,
    pub(super) sql: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOpportunity {
    pub(super) table: String,
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) team: Option<String>,
    #[serde(default)]
    pub(super) unowned_values: Vec<String>,
    pub(super) pipeline: Option<RawField>,
    #[serde(rename = "where")]
    pub(super) where_: Option<String>,
    pub(super) open_when: Option<String>,
    pub(super) unowned_when: Option<String>,
    pub(super) deleted_when: Option<String>,
    #[serde(default)]
    pub(super) watch_columns: Vec<String>,
    pub(super) edited_by: Option<String>,
    pub(super) created_at: Option<String>,
    pub(super) assigned_at: Option<String>,
    #[serde(default)]
    pub(super) fields: BTreeMap<String, RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActivity {
    pub(super) name: Option<String>,
    pub(super) table: String,
    pub(super) opportunity: RawRowValue,
    pub(super) type_column: Option<String>,
    pub(super) type_value: Option<String>,
    pub(super) actor: RawRowValue,
    pub(super) at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelated {
    pub(super) name: Option<String>,
    pub(super) table: String,
    pub(super) opportunity: RawRowValue,
    pub(super) type_column: Option<String>,
    pub(super) type_value: Option<String>,
}

/// A value of a related row: a column, or `{ sql = "…" }` (a query over the row `r`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawRowValue {
    Column(String),
    Sql { sql: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWriteBack {
    #[serde(default)]
    pub(super) set: BTreeMap<String, String>,
    pub(super) statement: Option<String>,
    pub(super) reclaim_statement: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) format: LogFormat,
    pub(super) level: String,
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
