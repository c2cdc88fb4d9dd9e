//! The write-back contract: the router never takes what a person assigned (in any column the
//! CRM's `unowned_when` reads), and every opportunity queued to route that it did not write ends
//! with a record saying why (`skips`, `explain`, `status`, the batch's counts); a custom write
//! statement says what it wrote, and the audit follows it.

mod common;

use std::time::Duration;

use common::*;
use oppty_router::config::WriteBack;

const ASSIGNED_TO: &str =
    "unowned_when = \"(o.\\\"accountOwnerId\\\" IS NULL OR o.\\\"accountOwnerId\\\" = 1) AND coalesce(o.\\\"assignedTo\\\", '[]') = '[]'\"";

/// One team `dn` (Da Nang: 301, 302) in `retail`, reclaiming after a second.
const RULES: &str = "[settings]\nfallback_owner = \"100\"\n[[territory]]\nid = \"DN\"\n\
    [[member]]\nid = \"301\"\n[[member]]\nid = \"302\"\n\
    [[team]]\nid = \"dn\"\ncrm_id = \"13\"\npipelines = [\"retail\"]\nterritories = [\"DN\"]\nmembers = [\"301\", \"302\"]\n\
    [[pipeline]]\nid = \"retail\"\n[pipeline.reclaim]\nafter = \"1s\"\n\
    [[pipeline.rule]]\nid = \"province\"\nteam = { territory = \"province\" }\nmember = \"fewest_open\"\n";

/// The sample CRM with a second "assigned to" column (a JSON list of user ids, as a CRM that
/// assigns to several people keeps it), mapped with `unowned_when`, routing by [`RULES`].
async fn crm_with_assigned_to(label: &str) -> (TestDb, tempfile::TempDir) {
    let mut db = crm_db_with(label, |text| {
        *text =
            text.replace("unowned_values = [\"1\"]\n", &format!("unowned_values = [\"1\"]\n{ASSIGNED_TO}\n")).replace(
                "watch_columns = [\"stageId\", \"deletedAt\"]",
                "watch_columns = [\"stageId\", \"deletedAt\", \"assignedTo\"]",
            );
    })
    .await;
    assert!(db.cfg.opportunity.unowned_when.is_some(), "the edit applied");
    db.client.batch_execute("ALTER TABLE crm.opportunity ADD COLUMN \"assignedTo\" jsonb").await.expect("alter");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.toml"), RULES).expect("write rules");
    db.cfg.router.rules_dir = dir.path().to_path_buf();
    db.cfg.directory = None;
    db.install().await;
    (db, dir)
}

async fn skips(db: &TestDb, opp: &str) -> Vec<(String, Option<String>)> {
    let rows = db
        .client
        .query("SELECT reason, owner_seen FROM oppty_router.skips WHERE opp_id = $1 ORDER BY id", &[&opp])
        .await
        .expect("skips");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

async fn outcomes(db: &TestDb, opp: &str) -> Vec<(String, Option<String>)> {
    let rows = db
        .client
        .query("SELECT outcome, owner_id FROM oppty_router.assignments WHERE opp_id = $1 ORDER BY id", &[&opp])
        .await
        .expect("audit");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

async fn status_text(db: &TestDb) -> String {
    oppty_router::status::status(&db.client, &db.cfg).await.expect("status").0
}

async fn explain_text(db: &TestDb, opp: &str) -> String {
    oppty_router::explain::explain(&db.client, &db.cfg, opp).await.expect("explain").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managers_pick_in_the_assigned_to_list_survives_routing_and_is_recorded_with_why() {
    let (mut db, _rules) = crm_with_assigned_to("assignedto").await;
    let (mut drain, mut client) = db.manual_drain().await;
    // The manager fills "assigned to" in the insert's own transaction; the owner column stays
    // the queue user.
    let tx = db.client.transaction().await.expect("begin");
    let opp: String = tx
        .query_one(
            "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\") \
             SELECT 'picked by the manager', (SELECT \"accountId\" FROM crm.account WHERE \"provinceCode\" = 'DN' LIMIT 1), 'retail', 1 \
             RETURNING \"oppId\"::text",
            &[],
        )
        .await
        .expect("insert")
        .get(0);
    tx.execute("UPDATE crm.opportunity SET \"assignedTo\" = '[302]' WHERE \"oppId\" = $1::text::uuid", &[&opp])
        .await
        .expect("assign");
    tx.commit().await.expect("commit");
    let other = db.insert_opportunity("nobody's", "DN", "retail").await;

    let cancel = tokio_util::sync::CancellationToken::new();
    let report = drain.drain_all(&mut client, &cancel).await.expect("drain");
    assert_eq!(db.owner_of(&opp).await, 1, "the owner column is left as the CRM had it");
    let list: serde_json::Value = db
        .client
        .query_one("SELECT \"assignedTo\" FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid", &[&opp])
        .await
        .expect("read")
        .get(0);
    assert_eq!(list, serde_json::json!([302]), "the manager's pick stands");
    assert!([301, 302].contains(&db.owner_of(&other).await), "the unowned one is routed as ever");
    assert!(outcomes(&db, &opp).await.is_empty(), "no decision about it");
    let seen = skips(&db, &opp).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].0.starts_with("owned (opportunity.unowned_when"), "{seen:?}");
    assert_eq!(report.skipped_by, vec![seen[0].0.as_str()], "the batch (and its metric) counts it by the same words");
    let explained = explain_text(&db, &opp).await;
    assert!(explained.contains("not written 1 time(s)") && explained.contains("not written: owned"), "{explained}");
    let status = status_text(&db).await;
    assert!(
        status.contains("not written in the last 24 h") && status.contains("owned (opportunity.unowned_when"),
        "{status}"
    );
    assert!(status.contains("left unowned: none"), "a person has it: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pick_added_to_the_assigned_to_list_after_routing_is_never_reclaimed() {
    let (db, _rules) = crm_with_assigned_to("assignedreclaim").await;
    let (mut drain, mut client) = db.manual_drain().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let kept = db.insert_opportunity("the manager adds someone", "DN", "retail").await;
    let stale = db.insert_opportunity("left alone", "DN", "retail").await;
    drain.drain_all(&mut client, &cancel).await.expect("drain");
    let (owner, other) = (db.owner_of(&kept).await, db.owner_of(&stale).await);
    assert!(owner != 1 && other != 1, "both routed");
    db.on_opportunity(
        "UPDATE crm.opportunity SET \"assignedTo\" = '[302, 301]' WHERE \"oppId\" = $1::text::uuid",
        &kept,
    )
    .await;
    drain.drain_all(&mut client, &cancel).await.expect("drain");
    let quiet = format!(
        "SELECT count(*) FROM oppty_router.ownership WHERE opp_id IN ('{kept}', '{stale}') \
         AND last_owner_touch_at <= now() - interval '1 second'"
    );
    wait_until("both quiet for the window", Duration::from_secs(5), || async { db.count(&quiet).await == 2 }).await;
    assert_eq!(drain.sweep(&mut client).await.expect("sweep"), 1, "only the one nobody else picked");
    assert_eq!(db.owner_of(&kept).await, owner, "the owner stays beside the manager's list");
    assert_ne!(db.owner_of(&stale).await, other, "the other is handed on");
    assert!(!outcomes(&db, &kept).await.iter().any(|o| o.0 == "reclaim"), "{:?}", outcomes(&db, &kept).await);
    let tracked = db.count(&format!("SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{kept}'")).await;
    assert_eq!(tracked, 0, "a person's assignment is not the router's to track");
}

/// The example CRM written through ops statements; `statement` as given.
async fn with_statement(label: &str, statement: &str) -> TestDb {
    let statement = statement.to_string();
    crm_db_with(label, move |text| {
        let start = text.find("[write_back.set]").expect("write_back section");
        let end = text.find("[directory]").expect("directory section");
        text.replace_range(start..end, &format!("[write_back]\nstatement = \"\"\"\n{statement}\n\"\"\"\n\n"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_statement_that_refuses_an_unowned_row_leaves_it_unowned_and_says_so_everywhere() {
    let db = with_statement(
        "refused",
        "UPDATE crm.opportunity SET \"accountOwnerId\" = :owner::int\n\
         WHERE \"oppId\" = :opportunity_id::uuid AND \"accountOwnerId\" = 1 AND title NOT LIKE 'VIP%' -- VIPs: by hand, it's policy\n\
         RETURNING \"accountOwnerId\"::text AS owner",
    )
    .await;
    db.install().await;
    let (mut drain, mut client) = db.manual_drain().await;
    let vip = db.insert_opportunity("VIP: the minister's cousin", "HN", "retail").await;
    let plain = db.insert_opportunity("plain", "HN", "retail").await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let report = drain.drain_all(&mut client, &cancel).await.expect("drain");
    assert_ne!(db.owner_of(&plain).await, 1, "routed");
    assert_eq!(db.owner_of(&vip).await, 1, "the statement refused it");
    assert_eq!(report.skipped, 1);
    assert!(outcomes(&db, &vip).await.is_empty(), "no decision recorded for what was not written");
    let seen = skips(&db, &vip).await;
    assert!(seen.len() == 1 && seen[0].0.starts_with("refused by write_back.statement"), "{seen:?}");
    let status = status_text(&db).await;
    assert!(
        status.contains("left unowned, unwritten") && status.contains("refused by write_back.statement"),
        "{status}"
    );
    let explained = explain_text(&db, &vip).await;
    assert!(explained.contains("not written: refused by write_back.statement"), "{explained}");
    let plain_audit = outcomes(&db, &plain).await;
    assert!(
        plain_audit.len() == 1 && plain_audit[0].1 == Some(db.owner_of(&plain).await.to_string()),
        "{plain_audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_and_the_loads_follow_the_owner_a_statement_says_it_wrote() {
    // Ops route everything meant for 101 to 102 (a delegate) inside the statement.
    let db = with_statement(
        "delegate",
        "UPDATE crm.opportunity SET \"accountOwnerId\" = CASE WHEN :owner = '101' THEN 102 ELSE :owner::int END\n\
         WHERE \"oppId\" = :opportunity_id::uuid AND \"accountOwnerId\" = 1\n\
         RETURNING \"accountOwnerId\"::text AS owner",
    )
    .await;
    db.install().await;
    let (mut drain, mut client) = db.manual_drain().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut opps = Vec::new();
    for i in 0..6 {
        opps.push(db.insert_opportunity(&format!("Hanoi {i}"), "HN", "retail").await);
    }
    drain.drain_all(&mut client, &cancel).await.expect("drain");
    for opp in &opps {
        let owner = db.owner_of(opp).await;
        assert_ne!(owner, 101, "the statement never writes 101");
        let audit = outcomes(&db, opp).await;
        assert_eq!(audit.last().and_then(|a| a.1.clone()), Some(owner.to_string()), "{opp}: {audit:?}");
    }
    assert_eq!(drain.load_of("101"), 0, "the ledger holds nothing the CRM does not");
    let crm_102 = db
        .count("SELECT count(*) FROM crm.opportunity WHERE \"accountOwnerId\" = 102 AND \"stageId\" NOT IN (5, 6)")
        .await;
    assert_eq!(drain.load_of("102"), crm_102, "102's load is what the CRM shows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_statement_that_cannot_say_what_it_wrote_is_refused_by_check() {
    for (label, statement, want) in [
        (
            "noreturn",
            "UPDATE crm.opportunity SET \"accountOwnerId\" = :owner::int WHERE \"oppId\" = :opportunity_id::uuid AND \"accountOwnerId\" = 1",
            "write_back.statement: returns nothing; end it with `RETURNING <the owner column>::text AS owner`",
        ),
        (
            "teamrow",
            "WITH u AS (UPDATE crm.opportunity SET \"accountOwnerId\" = :owner::int WHERE \"oppId\" = :opportunity_id::uuid AND \"accountOwnerId\" = 1 RETURNING \"oppId\")\n\
             INSERT INTO crm.activity (\"opportunityId\", kind, \"userId\") SELECT \"oppId\", 'assigned', :owner::int FROM u RETURNING id",
            "write_back.statement: returns no `owner` column (it returns id)",
        ),
        (
            "intowner",
            "UPDATE crm.opportunity SET \"accountOwnerId\" = :owner::int WHERE \"oppId\" = :opportunity_id::uuid AND \"accountOwnerId\" = 1 RETURNING \"accountOwnerId\" AS owner",
            "write_back.statement: returns `owner` as int4; cast it",
        ),
    ] {
        let db = with_statement(label, statement).await;
        assert!(matches!(db.cfg.write_back, WriteBack::Statement { .. }), "the edit applied");
        db.install().await;
        let err = oppty_router::crm::prepare(&db.client, &db.cfg).await.expect_err(label).to_string();
        assert!(err.contains(want), "{label}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_without_standard_conforming_strings_is_captured_as_the_config_reads() {
    // The config's predicate compares with a backslash; a CRM session with the legacy setting
    // would read `'x\y'` as `'xy'` in an unpinned function body.
    let db = crm_db_with("legacystrings", |text| {
        *text = text
            .replace(
                "unowned_values = [\"1\"]\n",
                "unowned_values = [\"1\"]\nunowned_when = \"o.\\\"accountOwnerId\\\" = 1 OR o.title = 'x\\\\y'\"\n",
            )
            .replace(
                "watch_columns = [\"stageId\", \"deletedAt\"]",
                "watch_columns = [\"stageId\", \"deletedAt\", \"title\"]",
            );
    })
    .await;
    assert_eq!(db.cfg.opportunity.unowned_when.as_deref(), Some("o.\"accountOwnerId\" = 1 OR o.title = 'x\\y'"));
    db.install().await;
    let queued = "SELECT count(*) FROM oppty_router.events WHERE kind = 'route'";
    let before = db.count(queued).await;
    db.client
        .batch_execute(
            "SET standard_conforming_strings = off; SET escape_string_warning = off; \
             INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\", \"accountOwnerId\") \
             SELECT E'x\\\\y', (SELECT \"accountId\" FROM crm.account LIMIT 1), 'retail', 1, 101",
        )
        .await
        .expect("insert as a legacy session");
    assert_eq!(db.count(queued).await, before + 1, "owned by 101, yet unowned by the CRM's own words: queued to route");
}

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

/// The binary with this config; its exit code and everything it said.
fn cli(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the binary");
    if !holds_within_blocking(Duration::from_secs(30), || child.try_wait().expect("wait").is_some()) {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_up_install_uninstall_and_check_failure_says_the_servers_words_never_db_error() {
    let db = crm_db("words").await;
    db.install().await;
    let role = login_role_for_test(&db.client, "nobody").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let narrow = config_file(dir.path(), &as_role(&db.cfg.database.url, &role), "");
    let other = tempfile::tempdir().expect("tempdir");
    let stranger = format!("{role}_unknown");
    let unknown = config_file(other.path(), &as_role(&db.cfg.database.url, &stranger), "");
    let cases: &[(&std::path::Path, &[&str], Option<i32>, &str)] = &[
        (&narrow, &["run"], Some(78), "permission denied for schema crm"),
        (&narrow, &["check"], Some(78), "permission denied for schema oppty_router (42501) — give the role what"),
        (&narrow, &["install"], Some(78), "permission denied"),
        (&narrow, &["uninstall"], Some(78), "uninstall needs to own what it drops"),
        (&narrow, &["uninstall", "--dry-run"], Some(0), "DROP SCHEMA IF EXISTS"),
        (&narrow, &["status"], Some(78), "permission denied"),
        (&narrow, &["grants", "someone"], Some(78), "permission denied for schema crm"),
        (&unknown, &["run"], Some(78), "does not exist"),
        (&unknown, &["check"], Some(78), "does not exist"),
        (&unknown, &["install"], Some(78), "does not exist"),
        (&unknown, &["uninstall"], Some(78), "does not exist"),
    ];
    for (config, args, code, said) in cases {
        let (got, out) = cli(config, args);
        let what = format!("`{}` ({})", args.join(" "), config.display());
        assert!(!out.contains("db error"), "{what} says the server's words, not `db error`:\n{out}");
        assert!(!out.contains("25P02"), "{what} says the first cause, not an aborted transaction:\n{out}");
        assert!(out.contains(said), "{what} says `{said}`:\n{out}");
        assert_eq!(got, *code, "{what}:\n{out}");
    }
}
