//! Chaos, bounded (about a minute, stops by itself): three replicas of the daemon binary route
//! what a producer writes into a real PostgreSQL (opportunities, activities, a person's
//! assignments, closings, poison rows the CRM refuses an owner for) while faults are injected at
//! random: kill -9 of a replica or of the leader (restarted), pg_terminate_backend of every
//! daemon connection, `pg_ctl restart -m fast`, a row held locked 5 s, a frozen leader
//! (SIGSTOP 3 s), an invalid rule file saved and removed, a CRM session idle in transaction on
//! rows due for reclaim; and all along, rows whose field fails with out of memory (class 53) or
//! sleeps past the leader's lease (a wedged drain), under a role-level `statement_timeout` far
//! shorter than the daemon's statements. At the end: nothing lost, nothing routed twice, no cap
//! exceeded, no owner a person set overwritten, only the poison dead-lettered, and no
//! opportunity waited longer than the bound. It prints what it injected and what it measured.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{db_config, holds_within, pace, wait_until};
use devkit::demo;
use devkit::throwaway::Cluster;
use oppty_router::config::Config;
use oppty_router::engine::Window;
use oppty_router::{db, install};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio_postgres::Client;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");
const CHAOS: Duration = Duration::from_secs(40);
/// The longest any opportunity may wait for its owner, faults included (a row a person holds
/// locked waits for the person: the fault holds one 5 s).
const LONGEST_WAIT: Duration = Duration::from_secs(10);
const REPLICAS: usize = 3;

/// A connection, made again after a restart (as the CRM's application retries, every 100 ms).
async fn connect(url: &str) -> Client {
    let started = Instant::now();
    loop {
        match db::connect(&db_config(url), "").await {
            Ok(c) => return c,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(60), "the database is back within a minute: {e}"),
        }
        pace(Duration::from_millis(100)).await;
    }
}

struct Replicas {
    cfg: PathBuf,
    dir: PathBuf,
    children: Vec<Option<std::process::Child>>,
    started: usize,
}

impl Replicas {
    fn spawn(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.join(format!("replica-{i}-{}.log", self.started))).expect("log");
        self.started += 1;
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&self.cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a replica");
        self.children[i] = Some(child);
    }

    fn pid(&self, i: usize) -> Option<i32> {
        self.children[i].as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, i: usize, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid(i) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// What the producer did, to check against at the end.
#[derive(Default)]
struct Produced {
    inserted: Vec<String>,
    poison: Vec<String>,
    /// Opportunities a person gave to user 100 (at creation or later): must stay theirs.
    by_hand: Vec<String>,
    closed: Vec<String>,
    activities: usize,
}

async fn produce(url: String, stop: Arc<AtomicBool>, out: Arc<Mutex<Produced>>) {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut c = connect(&url).await;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        pace(Duration::from_millis(50)).await;
        for _ in 0..10 {
            n += 1;
            let roll: f64 = rng.random();
            let (title, owner) = if roll < 0.01 {
                (format!("poison {n}"), 1)
            } else if roll < 0.05 {
                (format!("taken by hand {n}"), 100)
            } else {
                (format!("chaos {n}"), 1)
            };
            let province = ["HCM", "HN", "DN"][rng.random_range(0..3)];
            let r = c
                .query_one(
                    "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\", \"accountOwnerId\") \
                     SELECT $1, (SELECT \"accountId\" FROM crm.account WHERE \"provinceCode\" = $2 AND \"ownerId\" IS NULL \
                     ORDER BY 1 LIMIT 1), 'retail', 1, $3 RETURNING \"oppId\"::text",
                    &[&title, &province, &owner],
                )
                .await;
            let id: String = match r {
                Ok(row) => row.get(0),
                Err(_) => {
                    c = connect(&url).await;
                    continue;
                }
            };
            let mut p = out.lock().expect("produced");
            p.inserted.push(id.clone());
            if title.starts_with("poison") {
                p.poison.push(id);
            } else if owner == 100 {
                p.by_hand.push(id);
            }
        }
        // Now and then: a call on a routed one, a person takes one over, one is closed.
        let (pick, roll): (Option<String>, f64) = {
            let p = out.lock().expect("produced");
            let k = p.inserted.len();
            (if k > 50 { Some(p.inserted[rng.random_range(0..k - 20)].clone()) } else { None }, rng.random())
        };
        let Some(opp) = pick else { continue };
        let poisoned = out.lock().expect("produced").poison.contains(&opp);
        if poisoned {
            continue;
        }
        let sql = if roll < 0.5 {
            "INSERT INTO crm.activity (\"opportunityId\", kind, \"userId\") \
             SELECT \"oppId\", 'call', \"accountOwnerId\" FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid"
        } else if roll < 0.75 {
            "UPDATE crm.opportunity SET \"accountOwnerId\" = 100 WHERE \"oppId\" = $1::text::uuid"
        } else {
            "UPDATE crm.opportunity SET \"stageId\" = 3 WHERE \"oppId\" = $1::text::uuid"
        };
        if c.execute(sql, &[&opp]).await.is_ok() {
            let mut p = out.lock().expect("produced");
            if roll < 0.5 {
                p.activities += 1;
            } else if roll < 0.75 {
                p.by_hand.push(opp);
            } else {
                p.closed.push(opp);
            }
        }
    }
}

async fn leader(url: &str) -> Option<i32> {
    let c = db::connect(&db_config(url), "").await.ok()?;
    let row = c.query_opt("SELECT pid FROM oppty_router.daemon_status WHERE stopped_at IS NULL", &[]).await.ok()??;
    row.try_get(0).ok()
}

/// Inject one fault at random; returns what was done.
async fn inject(
    rng: &mut SmallRng,
    replicas: &mut Replicas,
    cluster: &Cluster,
    url: &str,
    rules: &Path,
    produced: &Mutex<Produced>,
) -> String {
    let which = rng.random_range(0..9);
    match which {
        // A poison row: a field fails with out of memory (class 53, which ends the session), or
        // sleeps past the leader's lease (the drain wedges until a standby takes over).
        8 => {
            let oom = rng.random_bool(0.5);
            let kind = if oom { "oom" } else { "wedge" };
            let c = connect(url).await;
            let r = c
                .query_one(
                    "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\") \
                     SELECT 'poison ' || $1::text || ' ' || clock_timestamp(), (SELECT \"accountId\" FROM crm.account \
                     WHERE \"provinceCode\" = 'HCM' AND \"ownerId\" IS NULL ORDER BY 1 LIMIT 1), 'retail', 1 RETURNING \"oppId\"::text",
                    &[&kind],
                )
                .await;
            match r {
                Ok(row) => {
                    let id: String = row.get(0);
                    let mut p = produced.lock().expect("produced");
                    p.inserted.push(id.clone());
                    p.poison.push(id);
                    format!(
                        "a row whose field {}",
                        if oom { "runs out of memory (53200)" } else { "sleeps past the lease" }
                    )
                }
                Err(e) => format!("inserting a {kind} row failed: {e}"),
            }
        }
        0 => {
            let i = rng.random_range(0..REPLICAS);
            replicas.kill(i);
            pace(Duration::from_millis(500)).await;
            replicas.spawn(i);
            format!("kill -9 replica {i}, restarted")
        }
        1 => {
            let pid = leader(url).await;
            match (0..REPLICAS).find(|i| replicas.pid(*i) == pid && pid.is_some()) {
                Some(i) => {
                    replicas.kill(i);
                    pace(Duration::from_millis(500)).await;
                    replicas.spawn(i);
                    format!("kill -9 the leader (replica {i}), restarted")
                }
                None => "kill -9 the leader: no leader recorded yet".into(),
            }
        }
        2 => {
            let c = connect(url).await;
            let n = c
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'oppty-router%'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0);
            format!("pg_terminate_backend of {n} daemon connections")
        }
        3 => match cluster.restart() {
            Ok(()) => "pg_ctl restart -m fast".into(),
            Err(e) => format!("pg_ctl restart failed: {e}"),
        },
        7 => {
            let url = url.to_string();
            tokio::spawn(async move {
                let mut c = connect(&url).await;
                let Ok(tx) = c.transaction().await else { return };
                // Three of the router's assignments made due for reclaim, held by a person's
                // transaction that then sits idle.
                let held = tx
                    .execute(
                        "WITH due AS (UPDATE oppty_router.ownership SET assigned_at = now() - interval '30 days',                          last_owner_touch_at = now() - interval '30 days', due_at = now() - interval '1 day'                          WHERE opp_id IN (SELECT opp_id FROM oppty_router.ownership ORDER BY random() LIMIT 3) RETURNING opp_id)                          SELECT 1 FROM crm.opportunity WHERE \"oppId\"::text IN (SELECT opp_id FROM due) FOR UPDATE",
                        &[],
                    )
                    .await;
                if held.is_ok() {
                    pace(Duration::from_secs(5)).await;
                }
                let _ = tx.commit().await;
            });
            "a CRM session idle in transaction holds 3 rows due for reclaim for 5 s".into()
        }
        4 => {
            let url = url.to_string();
            tokio::spawn(async move {
                let mut c = connect(&url).await;
                let Ok(tx) = c.transaction().await else { return };
                let locked = tx
                    .execute(
                        // SKIP LOCKED: the newest unowned row no earlier fault still holds. Queued
                        // behind one, this fault would hold the same row for 10 s, not 5.
                        "SELECT 1 FROM crm.opportunity WHERE \"accountOwnerId\" = 1 AND title LIKE 'chaos%' \
                         ORDER BY \"createdAt\" DESC LIMIT 1 FOR UPDATE SKIP LOCKED",
                        &[],
                    )
                    .await;
                if locked.is_ok() {
                    pace(Duration::from_secs(5)).await;
                }
                let _ = tx.commit().await;
            });
            "a CRM transaction holds an unowned opportunity locked for 5 s".into()
        }
        5 => {
            let pid = leader(url).await;
            match (0..REPLICAS).find(|i| replicas.pid(*i) == pid && pid.is_some()) {
                Some(i) => {
                    replicas.signal(i, nix::sys::signal::Signal::SIGSTOP);
                    pace(Duration::from_secs(3)).await;
                    replicas.signal(i, nix::sys::signal::Signal::SIGCONT);
                    format!("SIGSTOP the leader (replica {i}) for 3 s")
                }
                None => "SIGSTOP the leader: no leader recorded yet".into(),
            }
        }
        _ => {
            let bad = rules.join("99-broken.toml");
            let _ = std::fs::write(&bad, "[[member]\nid = \"broken\n");
            pace(Duration::from_secs(1)).await;
            let _ = std::fs::remove_file(&bad);
            "an invalid rule file saved, then removed".into()
        }
    }
}

fn setup_files(dir: &Path, url: &str) -> (PathBuf, PathBuf) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules");
    for e in std::fs::read_dir(src).expect("rules") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, rules.join(p.file_name().expect("name"))).expect("copy");
    }
    let text = demo::EXAMPLE_CONFIG
        .replace("host=/var/run/postgresql dbname=crm user=oppty_router", url)
        .replace("/etc/oppty-router/rules", &rules.display().to_string())
        .replace("poll_interval = \"500ms\"", "poll_interval = \"100ms\"")
        .replace("reconnect_max_backoff = \"30s\"", "reconnect_max_backoff = \"500ms\"")
        .replace("retry_backoff = \"1s\"", "retry_backoff = \"100ms\"")
        .replace("max_attempts = 5", "max_attempts = 3")
        .replace("leader_lease = \"5s\"", "leader_lease = \"2s\"")
        .replace("reclaim_interval = \"1m\"", "reclaim_interval = \"1s\"")
        .replace(
            "[opportunity.fields]\n",
            "[opportunity.fields]\nhealth = { sql = \"SELECT crm.chaos_field(o.title)\" }\n",
        );
    let cfg = dir.join("oppty-router.toml");
    std::fs::write(&cfg, text).expect("config");
    (cfg, rules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_nothing_routes_nothing_twice_and_keeps_routing() {
    let cluster = Cluster::start(false).expect("a cluster of the test's own (it is restarted)");
    let admin = connect(&cluster.url("postgres")).await;
    admin.batch_execute("CREATE DATABASE chaos").await.expect("create database");
    let url = cluster.url("chaos");
    let c = connect(&url).await;
    for (file, sql) in demo::DEMO_SQL {
        c.batch_execute(sql).await.unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // The CRM refuses an owner for a poison row: its event is retried, then dead-lettered.
    c.batch_execute("ALTER TABLE crm.opportunity ADD CONSTRAINT no_owner_for_poison CHECK (title NOT LIKE 'poison%' OR \"accountOwnerId\" = 1)")
        .await
        .expect("constraint");
    // A field that runs out of memory for some rows, and sleeps past the lease for others.
    c.batch_execute(
        "CREATE FUNCTION crm.chaos_field(t text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN \
         IF t LIKE 'poison oom%' THEN RAISE EXCEPTION 'out of memory' USING ERRCODE = '53200'; END IF; \
         IF t LIKE 'poison wedge%' THEN PERFORM pg_sleep(60); END IF; RETURN 'ok'; END $$",
    )
    .await
    .expect("field function");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (cfg_path, rules) = setup_files(&dir, &url);
    let cfg = Config::load(&cfg_path).expect("config");
    let mut ic = db::connect(&cfg.database, " install").await.expect("connect");
    install::install(&mut ic, &cfg).await.expect("install");
    // A DBA's safety net for every session of the role: far shorter than a batch under load.
    ic.batch_execute("ALTER ROLE CURRENT_USER IN DATABASE chaos SET statement_timeout = '50ms'")
        .await
        .expect("role timeout");

    let mut replicas = Replicas {
        cfg: cfg_path.clone(),
        dir: dir.clone(),
        children: (0..REPLICAS).map(|_| None).collect(),
        started: 0,
    };
    for i in 0..REPLICAS {
        replicas.spawn(i);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(Mutex::new(Produced::default()));
    let producer = tokio::spawn(produce(url.clone(), stop.clone(), produced.clone()));

    let started = Instant::now();
    println!("chaos: started at {} UTC", chrono::Utc::now().format("%H:%M:%S%.3f"));
    // A new draw of faults each run; `CHAOS_SEED=n` replays one.
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(11, |d| d.as_secs())
    });
    println!("chaos: seed {seed} (CHAOS_SEED={seed} replays this draw of faults)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut injected = Vec::new();
    wait_until("a replica leads", Duration::from_secs(30), || async { leader(&url).await.is_some() }).await;
    while started.elapsed() < CHAOS {
        let what = inject(&mut rng, &mut replicas, &cluster, &url, &rules, &produced).await;
        injected.push(format!("{:>5.1} s  {what}", started.elapsed().as_secs_f64()));
        pace(Duration::from_millis(rng.random_range(1500..3500))).await;
    }
    stop.store(true, Ordering::SeqCst);
    producer.await.expect("producer");

    // Let the replicas finish: every event drained.
    let c = connect(&url).await;
    let left = || async {
        c.query_one("SELECT count(*) FROM oppty_router.events", &[]).await.expect("events").get::<_, i64>(0)
    };
    let drained = || async { left().await == 0 };
    assert!(
        holds_within(Duration::from_secs(60), drained).await,
        "{} events still queued a minute after the chaos",
        left().await
    );
    for i in 0..REPLICAS {
        replicas.signal(i, nix::sys::signal::Signal::SIGTERM);
    }
    let mut codes = Vec::new();
    for i in 0..REPLICAS {
        if let Some(mut ch) = replicas.children[i].take() {
            codes.push(ch.wait().expect("exit").code());
        }
    }

    c.batch_execute("ALTER ROLE CURRENT_USER IN DATABASE chaos RESET statement_timeout").await.expect("reset");
    let c = connect(&url).await; // the checks below, without the role's timeout
    let p = std::mem::take(&mut *produced.lock().expect("produced"));
    println!("chaos: {} faults injected in {:?}:", injected.len(), CHAOS);
    for line in &injected {
        println!("  {line}");
    }
    report_and_check(&c, &p, &cfg).await;
    assert!(codes.iter().all(|c| *c == Some(0)), "every replica stops cleanly on SIGTERM: {codes:?}");
}

async fn report_and_check(c: &Client, p: &Produced, cfg: &Config) {
    let count = |sql: String| async move {
        c.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get::<_, i64>(0)
    };
    let ids = |v: &[String]| v.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    // (An empty list is one id nobody has: `NOT IN (NULL)` would match nothing.)
    let list = |v: &[String]| if v.is_empty() { "''".to_string() } else { ids(v) };
    // Nothing lost: every open opportunity that is not poison has an owner.
    let lost = count(format!(
        "SELECT count(*) FROM crm.opportunity o JOIN crm.stage s ON s.id = o.\"stageId\" \
         WHERE o.\"accountOwnerId\" = 1 AND NOT s.is_won AND NOT s.is_lost AND o.\"oppId\"::text NOT IN ({})",
        list(&p.poison)
    ))
    .await;
    // Nothing routed twice.
    let twice = count(
        "SELECT count(*) FROM (SELECT opp_id FROM oppty_router.assignments WHERE owner_id IS NOT NULL \
         AND outcome IN ('rule', 'fallback') GROUP BY opp_id HAVING count(*) > 1) x"
            .into(),
    )
    .await;
    // No owner a person set was overwritten.
    let overwritten = count(format!(
        "SELECT count(*) FROM crm.opportunity WHERE \"oppId\"::text IN ({}) AND \"accountOwnerId\" <> 100",
        list(&p.by_hand)
    ))
    .await;
    // Only the poison dead-lettered, and all of it.
    let dead_other =
        count(format!("SELECT count(*) FROM oppty_router.dead_letter WHERE opp_id NOT IN ({})", list(&p.poison))).await;
    let dead_poison = count(format!(
        "SELECT count(DISTINCT opp_id) FROM oppty_router.dead_letter WHERE opp_id IN ({})",
        list(&p.poison)
    ))
    .await;
    let breaches = cap_breaches(c, cfg).await;
    let waits: (f64, f64, f64) = {
        let r = c
            .query_one(
                "SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY w), 0), \
                 coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY w), 0), coalesce(max(w), 0) \
                 FROM (SELECT (extract(epoch FROM decided_at - event_at) * 1000)::float8 AS w FROM oppty_router.assignments \
                 WHERE outcome IN ('rule', 'fallback')) x",
                &[],
            )
            .await
            .expect("waits");
        (r.get(0), r.get(1), r.get(2))
    };
    let routed =
        count("SELECT count(DISTINCT opp_id) FROM oppty_router.assignments WHERE owner_id IS NOT NULL".into()).await;
    // The longest waits, to read against the faults' timeline (wall clock, UTC).
    let longest = c
        .query(
            "SELECT to_char(event_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') || ' → ' || to_char(decided_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') \
             || ' ' || opp_id FROM oppty_router.assignments WHERE outcome IN ('rule', 'fallback') \
             ORDER BY decided_at - event_at DESC LIMIT 5",
            &[],
        )
        .await
        .expect("longest");
    for r in longest {
        println!("chaos: a long wait: {}", r.get::<_, String>(0));
    }
    println!(
        "chaos: {} opportunities inserted ({} poison, {} taken by hand, {} closed, {} calls), {routed} routed; \
         lost {lost}, routed twice {twice}, overwritten {overwritten}, cap breaches {}, dead-lettered {dead_poison} \
         poison + {dead_other} other; wait for an owner p50 {:.0} ms, p99 {:.0} ms, longest {:.0} ms",
        p.inserted.len(),
        p.poison.len(),
        p.by_hand.len(),
        p.closed.len(),
        p.activities,
        breaches.len(),
        waits.0,
        waits.1,
        waits.2
    );
    assert_eq!(lost, 0, "nothing lost");
    assert_eq!(twice, 0, "nothing routed twice");
    assert_eq!(overwritten, 0, "no owner a person set is overwritten");
    assert!(breaches.is_empty(), "no cap exceeded: {breaches:?}");
    assert_eq!(dead_other, 0, "only the poison is dead-lettered");
    assert_eq!(dead_poison as usize, p.poison.len(), "every poison row is dead-lettered");
    assert!(
        waits.2 < LONGEST_WAIT.as_secs_f64() * 1000.0,
        "no opportunity waited {LONGEST_WAIT:?} or more: {:.0} ms",
        waits.2
    );
}

/// Every cap of the rule files, against what the router did: open loads now, assignments per
/// rolling window (the whole run fits in any of them) or per local day.
async fn cap_breaches(c: &Client, cfg: &Config) -> Vec<String> {
    let engine = oppty_router::load_rules(cfg).expect("rules");
    let mut out = Vec::new();
    for m in &engine.members {
        for cap in &m.caps {
            let id = m.id.to_string();
            let n: i64 = match &cap.window {
                Window::Open => c
                    .query_one(
                        "SELECT count(*) FROM crm.opportunity o JOIN crm.stage s ON s.id = o.\"stageId\" \
                         WHERE o.\"accountOwnerId\"::text = $1 AND NOT s.is_won AND NOT s.is_lost",
                        &[&id],
                    )
                    .await
                    .expect("open")
                    .get(0),
                Window::Rolling(_) => c
                    .query_one(
                        "SELECT count(*) FROM oppty_router.assignments WHERE owner_id = $1 AND outcome IN ('rule', 'fallback')",
                        &[&id],
                    )
                    .await
                    .expect("rolling")
                    .get(0),
                Window::Day(tz) => c
                    .query_one(
                        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM oppty_router.assignments \
                         WHERE owner_id = $1 AND outcome IN ('rule', 'fallback') GROUP BY (decided_at AT TIME ZONE $2)::date) x",
                        &[&id, &tz.name()],
                    )
                    .await
                    .expect("day")
                    .get(0),
            };
            if n > i64::from(cap.max) {
                out.push(format!("{id}: {n} > {} ({})", cap.max, cap.label));
            }
        }
    }
    out
}
