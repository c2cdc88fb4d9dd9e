//! No opportunity left behind, on CRM shapes other than the sample's: rows from before `install`,
//! rows that become routable later (a lead converted, a deal reopened, a row restored), a table
//! holding leads and opportunities together.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use oppty_router::config::Config;
use oppty_router::{db, install};
use tokio_postgres::Client;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

/// An Odoo-like CRM: integer keys, leads and opportunities in one table (`type`), stages as text,
/// archiving instead of deleting, naive timestamps.
const SHARED_TABLE_CRM: &str = r#"
CREATE SCHEMA sales;
CREATE TABLE sales.users (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO sales.users VALUES (1, 'Queue'), (10, 'An'), (11, 'Bình'), (99, 'Sales admin');
CREATE TABLE sales.crm_lead (
    id          serial PRIMARY KEY,
    type        text NOT NULL DEFAULT 'lead' CHECK (type IN ('lead', 'opportunity')),
    name        text NOT NULL,
    user_id     integer NOT NULL DEFAULT 1 REFERENCES sales.users (id),
    team_id     integer,
    province    text,
    stage       text NOT NULL DEFAULT 'new',
    active      boolean NOT NULL DEFAULT true,
    create_date timestamp NOT NULL DEFAULT now()
);
"#;

const SHARED_TABLE_CONFIG: &str = r#"
[database]
url = "set by the test"
[router]
rules_dir = "set by the test"
[opportunity]
table = "sales.crm_lead"
id = "id"
owner = "user_id"
team = "team_id"
unowned_values = ["1"]
where = "o.type = 'opportunity'"
open_when = "o.stage NOT IN ('won', 'lost')"
deleted_when = "NOT o.active"
watch_columns = ["type", "stage", "active"]
created_at = "create_date"
[opportunity.fields]
province = "province"
"#;

const RULES: &str = r#"
[settings]
fallback_owner = "99"
[[territory]]
id = "VN"
name = "Việt Nam"
[[territory]]
id = "HN"
name = "Hà Nội"
parent = "VN"
[[member]]
id = "10"
name = "An"
[[member]]
id = "11"
name = "Bình"
[[team]]
id = "north"
name = "North"
crm_id = "5"
pipelines = ["default"]
territories = ["HN"]
members = ["10", "11"]
[[pipeline]]
id = "default"
[[pipeline.rule]]
id = "by-province"
team = { territory = "province" }
member = "fewest_open"
"#;

struct Shape {
    cfg: Config,
    client: Client,
    _dir: tempfile::TempDir,
    file: PathBuf,
}

async fn shape(label: &str, crm_sql: &str, config: &str, rules: &str) -> Shape {
    let (_, url, client) = empty_db(label).await;
    client.batch_execute(crm_sql).await.expect("load the CRM");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
    std::fs::write(dir.path().join("rules/rules.toml"), rules).expect("rules");
    let text = config
        .replace("url = \"set by the test\"", &format!("url = \"{url}\""))
        .replace("rules_dir = \"set by the test\"", "rules_dir = \"rules\"\npoll_interval = \"100ms\"");
    let file = dir.path().join("oppty-router.toml");
    std::fs::write(&file, &text).expect("config");
    let cfg = Config::load(&file).expect("the shape's config is valid");
    Shape { cfg, client, _dir: dir, file }
}

impl Shape {
    async fn insert(&self, sql: &str) -> i32 {
        self.client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    async fn owner(&self, id: i32) -> i32 {
        self.client.query_one("SELECT user_id FROM sales.crm_lead WHERE id = $1", &[&id]).await.expect("owner").get(0)
    }

    async fn drained(&self) {
        devkit::demo::wait_until_drained(&self.client, &self.cfg, Duration::from_secs(20))
            .await
            .expect("drained in time");
    }

    /// Wait until no event is due (held ones wait for later).
    async fn due_drained(&self) {
        let due = || async {
            let row =
                self.client.query_one("SELECT count(*) FROM oppty_router.events WHERE next_attempt_at <= now()", &[]);
            row.await.expect("count").get::<_, i64>(0)
        };
        let none = holds_within(Duration::from_secs(20), || async { due().await == 0 }).await;
        assert!(none, "{} events still due", due().await);
    }

    fn start(&self) -> Daemon {
        Daemon::start(Arc::new(self.cfg.clone()), oppty_router::load_rules(&self.cfg).expect("rules load"))
    }

    fn cli(&self, args: &[&str]) -> (Option<i32>, String) {
        cli(args, &self.file)
    }

    /// The binary's exit code and standard output alone (for JSON).
    fn cli_stdout(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(&self.file)
            .env_remove("RUST_LOG")
            .output()
            .expect("run the binary");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn cli(args: &[&str], file: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(file)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the binary");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

const NEW_OPP: &str =
    "INSERT INTO sales.crm_lead (type, name, province) VALUES ('opportunity', 'x', 'HN') RETURNING id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_shared_lead_table_opportunities_from_before_install_and_those_that_become_routable_later_are_routed() {
    let s = shape("shared", SHARED_TABLE_CRM, SHARED_TABLE_CONFIG, RULES).await;
    // Before install: an open unowned opportunity, an owned one, a lead, a won deal, an archived one.
    let waiting = s.insert(NEW_OPP).await;
    let owned = s.insert("INSERT INTO sales.crm_lead (type, name, province, user_id) VALUES ('opportunity', 'x', 'HN', 10) RETURNING id").await;
    let lead = s.insert("INSERT INTO sales.crm_lead (name, province) VALUES ('a lead', 'HN') RETURNING id").await;
    let won = s.insert("INSERT INTO sales.crm_lead (type, name, province, stage) VALUES ('opportunity', 'x', 'HN', 'won') RETURNING id").await;
    let archived = s.insert("INSERT INTO sales.crm_lead (type, name, province, active) VALUES ('opportunity', 'x', 'HN', false) RETURNING id").await;
    let owned_lead =
        s.insert("INSERT INTO sales.crm_lead (name, province, user_id) VALUES ('a lead', 'HN', 11) RETURNING id").await;

    let mut c = db::connect(&s.cfg.database, "").await.expect("connect");
    let report = install::install(&mut c, &s.cfg).await.expect("install");
    assert_eq!(report.backfilled, 1, "only the open, unowned opportunity is queued");
    let again = install::install(&mut c, &s.cfg).await.expect("install again");
    assert_eq!(again.backfilled, 0, "nothing queued twice");

    let daemon = s.start();
    s.drained().await;
    assert!([10, 11].contains(&s.owner(waiting).await), "the opportunity from before install is routed");
    assert_eq!(s.owner(owned).await, 10, "a person's choice stays");
    for (id, what) in [(lead, "a lead"), (won, "a won deal"), (archived, "an archived deal")] {
        assert_eq!(s.owner(id).await, 1, "{what} is not routed");
    }

    // Later: the lead is converted, the won deal reopened, the archived one restored; an edit of
    // a column the router does not watch changes nothing.
    s.client
        .batch_execute(&format!(
            "UPDATE sales.crm_lead SET type = 'opportunity' WHERE id = {lead};
         UPDATE sales.crm_lead SET stage = 'proposal' WHERE id = {won};
         UPDATE sales.crm_lead SET active = true WHERE id = {archived};"
        ))
        .await
        .expect("the CRM's edits");
    s.drained().await;
    for (id, what) in [(lead, "the converted lead"), (won, "the reopened deal"), (archived, "the restored deal")] {
        assert!([10, 11].contains(&s.owner(id).await), "{what} is routed");
    }
    let decisions = |id: i32| format!("SELECT count(*) FROM oppty_router.assignments WHERE opp_id = '{id}'");
    for id in [waiting, lead, won, archived] {
        assert_eq!(
            s.client.query_one(&decisions(id), &[]).await.expect("count").get::<_, i64>(0),
            1,
            "{id}: routed once"
        );
    }
    // Loads count opportunities only: 11's lead is not in 11's load.
    let open_of = |m: &str| format!("SELECT open_count FROM oppty_router.member_state WHERE member_id = '{m}'");
    let owned_by = |m: i32| {
        format!("SELECT count(*)::int FROM sales.crm_lead WHERE user_id = {m} AND type = 'opportunity' AND active AND stage NOT IN ('won', 'lost')")
    };
    for m in [10, 11] {
        let load: i32 = s.client.query_one(&open_of(&m.to_string()), &[]).await.expect("load").get(0);
        let opps: i32 = s.client.query_one(&owned_by(m), &[]).await.expect("count").get(0);
        assert_eq!(load, opps, "member {m}: the load counts opportunities, not leads");
    }
    assert_eq!(s.owner(owned_lead).await, 11);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_queues_what_install_did_not_once_with_since_and_dry_run() {
    let s = shape("backfill", SHARED_TABLE_CRM, SHARED_TABLE_CONFIG, RULES).await;
    let recent = s.insert(NEW_OPP).await;
    let old = s.insert(
        "INSERT INTO sales.crm_lead (type, name, province, create_date) VALUES ('opportunity', 'x', 'HN', '2020-01-01') RETURNING id",
    )
    .await;
    let (code, out) = s.cli(&["install", "--no-backfill"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("queued"), "{out}");
    let (code, out) = s.cli(&["backfill", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 open, unowned opportunities would be queued (dry run: nothing queued)"), "{out}");
    let (code, out) = s.cli(&["backfill", "--since", "1h"]);
    assert!(code == Some(0) && out.contains("queued 1 open, unowned opportunities"), "{out}");
    let queued = |id: i32| format!("SELECT count(*) FROM oppty_router.events WHERE opp_id = '{id}'");
    assert_eq!(s.client.query_one(&queued(recent), &[]).await.expect("q").get::<_, i64>(0), 1);
    assert_eq!(s.client.query_one(&queued(old), &[]).await.expect("q").get::<_, i64>(0), 0);
    let (_, out) = s.cli(&["backfill"]);
    assert!(out.contains("queued 1 open, unowned opportunities"), "only the old one is new to the queue: {out}");
    let daemon = s.start();
    s.drained().await;
    for id in [recent, old] {
        assert!([10, 11].contains(&s.owner(id).await), "{id} routed");
    }
    daemon.stop().await;
    let (_, out) = s.cli(&["backfill"]);
    assert!(out.contains("queued 0 open, unowned opportunities"), "{out}");
}

/// A SuiteCRM-like CRM: char(36) keys, a deal saved first and its account link row in a later
/// transaction, soft deletes as a smallint.
const LINK_TABLE_CRM: &str = r#"
CREATE SCHEMA app;
CREATE TABLE app.users (id char(36) PRIMARY KEY, user_name text NOT NULL);
INSERT INTO app.users VALUES ('a0000000-0000-0000-0000-000000000010', 'an'), ('a0000000-0000-0000-0000-000000000011', 'binh'),
    ('a0000000-0000-0000-0000-000000000099', 'admin');
CREATE TABLE app.accounts (id char(36) PRIMARY KEY, name text, billing_state text);
INSERT INTO app.accounts VALUES ('b0000000-0000-0000-0000-000000000001', 'Hanoi Bakery', 'HN');
CREATE TABLE app.opportunities (
    id               char(36) PRIMARY KEY,
    name             text NOT NULL,
    assigned_user_id char(36) REFERENCES app.users (id),
    sales_stage      text NOT NULL DEFAULT 'Prospecting',
    deleted          smallint NOT NULL DEFAULT 0,
    date_entered     timestamp NOT NULL DEFAULT now()
);
CREATE TABLE app.accounts_opportunities (
    id              char(36) PRIMARY KEY,
    opportunity_id  char(36) NOT NULL,
    account_id      char(36) NOT NULL,
    deleted         smallint NOT NULL DEFAULT 0
);
"#;

const LINK_TABLE_CONFIG: &str = r#"
[database]
url = "set by the test"
[router]
rules_dir = "set by the test"
[opportunity]
table = "app.opportunities"
id = "id"
owner = "assigned_user_id"
open_when = "o.sales_stage NOT IN ('Closed Won', 'Closed Lost')"
deleted_when = "o.deleted = 1"
watch_columns = ["sales_stage", "deleted"]
created_at = "date_entered"
[opportunity.fields]
province = { sql = "SELECT a.billing_state FROM app.accounts_opportunities l JOIN app.accounts a ON a.id = l.account_id WHERE l.opportunity_id = o.id AND l.deleted = 0 LIMIT 1" }

[[related]]
name = "account link"
table = "app.accounts_opportunities"
opportunity = "opportunity_id"
"#;

const LINK_TABLE_RULES: &str = r#"
[settings]
fallback_owner = "a0000000-0000-0000-0000-000000000099"
[[territory]]
id = "HN"
name = "Hà Nội"
[[member]]
id = "a0000000-0000-0000-0000-000000000010"
name = "An"
[[member]]
id = "a0000000-0000-0000-0000-000000000011"
name = "Bình"
[[team]]
id = "north"
name = "North"
pipelines = ["default"]
territories = ["HN"]
members = ["a0000000-0000-0000-0000-000000000010", "a0000000-0000-0000-0000-000000000011"]
[[pipeline]]
id = "default"
require = ["province"]
wait_up_to = "2s"
[[pipeline.rule]]
id = "by-province"
team = { territory = "province" }
member = "fewest_open"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_whose_account_link_is_saved_50ms_later_waits_for_it_and_goes_to_the_right_team() {
    let s = shape("linked", LINK_TABLE_CRM, LINK_TABLE_CONFIG, LINK_TABLE_RULES).await;
    let mut c = db::connect(&s.cfg.database, "").await.expect("connect");
    install::install(&mut c, &s.cfg).await.expect("install");
    let daemon = s.start();
    let owner = |id: &'static str| {
        let client = &s.client;
        async move {
            client
                .query_one("SELECT assigned_user_id::text FROM app.opportunities WHERE id = $1::text::char(36)", &[&id])
                .await
                .expect("owner")
                .get::<_, Option<String>>(0)
        }
    };
    // The CRM saves the deal, then (another transaction, 50 ms on) its account link.
    let linked = "c0000000-0000-0000-0000-000000000001";
    let lonely = "c0000000-0000-0000-0000-000000000002";
    s.client
        .batch_execute(&format!(
            "INSERT INTO app.opportunities (id, name) VALUES ('{linked}', 'Bread oven'), ('{lonely}', 'No account yet')"
        ))
        .await
        .expect("save the deals");
    pace(Duration::from_millis(50)).await;
    // (and once the router has looked at the deal: the daemon may still be starting up)
    wait_until("the router looks at the new deal", Duration::from_secs(10), || async {
        let sql = "SELECT count(*) FROM oppty_router.assignments WHERE opp_id = $1";
        s.client.query_one(sql, &[&linked]).await.expect("audit").get::<_, i64>(0) > 0
    })
    .await;
    s.client
        .batch_execute(&format!(
            "INSERT INTO app.accounts_opportunities VALUES ('d0000000-0000-0000-0000-000000000001', '{linked}', 'b0000000-0000-0000-0000-000000000001', 0)"
        ))
        .await
        .expect("save the link");
    let started = std::time::Instant::now();
    wait_until("the linked deal is routed once its link is saved", Duration::from_secs(10), || async {
        owner(linked).await.is_some()
    })
    .await;
    let routed = owner(linked).await.expect("routed");
    assert!(routed.ends_with("10") || routed.ends_with("11"), "the Hanoi team, not the fallback: {routed}");
    assert!(started.elapsed() < Duration::from_millis(1500), "routed when the link came, not at the end of the wait");
    let explanations: Vec<(String, serde_json::Value)> = s
        .client
        .query(
            "SELECT outcome, explanation FROM oppty_router.assignments_explained WHERE opp_id = $1 ORDER BY id",
            &[&linked],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(explanations.first().map(|e| e.0.as_str()), Some("held"), "{explanations:?}");
    assert!(explanations[0].1.to_string().contains("waiting for required field(s) `province`"), "{explanations:?}");
    assert_eq!(explanations.last().map(|e| e.0.as_str()), Some("rule"), "{explanations:?}");

    // The deal whose link never comes: after wait_up_to, routed with what it has (the fallback).
    let waited = started.elapsed();
    wait_until("the lonely deal is routed after its wait", Duration::from_secs(15).saturating_sub(waited), || async {
        owner(lonely).await.is_some()
    })
    .await;
    assert_eq!(owner(lonely).await.as_deref(), Some("a0000000-0000-0000-0000-000000000099"));
    let note: String = s
        .client
        .query_one(
            "SELECT explanation::text FROM oppty_router.assignments_explained WHERE opp_id = $1 AND owner_id IS NOT NULL",
            &[&lonely],
        )
        .await
        .expect("audit")
        .get(0);
    assert!(note.contains("waited 2s for required field(s) `province`; routed with what it has"), "{note}");
    daemon.stop().await;
    // A char(36) id pasted with its padding, in upper case, is still found by explain.
    let (code, out) = s.cli(&["explain", &format!("{}          ", linked.to_uppercase())]);
    assert!(code == Some(0) && out.contains("decision(s)"), "{out}");
    let (code, out) = s.cli(&["explain", &format!("{linked}          ")]);
    assert!(code == Some(0) && out.contains(&format!("opportunity {linked}: 2 decision(s)")), "{out}");
    // The same for a script: the decisions as JSON, each with its explanation.
    let (code, out) = s.cli(&["explain", "--json", &linked.to_uppercase()]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(doc["decisions"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(doc["decisions"][1]["outcome"], "rule", "{out}");
    assert!(doc["decisions"][0]["explanation"]["held"].is_string(), "the explanation as stored: {out}");
    let (code, out) = s.cli(&["explain", "--json", "no-such-deal"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((code, doc["decisions"].as_array().map(Vec::len)), (Some(1), Some(0)), "{out}");
    // The report counts each deal once, where it ended (both were held first).
    let (code, out) = s.cli_stdout(&["report", "--since", "1h", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, Some(0), "{out}");
    let o = &report["outcomes"]["before"];
    assert_eq!((o["rule"].as_i64(), o["fallback"].as_i64(), o["held"].as_i64()), (Some(1), Some(1), Some(0)), "{o}");
    assert_eq!(report["opportunities"], 2, "{report}");
    // Replayed with the rules in force from what the router saw (the link missing, then there):
    // each decides again what it decided.
    let (code, out) = s.cli_stdout(&["simulate", "--in-force", "--since", "1h", "--json"]);
    let replay: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        (replay["opportunities"].as_i64(), replay["changes"].as_array().map(Vec::len)),
        (Some(2), Some(0)),
        "{replay}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_opportunity_left_unowned_with_why_and_requeue_puts_them_back() {
    let rules = RULES
        .replace("fallback_owner = \"99\"\n", "")
        .replace("id = \"default\"\n", "id = \"default\"\nrequire = [\"province\"]\nwait_up_to = \"10m\"\n");
    let config = SHARED_TABLE_CONFIG
        .replace(
            "watch_columns = [\"type\", \"stage\", \"active\"]",
            "watch_columns = [\"type\", \"stage\", \"active\", \"province\"]",
        )
        .replace("rules_dir = \"set by the test\"", "rules_dir = \"set by the test\"\nmax_attempts = 1");
    let s = shape("unowned", SHARED_TABLE_CRM, &config, &rules).await;
    let (code, out) = s.cli(&["install"]);
    assert_eq!(code, Some(0), "{out}");
    let daemon = s.start();
    let nobody = s
        .insert("INSERT INTO sales.crm_lead (type, name, province) VALUES ('opportunity', 'x', 'HCM') RETURNING id")
        .await;
    let waiting = s
        .insert("INSERT INTO sales.crm_lead (type, name) VALUES ('opportunity', 'no province yet') RETURNING id")
        .await;
    s.client
        .batch_execute("INSERT INTO oppty_router.events (kind, opp_id) VALUES ('route', 'not-a-number')")
        .await
        .expect("a poisoned event");
    s.due_drained().await;
    daemon.stop().await;
    assert_eq!(s.owner(nobody).await, 1);
    assert_eq!(s.owner(waiting).await, 1);

    let (_, out) = s.cli(&["status"]);
    for line in [
        "left unowned, unassigned (no rule yielded anybody, no fallback owner; `oppty-router requeue --unassigned` retries): 1, the oldest since",
        "1  no rule yielded anybody: no fallback owner is configured",
        "left unowned, held (waiting; retried by the daemon): 1, the oldest since",
        "1  waiting for required field(s) `province` (pipeline `default` requires them)",
        "dead letters by error (`oppty-router requeue --dead-letter` retries them):",
        "invalid input syntax for type integer: \"not-a-number\"",
    ] {
        assert!(out.contains(line), "expected `{line}` in:\n{out}");
    }

    // The admin covers HCM, requeues the unassigned one; the CRM fills the missing province.
    std::fs::write(
        s.cfg.router.rules_dir.join("rules.toml"),
        rules.replace("territories = [\"HN\"]", "territories = [\"HN\", \"HCM\"]").replacen(
            "[[member]]",
            "[[territory]]\nid = \"HCM\"\nname = \"Hồ Chí Minh\"\nparent = \"VN\"\n[[member]]",
            1,
        ),
    )
    .expect("edit the rules");
    let (code, out) = s.cli(&["requeue", "--unassigned", "--id", "12345"]);
    assert!(code == Some(1) && out.contains("queued 0 unassigned opportunities again"), "only the id given: {out}");
    assert!(out.contains("--id 12345: matched nothing: not unassigned"), "the id that matched nothing: {out}");
    let (code, out) = s.cli(&["requeue", "--unassigned", "--id", &format!("12345, {nobody}")]);
    assert!(code == Some(0) && out.contains("queued 1 unassigned opportunities again"), "{out}");
    assert!(out.contains("--id 12345: matched nothing") && !out.contains(&format!("--id {nobody}:")), "{out}");
    let (code, out) = s.cli(&["requeue", "--dead-letter", "--id", "12345"]);
    assert!(code == Some(1) && out.contains("moved 0 dead-lettered events back into the queue"), "{out}");
    let (code, out) = s.cli(&["requeue", "--dead-letter", "--since", "1h", "--id", "not-a-number"]);
    assert!(code == Some(0) && out.contains("moved 1 dead-lettered events back into the queue"), "{out}");
    s.client.execute("UPDATE sales.crm_lead SET province = 'HN' WHERE id = $1", &[&waiting]).await.expect("fill it");
    let daemon = s.start();
    s.due_drained().await;
    daemon.stop().await;
    assert!([10, 11].contains(&s.owner(nobody).await), "requeued and routed");
    assert!([10, 11].contains(&s.owner(waiting).await), "routed once its province was set");
    let (_, out) = s.cli(&["status"]);
    assert!(out.contains("left unowned: none"), "{out}");
    // The report counts each by where it ended: both with a member by a rule (the first decisions
    // were an unassigned and a hold).
    let (code, out) = s.cli_stdout(&["report", "--since", "1h", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, Some(0), "{out}");
    let o = &report["outcomes"]["before"];
    assert_eq!((o["rule"].as_i64(), o["held"].as_i64(), o["unassigned"].as_i64()), (Some(2), Some(0), Some(0)), "{o}");
    let (code, out) = s.cli(&["requeue"]);
    assert_eq!(code, Some(2), "say what to requeue: {out}");
}

/// A uuid-keyed CRM in a quoted camelCase schema, whose rule files name users in upper case.
const UUID_CRM: &str = r#"
CREATE SCHEMA "SalesApp";
CREATE TABLE "SalesApp"."User" ("userId" uuid PRIMARY KEY, "displayName" text NOT NULL);
INSERT INTO "SalesApp"."User" VALUES ('a0000000-0000-0000-0000-0000000000aa', 'An'), ('a0000000-0000-0000-0000-0000000000bb', 'Bình'),
    ('a0000000-0000-0000-0000-0000000000ff', 'Admin');
CREATE TABLE "SalesApp"."Deal" (
    "dealId"      uuid PRIMARY KEY,
    "ownerUserId" uuid REFERENCES "SalesApp"."User" ("userId"),
    "Region"      text,
    "isClosed"    boolean NOT NULL DEFAULT false
);
CREATE TABLE "SalesApp"."Activity" (id bigserial PRIMARY KEY, "dealId" uuid NOT NULL, "byUserId" uuid, "at" timestamptz NOT NULL DEFAULT now());
"#;

const UUID_CONFIG: &str = r#"
[database]
url = "set by the test"
[router]
rules_dir = "set by the test"
[opportunity]
table = '"SalesApp"."Deal"'
id = "dealId"
owner = "ownerUserId"
open_when = 'NOT o."isClosed"'
watch_columns = ["isClosed"]
[opportunity.fields]
province = "Region"
[[activity]]
table = '"SalesApp"."Activity"'
opportunity = "dealId"
actor = "byUserId"
at = "at"
"#;

const UUID_RULES: &str = r#"
[settings]
fallback_owner = "{A0000000-0000-0000-0000-0000000000FF}"
[[territory]]
id = "HN"
name = "Hà Nội"
[[member]]
id = "A0000000-0000-0000-0000-0000000000AA"
name = "An"
[[member]]
id = "A0000000-0000-0000-0000-0000000000BB"
name = "Bình"
paused = true
[[team]]
id = "north"
name = "North"
pipelines = ["default"]
territories = ["HN"]
members = ["A0000000-0000-0000-0000-0000000000AA", "a0000000-0000-0000-0000-0000000000bb"]
[[pipeline]]
id = "default"
[[pipeline.rule]]
id = "by-province"
team = { territory = "province" }
member = "fewest_open"
[pipeline.reclaim]
after = "1h"
[[test]]
name = "Hanoi goes to An"
fields = { province = "HN" }
expect = { member = "A0000000-0000-0000-0000-0000000000AA" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upper_case_uuids_in_the_rules_name_the_crms_users_with_one_load_each() {
    let s = shape("uuidcase", UUID_CRM, UUID_CONFIG, UUID_RULES).await;
    let (code, out) = s.cli(&["install"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = s.cli(&["check"]);
    assert_eq!(code, Some(0), "upper-case ids are the CRM's users: {out}");
    let daemon = s.start();
    let deal = "C0000000-0000-0000-0000-000000000001";
    s.client
        .execute("INSERT INTO \"SalesApp\".\"Deal\" (\"dealId\", \"Region\") VALUES ($1::text::uuid, 'HN')", &[&deal])
        .await
        .expect("a deal");
    s.drained().await;
    let owner: String =
        s.client.query_one("SELECT \"ownerUserId\"::text FROM \"SalesApp\".\"Deal\"", &[]).await.expect("owner").get(0);
    assert_eq!(owner, "a0000000-0000-0000-0000-0000000000aa", "An (Bình is paused)");
    // The owner's call counts for the reclaim clock: the ids match.
    s.client
        .execute(
            "INSERT INTO \"SalesApp\".\"Activity\" (\"dealId\", \"byUserId\", at) VALUES ($1::text::uuid, $2::text::uuid, now() + interval '1 minute')",
            &[&deal, &owner],
        )
        .await
        .expect("a call");
    s.drained().await;
    daemon.stop().await;
    let touched: i64 = s
        .client
        .query_one(
            "SELECT count(*) FROM oppty_router.ownership WHERE owner_id = $1 AND last_owner_touch_at > assigned_at",
            &[&owner],
        )
        .await
        .expect("ownership")
        .get(0);
    assert_eq!(touched, 1, "the owner's activity moved the reclaim clock");
    let loads: Vec<(String, i32)> = s
        .client
        .query("SELECT member_id, open_count FROM oppty_router.member_state WHERE open_count > 0", &[])
        .await
        .expect("loads")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(loads, vec![(owner.clone(), 1)], "one load counter, in the CRM's form");
    let (code, out) = s.cli(&["explain", &format!("  {deal}  ")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 decision(s)") && out.contains(&owner), "explain finds it however the id is written: {out}");
    let (code, out) = s.cli(&["explain", "c0000000-0000-0000-0000-0000000000ee"]);
    assert_eq!(code, Some(1), "an opportunity the router never decided about: {out}");
    assert!(out.contains("the router has made no decision about it"), "{out}");

    // What happened, and a replay of the deal listed as a person pastes it (upper case, spaces).
    let (code, out) = s.cli_stdout(&["report", "--since", "1h", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((code, report["opportunities"].as_u64()), (Some(0), Some(1)), "{out}");
    let an = report["members"].as_array().and_then(|m| m.iter().find(|m| m["id"] == owner.as_str())).expect("An");
    assert_eq!(an["assigned"]["before"], 1, "counted under the CRM's form of her id: {out}");
    let list = s.cfg.router.rules_dir.join("../deals.csv");
    std::fs::write(&list, format!("id\n  {deal}  \nC0000000-0000-0000-0000-0000000000EE\n")).expect("list");
    let rules = s.cfg.router.rules_dir.display().to_string();
    let (code, out) =
        s.cli_stdout(&["simulate", "--rules", &rules, "--opportunities", &list.display().to_string(), "--json"]);
    let sim: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(sim["opportunities"], 1, "the pasted id found its decision: {out}");
    assert_eq!(sim["skipped"]["never decided by the router"], 1, "the other one is said: {out}");
    assert_eq!(sim["changes"].as_array().map(Vec::len), Some(0), "the same rules, the same owner: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_timestamps_written_in_utc_are_read_in_utc_whatever_the_sessions_zone() {
    let crm = format!(
        "{SHARED_TABLE_CRM}
         CREATE TABLE sales.mail_activity (id serial PRIMARY KEY, res_id integer NOT NULL, user_id integer, create_date timestamp NOT NULL);"
    );
    let config = SHARED_TABLE_CONFIG.replace("[database]\n", "[database]\nnaive_timestamps = \"UTC\"\n")
        + "[[activity]]\ntable = \"sales.mail_activity\"\nopportunity = \"res_id\"\nactor = \"user_id\"\nat = \"create_date\"\n";
    let s = shape("naive", &crm, &config, RULES).await;
    let dbname: String = s.client.query_one("SELECT current_database()::text", &[]).await.expect("db").get(0);
    // The database's (and the CRM's sessions') zone is Vietnam's, 7 hours from UTC.
    s.client
        .batch_execute(&format!(
            "ALTER DATABASE \"{dbname}\" SET timezone = 'Asia/Ho_Chi_Minh'; SET TIME ZONE 'Asia/Ho_Chi_Minh'"
        ))
        .await
        .expect("zone");
    let (code, out) = s.cli(&["install"]);
    assert_eq!(code, Some(0), "{out}");
    let daemon = s.start();
    let opp = s.insert(NEW_OPP).await;
    s.drained().await;
    let owner = s.owner(opp).await;
    assert!([10, 11].contains(&owner));
    // The CRM writes the call's time as naive UTC, from a session in Vietnam's zone.
    s.client
        .execute(
            "INSERT INTO sales.mail_activity (res_id, user_id, create_date) VALUES ($1, $2, now() AT TIME ZONE 'UTC')",
            &[&opp, &owner],
        )
        .await
        .expect("a call");
    s.drained().await;
    daemon.stop().await;
    let off: f64 = s
        .client
        .query_one(
            "SELECT abs(extract(epoch FROM last_activity_at - now()))::float8 FROM oppty_router.ownership WHERE opp_id = $1",
            &[&opp.to_string()],
        )
        .await
        .expect("ownership")
        .get(0);
    assert!(off < 120.0, "the call is seen when it happened, not {off} s off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_found_through_sql_count_and_the_routers_own_chatter_line_does_not() {
    let db = crm_db_with("sqlactivity", |text| {
        *text = text.replace(
            "[write_back.set]\nassignedAt = \"now()\"\n",
            r#"[write_back]
statement = """
  WITH note AS (INSERT INTO crm.mail_message (model, res_id, author_id, body)
                VALUES ('crm.opportunity', :opportunity_id, :owner::int, 'Assigned by the router'))
  UPDATE crm.opportunity SET "accountOwnerId" = :owner::int WHERE "oppId" = :opportunity_id::uuid AND "accountOwnerId" = 1
  RETURNING "accountOwnerId"::text AS owner
"""
[[activity]]
name = "tasks"
table = "crm.task"
opportunity = { sql = "SELECT l.opp_id FROM crm.task_link l WHERE l.task_id = r.id" }
actor = { sql = "SELECT p.user_id FROM crm.partner p WHERE p.id = r.partner_id" }
"#,
        );
    })
    .await;
    db.client
        .batch_execute(
            "CREATE TABLE crm.partner (id integer PRIMARY KEY, user_id integer);
             CREATE TABLE crm.task (id integer PRIMARY KEY, partner_id integer, note text);
             CREATE TABLE crm.task_link (task_id integer NOT NULL, opp_id uuid NOT NULL);
             INSERT INTO crm.partner SELECT 5000 + id, id FROM crm.users;",
        )
        .await
        .expect("the CRM's task tables");
    let report = oppty_router::check::check(&db.cfg, false).await;
    assert!(
        !report.lines.iter().any(|l| l.contains("activity[2]")),
        "the SQL link and actor are prepared and fit: {:?}",
        report.lines
    );
    db.install().await;
    let daemon = db.start();
    let opp = db.insert_opportunity("Mortgage", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(10)).await;
    db.wait_drained(Duration::from_secs(10)).await;
    let activity = |opp: &str| {
        format!("SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}' AND last_activity_at IS NOT NULL")
    };
    assert_eq!(db.count(&activity(&opp)).await, 0, "the router's own chatter line is not an interaction");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM crm.mail_message WHERE res_id = '{opp}' AND body = 'Assigned by the router'"
        ))
        .await,
        1
    );
    // The owner logs a task, linked through the link table, written by their partner record.
    db.client
        .batch_execute(&format!(
            "INSERT INTO crm.task_link VALUES (1, '{opp}'); INSERT INTO crm.task VALUES (1, {}, 'called back');",
            5000 + owner
        ))
        .await
        .expect("a task");
    db.wait_drained(Duration::from_secs(10)).await;
    daemon.stop().await;
    let touched = format!(
        "SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}' AND last_activity_at IS NOT NULL AND last_owner_touch_at >= last_activity_at"
    );
    assert_eq!(db.count(&touched).await, 1, "the task counts as the owner's interaction");
}
