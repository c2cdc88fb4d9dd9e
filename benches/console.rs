//! Console benchmark (prints figures; `cargo bench --bench console`): each page of the web console
//! on the demo CRM (the sample CRM, the example rules, a day of routed opportunities), served
//! in-process and fetched as a browser would, one request at a time; the time from request to the
//! last byte of the answer and the page's size. Target: every page under 200 ms.
//! `OPPTY_BENCH_OPPS` (default 2000) routed opportunities, `OPPTY_BENCH_ROUNDS` (default 30) fetches
//! of each page.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use devkit::demo;
use devkit::throwaway::Cluster;
use oppty_router::daemon::{self, RunOptions};
use oppty_router::{db, install};
use tokio_util::sync::CancellationToken;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One request; (status, headers, body), the answer read to its end.
fn fetch(port: u16, method: &str, path: &str, cookie: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nOrigin: http://127.0.0.1:{port}\r\n");
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (opps, rounds) = (env_num("OPPTY_BENCH_OPPS", 2000), env_num("OPPTY_BENCH_ROUNDS", 30));
    let cluster = Cluster::start(true).expect("throwaway PostgreSQL");
    cluster.stop_when_gone(std::process::id());
    let tmp = tempfile::tempdir().expect("tempdir");
    let rules = tmp.path().join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules")).expect("rules") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, rules.join(p.file_name().expect("name"))).expect("copy");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let port = rt.block_on(async {
        let mut cfg = demo::prepare_crm(&cluster, "crm", rules.clone()).await.expect("sample CRM");
        cfg.console.users = tmp.path().join("console-users.toml");
        cfg.console.journal = tmp.path().join("console-journal.jsonl");
        let cfg = Arc::new(cfg);
        let mut client = db::connect(&cfg.database, " bench").await.expect("connect");
        install::install(&mut client, &cfg).await.expect("install");
        demo::insert_opportunities(&client, opps as i32, "retail", 7, 0).await.expect("opportunities");
        let engine = oppty_router::load_rules(&cfg).expect("rules");
        let stop = CancellationToken::new();
        let routing = tokio::spawn(daemon::run(
            cfg.clone(),
            Arc::new(ArcSwap::from_pointee(engine)),
            stop.clone(),
            RunOptions::default(),
        ));
        demo::wait_until_drained(&client, &cfg, Duration::from_secs(300)).await.expect("routed");
        stop.cancel();
        let _ = routing.await;
        console::accounts::add_user(&cfg.console.users, "bench", console::accounts::Role::Editor, "a bench password")
            .expect("an account");
        let console = Arc::new(console::Console::new(cfg.clone()).expect("the console"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(console::serve_on(console, listener, CancellationToken::new()));
        port
    });
    let (status, head, _) = fetch(port, "POST", "/login", "", "name=bench&password=a+bench+password");
    assert_eq!(status, 303, "logged in");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let (_, _, page) = fetch(port, "GET", "/pipelines", &cookie, "");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("csrf").to_string();
    println!("oppty-router console benchmark: the demo CRM, the example rules, {opps} opportunities routed; {rounds} fetches of each page");
    let pages = ["/", "/overview", "/pipelines", "/teams", "/history", "/try?days=1"];
    let mut worst: f64 = 0.0;
    measure(port, &cookie, &pages, rounds, &mut worst, "");
    // With a draft: the pipelines page checks it, and Try replays the day's opportunities with it.
    let moved = format!("csrf={csrf}&pipeline=retail&rule=instagram-to-digital&to=0");
    assert_eq!(fetch(port, "POST", "/pipelines/move", &cookie, &moved).0, 303, "a draft");
    measure(port, &cookie, &["/pipelines", "/try?days=1"], rounds, &mut worst, " (with a draft)");
    println!(
        "target: every page under 200 ms — slowest p99 {worst:.0} ms: {}",
        if worst < 200.0 { "met" } else { "MISSED" }
    );
    // The replay the Try page loads after it comes: the draft on the day's opportunities.
    let mut replay = 0.0;
    measure(port, &cookie, &["/try/report?days=1"], rounds.min(10), &mut replay, " (the replay)");
    println!("the draft's replay of {opps} opportunities, loaded into the Try page after it comes: p99 {replay:.0} ms");
}

fn measure(port: u16, cookie: &str, pages: &[&str], rounds: usize, worst: &mut f64, note: &str) {
    for page in pages {
        let mut ms = Vec::with_capacity(rounds);
        let mut size = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            let (status, _, body) = fetch(port, "GET", page, cookie, "");
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200, "{page}: {body}");
            size = body.len();
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
        *worst = worst.max(q(0.99));
        println!(
            "  {:<14}{note:<16} p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  {:>6.1} KB",
            page,
            q(0.5),
            q(0.99),
            q(1.0),
            size as f64 / 1024.0
        );
    }
}
