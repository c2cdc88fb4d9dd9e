//! `demo`: the whole pipeline on a throwaway database, end to end, in about ten seconds.
//!
//! Owns the demo's story: start PostgreSQL, load the sample CRM (`sql/demo/`), install the router,
//! route a live stream of opportunities and activities while printing each decision, then measure
//! a backlog drain, print a summary and the latencies, and clean up. It uses only the public
//! pieces the daemon uses; it must not take shortcuts the daemon would not.

mod console;
mod summary;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::throwaway::Cluster;
use oppty_router::config::Config;
use oppty_router::daemon::{self, RunOptions};
use oppty_router::drain::Routed;
use oppty_router::{db, install, load_rules};
use summary::{print_latency, print_loads, print_story};

/// The sample CRM, compiled in.
pub const DEMO_SQL: &[(&str, &str)] = &[
    ("001_crm.sql", include_str!("../../../../sql/demo/001_crm.sql")),
    ("002_data.sql", include_str!("../../../../sql/demo/002_data.sql")),
];

/// The example daemon config, compiled in; the demo points it at its throwaway database.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../../config/oppty-router.toml");

pub struct DemoOptions {
    pub seconds: u64,
    pub rate: u32,
    pub backlog: u32,
    pub keep: bool,
    pub rules_dir: Option<PathBuf>,
    pub seed: u64,
    /// After the run, serve the web console and route on until Ctrl-C.
    pub console: bool,
}

/// Load the sample CRM into a fresh database `db` of the cluster and return a config mapping it.
pub async fn prepare_crm(cluster: &Cluster, db_name: &str, rules_dir: PathBuf) -> anyhow::Result<Config> {
    let admin = db::connect(&url_config(&cluster.url("postgres")), "").await?;
    admin.batch_execute(&format!("CREATE DATABASE {}", oppty_router::ident::Ident::parse(db_name)?.quoted())).await?;
    let mut cfg = Config::parse(EXAMPLE_CONFIG, std::path::Path::new("config/oppty-router.toml"))?;
    cfg.database.url = cluster.url(db_name);
    cfg.router.rules_dir = rules_dir;
    let client = db::connect(&cfg.database, " demo").await?;
    for (name, sql) in DEMO_SQL {
        client.batch_execute(sql).await.with_context(|| format!("loading sql/demo/{name}"))?;
    }
    Ok(cfg)
}

fn url_config(url: &str) -> oppty_router::config::DatabaseConfig {
    oppty_router::config::DatabaseConfig {
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
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/rules"))
    }
}

/// The demo's stage: the throwaway cluster, the sample CRM mapped, the router installed, and the
/// rules directory (a copy the demo edits mid-run) watched as the daemon watches it.
struct Stage {
    cluster: Cluster,
    cfg: Arc<Config>,
    rules: Arc<ArcSwap<oppty_router::engine::Engine>>,
    directory: Arc<ArcSwap<oppty_router::rules::Directory>>,
    reloader: Arc<oppty_router::reload::Reloader>,
    /// Stops the rules watcher.
    watching: CancellationToken,
    client: tokio_postgres::Client,
    /// CRM user id → full name, for printing.
    names: Arc<HashMap<String, String>>,
    /// The rules version before and after the demo's edit.
    reloaded: Arc<std::sync::Mutex<Option<(String, String)>>>,
}

/// The edit the demo makes mid-run: Giang (203), who reaches her daily cap of 50 early, may take
/// 80 a day.
const EDITED_FILE: &str = "01-people.toml";
const CAPPED: &str = "caps = [{ max = 50, per = \"day\", timezone = \"Asia/Ho_Chi_Minh\" }]";
const RAISED: &str =
    "caps = [{ max = 80, per = \"day\", timezone = \"Asia/Ho_Chi_Minh\" }]   # the demo raised it from 50, mid-run;";
const EDIT_SAID: &str = "203 Vũ Thị Giang's daily cap raised from 50 to 80";

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
    let mut stage = set_up(&opts).await?;
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Routed>();
    let printer = tokio::spawn(print_decisions(rx, stage.names.clone()));
    let streamed = stream(&stage, &opts, tx, &mut rng).await?;
    let _ = printer.await;
    let (backlog_routed, drain_secs) = backlog(&stage, &opts, &mut rng).await?;
    println!(
        "\n  summary: {} opportunities streamed in {:.1} s ({} assigned by a person at creation), \
         then a campaign's {backlog_routed} corporate leads from the backlog\n",
        streamed.inserted, streamed.secs, streamed.manual
    );
    print_loads(&stage).await?;
    print_story(&mut stage).await?;
    print_latency(&stage, streamed.last_assignment).await?;
    println!(
        "  backlog drain: {backlog_routed} opportunities queued while the daemon was stopped, drained in {drain_secs:.2} s \
         = {:.0} opportunities/s (batch {}, including reconnect and load recount)",
        backlog_routed as f64 / drain_secs.max(1e-9),
        stage.cfg.router.batch_size
    );
    if opts.console {
        console::serve_until_stopped(&stage).await?;
    }
    finish(stage, opts.keep).await
}

/// Start PostgreSQL, load the sample CRM, read the rules, install the router.
async fn set_up(opts: &DemoOptions) -> anyhow::Result<Stage> {
    let cluster = tokio::task::spawn_blocking(|| {
        crate::throwaway::provide(&|line| println!("  {line}"))?;
        Cluster::start(true)
    })
    .await??;
    if !opts.keep {
        cluster.stop_when_gone(std::process::id());
    }
    println!("  PostgreSQL started from {} in {}", cluster.bin_dir().display(), cluster.dir.display());
    let from = opts.rules_dir.clone().unwrap_or_else(default_rules_dir);
    let rules_dir = copy_rules(&from, &cluster.dir.join("rules"))?;
    let mut cfg = prepare_crm(&cluster, "crm", rules_dir).await?;
    // A reclaim sweep every second (the example config's is a minute): the demo shows one.
    cfg.router.reclaim_interval = Duration::from_secs(1);
    let cfg = Arc::new(cfg);
    println!("  sample CRM loaded (crm.opportunity: uuid key, camelCase columns, stage table, soft delete)");
    let engine = load_rules(&cfg)?;
    println!(
        "  rules copied from {} to {} (the demo edits the copy mid-run), version {}",
        from.display(),
        cfg.router.rules_dir.display(),
        engine.version
    );
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
    let directory = Arc::new(ArcSwap::from_pointee(oppty_router::directory_flags(&cfg)));
    let reloader = Arc::new(oppty_router::reload::Reloader::new(cfg.clone(), rules.clone(), directory.clone()));
    let watching = CancellationToken::new();
    let watch = oppty_router::reload::watch(
        reloader.clone(),
        cfg.router.rules_dir.clone(),
        cfg.router.reload_debounce,
        watching.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = watch.await {
            eprintln!("  cannot watch the rules directory: {e}");
        }
    });
    let reloaded = Arc::new(std::sync::Mutex::new(None));
    Ok(Stage { cluster, cfg, rules, directory, reloader, watching, client, names: Arc::new(names), reloaded })
}

/// A copy of the rule files of `from` in `to` (the demo edits the copy, never the originals).
fn copy_rules(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let p = e?.path();
        if let (true, Some(name)) = (p.is_file(), p.file_name()) {
            std::fs::copy(&p, to.join(name)).with_context(|| format!("copying {}", p.display()))?;
        }
    }
    Ok(to.to_path_buf())
}

/// The daemon's options in the demo: decisions sent to `tx`, rules reloaded through the watcher.
fn run_options(stage: &Stage, tx: tokio::sync::mpsc::UnboundedSender<Routed>) -> RunOptions {
    RunOptions {
        decisions: Some(tx),
        directory: stage.directory.clone(),
        reloader: Some(stage.reloader.clone()),
        ..Default::default()
    }
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
    let options = run_options(stage, tx);
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
    let mut plot = Plot::default();
    while started.elapsed() < Duration::from_secs(opts.seconds) {
        interval.tick().await;
        plot.turn(stage, started.elapsed().as_secs_f64() / opts.seconds as f64).await?;
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
            manual += u64::from(one_tick(client, n, rng, &plot.aged).await?);
            inserted += n as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    wait_until_drained(client, cfg, Duration::from_secs(30)).await?;
    plot.reclaimed(stage).await?;
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
async fn one_tick(
    client: &tokio_postgres::Client,
    n: i32,
    rng: &mut SmallRng,
    idle: &[String],
) -> anyhow::Result<bool> {
    let corporate: i32 = (0..n).filter(|_| rng.random_bool(0.2)).count() as i32;
    let with_owner = rng.random_bool(0.05);
    insert_opportunities(client, n - corporate, "retail", rng.random(), 0).await?;
    insert_opportunities(client, corporate, "corporate", rng.random(), i32::from(with_owner)).await?;
    if rng.random_bool(0.3) {
        // Nobody touches the opportunities the story leaves idle (`idle`).
        client
            .execute(
                "INSERT INTO crm.activity (\"opportunityId\", kind, \"userId\") \
                 SELECT \"oppId\", 'call', \"accountOwnerId\" FROM crm.opportunity \
                 WHERE \"accountOwnerId\" <> 1 AND NOT \"oppId\"::text = ANY($1) ORDER BY random() LIMIT 3",
                &[&idle],
            )
            .await?;
        client
            .batch_execute(
                "INSERT INTO crm.mail_message (model, res_id, author_id, body) \
                 SELECT 'crm.opportunity', \"oppId\"::text, 100, 'note' FROM crm.opportunity ORDER BY random() LIMIT 1",
            )
            .await?;
        client
            .execute(
                "UPDATE crm.opportunity SET \"stageId\" = CASE WHEN \"pipelineCode\" = 'retail' THEN 3 ELSE 13 END \
                 WHERE \"oppId\" = (SELECT \"oppId\" FROM crm.opportunity WHERE \"accountOwnerId\" <> 1 \
                 AND \"stageId\" IN (1, 11) AND NOT \"oppId\"::text = ANY($1) ORDER BY random() LIMIT 1)",
                &[&idle],
            )
            .await?;
    }
    Ok(with_owner)
}

/// The story's turns during the stream: at 40% an admin raises Giang's daily cap (a rule file edited and
/// saved; the daemon reloads it), at 60% three digital-team opportunities are left
/// untouched past their 4 hours (the demo moves their clock back) and the sweeper reclaims them.
#[derive(Default)]
struct Plot {
    edited: bool,
    /// The opportunities left idle for the sweeper to reclaim.
    aged: Vec<String>,
}

impl Plot {
    async fn turn(&mut self, stage: &Stage, done: f64) -> anyhow::Result<()> {
        if !self.edited && done >= 0.4 {
            self.edited = true;
            edit_rules(stage)?;
        }
        if self.aged.is_empty() && done >= 0.6 {
            self.aged = age_assignments(stage).await?;
        }
        Ok(())
    }

    /// Wait (10 s at most) until the sweeper has reclaimed what the story left idle.
    async fn reclaimed(&self, stage: &Stage) -> anyhow::Result<()> {
        let s = stage.cfg.router.schema.quoted();
        let sql = format!(
            "SELECT count(DISTINCT opp_id) AS n FROM {s}.assignments WHERE outcome = 'reclaim' AND opp_id = ANY($1)"
        );
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let n: i64 = stage.client.query_one(&sql, &[&self.aged]).await?.try_get("n")?;
            if n as usize >= self.aged.len() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("  (the sweeper did not reclaim all {} idle opportunities within 10 s:)", self.aged.len());
        let rows = stage
            .client
            .query(
                &format!(
                    "SELECT w.opp_id, w.owner_id, w.due_at::text AS due, w.reclaims, o.\"stageId\" AS stage, \
                     (SELECT string_agg(a.outcome, ',' ORDER BY a.id) FROM {s}.assignments a WHERE a.opp_id = w.opp_id) AS outcomes \
                     FROM {s}.ownership w JOIN crm.opportunity o ON o.\"oppId\"::text = w.opp_id WHERE w.opp_id = ANY($1)"
                ),
                &[&self.aged],
            )
            .await?;
        for r in rows {
            let (id, owner, due): (String, String, Option<String>) =
                (r.try_get("opp_id")?, r.try_get("owner_id")?, r.try_get("due")?);
            let (stage_id, outcomes): (i32, Option<String>) = (r.try_get("stage")?, r.try_get("outcomes")?);
            println!("    {id}: owner {owner}, due {due:?}, stage {stage_id}, decisions {outcomes:?}");
        }
        Ok(())
    }
}

/// Save the edited rule file as an editor does (a new file renamed over the old), and announce the
/// new version once the daemon has it in force.
fn edit_rules(stage: &Stage) -> anyhow::Result<()> {
    let path = stage.cfg.router.rules_dir.join(EDITED_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if !text.contains(CAPPED) {
        println!("\n  ── (no rule edit: {} has no `{CAPPED}`)\n", path.display());
        return Ok(());
    }
    let before = stage.rules.load().version.clone();
    let tmp = path.with_extension("toml.demo-tmp");
    std::fs::write(&tmp, text.replacen(CAPPED, RAISED, 1))?;
    std::fs::rename(&tmp, &path)?;
    println!("\n  ── {EDITED_FILE} edited and saved by an admin: {EDIT_SAID} (Saigon is busy)\n");
    let (rules, reloaded) = (stage.rules.clone(), stage.reloaded.clone());
    tokio::spawn(async move {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let now = rules.load().version.clone();
            if now != before {
                println!("\n  ── rules reloaded without a restart: version {before} → {now}\n");
                if let Ok(mut r) = reloaded.lock() {
                    *r = Some((before, now));
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("\n  ── the edited rules did not go in force within 10 s (see the log)\n");
    });
    Ok(())
}

/// Three opportunities of the digital team (reclaimed after 4 idle hours) made five hours old, as
/// if nobody had touched them since: nobody waits four hours in a demo.
async fn age_assignments(stage: &Stage) -> anyhow::Result<Vec<String>> {
    let s = stage.cfg.router.schema.quoted();
    let aged: Vec<String> = stage
        .client
        .query(
            &format!(
                "UPDATE {s}.ownership SET assigned_at = assigned_at - interval '5 hours', \
                 last_owner_touch_at = last_owner_touch_at - interval '5 hours', due_at = now() - interval '1 second' \
                 WHERE opp_id IN (SELECT w.opp_id FROM {s}.ownership w WHERE w.team_id = 'digital' \
                   AND NOT EXISTS (SELECT 1 FROM crm.activity a WHERE a.\"opportunityId\"::text = w.opp_id) \
                   AND NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.opp_id = w.opp_id) \
                   ORDER BY w.assigned_at LIMIT 3) \
                 RETURNING opp_id"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.try_get("opp_id"))
        .collect::<Result<_, _>>()?;
    println!(
        "\n  ── {} digital-team opportunities left untouched for 5 hours (the demo moves their clock back; \
         the team reclaims after 4): the sweeper hands them on\n",
        aged.len()
    );
    Ok(aged)
}

/// The backlog: opportunities pile up while the daemon is stopped; it starts and the drain is
/// timed. Returns (routed, seconds).
async fn backlog(stage: &Stage, opts: &DemoOptions, rng: &mut SmallRng) -> anyhow::Result<(u64, f64)> {
    let (cfg, client) = (&stage.cfg, &stage.client);
    insert_opportunities(client, opts.backlog as i32, "corporate", rng.random(), 0).await?;
    let shutdown = CancellationToken::new();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Routed>();
    let started = Instant::now();
    let options = RunOptions { ready: Some(ready), ..run_options(stage, tx) };
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

/// What was left behind, then stop the cluster (or keep it, saying how to reach it). Fails when
/// an opportunity is left unowned or an event dead-lettered.
async fn finish(stage: Stage, keep: bool) -> anyhow::Result<()> {
    let Stage { mut cluster, cfg, client, watching, .. } = stage;
    watching.cancel();
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
             SELECT 'Deal ' || g, md5('account' || (1 + (g * 7919 + $4::int) % 2000))::uuid::text, $2, $3, \
                    (ARRAY['web', 'instagram', 'branch', 'referral'])[1 + (g + $4::int) % 4], (g * 37 + $4::int) % 200, CASE WHEN g % 40 = 0 THEN 80 ELSE (g * 13) % 40 + 5 END * 1000000, \
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
