//! Faults: every database error is sorted by what to do about it, with real errors from a real
//! server; and a connection cut at any step of the daemon's start-up is retried, never taken for a
//! config error (an exit 78 would stop the service for good under systemd).

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use common::*;
use oppty_router::daemon::{self, RunOptions};
use oppty_router::db::{self, ErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

async fn kind_of(client: &tokio_postgres::Client, sql: &str) -> ErrorKind {
    let e = client.batch_execute(sql).await.expect_err(sql);
    db::kind_of(&e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_errors_are_sorted_by_what_to_do_about_them() {
    let db = crm_db("kinds").await;
    let c = &db.client;
    assert_eq!(kind_of(c, "SELECT 1 / 0").await, ErrorKind::Row, "a bad value");
    assert_eq!(kind_of(c, "SELECT 'not a uuid'::uuid").await, ErrorKind::Row, "a value of the wrong form");
    assert_eq!(kind_of(c, "SELECT nothing_here FROM crm.opportunity").await, ErrorKind::Mapping, "a column gone");
    assert_eq!(kind_of(c, "SELECT * FROM crm.no_such_table").await, ErrorKind::Refused, "a table missing");
    assert_eq!(
        kind_of(c, "SET statement_timeout = '50ms'; SELECT pg_sleep(1)").await,
        ErrorKind::Timeout,
        "a statement timeout"
    );
    c.batch_execute("RESET statement_timeout").await.expect("reset");

    // A row lock someone else holds, asked for without waiting.
    let other = Arc::new(db::connect(&db.cfg.database, " other").await.expect("connect"));
    other.batch_execute("BEGIN; SELECT * FROM crm.stage WHERE id = 1 FOR UPDATE").await.expect("lock");
    assert_eq!(
        kind_of(c, "SELECT * FROM crm.stage WHERE id = 1 FOR UPDATE NOWAIT").await,
        ErrorKind::Contention,
        "a lock not available"
    );
    // A deadlock: each holds what the other wants.
    c.batch_execute("SET deadlock_timeout = '50ms'; BEGIN; UPDATE crm.stage SET seq = seq WHERE id = 2")
        .await
        .expect("lock 2");
    let theirs = other.clone();
    let blocked =
        tokio::spawn(async move { theirs.batch_execute("UPDATE crm.stage SET seq = seq WHERE id = 2").await });
    wait_until("the other session waits for stage 2", Duration::from_secs(5), || async {
        db.count("SELECT count(*) FROM pg_locks WHERE NOT granted").await > 0
    })
    .await;
    let mine = c.batch_execute("UPDATE crm.stage SET seq = seq WHERE id = 1").await;
    let theirs = blocked.await.expect("join");
    let victim = mine.err().or(theirs.err()).expect("one of the two is chosen as the deadlock's victim");
    assert_eq!(db::kind_of(&victim), ErrorKind::Contention, "a deadlock: {}", db::describe(&victim));
    c.batch_execute("ROLLBACK").await.expect("rollback");
    other.batch_execute("ROLLBACK").await.expect("rollback");

    // The connection killed under the client.
    let pid: i32 = other.query_one("SELECT pg_backend_pid()", &[]).await.expect("pid").get(0);
    c.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.expect("terminate");
    let e = other.query_one("SELECT 1", &[]).await.expect_err("the connection is gone");
    assert_eq!(db::kind_of(&e), ErrorKind::Connection, "{}", db::describe(&e));

    // An unknown database: refused (no retry fixes it).
    let mut cfg = db.cfg.database.clone();
    cfg.url = cfg.url.replace(&db.name, "no_such_database");
    let Err(e) = db::connect(&cfg, "").await else { panic!("an unknown database is refused") };
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
}

/// A proxy on a Unix socket in front of the test server that, once armed, cuts every
/// connection through it when the client has sent `budget` more chunks; after that it passes
/// everything through. While `stall` is set it forwards nothing either way and closes nothing:
/// a network partition neither end notices.
struct CutProxy {
    dir: tempfile::TempDir,
    port: u16,
    budget: Arc<AtomicI64>,
    cut: CancellationToken,
    chunks: Arc<AtomicI64>,
    stall: Arc<AtomicBool>,
}

enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

impl CutProxy {
    fn start(upstream_url: &str, budget: i64) -> CutProxy {
        let pg: tokio_postgres::Config = upstream_url.parse().expect("the test server's url");
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let upstream = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Unix(dir)) => Upstream::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            Some(tokio_postgres::config::Host::Tcp(h)) => Upstream::Tcp(format!("{h}:{port}")),
            None => Upstream::Unix(PathBuf::from(format!("/var/run/postgresql/.s.PGSQL.{port}"))),
        };
        let upstream = Arc::new(upstream);
        let dir = tempfile::tempdir().expect("a socket dir");
        let listener = UnixListener::bind(dir.path().join(format!(".s.PGSQL.{port}"))).expect("listen");
        let proxy = CutProxy {
            dir,
            port,
            budget: Arc::new(AtomicI64::new(budget)),
            cut: CancellationToken::new(),
            chunks: Arc::new(AtomicI64::new(0)),
            stall: Arc::new(AtomicBool::new(false)),
        };
        let counters = Counters {
            budget: proxy.budget.clone(),
            cut: proxy.cut.clone(),
            chunks: proxy.chunks.clone(),
            stall: proxy.stall.clone(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (counters, upstream) = (counters.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = pipe(client, &upstream, &counters).await;
                });
            }
        });
        proxy
    }

    /// The url of database `name` through this proxy, as `url` (the server's) would reach it.
    fn url(&self, url: &str, name: &str) -> String {
        let pg: tokio_postgres::Config = url.parse().expect("url");
        let mut s = format!("host={} port={} dbname={name}", self.dir.path().display(), self.port);
        if let Some(u) = pg.get_user() {
            s.push_str(&format!(" user={u}"));
        }
        if let Some(p) = pg.get_password() {
            s.push_str(&format!(" password={}", String::from_utf8_lossy(p)));
        }
        s
    }
}

#[derive(Clone)]
struct Counters {
    budget: Arc<AtomicI64>,
    cut: CancellationToken,
    chunks: Arc<AtomicI64>,
    stall: Arc<AtomicBool>,
}

/// The proxy holds its traffic while its switch is on, looking at it every 10 ms.
async fn while_stalled(stall: &AtomicBool) {
    while stall.load(Ordering::SeqCst) {
        pace(Duration::from_millis(10)).await;
    }
}

async fn pipe(mut client: UnixStream, upstream: &Upstream, counters: &Counters) -> std::io::Result<()> {
    let Counters { budget, cut, chunks, stall } = counters;
    let server: Box<dyn Duplex> = match upstream {
        Upstream::Unix(p) => Box::new(UnixStream::connect(p).await?),
        Upstream::Tcp(a) => Box::new(tokio::net::TcpStream::connect(a).await?),
    };
    let (mut sr, mut sw) = tokio::io::split(server);
    let (mut cr, mut cw) = client.split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                while_stalled(stall).await; // a close does not cross a partition either
                return Ok::<_, std::io::Error>(());
            }
            chunks.fetch_add(1, Ordering::SeqCst);
            if budget.fetch_sub(1, Ordering::SeqCst) == 1 {
                cut.cancel(); // this chunk is never delivered; every connection goes
                return Ok(());
            }
            while_stalled(stall).await;
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                while_stalled(stall).await;
                return Ok::<_, std::io::Error>(());
            }
            while_stalled(stall).await;
            cw.write_all(&buf[..n]).await?;
        }
    };
    let already_cut = cut.is_cancelled();
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.cancelled(), if !already_cut => {}
    }
    Ok(())
}

trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

/// Start the daemon through `proxy`; returns its task, shutdown token and ready flag.
fn start_through(
    db: &TestDb,
    proxy: &CutProxy,
) -> (tokio::task::JoinHandle<Result<(), daemon::DaemonError>>, CancellationToken, Arc<AtomicBool>) {
    let mut cfg = db.cfg.clone();
    cfg.database.url = proxy.url(&db.cfg.database.url, &db.name);
    cfg.database.application_name = "replica A".into();
    cfg.router.reconnect_max_backoff = Duration::from_millis(200);
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let opts = RunOptions { ready: Some(ready.clone()), ..Default::default() };
    let rules = Arc::new(ArcSwap::from_pointee(db.engine()));
    let task = tokio::spawn(daemon::run(Arc::new(cfg), rules, shutdown.clone(), opts));
    (task, shutdown, ready)
}

async fn wait_ready(ready: &AtomicBool, task: &tokio::task::JoinHandle<Result<(), daemon::DaemonError>>, what: &str) {
    let settled = || async { ready.load(Ordering::SeqCst) || task.is_finished() };
    let in_time = holds_within(Duration::from_secs(20), settled).await;
    assert!(!task.is_finished(), "{what}: the daemon ended instead of retrying");
    assert!(in_time, "{what}: not ready in 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_at_any_step_of_the_start_up_is_retried_and_routing_follows() {
    // How many chunks the start-up sends, up to ready (connect, LISTEN, the mapping's checks,
    // the install check, the directory, leadership, the rules' ids, the loads, the first drain).
    let probe = crm_db("cutprobe").await;
    probe.install().await;
    let proxy = CutProxy::start(&probe.cfg.database.url, i64::MAX);
    let (task, shutdown, ready) = start_through(&probe, &proxy);
    wait_ready(&ready, &task, "without a cut").await;
    let steps = proxy.chunks.load(Ordering::SeqCst);
    shutdown.cancel();
    task.await.expect("join").expect("clean stop");
    assert!(steps > 10, "the start-up sends more than 10 chunks: {steps}");

    // Cut at each of them in turn (a few at a time, each with its own database).
    let ks: Vec<i64> = (1..=steps).collect();
    for group in ks.chunks(6) {
        let runs = group.iter().map(|&k| async move {
            let db = crm_db("cut").await;
            db.install().await;
            let proxy = CutProxy::start(&db.cfg.database.url, k);
            let (task, shutdown, ready) = start_through(&db, &proxy);
            wait_ready(&ready, &task, &format!("cut at chunk {k} of {steps}")).await;
            // (The last few chunks before ready vary from run to run: those may come after it.)
            assert!(proxy.cut.is_cancelled() || k > steps - 10, "cut at chunk {k} of {steps}: the cut happened");
            let opp = db.insert_opportunity(&format!("after a cut at {k}"), "HCM", "retail").await;
            db.wait_owned(&opp, Duration::from_secs(10)).await;
            shutdown.cancel();
            let r = tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops in time");
            r.expect("join").unwrap_or_else(|e| panic!("cut at chunk {k}: the daemon ended with {e}"));
        });
        futures_util::future::join_all(runs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_migration_locking_the_table_at_start_up_is_waited_out_not_taken_for_a_bad_mapping() {
    let db = crm_db("migration").await;
    db.install().await;
    // The DBA gives the daemon's sessions a short lock_timeout; a CRM migration holds the table.
    db.client.batch_execute(&format!("ALTER DATABASE {} SET lock_timeout = '100ms'", db.name)).await.expect("set");
    let migration = db::connect(&db.cfg.database, " migration").await.expect("connect");
    migration.batch_execute("BEGIN; LOCK TABLE crm.opportunity IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let daemon = db.start();
    // The barrier: the daemon has waited for the table twice (two lock waits begun at different
    // moments), so the first lock_timeout did not end it.
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let waits = "SELECT a.query_start::text FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE NOT l.granted AND a.application_name LIKE 'oppty-router%' AND l.relation = 'crm.opportunity'::regclass";
    let (db_, daemon_, seen_) = (&db, &daemon, &seen);
    let seen_twice = holds_within(Duration::from_secs(10), || async move {
        let rows = db_.client.query(waits, &[]).await.expect("lock waits");
        seen_.borrow_mut().extend(rows.iter().map(|r| r.get::<_, String>(0)));
        seen_.borrow().len() >= 2 || daemon_.task.is_finished()
    })
    .await;
    assert!(!daemon.task.is_finished(), "the daemon waits for the table (lock not available is contention)");
    assert!(seen_twice, "the daemon tried again after its lock_timeout: {seen:?}");
    migration.batch_execute("COMMIT").await.expect("the migration ends");
    let opp = db.insert_opportunity("after the migration", "HCM", "retail").await;
    db.wait_owned(&opp, Duration::from_secs(10)).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_meets_a_lock_is_rolled_back_and_tried_again_on_the_same_connection_charging_nothing() {
    let mut db = crm_db("contention").await;
    // A lock not granted in time: each event is tried alone, then given back uncharged, claimed
    // again after the retry backoff.
    db.cfg.router.retry_backoff = Duration::from_millis(50);
    db.install().await;
    let (mut drain, mut client) = db.manual_drain().await;
    client.batch_execute("SET lock_timeout = '100ms'").await.expect("lock_timeout");
    for i in 0..3 {
        db.insert_opportunity(&format!("contended {i}"), "HCM", "retail").await;
    }
    let other = db::connect(&db.cfg.database, " other").await.expect("connect");
    other.batch_execute("BEGIN; LOCK TABLE oppty_router.assignments IN EXCLUSIVE MODE").await.expect("lock");
    let r = drain.batch(&mut client).await.expect("contention does not end the session");
    assert_eq!((r.contended, r.routed, r.retried, r.dead_lettered), (3, 0, 0, 0), "{r:?}");
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.events WHERE attempts = 0").await, 3, "queued, uncharged");
    other.batch_execute("COMMIT").await.expect("release");
    wait_until("the events given back are due again", Duration::from_secs(2), || async {
        db.count("SELECT count(*) FROM oppty_router.events WHERE next_attempt_at > clock_timestamp()").await == 0
    })
    .await;
    let r = drain.batch(&mut client).await.expect("batch");
    assert_eq!(r.routed, 3, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_table_altered_under_the_daemon_is_an_error_not_a_panic_and_loses_nothing() {
    let db = crm_db("altered").await;
    db.install().await;
    let (mut drain, mut client) = db.manual_drain().await;
    db.insert_opportunity("queued while a DBA alters the queue", "HCM", "retail").await;
    db.client.batch_execute("ALTER TABLE oppty_router.events ALTER COLUMN attempts TYPE bigint").await.expect("alter");
    let err = match drain.batch(&mut client).await {
        Ok(r) => panic!("a batch over a column of another type: {r:?}"),
        Err(e) => e,
    };
    assert!(matches!(err, oppty_router::drain::DrainError::Mapping(_)), "{err}");
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.events").await, 1, "the event stays queued");
}

async fn lease_backend(db: &TestDb) -> i64 {
    db.count("SELECT backend_pid::int8 FROM oppty_router.leader_lease").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_by_a_partition_is_taken_over_within_its_lease_and_routes_nothing_twice() {
    let mut db = crm_db("partition").await;
    db.cfg.router.leader_lease = Duration::from_secs(2);
    db.install().await;
    // Replica A reaches the server through a proxy that will go silent; replica B directly.
    let proxy = CutProxy::start(&db.cfg.database.url, i64::MAX);
    let (a_task, a_stop, a_ready) = start_through(&db, &proxy);
    wait_ready(&a_ready, &a_task, "replica A").await;
    let a_backend = lease_backend(&db).await;
    let b = db.start();
    let first = db.insert_opportunity("before the partition", "HCM", "retail").await;
    db.wait_owned(&first, Duration::from_secs(5)).await;
    assert_eq!(lease_backend(&db).await, a_backend, "A leads, B stands by");

    // The partition: nothing crosses, nobody is told. B ends A's session once its lease runs out.
    proxy.stall.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
    let during = db.insert_opportunity("during the partition", "HCM", "retail").await;
    let (_, took) = db.wait_owned(&during, Duration::from_secs(10)).await;
    assert_ne!(lease_backend(&db).await, a_backend, "B leads now");
    println!("partition: routing resumed {:?} after the cut (lease 2 s)", cut_at.elapsed());
    assert!(took < Duration::from_secs(6), "taken over within the lease and a few polls: {took:?}");
    // A's other sessions (its LISTEN and lease connections) were ended with its leadership, though
    // the partition hides A's end from the server.
    let a_sessions = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name LIKE 'replica A%'",
        db.name
    );
    wait_until("the old leader's listener and lease sessions are ended", Duration::from_secs(3), || async {
        db.count(&a_sessions).await == 0
    })
    .await;

    // The partition heals: A finds its session gone and stands by.
    proxy.stall.store(false, Ordering::SeqCst);
    let after = db.insert_opportunity("after the partition", "HCM", "retail").await;
    db.wait_owned(&after, Duration::from_secs(10)).await;
    // The barrier: A is back through the healed proxy, standing by (B still holds the lease).
    wait_until("A reconnects and stands by", Duration::from_secs(10), || async { db.count(&a_sessions).await > 0 })
        .await;
    assert_ne!(lease_backend(&db).await, a_backend, "B still leads");
    db.assert_routed_once(&[&first, &during, &after]).await;
    assert!(!a_task.is_finished(), "A stands by, it did not exit");
    a_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), a_task)
        .await
        .expect("A stops")
        .expect("join")
        .expect("A ends cleanly");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_on_a_connection_of_a_leader_whose_lease_names_another_session_writes_nothing() {
    let db = crm_db("fenced").await;
    db.install().await;
    let (mut drain, mut client) = db.manual_drain().await;
    let ours: i32 = client.query_one("SELECT pg_backend_pid() AS pid", &[]).await.expect("pid").get("pid");
    drain.fence_on(ours);
    // Another replica has taken over: the lease names its session, not ours.
    let other = db::connect(&db.cfg.database, " other").await.expect("connect");
    other
        .batch_execute(
            "INSERT INTO oppty_router.leader_lease (holder, backend_pid, renewed_at, expires_at) \
             VALUES ('the new leader', pg_backend_pid(), now(), now() + interval '1 minute')",
        )
        .await
        .expect("the new leader's lease");
    let opp = db.insert_opportunity("queued as the lease moved", "HCM", "retail").await;
    // The claim itself is fenced: a leader the lease no longer names claims nothing (a batch
    // that claimed just before the lease moved is fenced as it begins).
    match drain.batch(&mut client).await {
        Ok(r) => assert_eq!(r.claimed, 0, "a fenced leader claims nothing: {r:?}"),
        Err(e) => assert!(matches!(e, oppty_router::drain::DrainError::Fenced), "{e}"),
    }
    assert_eq!(db.owner_of(&opp).await, 1, "nothing written");
    assert_eq!(
        db.count("SELECT count(*) FROM oppty_router.events WHERE attempts = 0 AND claimed_by IS NULL").await,
        1,
        "the event stays queued, uncharged"
    );
    // The lease names this session again: its batches run.
    db.client
        .execute("UPDATE oppty_router.leader_lease SET backend_pid = $1", &[&ours])
        .await
        .expect("the lease is ours");
    let r = drain.batch(&mut client).await.expect("batch");
    assert_eq!(r.routed + r.fallback, 1, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_connection_a_gone_leader_left_holding_the_lease_row_is_ended_by_the_next_leader() {
    let db = crm_db("stray_lane").await;
    db.install().await;
    db.client
        .batch_execute(
            "INSERT INTO oppty_router.leader_lease (holder, backend_pid, renewed_at, expires_at) \
             VALUES ('a leader that is gone', 0, now(), now() + interval '1 minute')",
        )
        .await
        .expect("the old lease");
    // Its lane froze inside a batch: it holds the lanes' lock and the lease row.
    let stray = db::connect(&db.cfg.database, " lane 2").await.expect("connect");
    let stray = oppty_router::drain::Lane::start(stray, &db.cfg).await.expect("lane");
    let frozen = db::connect(&db.cfg.database, " lane 3").await.expect("connect");
    let frozen = oppty_router::drain::Lane::start(frozen, &db.cfg).await.expect("lane");
    frozen
        .client()
        .batch_execute("BEGIN; SELECT 1 FROM oppty_router.leader_lease WHERE singleton FOR KEY SHARE")
        .await
        .expect("holds the lease row");
    let daemon = db.start();
    let opp = db.insert_opportunity("after the old leader", "HCM", "retail").await;
    db.wait_owned(&opp, Duration::from_secs(10)).await;
    daemon.stop().await;
    for lane in [&stray, &frozen] {
        let gone = lane.client().simple_query("SELECT 1").await;
        assert!(gone.is_err(), "the old leader's lane was ended");
    }
}
