//! `demo`: the whole pipeline on a throwaway database, end to end, in about ten seconds.
//!
//! Owns the demo's story: start PostgreSQL, load the sample CRM (`sql/demo/`), install the router,
//! route a live stream of opportunities and activities while printing each decision, then measure
//! a backlog drain, print a summary and the latencies, and clean up. It uses only the public
//! pieces the daemon uses; it must not take shortcuts the daemon would not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::{self, RunOptions};
use crate::drain::Routed;
use crate::throwaway::Cluster;
use crate::{db, install, load_rules};

/// The sample CRM, compiled in.
pub const DEMO_SQL: &[(&str, &str)] = &[
    ("001_crm.sql", include_str!("../sql/demo/001_crm.sql")),
    ("002_data.sql", include_str!("../sql/demo/002_data.sql")),
];

/// The example daemon config, compiled in; the demo points it at its throwaway database.
pub const EXAMPLE_CONFIG: &str = include_str!("../config/oppty-router.toml");

pub struct DemoOptions {
    pub seconds: u64,
    pub rate: u32,
    pub backlog: u32,
    pub keep: bool,
    pub rules_dir: Option<PathBuf>,
    pub seed: u64,
}

/// Load the sample CRM into a fresh database `db` of the cluster and return a config mapping it.
pub async fn prepare_crm(cluster: &Cluster, db_name: &str, rules_dir: PathBuf) -> anyhow::Result<Config> {
    let admin = db::connect(&url_config(&cluster.url("postgres")), "").await?;
    admin.batch_execute(&format!("CREATE DATABASE {}", crate::ident::Ident::parse(db_name)?.quoted())).await?;
    let mut cfg = Config::parse(EXAMPLE_CONFIG, std::path::Path::new("config/oppty-router.toml"))?;
    cfg.database.url = cluster.url(db_name);
    cfg.router.rules_dir = rules_dir;
    let client = db::connect(&cfg.database, " demo").await?;
    for (name, sql) in DEMO_SQL {
        client.batch_execute(sql).await.with_context(|| format!("loading sql/demo/{name}"))?;
    }
    Ok(cfg)
}

fn url_config(url: &str) -> crate::config::DatabaseConfig {
    crate::config::DatabaseConfig {
        url: url.to_string(),
        password_file: None,
        application_name: "oppty-router".into(),
        connect_timeout: Duration::from_secs(5),
        naive_timestamps: None,
    }
}

fn default_rules_dir() -> PathBuf {
    let here = PathBuf::from("config/rules");
    if here.is_dir() {
        here
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules"))
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    println!("oppty-router demo: a throwaway PostgreSQL, the sample CRM in sql/demo/, the rules in config/rules/\n");
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(true)).await??;
    if !opts.keep {
        cluster.stop_when_gone(std::process::id());
    }
    println!("  PostgreSQL started from {} in {}", cluster.bin_dir().display(), cluster.dir.display());
    let rules_dir = opts.rules_dir.clone().unwrap_or_else(default_rules_dir);
    let cfg = Arc::new(prepare_crm(&cluster, "crm", rules_dir).await?);
    println!("  sample CRM loaded (crm.opportunity: uuid key, camelCase columns, stage table, soft delete)");
    let engine = load_rules(&cfg)?;
    println!("  rules loaded from {} (version {})", cfg.router.rules_dir.display(), engine.version);
    let mut client = db::connect(&cfg.database, " demo").await?;
    let names: HashMap<String, String> = client
        .query("SELECT id::text, \"fullName\" FROM crm.users", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let report = install::install(&mut client, &cfg).await?;
    println!("  router installed: {} schema file(s), {} trigger(s)\n", report.applied.len(), report.triggers.len());

    let rules = Arc::new(ArcSwap::from_pointee(engine));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Routed>();
    let shutdown = CancellationToken::new();
    let daemon_task = tokio::spawn(daemon::run(
        cfg.clone(),
        rules.clone(),
        shutdown.clone(),
        RunOptions { decisions: Some(tx.clone()), ..Default::default() },
    ));

    let printer_names = names.clone();
    let printer = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(r) = rx.recv().await {
            n += 1;
            let ms = (chrono::Utc::now() - r.event_at).num_milliseconds();
            let who = r
                .owner
                .as_deref()
                .map(|o| format!("{o} {}", printer_names.get(o).map(String::as_str).unwrap_or("")))
                .unwrap_or_else(|| "nobody".into());
            println!(
                "  {:>5}  {}  {:<9}  {:<10} -> {:<22} {:<14} {:<15} {:>4} ms",
                n,
                &r.opp_id[..8.min(r.opp_id.len())],
                r.pipeline,
                r.outcome.as_str(),
                who,
                r.team.as_deref().unwrap_or("-"),
                r.rule_id.as_deref().unwrap_or("-"),
                ms
            );
        }
    });

    // Live stream.
    println!(
        "  streaming ~{} opportunities/s for {} s (with activities, manual assignments, closings):\n",
        opts.rate, opts.seconds
    );
    println!(
        "  {:>5}  {:<8}  {:<9}  {:<10}    {:<22} {:<14} {:<15} {:>7}",
        "#", "opp", "pipeline", "outcome", "owner", "team", "rule", "latency"
    );
    let stream_started = Instant::now();
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let tick = Duration::from_millis(20);
    let per_tick = (f64::from(opts.rate) * tick.as_secs_f64()).max(1.0);
    let mut owed = 0.0f64;
    let mut inserted = 0u64;
    let mut manual = 0u64;
    let mut interval = tokio::time::interval(tick);
    while stream_started.elapsed() < Duration::from_secs(opts.seconds) {
        interval.tick().await;
        if daemon_task.is_finished() {
            match daemon_task.await {
                Ok(Err(e)) => anyhow::bail!("the router stopped: {e}"),
                other => anyhow::bail!("the router stopped unexpectedly: {other:?}"),
            }
        }
        owed += per_tick;
        let n = owed.floor() as i32;
        owed -= f64::from(n);
        if n == 0 {
            continue;
        }
        let corporate: i32 = (0..n).filter(|_| rng.gen_bool(0.2)).count() as i32;
        let with_owner = i32::from(rng.gen_bool(0.05));
        insert_opportunities(&client, n - corporate, "retail", rng.gen(), 0).await?;
        insert_opportunities(&client, corporate, "corporate", rng.gen(), with_owner).await?;
        inserted += n as u64;
        manual += with_owner as u64;
        if rng.gen_bool(0.3) {
            client.batch_execute(
                "INSERT INTO crm.activity (\"opportunityId\", kind, \"userId\") \
                 SELECT \"oppId\", 'call', \"accountOwnerId\" FROM crm.opportunity WHERE \"accountOwnerId\" <> 1 ORDER BY random() LIMIT 3;
                 INSERT INTO crm.mail_message (model, res_id, author_id, body) \
                 SELECT 'crm.opportunity', \"oppId\"::text, 100, 'note' FROM crm.opportunity ORDER BY random() LIMIT 1;
                 UPDATE crm.opportunity SET \"stageId\" = CASE WHEN \"pipelineCode\" = 'retail' THEN 3 ELSE 13 END \
                 WHERE \"oppId\" = (SELECT \"oppId\" FROM crm.opportunity WHERE \"accountOwnerId\" <> 1 AND \"stageId\" IN (1, 11) ORDER BY random() LIMIT 1);",
            ).await?;
        }
    }
    let stream_secs = stream_started.elapsed().as_secs_f64();
    wait_until_drained(&client, &cfg, Duration::from_secs(30)).await?;
    let last_stream_assignment: i64 = client
        .query_one(&format!("SELECT coalesce(max(id), 0) FROM {}.assignments", cfg.router.schema.quoted()), &[])
        .await?
        .get(0);

    // Backlog: stop the daemon, let opportunities pile up, start it, time the drain.
    shutdown.cancel();
    let _ = daemon_task.await;
    let backlog = opts.backlog as i32;
    insert_opportunities(&client, backlog, "retail", rng.gen(), 0).await?;
    let shutdown2 = CancellationToken::new();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (quiet_tx, mut quiet_rx) = tokio::sync::mpsc::unbounded_channel::<Routed>();
    let drain_started = Instant::now();
    let daemon_task = tokio::spawn(daemon::run(
        cfg.clone(),
        rules.clone(),
        shutdown2.clone(),
        RunOptions { decisions: Some(quiet_tx), ready: Some(ready.clone()), ..Default::default() },
    ));
    let counter = tokio::spawn(async move {
        let mut n = 0u64;
        while quiet_rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    wait_until_drained(&client, &cfg, Duration::from_secs(120)).await?;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    shutdown2.cancel();
    let _ = daemon_task.await;
    drop(tx);
    let _ = printer.await;
    let backlog_routed = counter.await.unwrap_or(0);

    // Summary.
    let s = cfg.router.schema.quoted();
    println!(
        "\n  summary: {inserted} opportunities streamed in {stream_secs:.1} s ({manual} assigned by a person at creation), \
         then {backlog_routed} from the backlog\n"
    );
    println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", "team", "member", "assigned", "open load", "fallback");
    let rows = client
        .query(
            &format!(
                "WITH a AS (SELECT owner_id, coalesce(team_id, '(fallback)') AS team, count(*) FILTER (WHERE outcome = 'rule') AS ruled, \
                 count(*) FILTER (WHERE outcome = 'fallback') AS fb FROM {s}.assignments WHERE owner_id IS NOT NULL GROUP BY 1, 2) \
                 SELECT a.team, a.owner_id, a.ruled, a.fb, coalesce(m.open_count, 0) FROM a LEFT JOIN {s}.member_state m ON m.member_id = a.owner_id \
                 ORDER BY a.team, a.owner_id"
            ),
            &[],
        )
        .await?;
    let (mut tr, mut tf) = (0i64, 0i64);
    for r in &rows {
        let owner: String = r.get(1);
        let (ruled, fb): (i64, i64) = (r.get(2), r.get(3));
        tr += ruled;
        tf += fb;
        let name = format!("{owner} {}", names.get(&owner).map(String::as_str).unwrap_or(""));
        println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", r.get::<_, String>(0), name, ruled + fb, r.get::<_, i32>(4), fb);
    }
    println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", "total", "", tr + tf, "", tf);
    let lat = client
        .query_one(
            &format!(
                "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms) \
                 FROM (SELECT (extract(epoch FROM a.decided_at - o.\"createdAt\") * 1000)::float8 AS ms FROM {s}.assignments a \
                 JOIN crm.opportunity o ON o.\"oppId\"::text = a.opp_id WHERE a.id <= $1) x"
            ),
            &[&last_stream_assignment],
        )
        .await?;
    let (n, p50, p99, max): (i64, Option<f64>, Option<f64>, Option<f64>) =
        (lat.get(0), lat.get(1), lat.get(2), lat.get(3));
    println!(
        "\n  end-to-end latency (CRM insert -> owner decided), {n} decisions: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.unwrap_or(0.0),
        p99.unwrap_or(0.0),
        max.unwrap_or(0.0)
    );
    println!(
        "  backlog drain: {backlog_routed} opportunities queued while the daemon was stopped, drained in {drain_secs:.2} s \
         = {:.0} opportunities/s (batch {}, including reconnect and load recount)",
        backlog_routed as f64 / drain_secs.max(1e-9),
        cfg.router.batch_size
    );
    let dead: i64 = client.query_one(&format!("SELECT count(*) FROM {s}.dead_letter"), &[]).await?.get(0);
    let unrouted: i64 = client
        .query_one("SELECT count(*) FROM crm.opportunity WHERE \"accountOwnerId\" = 1 AND \"deletedAt\" IS NULL", &[])
        .await?
        .get(0);
    println!("  still unowned: {unrouted}; dead-lettered events: {dead}");
    if opts.keep {
        cluster.keep();
        println!("\n  the database is still running (--keep). Connect with:\n    psql \"{}\"", cluster.url("crm"));
        println!("  explain a decision:  oppty-router --config <a config with that url> explain <opportunity-id>");
        println!(
            "  stop it with:\n    {} -D {} stop",
            cluster.bin_dir().join("pg_ctl").display(),
            cluster.dir.join("data").display()
        );
        println!("  (as the postgres user when you are root: runuser -u postgres -- …)");
    } else {
        drop(client);
        tokio::task::spawn_blocking(move || cluster.stop()).await?;
        println!("\n  stopped the throwaway PostgreSQL; done.");
    }
    if unrouted > 0 || dead > 0 {
        anyhow::bail!("the demo left {unrouted} opportunities unowned and {dead} events dead-lettered");
    }
    Ok(())
}

/// Insert `n` opportunities of `pipeline` on random accounts in one statement. `owned` of them
/// (at most) come with an owner already chosen by a person.
pub async fn insert_opportunities(
    client: &tokio_postgres::Client,
    n: i32,
    pipeline: &str,
    seed: u32,
    owned: i32,
) -> anyhow::Result<()> {
    if n <= 0 {
        return Ok(());
    }
    let stage: i32 = if pipeline == "corporate" { 11 } else { 1 };
    client
        .execute(
            "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\", source, \"leadScore\", amount, \"accountOwnerId\", \"productCode\") \
             SELECT 'Deal ' || g, md5('account' || (1 + (g * 7919 + $4::int) % 400))::uuid::text, $2, $3, \
                    (ARRAY['web', 'instagram', 'branch', 'referral'])[1 + (g + $4::int) % 4], (g * 37 + $4::int) % 200, ((g * 13) % 90 + 10) * 1000000, \
                    CASE WHEN g <= $5 THEN 402 ELSE 1 END, \
                    CASE WHEN $2 = 'corporate' THEN (ARRAY['TRADE', 'CASH'])[1 + g % 2] ELSE (ARRAY['HOME', 'AUTO', 'CARD', 'SAVE'])[1 + (g + $4::int) % 4] END \
             FROM generate_series(1, $1) AS g",
            &[&n, &pipeline, &stage, &((seed % 100_000) as i32), &owned],
        )
        .await?;
    Ok(())
}

/// Wait until no event is left to route.
pub async fn wait_until_drained(client: &tokio_postgres::Client, cfg: &Config, limit: Duration) -> anyhow::Result<()> {
    let s = cfg.router.schema.quoted();
    let started = Instant::now();
    loop {
        let left: i64 = client.query_one(&format!("SELECT count(*) FROM {s}.events"), &[]).await?.get(0);
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > limit {
            anyhow::bail!("{left} events still queued after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
