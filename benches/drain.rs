//! Drain and capture benchmark (prints figures; `cargo bench --bench drain`).
//!
//! On one throwaway PostgreSQL (PostgreSQL's default durability, as the demo):
//! 1. pgbench's single-row UPDATE TPS at 8 clients: the yardstick;
//! 2. the CRM's write path (8 clients inserting unowned opportunities, one per transaction) without
//!    the router, with it while the daemon is busy (no NOTIFY), and with it while idle (NOTIFY);
//! 3. the drain rate of a backlog of opportunities queued while the daemon was stopped.
//!
//! Environment: `OPPTY_BENCH_BACKLOG` (default 200000), `OPPTY_BENCH_SECONDS` per pgbench run
//! (default 10), `OPPTY_BENCH_BATCH` (default: the example config's batch size).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use oppty_router::daemon::{self, RunOptions};
use oppty_router::throwaway::Cluster;
use oppty_router::{db, demo, install, load_rules};
use tokio_util::sync::CancellationToken;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pgbench(cluster: &Cluster, db: &str, args: &[&str]) -> f64 {
    let out = Command::new(cluster.bin_dir().join("pgbench"))
        .args(["-h", &cluster.dir.display().to_string(), "-p", &cluster.port.to_string(), "-U", "postgres"])
        .args(args)
        .arg(db)
        .output()
        .expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        .find_map(|l| l.strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"))
}

fn script(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write pgbench script");
    p.display().to_string()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let backlog = env_num("OPPTY_BENCH_BACKLOG", 200_000) as i32;
    let secs = env_num("OPPTY_BENCH_SECONDS", 10).to_string();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let cluster = Cluster::start(true).expect("throwaway PostgreSQL");
    cluster.stop_when_gone(std::process::id());
    let tmp = tempfile::tempdir().expect("tempdir");
    println!("oppty-router drain benchmark (PostgreSQL from {}, default durability)", cluster.bin_dir().display());

    // 1. The yardstick.
    rt.block_on(async {
        let admin = db::connect(&demo_db(&cluster, "postgres"), "").await.expect("connect");
        admin.batch_execute("CREATE DATABASE pgb").await.expect("create pgb");
    });
    let init = Command::new(cluster.bin_dir().join("pgbench"))
        .args([
            "-h",
            &cluster.dir.display().to_string(),
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-i",
            "-q",
            "-s",
            "10",
            "pgb",
        ])
        .output()
        .expect("pgbench -i");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let update = script(
        tmp.path(),
        "update.sql",
        "\\set aid random(1, 1000000)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n",
    );
    let tps = pgbench(&cluster, "pgb", &["-n", "-c", "8", "-j", "2", "-T", &secs, "-f", &update]);
    println!("\npgbench single-row UPDATE, 8 clients: {tps:.0} TPS");

    // 2. The CRM's write path.
    let cfg = rt.block_on(async {
        let mut cfg = demo::prepare_crm(
            &cluster,
            "crm",
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules")),
        )
        .await
        .expect("sample CRM");
        if let Some(b) = std::env::var("OPPTY_BENCH_BATCH").ok().and_then(|v| v.parse().ok()) {
            cfg.router.batch_size = b;
        }
        cfg
    });
    let insert = script(
        tmp.path(),
        "insert.sql",
        "\\set a random(1, 400)\nINSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\") \
         VALUES ('bench', md5('account' || :a)::uuid::text, 'retail', 1);\n",
    );
    let plain = pgbench(&cluster, "crm", &["-n", "-c", "8", "-j", "2", "-T", &secs, "-f", &insert]);
    let engine = load_rules(&cfg).expect("rules");
    let s = cfg.router.schema.quoted();
    rt.block_on(async {
        let mut c = db::connect(&cfg.database, "").await.expect("connect");
        install::install_with(&mut c, &cfg, false).await.expect("install");
        c.batch_execute(&format!("UPDATE {s}.wakeup SET idle = false")).await.expect("busy");
    });
    let busy = pgbench(&cluster, "crm", &["-n", "-c", "8", "-j", "2", "-T", &secs, "-f", &insert]);
    rt.block_on(async {
        let c = db::connect(&cfg.database, "").await.expect("connect");
        c.batch_execute(&format!("UPDATE {s}.wakeup SET idle = true")).await.expect("idle");
    });
    let idle = pgbench(&cluster, "crm", &["-n", "-c", "8", "-j", "2", "-T", &secs, "-f", &insert]);
    println!("CRM inserts (one unowned opportunity a transaction), 8 clients:");
    println!("  without the router            {plain:>8.0} TPS");
    println!("  router, daemon busy (no NOTIFY) {busy:>6.0} TPS  ({:.0}% of plain)", busy / plain * 100.0);
    println!("  router, daemon idle (NOTIFY)  {idle:>8.0} TPS  ({:.0}% of plain)", idle / plain * 100.0);

    // 3. The drain.
    let cfg = Arc::new(cfg);
    rt.block_on(async {
        let client = db::connect(&cfg.database, "").await.expect("connect");
        // Start from a clean queue: route what pgbench created first.
        client.batch_execute(&format!("DELETE FROM {s}.events; UPDATE crm.opportunity SET \"stageId\" = 4")).await.expect("reset");
        client.batch_execute(&format!("DELETE FROM {s}.events")).await.expect("reset");
        client.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
        let started = Instant::now();
        let mut left = backlog;
        while left > 0 {
            let n = left.min(50_000);
            demo::insert_opportunities(&client, n, "retail", left as u32, 0).await.expect("backlog");
            left -= n;
        }
        client.batch_execute("ANALYZE").await.expect("analyze");
        println!("\nbacklog: {backlog} opportunities queued in {:.1} s", started.elapsed().as_secs_f64());
        let rules = Arc::new(ArcSwap::from_pointee(engine));
        let shutdown = CancellationToken::new();
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let task = tokio::spawn(daemon::run(cfg.clone(), rules, shutdown.clone(), RunOptions { ready: Some(ready.clone()), ..Default::default() }));
        while !ready.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        shutdown.cancel();
        let _ = task.await;
        let routed: i64 = client.query_one(&format!("SELECT count(*) FROM {s}.assignments"), &[]).await.expect("count").get(0);
        let left: i64 = client.query_one(&format!("SELECT count(*) FROM {s}.events"), &[]).await.expect("count").get(0);
        assert_eq!(left, 0, "the backlog is drained");
        let rate = routed as f64 / secs;
        println!(
            "drain: {routed} opportunities routed in {secs:.2} s = {rate:.0} opportunities/s (batch {}), {:.2}x pgbench's UPDATE TPS",
            cfg.router.batch_size,
            rate / tps
        );
    });
}

fn demo_db(cluster: &Cluster, db: &str) -> oppty_router::config::DatabaseConfig {
    oppty_router::config::DatabaseConfig {
        url: cluster.url(db),
        password_file: None,
        application_name: "oppty-router-bench".into(),
        connect_timeout: Duration::from_secs(5),
        naive_timestamps: None,
    }
}
