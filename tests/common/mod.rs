//! Test harness: one throwaway PostgreSQL cluster per test binary (or `DATABASE_URL`), and a fresh
//! database per test, loaded with the sample CRM of `sql/demo/`.
#![allow(dead_code)]

pub mod web;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use devkit::demo;
use devkit::throwaway::Cluster;
use oppty_router::config::Config;
use oppty_router::daemon::{self, RunOptions};
use oppty_router::engine::Engine;
use oppty_router::{db, install, load_rules};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

struct Server {
    /// Builds a connection string for a database name.
    url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
    admin_db: String,
    _cluster: Option<Cluster>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn with_dbname(url: &str, db: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').map(|(b, q)| (b, format!("?{q}"))).unwrap_or((url, String::new()));
        let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
        let host_end = base[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(base.len());
        format!("{}/{db}{query}", &base[..host_end])
    } else {
        format!("{url} dbname={db}")
    }
}

fn server() -> &'static Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let u = url.clone();
            Server { url_for: Box::new(move |db| with_dbname(&u, db)), admin_db: "postgres".into(), _cluster: None }
        }
        _ => {
            let cluster = Cluster::start(false).expect("a throwaway PostgreSQL cluster");
            cluster.stop_when_gone(std::process::id());
            let dir = cluster.dir.clone();
            let port = cluster.port;
            Server {
                url_for: Box::new(move |db| format!("host={} port={port} user=postgres dbname={db}", dir.display())),
                admin_db: "postgres".into(),
                _cluster: Some(cluster),
            }
        }
    })
}

/// Wait until `check` holds, looking again every `POLL`; after `limit` the test fails, naming
/// `what` it waited for and how long. Every positive wait goes through here (or
/// [`wait_until_blocking`]): no test waits a fixed time and hopes.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    assert!(holds_within(limit, check).await, "waited {limit:?} for {what}");
    started.elapsed()
}

/// [`wait_until`] for a test without a runtime (one driving the binary as a child process).
pub fn wait_until_blocking(what: &str, limit: Duration, check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    assert!(holds_within_blocking(limit, check), "waited {limit:?} for {what}");
    started.elapsed()
}

/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(20);

/// Whether `check` holds within `limit`, looking again every `POLL`: for a wait whose failure
/// says what stands at the end (`assert!(holds_within(..).await, "{:?}", state().await)`).
pub async fn holds_within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The tempo of someone the test plays: a person logging a call every few hundred
/// milliseconds, a CRM inserting at a rate, an attacker killing connections, a sampler. Time the
/// test spends doing something, never a wait for the router (that is [`wait_until`]): no test
/// outside this module calls `sleep` (`tests/house/main.rs::no_test_waits_a_fixed_time`).
pub async fn pace(every: Duration) {
    tokio::time::sleep(every).await;
}

/// [`pace`] for a test without a runtime.
pub fn pace_blocking(every: Duration) {
    std::thread::sleep(every);
}

/// A listener of the test's own on `channels` that keeps each notification's channel and
/// payload, in the order the server sent them (the daemon's own listener keeps only "woken"). A
/// test that says "no NOTIFY was sent" sends one of its own after the statement and checks that
/// it is the first to arrive: notifications arrive in commit order.
pub async fn listen_in_order(
    url: &str,
    channels: &[&str],
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<(String, String)>) {
    use futures_util::StreamExt;
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("a listener of our own");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    for c in channels {
        client.batch_execute(&format!("LISTEN {c}")).await.expect("LISTEN");
    }
    (client, rx)
}

/// The first notification after `statement` ran on `db` is the barrier's, sent after it: the
/// statement sent none on `channel`.
pub async fn assert_no_notify_from<T>(
    db: &TestDb,
    channel: &str,
    statement: impl std::future::Future<Output = T>,
    why: &str,
) -> T {
    let (_listener, mut heard) = listen_in_order(&db.cfg.database.url, &[channel]).await;
    let out = statement.await;
    db.client.execute("SELECT pg_notify($1, 'barrier')", &[&channel]).await.expect("barrier");
    let first = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await.expect("the barrier arrives");
    assert_eq!(first, Some((channel.to_string(), "barrier".to_string())), "{why}");
    out
}

/// A test's own database holding the sample CRM, and a config mapping it.
pub struct TestDb {
    pub name: String,
    pub cfg: Config,
    pub client: Client,
}

/// The example config file for `url`, with `extra` appended, and a copy of the example rules in
/// `dir/rules` (for the real binary).
pub fn config_file(dir: &std::path::Path, url: &str, extra: &str) -> PathBuf {
    let rules = dir.join("rules");
    copy_rules(&rules_dir(), &rules);
    let text = devkit::demo::EXAMPLE_CONFIG
        .replace("host=/var/run/postgresql dbname=crm user=oppty_router", url)
        .replace("/etc/oppty-router/rules", &rules.display().to_string())
        .replace("poll_interval = \"500ms\"", "poll_interval = \"100ms\"");
    let path = dir.join("oppty-router.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).expect("write config");
    path
}

/// A copy of the rule files of `from` in `to`.
pub fn copy_rules(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("rules") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

pub fn rules_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules"))
}

/// A database config for `url`, as the tests connect.
pub fn db_config(url: &str) -> oppty_router::config::DatabaseConfig {
    oppty_router::config::DatabaseConfig {
        url: url.to_string(),
        password_file: None,
        application_name: "oppty-router-test".into(),
        connect_timeout: Duration::from_secs(10),
        naive_timestamps: None,
    }
}

/// Create an empty database; returns its name and a client connected to it.
pub async fn empty_db(label: &str) -> (String, String, Client) {
    let s = server();
    let name = format!("t_{}_{}_{}", label, std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let admin = db::connect(&db_config(&(s.url_for)(&s.admin_db)), "").await.expect("connect as admin");
    admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create database");
    let url = (s.url_for)(&name);
    let client = db::connect(&db_config(&url), "").await.expect("connect to the test database");
    (name, url, client)
}

/// A fresh database with the sample CRM, mapped by the example config (fast polling for tests).
pub async fn crm_db(label: &str) -> TestDb {
    crm_db_with(label, |_| {}).await
}

/// Like [`crm_db`], with a chance to change the example config text before it is parsed.
pub async fn crm_db_with(label: &str, edit: impl FnOnce(&mut String)) -> TestDb {
    let (name, url, client) = empty_db(label).await;
    for (file, sql) in demo::DEMO_SQL {
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("load {file}: {e}"));
    }
    let mut text = demo::EXAMPLE_CONFIG.to_string();
    edit(&mut text);
    let mut cfg = Config::parse(&text, std::path::Path::new("oppty-router.toml")).expect("example config parses");
    cfg.database.url = url;
    cfg.router.rules_dir = rules_dir();
    cfg.router.poll_interval = Duration::from_millis(100);
    cfg.router.reconnect_max_backoff = Duration::from_millis(500);
    TestDb { name, cfg, client }
}

impl TestDb {
    pub async fn install(&self) {
        let mut c = db::connect(&self.cfg.database, " install").await.expect("connect");
        install::install(&mut c, &self.cfg).await.expect("install");
    }

    pub fn engine(&self) -> Engine {
        load_rules(&self.cfg).expect("example rules load")
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(Arc::new(self.cfg.clone()), self.engine())
    }

    /// A drain of the test's own (not a daemon): batches run when the test says, with its clock.
    pub async fn manual_drain(&self) -> (oppty_router::drain::Drain, Client) {
        manual_drain_with(&self.cfg).await
    }

    /// Each of these opportunities was given an owner exactly once (the audit says so).
    pub async fn assert_routed_once(&self, opps: &[&str]) {
        for opp in opps {
            let n = self
                .client
                .query_one(
                    "SELECT count(*) FROM oppty_router.assignments WHERE opp_id = $1 AND owner_id IS NOT NULL",
                    &[opp],
                )
                .await
                .expect("count assignments")
                .get::<_, i64>(0);
            assert_eq!(n, 1, "{opp} routed once");
        }
    }

    /// Insert one opportunity of the sample CRM; returns its id.
    pub async fn insert_opportunity(&self, title: &str, province: &str, pipeline: &str) -> String {
        let stage = if pipeline == "corporate" { 11 } else { 1 };
        let row = self
            .client
            .query_one(
                "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\") \
                 SELECT $1, (SELECT \"accountId\" FROM crm.account WHERE \"provinceCode\" = $2 AND \"ownerId\" IS NULL ORDER BY 1 LIMIT 1), $3, $4 \
                 RETURNING \"oppId\"::text",
                &[&title, &province, &pipeline, &stage],
            )
            .await
            .expect("insert opportunity");
        row.get(0)
    }

    /// A user logs a call on the opportunity (an activity row, as the CRM writes it).
    pub async fn log_call(&self, opp: &str, user: i32) {
        self.client
            .execute(
                "INSERT INTO crm.activity (\"opportunityId\", kind, \"userId\") VALUES ($1::text::uuid, 'call', $2)",
                &[&opp, &user],
            )
            .await
            .expect("log a call");
    }

    /// Run a CRM statement whose `$1` is the opportunity id (text).
    pub async fn on_opportunity(&self, sql: &str, opp: &str) {
        self.client.execute(sql, &[&opp]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn owner_of(&self, opp: &str) -> i32 {
        self.client
            .query_one("SELECT \"accountOwnerId\" FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid", &[&opp])
            .await
            .expect("read owner")
            .get(0)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    /// Wait until no event is queued (or fail after `limit`).
    pub async fn wait_drained(&self, limit: Duration) {
        demo::wait_until_drained(&self.client, &self.cfg, limit).await.expect("events drained in time");
    }

    /// Wait until `opp` has an owner other than the queue user; returns the owner and how long it took.
    pub async fn wait_owned(&self, opp: &str, limit: Duration) -> (i32, Duration) {
        let took =
            wait_until(&format!("opportunity {opp} to be owned"), limit, || async { self.owner_of(opp).await != 1 })
                .await;
        (self.owner_of(opp).await, took)
    }
}

/// The daemon running inside the test process.
pub struct Daemon {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), daemon::DaemonError>>,
    pub rules: Arc<ArcSwap<Engine>>,
}

impl Daemon {
    pub fn start(cfg: Arc<Config>, engine: Engine) -> Daemon {
        let rules = Arc::new(ArcSwap::from_pointee(engine));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon::run(cfg, rules.clone(), shutdown.clone(), RunOptions::default()));
        Daemon { shutdown, task, rules }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("daemon stops in time");
        r.expect("daemon task did not panic").expect("daemon ended without error");
    }
}

/// A child process of a test (a daemon binary), killed if the test fails before stopping it.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Send a signal to a test's child process.
pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), sig).expect("signal");
}

/// A drain of the test's own for this config (see [`TestDb::manual_drain`]), its ledger read.
pub async fn manual_drain_with(cfg: &Config) -> (oppty_router::drain::Drain, Client) {
    let cfg = Arc::new(cfg.clone());
    let mut client = db::connect(&cfg.database, "").await.expect("connect");
    let sql = oppty_router::crm::prepare(&client, &cfg).await.expect("mapping");
    let engine = Arc::new(load_rules(&cfg).expect("rules"));
    let mut drain = oppty_router::drain::Drain::new(cfg.clone(), sql, engine, None);
    drain.reconcile(&mut client).await.expect("loads");
    (drain, client)
}

/// Start `run` with text logs; the logs are collected as they come, until it exits.
pub fn start_daemon(cfg: &std::path::Path) -> (Child, Logs) {
    start_daemon_logging(cfg, None)
}

/// [`start_daemon`] with these `RUST_LOG` directives (a module's debug lines to wait for).
pub fn start_daemon_logging(cfg: &std::path::Path, rust_log: Option<&str>) -> (Child, Logs) {
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_oppty-router"));
    run.args(["run", "-c"]).arg(cfg).env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        run.env("RUST_LOG", filter);
    }
    let mut child =
        run.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("start the daemon");
    let pipe = child.stderr.take().expect("stderr");
    (Child(child), Logs::of(pipe))
}

/// A child's logs, read line by line as it writes them: a test waits for a line (what the
/// daemon says it did) rather than for a while.
pub struct Logs {
    text: Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Logs {
    pub fn of(pipe: impl std::io::Read + Send + 'static) -> Logs {
        let text = Arc::new(std::sync::Mutex::new(String::new()));
        let into = text.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)).map_while(Result::ok) {
                let mut t = into.lock().unwrap_or_else(|p| p.into_inner());
                t.push_str(&line);
                t.push('\n');
            }
        });
        Logs { text, reader }
    }

    /// What was written so far.
    pub fn so_far(&self) -> String {
        self.text.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wait until the logs hold `line` (the test fails after `limit`, showing them).
    pub async fn wait_for(&self, line: &str, limit: Duration) {
        self.wait_for_count(line, 1, limit).await;
    }

    /// How many times the logs say `what`.
    pub fn count(&self, what: &str) -> usize {
        self.so_far().matches(what).count()
    }

    /// Wait until the logs say `what` `n` times (the test fails after `limit`, showing them).
    pub async fn wait_for_count(&self, what: &str, n: usize, limit: Duration) {
        let seen = holds_within(limit, || async { self.count(what) >= n }).await;
        assert!(seen, "waited {limit:?} for {n} log line(s) with {what:?}:\n{}", self.so_far());
    }

    /// Everything written, once the child has closed its end (exited).
    pub fn join(self) -> std::thread::Result<String> {
        let Logs { text, reader } = self;
        reader.join()?;
        let all = text.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(all)
    }
}

/// Wait until the child exits; `None` when it is still running after `limit`.
pub fn exited_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    holds_within_blocking(limit, || {
        status = child.0.try_wait().expect("wait");
        status.is_some()
    });
    status
}

/// Whether `check` holds within `limit`, for a test without a runtime ([`holds_within`]).
pub fn holds_within_blocking(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check() {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One request: the status code and the body.
pub fn get(port: u16, method: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    std::io::Write::write_all(&mut s, request.as_bytes()).expect("send");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).expect("read");
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// The sum of a metric's samples whose labels contain `with`.
pub fn sum(metrics: &str, name: &str, with: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name) && l.contains(with))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The rules version the leading daemon reports, if any.
pub async fn rules_version(client: &Client) -> Option<String> {
    client.query_opt("SELECT rules_version FROM oppty_router.daemon_status", &[]).await.ok()??.get(0)
}

/// Change the CRM with `sql`, then wait (10 s at most) until the daemon routes with a new rules
/// version: a `[directory]` refresh saw it.
pub async fn change_and_wait(client: &Client, sql: &str) {
    change_and_wait_seen_by(client, client, sql).await;
}

/// [`change_and_wait`] with the CRM's own role (`crm`) and the router's status read by `watcher`.
pub async fn change_and_wait_seen_by(crm: &Client, watcher: &Client, sql: &str) {
    let before = rules_version(watcher).await;
    crm.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let what = format!("a new rules version after `{sql}`");
    wait_until(&what, Duration::from_secs(10), || async { rules_version(watcher).await != before }).await;
}

/// Insert a deal into a test CRM's `crm.deal` with `insert` (returning its `id`), then wait (10 s
/// at most) until the router gives it an owner: (id, owner).
pub async fn deal_owned(
    client: &Client,
    insert: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> (i32, i32) {
    let id: i32 = client.query_one(insert, params).await.unwrap_or_else(|e| panic!("{insert}: {e}")).get(0);
    let owner = || async {
        let row = client.query_one("SELECT owner_id AS o FROM crm.deal WHERE id = $1", &[&id]).await.expect("owner");
        row.get::<_, Option<i32>>("o")
    };
    wait_until(&format!("deal {id} to be owned"), Duration::from_secs(10), || async { owner().await.is_some() }).await;
    (id, owner().await.unwrap_or_default())
}

/// `url` connecting as `role` instead (a later setting wins, as in libpq).
pub fn as_role(url: &str, role: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}user={role}&password=pw")
    } else {
        format!("{url} user={role} password=pw")
    }
}

/// A login role of this test run's own (roles are the cluster's, not the database's).
pub async fn login_role_for_test(admin: &Client, label: &str) -> String {
    let role = format!("{label}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    admin.batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw'")).await.expect("create role");
    role
}

/// Ten good opportunities around one titled `bad`, routed by a daemon until the bad one is
/// dead-lettered; every good one must be routed. Returns the bad one's id and its dead letter
/// (opportunity, attempts, error).
pub async fn one_dead_letter_among_routed_ones(db: &TestDb, bad: &str) -> (String, (String, i32, String)) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(db.insert_opportunity(&format!("good {i}"), "HCM", "retail").await);
    }
    let bad_id = db.insert_opportunity(bad, "HCM", "retail").await;
    for i in 5..10 {
        ids.push(db.insert_opportunity(&format!("good {i}"), "DN", "retail").await);
    }
    let daemon = db.start();
    wait_until(&format!("the {bad} event to reach the dead letter"), Duration::from_secs(20), || async {
        db.count("SELECT count(*) FROM oppty_router.dead_letter").await > 0
    })
    .await;
    db.wait_drained(Duration::from_secs(10)).await;
    daemon.stop().await;
    for id in &ids {
        assert_ne!(db.owner_of(id).await, 1, "every other opportunity of the batch is routed");
    }
    assert_eq!(db.owner_of(&bad_id).await, 1, "the {bad} one keeps the queue owner");
    let row = db
        .client
        .query_one("SELECT opp_id, attempts, error FROM oppty_router.dead_letter", &[])
        .await
        .expect("one dead letter");
    (bad_id, (row.get(0), row.get(1), row.get(2)))
}

/// The sample CRM with one more condition on the `segment` field's query (over `o`, the row).
pub async fn with_segment_condition(label: &str, condition: &str) -> TestDb {
    crm_db_with(label, |text| {
        let from = "segment = { sql = \"SELECT a.segment FROM crm.account a WHERE a.\\\"accountId\\\" = o.\\\"accountId\\\"\" }";
        assert!(text.contains(from), "the example config maps segment by a query");
        let to = from.replace("\" }", &format!(" AND ({})\" }}", condition.replace('"', "\\\"")));
        *text = text.replace(from, &to);
    })
    .await
}

/// A fresh directory the service user (`postgres` here, `oppty-router` in production) can reach
/// wherever the checkout is (a clone under /root is closed to other users), and that the unit's
/// sandbox leaves visible (it hides /tmp, /root and /home): under /var/tmp, each part of the path
/// traversable by all. Removed when dropped.
pub struct ServiceDir(pub PathBuf);

impl ServiceDir {
    pub fn new(label: &str) -> ServiceDir {
        use std::os::unix::fs::PermissionsExt;
        let base = PathBuf::from("/var/tmp/oppty-router-tests");
        let dir = base.join(format!("{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir under /var/tmp");
        for d in [&base, &dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
        }
        ServiceDir(dir)
    }

    /// The binary under test, copied here so the service user can run it.
    pub fn binary(&self) -> PathBuf {
        let to = self.0.join("oppty-router");
        std::fs::copy(env!("CARGO_BIN_EXE_oppty-router"), &to).expect("copy the binary");
        to
    }

    /// The example rules, copied here.
    pub fn rules(&self) -> PathBuf {
        let to = self.0.join("rules");
        copy_rules(&rules_dir(), &to);
        to
    }
}

impl Drop for ServiceDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
