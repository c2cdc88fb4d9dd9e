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
use rand::{RngExt, SeedableRng};
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

/// The demo's stage: the throwaway cluster, the sample CRM mapped, the router installed.
struct Stage {
    cluster: Cluster,
    cfg: Arc<Config>,
    rules: Arc<ArcSwap<crate::engine::Engine>>,
    client: tokio_postgres::Client,
    /// CRM user id → full name, for printing.
    names: Arc<HashMap<String, String>>,
}

/// What the live stream did.
struct Streamed {
    inserted: u64,
    /// Assigned by a person at creation.
    manual: u64,
    secs: f64,
    /// The last assignment of the stream (the latency is measured over those).
    last_assignment: i64,
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    println!("oppty-router demo: a throwaway PostgreSQL, the sample CRM in sql/demo/, the rules in config/rules/\n");
    let stage = set_up(&opts).await?;
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Routed>();
    let printer = tokio::spawn(print_decisions(rx, stage.names.clone()));
    let streamed = stream(&stage, &opts, tx, &mut rng).await?;
    let _ = printer.await;
    let (backlog_routed, drain_secs) = backlog(&stage, &opts, &mut rng).await?;
    println!(
        "\n  summary: {} opportunities streamed in {:.1} s ({} assigned by a person at creation), \
         then {backlog_routed} from the backlog\n",
        streamed.inserted, streamed.secs, streamed.manual
    );
    print_loads(&stage).await?;
    print_latency(&stage, streamed.last_assignment).await?;
    println!(
        "  backlog drain: {backlog_routed} opportunities queued while the daemon was stopped, drained in {drain_secs:.2} s \
         = {:.0} opportunities/s (batch {}, including reconnect and load recount)",
        backlog_routed as f64 / drain_secs.max(1e-9),
        stage.cfg.router.batch_size
    );
    finish(stage, opts.keep).await
}

/// Start PostgreSQL, load the sample CRM, read the rules, install the router.
async fn set_up(opts: &DemoOptions) -> anyhow::Result<Stage> {
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(true)).await??;
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
    let names: HashMap<String, String> = (client
        .query("SELECT id::text AS id, \"fullName\" AS name FROM crm.users", &[]))
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
    .collect::<Result<_, tokio_postgres::Error>>()?;
    let report = install::install(&mut client, &cfg).await?;
    println!("  router installed: {} schema file(s), {} trigger(s)\n", report.applied.len(), report.triggers.len());
    let rules = Arc::new(ArcSwap::from_pointee(engine));
    Ok(Stage { cluster, cfg, rules, client, names: Arc::new(names) })
}

/// Print each committed decision as it comes.
async fn print_decisions(mut rx: tokio::sync::mpsc::UnboundedReceiver<Routed>, names: Arc<HashMap<String, String>>) {
    let mut n = 0u64;
    while let Some(r) = rx.recv().await {
        n += 1;
        let ms = (chrono::Utc::now() - r.event_at).num_milliseconds();
        let who = (r.owner.as_deref())
            .map(|o| format!("{o} {}", names.get(o).map(String::as_str).unwrap_or("")))
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
}

/// The live stream: the daemon runs while opportunities, activities, manual assignments and
/// closings arrive at `opts.rate` a second; then the queue drains and the daemon stops.
async fn stream(
    stage: &Stage,
    opts: &DemoOptions,
    tx: tokio::sync::mpsc::UnboundedSender<Routed>,
    rng: &mut SmallRng,
) -> anyhow::Result<Streamed> {
    let (cfg, client) = (&stage.cfg, &stage.client);
    let shutdown = CancellationToken::new();
    let options = RunOptions { decisions: Some(tx), ..Default::default() };
    let daemon_task = tokio::spawn(daemon::run(cfg.clone(), stage.rules.clone(), shutdown.clone(), options));
    println!(
        "  streaming ~{} opportunities/s for {} s (with activities, manual assignments, closings):\n",
        opts.rate, opts.seconds
    );
    println!(
        "  {:>5}  {:<8}  {:<9}  {:<10}    {:<22} {:<14} {:<15} {:>7}",
        "#", "opp", "pipeline", "outcome", "owner", "team", "rule", "latency"
    );
    let started = Instant::now();
    let tick = Duration::from_millis(20);
    let per_tick = (f64::from(opts.rate) * tick.as_secs_f64()).max(1.0);
    let (mut owed, mut inserted, mut manual) = (0.0f64, 0u64, 0u64);
    let mut interval = tokio::time::interval(tick);
    while started.elapsed() < Duration::from_secs(opts.seconds) {
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
        if n > 0 {
            manual += u64::from(one_tick(client, n, rng).await?);
            inserted += n as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    wait_until_drained(client, cfg, Duration::from_secs(30)).await?;
    let last_assignment: i64 = client
        .query_one(&format!("SELECT coalesce(max(id), 0) AS last FROM {}.assignments", cfg.router.schema.quoted()), &[])
        .await?
        .try_get("last")?;
    shutdown.cancel();
    let _ = daemon_task.await;
    Ok(Streamed { inserted, manual, secs, last_assignment })
}

/// One tick of the stream: `n` opportunities (a fifth corporate, now and then one a person
/// assigns), and sometimes activities, a chatter note and a closing. Returns how many a person
/// assigned.
async fn one_tick(client: &tokio_postgres::Client, n: i32, rng: &mut SmallRng) -> anyhow::Result<bool> {
    let corporate: i32 = (0..n).filter(|_| rng.random_bool(0.2)).count() as i32;
    let with_owner = rng.random_bool(0.05);
    insert_opportunities(client, n - corporate, "retail", rng.random(), 0).await?;
    insert_opportunities(client, corporate, "corporate", rng.random(), i32::from(with_owner)).await?;
    if rng.random_bool(0.3) {
        client.batch_execute(
            "INSERT INTO crm.activity (\"opportunityId\", kind, \"userId\") \
             SELECT \"oppId\", 'call', \"accountOwnerId\" FROM crm.opportunity WHERE \"accountOwnerId\" <> 1 ORDER BY random() LIMIT 3;
             INSERT INTO crm.mail_message (model, res_id, author_id, body) \
             SELECT 'crm.opportunity', \"oppId\"::text, 100, 'note' FROM crm.opportunity ORDER BY random() LIMIT 1;
             UPDATE crm.opportunity SET \"stageId\" = CASE WHEN \"pipelineCode\" = 'retail' THEN 3 ELSE 13 END \
             WHERE \"oppId\" = (SELECT \"oppId\" FROM crm.opportunity WHERE \"accountOwnerId\" <> 1 AND \"stageId\" IN (1, 11) ORDER BY random() LIMIT 1);",
        ).await?;
    }
    Ok(with_owner)
}

/// The backlog: opportunities pile up while the daemon is stopped; it starts and the drain is
/// timed. Returns (routed, seconds).
async fn backlog(stage: &Stage, opts: &DemoOptions, rng: &mut SmallRng) -> anyhow::Result<(u64, f64)> {
    let (cfg, client) = (&stage.cfg, &stage.client);
    insert_opportunities(client, opts.backlog as i32, "retail", rng.random(), 0).await?;
    let shutdown = CancellationToken::new();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Routed>();
    let started = Instant::now();
    let options = RunOptions { decisions: Some(tx), ready: Some(ready), ..Default::default() };
    let daemon_task = tokio::spawn(daemon::run(cfg.clone(), stage.rules.clone(), shutdown.clone(), options));
    let counter = tokio::spawn(async move {
        let mut n = 0u64;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    wait_until_drained(client, cfg, Duration::from_secs(120)).await?;
    let secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = daemon_task.await;
    Ok((counter.await.unwrap_or(0), secs))
}

/// Per team and member: assigned, open load, fallback.
async fn print_loads(stage: &Stage) -> anyhow::Result<()> {
    let s = stage.cfg.router.schema.quoted();
    println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", "team", "member", "assigned", "open load", "fallback");
    let rows = stage
        .client
        .query(
            &format!(
                "WITH a AS (SELECT owner_id, coalesce(team_id, '(fallback)') AS team, count(*) FILTER (WHERE outcome = 'rule') AS ruled, \
                 count(*) FILTER (WHERE outcome = 'fallback') AS fb FROM {s}.assignments WHERE owner_id IS NOT NULL GROUP BY 1, 2) \
                 SELECT a.team, a.owner_id, a.ruled, a.fb, coalesce(m.open_count, 0) AS open FROM a \
                 LEFT JOIN {s}.member_state m ON m.member_id = a.owner_id ORDER BY a.team, a.owner_id"
            ),
            &[],
        )
        .await?;
    let (mut tr, mut tf) = (0i64, 0i64);
    for r in &rows {
        let owner: String = r.try_get("owner_id")?;
        let (ruled, fb): (i64, i64) = (r.try_get("ruled")?, r.try_get("fb")?);
        let (team, open): (String, i32) = (r.try_get("team")?, r.try_get("open")?);
        tr += ruled;
        tf += fb;
        let name = format!("{owner} {}", stage.names.get(&owner).map(String::as_str).unwrap_or(""));
        println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", team, name, ruled + fb, open, fb);
    }
    println!("  {:<17} {:<28} {:>9} {:>10} {:>9}", "total", "", tr + tf, "", tf);
    Ok(())
}

/// End-to-end latency (CRM insert → owner decided) of the stream's decisions.
async fn print_latency(stage: &Stage, last_assignment: i64) -> anyhow::Result<()> {
    let s = stage.cfg.router.schema.quoted();
    let lat = stage
        .client
        .query_one(
            &format!(
                "SELECT count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, \
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max \
                 FROM (SELECT (extract(epoch FROM a.decided_at - o.\"createdAt\") * 1000)::float8 AS ms FROM {s}.assignments a \
                 JOIN crm.opportunity o ON o.\"oppId\"::text = a.opp_id WHERE a.id <= $1) x"
            ),
            &[&last_assignment],
        )
        .await?;
    let n: i64 = lat.try_get("n")?;
    let (p50, p99, max): (Option<f64>, Option<f64>, Option<f64>) =
        (lat.try_get("p50")?, lat.try_get("p99")?, lat.try_get("max")?);
    println!(
        "\n  end-to-end latency (CRM insert -> owner decided), {n} decisions: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.unwrap_or(0.0),
        p99.unwrap_or(0.0),
        max.unwrap_or(0.0)
    );
    Ok(())
}

/// What was left behind, then stop the cluster (or keep it, saying how to reach it). Fails when
/// an opportunity is left unowned or an event dead-lettered.
async fn finish(stage: Stage, keep: bool) -> anyhow::Result<()> {
    let Stage { mut cluster, cfg, client, .. } = stage;
    let s = cfg.router.schema.quoted();
    let dead: i64 = client.query_one(&format!("SELECT count(*) AS n FROM {s}.dead_letter"), &[]).await?.try_get("n")?;
    let unrouted: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM crm.opportunity WHERE \"accountOwnerId\" = 1 AND \"deletedAt\" IS NULL",
            &[],
        )
        .await?
        .try_get("n")?;
    println!("  still unowned: {unrouted}; dead-lettered events: {dead}");
    if keep {
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
        let left: i64 = client.query_one(&format!("SELECT count(*) AS n FROM {s}.events"), &[]).await?.try_get("n")?;
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > limit {
            anyhow::bail!("{left} events still queued after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
