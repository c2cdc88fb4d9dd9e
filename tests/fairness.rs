//! Fairness measured against entitlement: a team configured 2:1:1 whose third member the CRM
//! pauses for part of the window is fair by its own rules, and reads as fair — with the same
//! figure in `report`, in `simulate`'s "now" column and in the metrics.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio_postgres::Client;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

const CRM: &str = r#"
CREATE SCHEMA crm;
CREATE TABLE crm.users (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO crm.users VALUES (10, 'An'), (11, 'Bình'), (12, 'Chi'), (99, 'Admin');
CREATE TABLE crm.team_member (team text NOT NULL, user_id integer NOT NULL, paused boolean NOT NULL DEFAULT false);
INSERT INTO crm.team_member VALUES ('N', 10), ('N', 11), ('N', 12);
CREATE TABLE crm.deal (id serial PRIMARY KEY, owner_id integer REFERENCES crm.users, region text, closed boolean NOT NULL DEFAULT false);
"#;

const RULES: &str = r#"
[settings]
fallback_owner = "99"
[[territory]]
id = "HN"
[[member]]
id = "10"
name = "An"
weight = 2
[[member]]
id = "11"
name = "Bình"
[[member]]
id = "12"
name = "Chi"
[[team]]
id = "north"
crm_id = "N"
pipelines = ["default"]
territories = ["HN"]
[[pipeline]]
id = "default"
[[pipeline.rule]]
id = "by-province"
team = { territory = "province" }
member = "weighted_round_robin"
"#;

fn config(url: &str, rules: &std::path::Path, port: u16) -> String {
    format!(
        r#"
[database]
url = "{url}"
[router]
rules_dir = "{}"
poll_interval = "100ms"
[opportunity]
table = "crm.deal"
id = "id"
owner = "owner_id"
open_when = "NOT o.closed"
watch_columns = ["closed"]
[opportunity.fields]
province = "region"
[directory]
team_members = "SELECT team, user_id::text, paused FROM crm.team_member"
refresh = "1s"
[metrics]
listen = "127.0.0.1:{port}"
"#,
        rules.display()
    )
}

async fn route(client: &Client, n: usize) {
    for _ in 0..n {
        deal_owned(client, "INSERT INTO crm.deal (region) VALUES ('HN') RETURNING id", &[]).await;
    }
}

fn cli_json(cfg: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new(BIN).args(args).arg("-c").arg(cfg).env_remove("RUST_LOG").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn team<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["teams"].as_array().and_then(|t| t.iter().find(|t| t["id"] == id)).expect("team")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_fair_by_its_weights_with_a_member_paused_for_part_of_the_window_reads_fair_everywhere() {
    let (_, url, client) = empty_db("fairness").await;
    client.batch_execute(CRM).await.expect("CRM");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("rules.toml"), RULES).expect("rules");
    let port = free_port();
    let cfg = dir.path().join("oppty-router.toml");
    std::fs::write(&cfg, config(&url, &rules, port)).expect("config");
    let out = Command::new(BIN).args(["install", "-c"]).arg(&cfg).output().expect("install");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (child, logs) = start_daemon(&cfg);

    route(&client, 16).await;
    // Chi opts out of North in the CRM for a while, then comes back.
    change_and_wait(&client, "UPDATE crm.team_member SET paused = true WHERE user_id = 12").await;
    route(&client, 12).await;
    change_and_wait(&client, "UPDATE crm.team_member SET paused = false WHERE user_id = 12").await;
    route(&client, 8).await;

    let report = cli_json(&cfg, &["report", "--since", "1h", "--json"]);
    let north = team(&report, "north");
    let f = &north["fairness"]["before"];
    let ratio = f["max_min"].as_f64().unwrap_or_else(|| panic!("no ∞: Chi was paused, not forgotten: {north}"));
    let gini = f["gini"].as_f64().expect("gini");
    assert!(ratio < 1.5 && gini < 0.06, "2:1:1 with a pause reads as fair by its own rules: {north}");
    assert_eq!(f["measured"], 3, "{north}");
    let expected = |id: &str| {
        north["members"].as_array().and_then(|m| m.iter().find(|m| m["id"] == id)).expect("member")["expected"]
            ["before"]
            .as_f64()
            .expect("expected")
    };
    assert!((expected("10") - 2.0 * expected("11")).abs() < 1e-6, "An's weight is twice Bình's: {north}");
    assert!(expected("12") < expected("11") - 3.0, "Chi counted only while she could receive: {north}");
    let named = north["members"].as_array().expect("members").iter().all(|m| m["name"] != m["id"]);
    assert!(named, "members by name: {north}");

    // simulate's "now" column is the same figure, and the metrics too.
    let sim = cli_json(&cfg, &["simulate", "--rules", &rules.display().to_string(), "--since", "1h", "--json"]);
    assert_eq!(team(&sim, "north")["fairness"]["before"], *f, "simulate's now = report");
    let last = std::cell::RefCell::new(String::new());
    let scraped = || {
        let m = last.borrow();
        let g = sum(&m, "oppty_router_team_fairness_gini", "team=\"north\"");
        (g, sum(&m, "oppty_router_team_fairness_max_min", "team=\"north\""))
    };
    let agreed = holds_within_blocking(Duration::from_secs(10), || {
        *last.borrow_mut() = get(port, "GET", "/metrics").1;
        scraped() == (gini, ratio)
    });
    let scraped = scraped();
    assert!(agreed, "metrics {scraped:?}; report {gini}, {ratio}:\n{}", last.borrow());
    assert_eq!(scraped, (gini, ratio));
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    drop(child);
    let _ = logs.join();
}
