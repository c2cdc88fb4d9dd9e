//! From the file as written to the checked config: every problem of the file at once, each with
//! its key and the line that sets it (`file:line:column: key: message`); names validated as
//! identifiers, ops-written SQL linted, durations and addresses read. It must not touch the
//! database (`check` and `run` test the mapping against it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ident::{Ident, TableName};

use super::{
    ActivityLink, ActivityMap, Config, ConsoleConfig, DatabaseConfig, DirectoryConfig, FieldDef, FieldSource,
    MetricsConfig, OpportunityMap, RelatedMap, RouterConfig, RowValue, WriteBack, WRITE_PARAMS,
};

use super::file::{
    RawActivity, RawConfig, RawConsole, RawDatabase, RawDirectory, RawField, RawFieldSpec, RawMetrics, RawOpportunity,
    RawRelated, RawRouter, RawRowValue, RawWriteBack,
};

pub(super) struct Problems<'a> {
    pub(super) file: String,
    pub(super) text: &'a str,
    pub(super) list: Vec<String>,
}

impl Problems<'_> {
    /// Record a problem for `key` (a dotted path such as `opportunity.owner`); the line is the
    /// first line that sets the key's last part, which is where an admin will look.
    pub(super) fn add(&mut self, key: &str, msg: impl std::fmt::Display) {
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

    pub(super) fn ident(&mut self, key: &str, raw: &str) -> Option<Ident> {
        match Ident::parse(raw) {
            Ok(i) => Some(i),
            Err(e) => {
                self.add(key, format!("`{raw}` {e}"));
                None
            }
        }
    }

    pub(super) fn table(&mut self, key: &str, raw: &str) -> Option<TableName> {
        match TableName::parse(raw) {
            Ok(t) => Some(t),
            Err(e) => {
                self.add(key, format!("`{raw}` {e}"));
                None
            }
        }
    }

    pub(super) fn sql(&mut self, key: &str, raw: &str) -> Option<String> {
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
    pub(super) fn statement(&mut self, key: &str, raw: &str) {
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

    pub(super) fn field(&mut self, key: &str, raw: RawField) -> Option<FieldSource> {
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

pub(super) fn build(raw: RawConfig, path: &Path, p: &mut Problems<'_>) -> Option<Config> {
    let RawConfig { database, router, opportunity, activity, related, write_back, directory, log, metrics, console } =
        raw;
    let database = database_of(p, database);
    let router = router_of(p, router, path);
    let opportunity = opportunity_of(p, opportunity);
    let activities = activity.into_iter().enumerate().filter_map(|(i, a)| activity_of(p, i, a)).collect();
    let related = related.into_iter().enumerate().filter_map(|(i, r)| build_related(i, r, p)).collect();
    let write_back = write_back_of(p, write_back);
    let directory = directory.map(|d| directory_of(p, d));
    let metrics = metrics.and_then(|m| metrics_of(p, m));
    let console = console_of(p, console, path);
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
        console: console?,
    })
}

pub(super) fn console_of(p: &mut Problems<'_>, c: RawConsole, path: &Path) -> Option<ConsoleConfig> {
    let beside = |f: PathBuf| if f.is_relative() { path.parent().unwrap_or(Path::new(".")).join(f) } else { f };
    let users = beside(c.users.unwrap_or_else(|| PathBuf::from("console-users.toml")));
    let journal = beside(c.journal.unwrap_or_else(|| PathBuf::from("console-journal.jsonl")));
    let tls = match (c.tls_cert, c.tls_key) {
        (Some(cert), Some(key)) => Some((beside(cert), beside(key))),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            p.add("console.tls_cert", "tls_cert and tls_key go together: give both (PEM files) or neither");
            None
        }
    };
    match c.listen.trim().parse::<std::net::SocketAddr>() {
        Ok(listen) => Some(ConsoleConfig { listen, users, journal, tls }),
        Err(_) => {
            let hint = "an address and port, e.g. \"127.0.0.1:9188\" (localhost only, the default)";
            p.add("console.listen", format!("`{}` is not {hint}", c.listen));
            None
        }
    }
}

pub(super) fn metrics_of(p: &mut Problems<'_>, m: RawMetrics) -> Option<MetricsConfig> {
    match m.listen.trim().parse::<std::net::SocketAddr>() {
        Ok(listen) => Some(MetricsConfig { listen, ready_max_lag: m.ready_max_lag }),
        Err(_) => {
            let hint = "an address and port, e.g. \"127.0.0.1:9187\" (localhost only) or \"0.0.0.0:9187\"";
            p.add("metrics.listen", format!("`{}` is not {hint}", m.listen));
            None
        }
    }
}

pub(super) fn database_of(p: &mut Problems<'_>, database: RawDatabase) -> DatabaseConfig {
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
pub(super) fn router_of(p: &mut Problems<'_>, router: RawRouter, path: &Path) -> Option<RouterConfig> {
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

pub(super) fn opportunity_of(p: &mut Problems<'_>, o: RawOpportunity) -> Option<OpportunityMap> {
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
pub(super) fn unwatched(p: &mut Problems<'_>, when: &str, owner: &Option<Ident>, watched: &[Ident]) {
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

pub(super) fn activity_of(p: &mut Problems<'_>, i: usize, a: RawActivity) -> Option<ActivityMap> {
    let key = format!("activity[{i}]");
    let table = p.table(&format!("{key}.table"), &a.table);
    let link = activity_link(p, &key, a.opportunity, a.type_column, a.type_value);
    let actor = row_value(p, &format!("{key}.actor"), a.actor);
    let at = a.at.as_deref().and_then(|c| p.ident(&format!("{key}.at"), c));
    let (table, link, actor) = (table?, link?, actor?);
    let name = a.name.unwrap_or_else(|| table.plain());
    Some(ActivityMap { name, table, link, actor, at })
}

pub(super) fn directory_of(p: &mut Problems<'_>, d: RawDirectory) -> DirectoryConfig {
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

pub(super) fn write_back_of(p: &mut Problems<'_>, write_back: RawWriteBack) -> WriteBack {
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
pub(super) fn activity_link(
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
pub(super) fn type_filter(
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
pub(super) fn row_value(p: &mut Problems<'_>, key: &str, raw: RawRowValue) -> Option<RowValue> {
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

pub(super) fn build_related(i: usize, r: RawRelated, p: &mut Problems<'_>) -> Option<RelatedMap> {
    let key = format!("related[{i}]");
    let table = p.table(&format!("{key}.table"), &r.table);
    let opportunity = row_value(p, &format!("{key}.opportunity"), r.opportunity);
    let filter = type_filter(p, &key, r.type_column, r.type_value);
    let (table, opportunity, filter) = (table?, opportunity?, filter?);
    let name = r.name.unwrap_or_else(|| table.plain());
    Some(RelatedMap { name, table, opportunity, filter })
}
