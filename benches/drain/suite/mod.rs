//! The drain benchmark's sections, all on one throwaway PostgreSQL with fixed settings
//! (PostgreSQL's default durability, shared_buffers 256MB, `track_commit_timestamp` on for the
//! latency rows), the sample CRM of `sql/demo/` and the example config and rules:
//! 1. the yardstick: pgbench's single-row UPDATE by primary key, 8 clients;
//! 2. the CRM's insert TPS, 8 clients: without the router, with capture while the daemon is busy
//!    (no NOTIFY), and while it is idle (NOTIFY);
//! 3. the drain of a backlog queued while the daemon was stopped, by the real binary (spawn →
//!    READY, which it says once the backlog is drained), with its peak RSS; then start-up to
//!    READY with nothing queued;
//! 4. steady latency at offered rates (pgbench `--rate`, 8 clients): the CRM insert's time → the
//!    commit of the owner's write, both from the database (`event_at`, `pg_xact_commit_timestamp`);
//! 5. the bare SQL floor: claim 100 events, write their owner where still unowned and delete them,
//!    in one statement, on one connection (no routing, no audit);
//! 6. the in-database alternative a DBA would write: a PL/pgSQL trigger giving each insert the
//!    least-loaded member under a cap; its insert TPS and its cap violations at 8 clients;
//! 7. graphile-worker (Node.js, installed from the npm registry into `target/bench-node`) draining
//!    as many no-op jobs, with its local queue (500) and batched completion, 10 concurrent.
//!
//! Every section panics with what failed: a benchmark that cannot measure says so.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use devkit::demo;
use devkit::throwaway::{Cluster, ClusterOptions};
use oppty_router::config::Config;
use oppty_router::{db, install};
use tokio_postgres::Client;

mod process;
mod rivals;
mod statements;
use process::Daemon;

/// What to measure, and how much.
pub struct Options {
    pub backlog: i32,
    /// Seconds per pgbench run (yardstick, CRM inserts, the PL/pgSQL trigger).
    pub pgbench_secs: u32,
    /// pgbench's scale for the yardstick (10 = a million accounts).
    pub pgbench_scale: u32,
    /// Offered rates for the latency rows, per second.
    pub rates: Vec<u32>,
    pub rate_secs: u32,
    pub floor_events: i32,
    pub batch: Option<u32>,
    /// `OPPTY_BENCH_CONNECTIONS`: the daemon's `router.drain_connections` (else the example config's).
    pub connections: Option<u32>,
    /// Sections to run (`OPPTY_BENCH_ONLY=yardstick,drain`); empty = all. The CRM is always prepared.
    pub only: Vec<String>,
    /// `OPPTY_BENCH_PROFILE=1`: load pg_stat_statements and print, after the drain, the statements
    /// that took the server's time; the daemon logs its `batch` lines (phase times) to stderr.
    pub profile: bool,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Options {
    /// The full run; `OPPTY_BENCH_BACKLOG`, `OPPTY_BENCH_SECONDS`, `OPPTY_BENCH_BATCH` change it.
    pub fn from_env() -> Options {
        Options {
            backlog: env_num("OPPTY_BENCH_BACKLOG", 200_000) as i32,
            pgbench_secs: env_num("OPPTY_BENCH_SECONDS", 10) as u32,
            pgbench_scale: 10,
            rates: vec![1_000, 5_000],
            rate_secs: env_num("OPPTY_BENCH_SECONDS", 10) as u32,
            floor_events: 100_000,
            batch: std::env::var("OPPTY_BENCH_BATCH").ok().and_then(|v| v.parse().ok()),
            connections: std::env::var("OPPTY_BENCH_CONNECTIONS").ok().and_then(|v| v.parse().ok()),
            only: std::env::var("OPPTY_BENCH_ONLY")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
            profile: std::env::var("OPPTY_BENCH_PROFILE").is_ok_and(|v| v == "1"),
        }
    }

    /// Whether a section runs.
    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }

    /// Seconds in all: every section runs, on numbers too small to mean anything.
    pub fn quick() -> Options {
        Options {
            backlog: 1_500,
            pgbench_secs: 1,
            pgbench_scale: 1,
            rates: vec![100],
            rate_secs: 1,
            floor_events: 1_000,
            batch: None,
            connections: None,
            only: Vec::new(),
            profile: false,
        }
    }
}

/// One measured figure.
pub struct Row {
    pub measure: String,
    pub value: f64,
    pub unit: &'static str,
    pub note: String,
}

/// Every figure of a run, in order.
#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    fn push(&mut self, measure: impl Into<String>, value: f64, unit: &'static str, note: impl Into<String>) {
        let row = Row { measure: measure.into(), value, unit, note: note.into() };
        eprintln!("  {}: {:.1} {} {}", row.measure, row.value, row.unit, row.note);
        self.rows.push(row);
    }

    /// The first figure whose measure starts with `prefix`.
    pub fn get(&self, prefix: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.measure.starts_with(prefix)).map(|r| r.value)
    }

    fn note(&mut self, prefix: &str, note: String) {
        if let Some(r) = self.rows.iter_mut().find(|r| r.measure.starts_with(prefix)) {
            r.note = note;
        }
    }

    /// The table as Markdown, for BENCHMARKS.md.
    pub fn render(&self) -> String {
        let mut out = String::from("\n| measure | value | unit | note |\n|---|---:|---|---|\n");
        for r in &self.rows {
            let value = if r.value >= 100.0 { format!("{:.0}", r.value) } else { format!("{:.1}", r.value) };
            let _ = writeln!(out, "| {} | {value} | {} | {} |", r.measure, r.unit, r.note);
        }
        out
    }
}

/// Run every section; the table of what was measured.
pub fn run(opts: &Options) -> Table {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut settings = vec!["track_commit_timestamp=on".to_string()];
    if opts.profile {
        settings.extend(["shared_preload_libraries=pg_stat_statements".into(), "pg_stat_statements.track=all".into()]);
    }
    let cluster = Cluster::start_with(ClusterOptions { durable: true, settings, ..Default::default() })
        .expect("throwaway PostgreSQL");
    cluster.stop_when_gone(std::process::id());
    let tmp = tempfile::tempdir().expect("tempdir");
    eprintln!("oppty-router drain benchmark (PostgreSQL from {}, default durability)", cluster.bin_dir().display());
    let mut b = Bench { cluster, dir: tmp.path().to_path_buf(), rt, opts, table: Table::default() };
    if opts.runs("yardstick") {
        b.yardstick();
    }
    let cfg = b.crm_inserts();
    if opts.runs("floor") {
        b.floor(&cfg);
    }
    if opts.runs("drain") {
        b.drain(&cfg);
    }
    if opts.runs("latency") {
        for rate in &opts.rates {
            b.latency(&cfg, *rate);
        }
    }
    if opts.runs("plpgsql") {
        b.plpgsql();
    }
    if opts.runs("graphile") {
        b.graphile();
    }
    b.ratios();
    b.table
}

struct Bench<'a> {
    cluster: Cluster,
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    opts: &'a Options,
    table: Table,
}

impl Bench<'_> {
    /// pgbench's output; it must succeed.
    fn pgbench_run(&self, db: &str, args: &[&str]) -> String {
        let out = Command::new(self.cluster.bin_dir().join("pgbench"))
            .args([
                "-h",
                &self.cluster.dir.display().to_string(),
                "-p",
                &self.cluster.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .arg(db)
            .output()
            .expect("run pgbench");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "pgbench failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    /// The TPS pgbench reports.
    fn pgbench(&self, db: &str, args: &[&str]) -> f64 {
        let text = self.pgbench_run(db, args);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok())
            })
            .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"))
    }

    fn script(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write pgbench script");
        p.display().to_string()
    }

    /// pgbench at 8 clients for the configured seconds, with a script file.
    fn pgbench_8(&self, db: &str, script: &str, extra: &[&str]) -> f64 {
        let secs = self.opts.pgbench_secs.to_string();
        let mut args = vec!["-n", "-c", "8", "-j", "2", "-T", &secs, "-f", script];
        args.extend_from_slice(extra);
        self.pgbench(db, &args)
    }

    async fn connect(&self, db: &str) -> Client {
        db::connect(&database(&self.cluster, db), "").await.expect("connect")
    }

    /// Section 1: pgbench's single-row UPDATE, 8 clients.
    fn yardstick(&mut self) {
        self.rt.block_on(async {
            self.connect("postgres").await.batch_execute("CREATE DATABASE pgb").await.expect("create pgb");
        });
        let scale = self.opts.pgbench_scale.to_string();
        self.pgbench_run("pgb", &["-i", "-q", "-s", &scale]);
        let accounts = self.opts.pgbench_scale * 100_000;
        let update = self.script(
            "update.sql",
            &format!("\\set aid random(1, {accounts})\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n"),
        );
        let tps = self.pgbench_8("pgb", &update, &[]);
        self.table.push("yardstick: pgbench single-row UPDATE, 8 clients", tps, "TPS", "");
    }

    /// Section 2: the CRM's write path without the router, then with capture busy and idle. Leaves the
    /// router installed (whether or not the section runs), the daemon's flag at idle, and the config to
    /// run it with.
    fn crm_inserts(&mut self) -> Config {
        let mut cfg = self.rt.block_on(demo::prepare_crm(&self.cluster, "crm", rules_dir())).expect("sample CRM");
        if let Some(b) = self.opts.batch {
            cfg.router.batch_size = b;
        }
        if let Some(n) = self.opts.connections {
            cfg.router.drain_connections = n;
        }
        let measure = self.opts.runs("inserts");
        let insert = self.script("insert.sql", INSERT_SCRIPT);
        let plain = if measure { self.pgbench_8("crm", &insert, &[]) } else { 0.0 };
        let s = cfg.router.schema.quoted();
        // The flag as a daemon leaves it: raised for `ms` more milliseconds (0: lowered).
        let flag = |b: &Self, ms: f64| {
            b.rt.block_on(async {
                let c = db::connect(&cfg.database, "").await.expect("connect");
                let sql = oppty_router::store::idle_sql(&cfg.router.schema);
                c.execute(&sql, &[&(ms > 0.0), &ms]).await.expect("the flag");
            })
        };
        self.rt.block_on(async {
            let mut c = db::connect(&cfg.database, "").await.expect("connect");
            install::install_with(&mut c, &cfg, false).await.expect("install");
        });
        flag(self, 0.0);
        let busy = if measure { self.pgbench_8("crm", &insert, &[]) } else { 0.0 };
        if !measure {
            return cfg;
        }
        // Killed while it waited: raised, expiring a lease later (as the waiting daemon renewed it).
        let lease_ms = cfg.router.leader_lease.as_secs_f64() * 1000.0;
        flag(self, lease_ms);
        let killed = self.pgbench_8("crm", &insert, &[]);
        // The worst case: every insert NOTIFYs for the whole run (the flag never expires, nobody flips it).
        flag(self, 1e9);
        let notify = self.pgbench_8("crm", &insert, &[]);
        flag(self, 0.0);
        self.table.push("CRM inserts, 8 clients, without the router", plain, "TPS", "");
        let pct = |v: f64| format!("{:.0}% of without; {:.2}× slower", v / plain * 100.0, plain / v);
        self.table.push("CRM inserts, router installed, daemon busy or stopped (no NOTIFY)", busy, "TPS", pct(busy));
        let secs = self.opts.pgbench_secs;
        let notified = (lease_ms / 1000.0).min(f64::from(secs));
        let killed_note = format!("{}; every insert NOTIFYs for the first {notified:.0} s of {secs} s", pct(killed));
        self.table.push(
            "CRM inserts, daemon killed while it waited (the flag expires after the lease)",
            killed,
            "TPS",
            killed_note,
        );
        self.table.push(
            "CRM inserts, every insert NOTIFYs (worst case: flag raised, never flipped)",
            notify,
            "TPS",
            pct(notify),
        );
        // What pgbench inserted is routed by nobody: close it, so the drain starts clean.
        self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            c.batch_execute(&format!(
                "DELETE FROM {s}.events; UPDATE crm.opportunity SET \"stageId\" = 4 WHERE \"stageId\" = 1; DELETE FROM {s}.events"
            ))
            .await
            .expect("reset");
        });
        cfg
    }

    /// Section 3: the real binary drains a backlog (spawn → READY), its peak RSS; then start-up to READY
    /// with nothing queued.
    fn drain(&mut self, cfg: &Config) {
        let n = self.opts.backlog;
        let s = cfg.router.schema.quoted();
        let mark = self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            let mut left = n;
            while left > 0 {
                let k = left.min(50_000);
                demo::insert_opportunities(&c, k, "retail", left as u32, 0).await.expect("backlog");
                left -= k;
            }
            c.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
            last_assignment(&c, &s).await
        });
        let config = self.config_file(cfg);
        if self.opts.profile {
            self.reset_statements(cfg);
        }
        let mut d = Daemon::spawn(&self.dir, &config, self.log());
        let secs = d.wait_ready(Duration::from_secs(3_600)).as_secs_f64();
        let rss = d.peak_rss_mb();
        let cpu = d.cpu_secs();
        d.stop();
        if self.opts.profile {
            eprintln!("  the daemon's CPU during the drain: {cpu:.2} s of {secs:.2} s");
            self.print_statements(cfg);
        }
        let routed = self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            let left: i64 =
                c.query_one(&format!("SELECT count(*) AS n FROM {s}.events"), &[]).await.expect("left").get("n");
            assert_eq!(left, 0, "the backlog is drained");
            c.query_one(&format!("SELECT count(*) AS n FROM {s}.assignments WHERE id > $1"), &[&mark])
                .await
                .expect("routed")
                .get::<_, i64>("n")
        });
        assert_eq!(routed, i64::from(n), "every opportunity of the backlog routed once");
        let batch = cfg.router.batch_size;
        self.table.push(
            format!("drain of a {n} backlog (spawn → READY, batch {batch})"),
            routed as f64 / secs,
            "routed/s",
            "",
        );
        self.table.push("peak RSS of the daemon during the drain", rss, "MB", "VmHWM");
        let (opps, recent) = self.settle(cfg);
        if self.opts.profile {
            self.reset_statements(cfg);
        }
        let mut d = Daemon::spawn(&self.dir, &config, self.log());
        let ready = d.wait_ready(Duration::from_secs(60));
        d.stop();
        if self.opts.profile {
            eprintln!("  start-up to READY: {:.0} ms", ready.as_secs_f64() * 1000.0);
            self.print_statements(cfg);
            self.explain_start_up(cfg);
        }
        self.table.push(
            "start-up to READY, nothing queued",
            ready.as_secs_f64() * 1000.0,
            "ms",
            format!("connect, lead, load the rules; count the loads over {opps} opportunities, {recent} assignments in the caps' window, of which it reads the latest each cap counts"),
        );
    }

    /// The database after a section's writes, as autovacuum would leave it (each section measures
    /// its own work, not the last one's clean-up); how many opportunities and recent assignments
    /// it holds.
    fn settle(&self, cfg: &Config) -> (i64, i64) {
        let s = cfg.router.schema.quoted();
        self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            c.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
            let n = |sql: String| {
                let c = &c;
                async move { c.query_one(&sql, &[]).await.expect("count").get::<_, i64>("n") }
            };
            let opps = n("SELECT count(*) AS n FROM crm.opportunity".into()).await;
            let recent = n(format!("SELECT count(*) AS n FROM {s}.assignments WHERE owner_id IS NOT NULL")).await;
            (opps, recent)
        })
    }

    /// Section 4: latency at an offered rate: the daemon running, pgbench inserting at `rate`/s.
    fn latency(&mut self, cfg: &Config, rate: u32) {
        let s = cfg.router.schema.quoted();
        self.settle(cfg);
        let config = self.config_file(cfg);
        let mut d = Daemon::spawn(&self.dir, &config, self.log());
        d.wait_ready(Duration::from_secs(60));
        let mark = self.rt.block_on(async { last_assignment(&self.connect("crm").await, &s).await });
        let insert = self.script("insert.sql", INSERT_SCRIPT);
        let (rate_s, secs) = (rate.to_string(), self.opts.rate_secs.to_string());
        let offered = self.pgbench("crm", &["-n", "-c", "8", "-j", "2", "-R", &rate_s, "-T", &secs, "-f", &insert]);
        let q = self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            demo::wait_until_drained(&c, cfg, Duration::from_secs(600)).await.expect("drained");
            c.query_one(
                &format!(
                    "WITH l AS (SELECT (extract(epoch FROM pg_xact_commit_timestamp(o.xmin) - a.event_at) * 1000)::float8 AS ms \
                       FROM {s}.assignments a JOIN crm.opportunity o ON o.\"oppId\"::text = a.opp_id WHERE a.id > $1) \
                     SELECT count(ms) AS n, percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms) AS p, max(ms) AS max FROM l"
                ),
                &[&mark],
            )
            .await
            .expect("latencies")
        });
        d.stop();
        let n: i64 = q.get("n");
        assert!(n > 0, "decisions were made at {rate}/s");
        let p: Vec<f64> = q.get("p");
        let max: f64 = q.get("max");
        let note = format!("{n} decisions, {offered:.0}/s inserted");
        for (label, v) in [("p50", p[0]), ("p95", p[1]), ("p99", p[2]), ("max", max)] {
            self.table.push(
                format!("latency at {rate}/s offered, {label}"),
                v,
                "ms",
                if label == "p50" { note.clone() } else { String::new() },
            );
        }
    }

    /// The drain against the yardstick and the floor (the targets: ≥ 2× pgbench, ≥ ⅓ of the floor).
    fn ratios(&mut self) {
        let (Some(drain), Some(pgb), Some(floor)) =
            (self.table.get("drain of"), self.table.get("yardstick"), self.table.get("bare SQL floor"))
        else {
            return;
        };
        let graphile = self
            .table
            .get("graphile-worker")
            .map(|g| format!(", {:.2}× graphile-worker", drain / g))
            .unwrap_or_default();
        self.table
            .note("drain of", format!("{:.2}× the yardstick, {:.2}× the floor{graphile}", drain / pgb, drain / floor));
    }

    /// The daemon's log filter: its batch lines (phase times) when profiling.
    fn log(&self) -> &'static str {
        if self.opts.profile {
            "warn,oppty_router=info"
        } else {
            "warn"
        }
    }

    /// The example config for this database, as a file the binary reads.
    fn config_file(&self, cfg: &Config) -> PathBuf {
        let text = demo::EXAMPLE_CONFIG
            .lines()
            .map(|l| {
                if l.starts_with("url = ") {
                    format!("url = {:?}", cfg.database.url)
                } else if l.starts_with("rules_dir = ") {
                    format!("rules_dir = {:?}", rules_dir().display().to_string())
                } else if l.starts_with("batch_size = ") {
                    format!("batch_size = {}", cfg.router.batch_size)
                } else if l.starts_with("drain_connections = ") {
                    format!("drain_connections = {}", cfg.router.drain_connections)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let p = self.dir.join("oppty-router.toml");
        std::fs::write(&p, text).expect("write the config");
        p
    }
}

/// The id of the last assignment (the rows after it are this section's).
async fn last_assignment(c: &Client, s: &str) -> i64 {
    c.query_one(&format!("SELECT coalesce(max(id), 0) AS id FROM {s}.assignments"), &[]).await.expect("mark").get("id")
}

fn rules_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules"))
}

fn database(cluster: &Cluster, db: &str) -> oppty_router::config::DatabaseConfig {
    oppty_router::config::DatabaseConfig {
        url: cluster.url(db),
        password_file: None,
        application_name: "oppty-router-bench".into(),
        connect_timeout: Duration::from_secs(5),
        naive_timestamps: None,
    }
}

/// One unowned opportunity of the sample CRM a transaction, as the CRM writes it.
const INSERT_SCRIPT: &str =
    "\\set a random(1, 400)\nINSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\") \
     VALUES ('bench', md5('account' || :a)::uuid::text, 'retail', 1);\n";
