//! What ops scrape and probe: the real binary's `/metrics`, `/livez` and `/readyz`, checked against
//! the database.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

/// The example config for `url`, serving metrics on `port`, with a copy of the example rules in
/// `dir/rules`.
fn config_with_metrics(dir: &Path, url: &str, port: u16) -> std::path::PathBuf {
    config_file(dir, url, &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\nready_max_lag = \"30s\"\n"))
}

fn wait_for(port: u16, path: &str, code: u16, limit: Duration) -> String {
    let last = std::cell::RefCell::new((0, String::new()));
    let answered = holds_within_blocking(limit, || {
        *last.borrow_mut() = get(port, "GET", path);
        last.borrow().0 == code
    });
    let (got, body) = last.into_inner();
    assert!(answered, "{path} answered {got} {body:?}, not {code}, for {limit:?}");
    body
}

/// Scrape until the metric's sum reaches `at_least` (or fail after 20 s).
fn scrape_until(port: u16, name: &str, with: &str, at_least: f64) {
    let last = std::cell::RefCell::new(String::new());
    let reached = holds_within_blocking(Duration::from_secs(20), || {
        *last.borrow_mut() = get(port, "GET", "/metrics").1;
        sum(&last.borrow(), name, with) >= at_least
    });
    assert!(reached, "{name}{{{with}}} never reached {at_least}:\n{}", last.into_inner());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_every_decision_the_audit_holds_reloads_and_team_loads_and_readyz_says_ready_once_leading() {
    let db = crm_db("scrape").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = config_with_metrics(dir.path(), &db.cfg.database.url, port);
    devkit::demo::insert_opportunities(&db.client, 50, "retail", 3, 0).await.expect("backlog");
    let daemon = Child(
        Command::new(BIN).args(["run", "-c"]).arg(&config).stdout(Stdio::null()).spawn().expect("spawn the daemon"),
    );
    assert_eq!(wait_for(port, "/livez", 200, Duration::from_secs(20)), "ok\n");
    assert_eq!(wait_for(port, "/readyz", 200, Duration::from_secs(20)), "ready\n");
    devkit::demo::insert_opportunities(&db.client, 20, "retail", 4, 0).await.expect("more");
    // Pipelines a CRM user typed: one `other` series, never one per value.
    for (i, typed) in ["Retail Banking ", "retail-2027", "zzz"].iter().enumerate() {
        devkit::demo::insert_opportunities(&db.client, 2, typed, 10 + i as u32, 0).await.expect("typed");
    }
    db.wait_drained(Duration::from_secs(20)).await;
    let held = db.count("SELECT count(*) FROM oppty_router.unrouted WHERE outcome = 'held'").await;
    let decided = db.count("SELECT count(*) FROM oppty_router.assignments WHERE outcome <> 'held'").await;
    // The last batch's counters, and the gauges (taken each second, so absent until the first is
    // taken) caught up with the database.
    let caught_up = |m: &str| {
        sum(m, "oppty_router_decisions_total", "") == decided as f64
            && m.contains("oppty_router_held_opportunities ")
            && sum(m, "oppty_router_held_opportunities", "") == held as f64
            && sum(m, "oppty_router_oldest_pending_event_seconds", "") == 0.0
    };
    let last = std::cell::RefCell::new((0, String::new()));
    let agreed = holds_within(Duration::from_secs(5), || async {
        *last.borrow_mut() = get(port, "GET", "/metrics");
        caught_up(&last.borrow().1)
    })
    .await;
    let (code, metrics) = last.into_inner();
    assert!(agreed, "the metrics catch up with {decided} decisions and {held} held:\n{metrics}");
    assert_eq!(code, 200);
    for typed in ["Retail Banking", "retail-2027", "zzz"] {
        assert!(!metrics.contains(&format!("pipeline=\"{typed}")), "no series for `{typed}`: {metrics}");
    }
    assert_eq!(sum(&metrics, "oppty_router_decisions_total", "pipeline=\"other\""), 6.0, "{metrics}");
    assert!(metrics.contains("oppty_router_held_opportunities "), "held is a gauge: {metrics}");
    assert_eq!(sum(&metrics, "oppty_router_held_opportunities", ""), held as f64, "{metrics}");
    assert_eq!(sum(&metrics, "oppty_router_decisions_total", "outcome=\"held\""), 0.0, "a hold is no decision");
    let by_rule = db.count("SELECT count(*) FROM oppty_router.assignments WHERE outcome = 'rule'").await;
    assert!(decided >= 76, "every opportunity was decided: {decided}");
    assert_eq!(
        sum(&metrics, "oppty_router_decisions_total", ""),
        decided as f64,
        "decisions = the audit's rows\n{metrics}"
    );
    assert_eq!(sum(&metrics, "oppty_router_decisions_total", "outcome=\"rule\""), by_rule as f64, "{metrics}");
    let routes = db.count("SELECT count(DISTINCT opp_id) FROM oppty_router.assignments").await;
    assert!(sum(&metrics, "oppty_router_events_drained_total", "kind=\"route\"") >= routes as f64, "{metrics}");
    assert_eq!(sum(&metrics, "oppty_router_leading", ""), 1.0, "{metrics}");
    assert_eq!(sum(&metrics, "oppty_router_oldest_pending_event_seconds", ""), 0.0, "caught up: {metrics}");
    assert!(sum(&metrics, "oppty_router_insert_to_owner_seconds_count", "") >= by_rule as f64, "{metrics}");
    assert!(
        sum(&metrics, "oppty_router_decision_seconds_count", "") >= decided as f64,
        "every decision timed: {metrics}"
    );
    assert!(metrics.contains("oppty_router_decision_seconds_bucket{le=\"0.00001\"}"), "microsecond buckets: {metrics}");
    assert!(sum(&metrics, "oppty_router_batch_phase_seconds_count", "phase=\"commit\"") >= 1.0, "{metrics}");
    let version: f64 = db
        .client
        .query_one("SELECT split_part(rules_version, '-', 1)::float8 AS v FROM oppty_router.daemon_status", &[])
        .await
        .expect("status")
        .get("v");
    assert_eq!(sum(&metrics, "oppty_router_rules_version", ""), version, "the version in force: {metrics}");
    let hanoi = db
        .count(
            "SELECT count(*) FROM crm.opportunity o JOIN crm.stage s ON s.id = o.\"stageId\" \
             WHERE o.\"accountOwnerId\" IN (101, 102, 103) AND NOT s.is_won AND NOT s.is_lost AND o.\"deletedAt\" IS NULL",
        )
        .await;
    // Taken at most once a second: wait for it, then it is exact.
    scrape_until(port, "oppty_router_team_open_load", "team=\"hanoi-retail\"", hanoi as f64);
    let (_, metrics) = get(port, "GET", "/metrics");
    assert_eq!(sum(&metrics, "oppty_router_team_open_load", "team=\"hanoi-retail\""), hanoi as f64, "{metrics}");
    assert_eq!(get(port, "GET", "/nothing").0, 404);

    // A broken save is refused, then a real edit goes in force: both counted, the version moves.
    let rules = dir.path().join("rules");
    std::fs::write(rules.join("99-broken.toml"), "[[member]\nid = \"broken\n").expect("save");
    scrape_until(port, "oppty_router_rule_reloads_total", "result=\"refused\"", 1.0);
    std::fs::remove_file(rules.join("99-broken.toml")).expect("remove");
    let people = std::fs::read_to_string(rules.join("01-people.toml")).expect("read");
    std::fs::write(rules.join("01-people.toml"), people.replacen("max_open = 400", "max_open = 399", 1)).expect("edit");
    scrape_until(port, "oppty_router_rule_reloads_total", "result=\"ok\"", 1.0);
    scrape_until(port, "oppty_router_rules_version", "", version + 1.0);
    assert_eq!(get(port, "POST", "/metrics").0, 405);
    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
    let mut daemon = daemon;
    assert_eq!(daemon.0.wait().expect("exit").code(), Some(0), "a clean stop");
}

#[test]
fn readyz_says_why_not_while_the_database_cannot_be_reached_and_livez_still_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let nowhere = format!("host=127.0.0.1 port={} dbname=crm user=nobody connect_timeout=1", free_port());
    let config = config_with_metrics(dir.path(), &nowhere, port);
    let daemon = Child(
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the daemon"),
    );
    assert_eq!(wait_for(port, "/livez", 200, Duration::from_secs(20)), "ok\n");
    let why = std::cell::RefCell::new(String::new());
    holds_within_blocking(Duration::from_secs(10), || {
        *why.borrow_mut() = wait_for(port, "/readyz", 503, Duration::from_secs(20));
        assert!(why.borrow().starts_with("not ready: not connected to the database"), "{}", why.borrow());
        why.borrow().contains("refused")
    });
    let why = why.into_inner();
    assert!(why.contains("refused"), "the reason is the database's: {why}");
    drop(daemon);
}
