//! The sidecar pipeline end to end, on a real PostgreSQL: capture, drain, route, write back, audit.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opportunity_from_hanoi_is_owned_within_a_second_and_the_audit_explains_why() {
    let db = crm_db("hanoi").await;
    db.install().await;
    let daemon = db.start();
    // Connected, caught up and waiting: a waiting leader raises the flag that asks for NOTIFY.
    wait_until("the daemon waits for work", Duration::from_secs(10), || async {
        db.count("SELECT count(*) FROM oppty_router.wakeup WHERE idle").await == 1
    })
    .await;
    let opp = db.insert_opportunity("Home loan", "HN", "retail").await;
    let (owner, took) = db.wait_owned(&opp, Duration::from_secs(1)).await;
    assert!([101, 102].contains(&owner), "a Hanoi retail member (103 is paused), got {owner}");
    let team: Option<i32> = db
        .client
        .query_one("SELECT \"salesTeamId\" FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid", &[&opp])
        .await
        .expect("team")
        .get(0);
    assert_eq!(team, Some(11), "the Hanoi team's CRM id is written back");
    let assigned_at_set = db
        .count(&format!(
            "SELECT count(*) FROM crm.opportunity WHERE \"oppId\" = '{opp}' AND \"assignedAt\" IS NOT NULL"
        ))
        .await;
    assert_eq!(assigned_at_set, 1, "write_back.set columns are written too");

    let row = db
        .client
        .query_one(
            "SELECT owner_id, team_id, outcome, rule_id, rules_version, explanation::text, previous_owner FROM oppty_router.assignments_explained WHERE opp_id = $1",
            &[&opp],
        )
        .await
        .expect("one audit row");
    assert_eq!(row.get::<_, Option<String>>(0), Some(owner.to_string()));
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("hanoi-retail"));
    assert_eq!(row.get::<_, String>(2), "rule");
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("province-team"));
    assert_eq!(
        row.get::<_, String>(4),
        daemon.rules.load().version,
        "the audit records the rules version that decided"
    );
    let explanation: String = row.get(5);
    assert!(explanation.contains("province = `HN`"), "{explanation}");
    assert!(explanation.contains("fewest open opportunities"), "{explanation}");
    assert!(explanation.contains("paused"), "103 is paused and the explanation says so: {explanation}");
    assert_eq!(row.get::<_, Option<String>>(6).as_deref(), Some("1"), "the queue user was the previous owner");

    let (text, _) = oppty_router::explain::explain(&db.client, &db.cfg, &opp).await.expect("explain");
    assert!(
        text.contains("rule province-team: matched")
            && text.contains("excluded (paused (rule files)): 103 (Lê Văn Cường)"),
        "{text}"
    );
    assert!(
        text.contains("member 101 (Nguyễn Văn An)") || text.contains("member 102 (Trần Thị Bình)"),
        "every member named: {text}"
    );
    assert!(text.contains("team hanoi-retail: its territory covers province = `HN`"), "{text}");
    daemon.stop().await;
    eprintln!("owned in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opportunity_a_person_assigned_before_the_daemon_saw_it_keeps_that_owner() {
    let db = crm_db("person").await;
    db.install().await;
    // Created unowned while the daemon is down, then a manager assigns it by hand.
    let opp = db.insert_opportunity("VIP client", "HN", "retail").await;
    db.on_opportunity("UPDATE crm.opportunity SET \"accountOwnerId\" = 202 WHERE \"oppId\" = $1::text::uuid", &opp)
        .await;
    // And one created with an owner already.
    let owned = db
        .client
        .query_one(
            "INSERT INTO crm.opportunity (title, \"pipelineCode\", \"stageId\", \"accountOwnerId\") VALUES ('walk-in', 'retail', 1, 301) RETURNING \"oppId\"::text",
            &[],
        )
        .await
        .expect("insert owned")
        .get::<_, String>(0);
    let daemon = db.start();
    db.wait_drained(Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_eq!(db.owner_of(&opp).await, 202);
    assert_eq!(db.owner_of(&owned).await, 301);
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.assignments").await, 0, "the router decided nothing");
    let load: i32 = db
        .client
        .query_one("SELECT open_count FROM oppty_router.member_state WHERE member_id = '202'", &[])
        .await
        .expect("member state")
        .get(0);
    assert_eq!(load, 1, "the person's assignment counts in 202's load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunities_inserted_while_the_daemon_is_stopped_are_all_routed_when_it_starts() {
    let db = crm_db("backlog").await;
    db.install().await;
    devkit::demo::insert_opportunities(&db.client, 1200, "retail", 3, 0).await.expect("insert");
    devkit::demo::insert_opportunities(&db.client, 300, "corporate", 4, 0).await.expect("insert");
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.events").await, 1500);
    let daemon = db.start();
    db.wait_drained(Duration::from_secs(30)).await;
    daemon.stop().await;
    assert_eq!(
        db.count("SELECT count(*) FROM crm.opportunity WHERE \"accountOwnerId\" = 1").await,
        0,
        "nothing left unowned"
    );
    assert_eq!(db.count("SELECT count(DISTINCT opp_id) FROM oppty_router.assignments").await, 1500);
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.assignments").await, 1500, "each routed once");
    // Caps held: 101 and 102 have max_open = 400.
    let over = db
        .count("SELECT count(*) FROM (SELECT \"accountOwnerId\" FROM crm.opportunity WHERE \"accountOwnerId\" IN (101, 102) GROUP BY 1 HAVING count(*) > 400) x")
        .await;
    assert_eq!(over, 0, "no member beyond max_open");
    // Loads the router keeps agree with the CRM.
    let drift = db
        .count(
            "SELECT count(*) FROM oppty_router.member_state m LEFT JOIN (SELECT \"accountOwnerId\"::text AS o, count(*) AS n FROM crm.opportunity GROUP BY 1) c \
             ON c.o = m.member_id WHERE m.open_count <> coalesce(c.n, 0)",
        )
        .await;
    assert_eq!(drift, 0, "member_state.open_count matches the CRM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_daemons_connections_while_opportunities_arrive_loses_nothing_and_routes_nothing_twice() {
    let mut db = crm_db("terminate").await;
    // An attempt is charged as an event is claimed, whatever ends its session: this test ends
    // the session every 250 ms, so an event can be in flight at several kills in a row.
    db.cfg.router.max_attempts = 50;
    db.install().await;
    let daemon = db.start();
    let started = Instant::now();
    let mut kills = 0;
    let mut inserted = 0;
    let mut round = 0u32;
    while started.elapsed() < Duration::from_secs(4) {
        round += 1;
        devkit::demo::insert_opportunities(&db.client, 25, "retail", round, 0).await.expect("insert");
        inserted += 25;
        if round % 5 == 0 {
            let n = db
                .count(&format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' \
                     AND application_name IN ('oppty-router', 'oppty-router listener') AND pid <> pg_backend_pid()",
                    db.name
                ))
                .await;
            kills += n;
        }
        pace(Duration::from_millis(40)).await;
    }
    assert!(kills >= 4, "the daemon's connections were terminated ({kills})");
    db.wait_drained(Duration::from_secs(30)).await;
    daemon.stop().await;
    assert_eq!(db.count("SELECT count(*) FROM crm.opportunity WHERE \"accountOwnerId\" = 1").await, 0, "nothing lost");
    assert_eq!(
        db.count("SELECT count(*) FROM oppty_router.assignments").await,
        inserted,
        "one decision per opportunity"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT opp_id FROM oppty_router.assignments GROUP BY 1 HAVING count(*) > 1) x")
            .await,
        0,
        "nothing routed twice"
    );
}

/// Everything about the CRM's schema `crm` that uninstall must leave as it was: columns, triggers,
/// indexes, constraints, and every row.
async fn crm_fingerprint(db: &TestDb) -> String {
    let mut out = String::new();
    for sql in [
        "SELECT string_agg(table_name || '.' || column_name || ':' || data_type || ':' || coalesce(column_default, ''), ',' ORDER BY table_name, ordinal_position) FROM information_schema.columns WHERE table_schema = 'crm'",
        "SELECT coalesce(string_agg(c.relname || ':' || t.tgname, ',' ORDER BY 1), '') FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'crm' AND NOT t.tgisinternal",
        "SELECT string_agg(indexdef, ',' ORDER BY indexdef) FROM pg_indexes WHERE schemaname = 'crm'",
        "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'crm'",
        "SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM crm.opportunity x",
        "SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM crm.account x",
        "SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM crm.users x",
        "SELECT coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM crm.activity x",
    ] {
        let v: Option<String> = db.client.query_one(sql, &[]).await.expect(sql).get(0);
        out.push_str(&v.unwrap_or_default());
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_twice_is_install_once_and_uninstall_leaves_the_crm_exactly_as_before() {
    let db = crm_db("install").await;
    devkit::demo::insert_opportunities(&db.client, 10, "retail", 1, 0).await.expect("insert");
    let before = crm_fingerprint(&db).await;
    db.install().await;
    let objects = "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'oppty_router_%') * 1000 + \
                   (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'oppty_router') * 100 + \
                   (SELECT count(*) FROM pg_tables WHERE schemaname = 'oppty_router')";
    let once = db.count(objects).await;
    db.install().await;
    assert_eq!(db.count(objects).await, once, "the same triggers, functions and tables");
    assert_eq!(
        db.count("SELECT count(*) FROM oppty_router.schema_version").await,
        oppty_router::install::MIGRATIONS.len() as i64
    );
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.wakeup").await, 1);
    assert_eq!(once, 5 * 1000 + 4 * 100 + 17, "5 triggers (one for owner edits), 4 functions, 17 tables");

    let mut c = oppty_router::db::connect(&db.cfg.database, "").await.expect("connect");
    oppty_router::install::uninstall(&mut c, &db.cfg).await.expect("uninstall");
    assert_eq!(crm_fingerprint(&db).await, before, "the CRM's schema and data are exactly as before");
    assert_eq!(db.count("SELECT count(*) FROM pg_namespace WHERE nspname = 'oppty_router'").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'oppty_router_%'").await, 0);
    // And the CRM works without the router.
    db.insert_opportunity("after uninstall", "HN", "retail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_event_lands_in_dead_letter_while_the_rest_of_its_batch_is_routed() {
    let mut db = crm_db("poison").await;
    db.cfg.router.max_attempts = 2;
    db.cfg.router.retry_backoff = Duration::from_millis(50);
    db.install().await;
    // The CRM refuses an owner on this one row (a CRM-side constraint the router cannot know).
    db.client
        .batch_execute("ALTER TABLE crm.opportunity ADD CONSTRAINT no_owner_for_poison CHECK (title <> 'poison' OR \"accountOwnerId\" = 1)")
        .await
        .expect("constraint");
    let (poison, (opp, attempts, error)) = one_dead_letter_among_routed_ones(&db, "poison").await;
    assert_eq!(opp, poison);
    assert_eq!(attempts, 2, "the attempts made, the last one included (max_attempts = 2)");
    assert!(error.contains("no_owner_for_poison"), "the error names the constraint: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_restart_the_owners_clock_and_a_closed_opportunity_frees_its_load() {
    let db = crm_db("activity").await;
    db.install().await;
    let daemon = db.start();
    let opp = db.insert_opportunity("Card", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(2)).await;
    let touch = format!("SELECT (extract(epoch FROM last_owner_touch_at) * 1000)::int8 FROM oppty_router.ownership WHERE opp_id = '{opp}'");
    let t0 = db.count(&touch).await;
    // A later touch is a later millisecond: the database's clock moves past the first.
    wait_until("the clock moves on", Duration::from_secs(1), || async {
        db.count("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8").await > t0 + 1
    })
    .await;
    // Someone else's note does not restart the owner's clock; the owner's call does.
    db.client
        .execute(
            "INSERT INTO crm.mail_message (model, res_id, author_id, body) VALUES ('crm.opportunity', $1, 100, 'hi')",
            &[&opp],
        )
        .await
        .expect("note");
    db.wait_drained(Duration::from_secs(5)).await;
    assert_eq!(db.count(&touch).await, t0, "an admin's note is not the owner's interaction");
    let any = db
        .count(&format!(
            "SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}' AND last_activity_at IS NOT NULL"
        ))
        .await;
    assert_eq!(any, 1, "but it is recorded as an activity");
    db.log_call(&opp, owner).await;
    db.wait_drained(Duration::from_secs(5)).await;
    assert!(db.count(&touch).await > t0, "the owner's call restarts the clock");

    let load = format!("SELECT open_count::int8 FROM oppty_router.member_state WHERE member_id = '{owner}'");
    assert_eq!(db.count(&load).await, 1);
    db.on_opportunity("UPDATE crm.opportunity SET \"stageId\" = 3 WHERE \"oppId\" = $1::text::uuid", &opp).await;
    db.wait_drained(Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_eq!(db.count(&load).await, 0, "a won opportunity is no longer open load");
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}'")).await,
        0,
        "nor ours to reclaim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_cleared_by_a_person_is_routed_again() {
    let db = crm_db("reroute").await;
    db.install().await;
    let daemon = db.start();
    let opp = db.insert_opportunity("Savings", "HCM", "retail").await;
    let (first, _) = db.wait_owned(&opp, Duration::from_secs(2)).await;
    db.on_opportunity("UPDATE crm.opportunity SET \"accountOwnerId\" = 1 WHERE \"oppId\" = $1::text::uuid", &opp).await;
    let (second, _) = db.wait_owned(&opp, Duration::from_secs(2)).await;
    daemon.stop().await;
    assert!([201, 202, 203].contains(&second), "routed again to the HCM team (first {first}, then {second})");
    assert_eq!(db.count(&format!("SELECT count(*) FROM oppty_router.assignments WHERE opp_id = '{opp}'")).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_write_back_statement_sets_the_owner_through_ops_sql() {
    let db = crm_db_with("custom", |text| {
        let start = text.find("[write_back.set]").expect("write_back section");
        let end = text.find("[log]").expect("log section");
        text.replace_range(
            start..end,
            "[write_back]\nstatement = \"\"\"\nUPDATE crm.opportunity SET \"accountOwnerId\" = :owner::int, \"salesTeamId\" = :team::int, \"assignedAt\" = now()\nWHERE \"oppId\" = :opportunity_id::uuid AND \"accountOwnerId\" = 1\nRETURNING \"accountOwnerId\"::text AS owner\n\"\"\"\n\n",
        );
    })
    .await;
    db.install().await;
    let daemon = db.start();
    let opp = db.insert_opportunity("Home loan", "HN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(2)).await;
    daemon.stop().await;
    assert!([101, 102].contains(&owner));
    let team: Option<i32> = db
        .client
        .query_one("SELECT \"salesTeamId\" FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid", &[&opp])
        .await
        .expect("team")
        .get(0);
    assert_eq!(team, Some(11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_crm_rows_are_handled_a_deleted_row_is_skipped_and_one_without_account_falls_back() {
    let db = crm_db("odd").await;
    db.install().await;
    let gone = db.insert_opportunity("deleted under us", "HN", "retail").await;
    db.on_opportunity("DELETE FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid", &gone).await;
    let soft = db.insert_opportunity("soft deleted", "HN", "retail").await;
    db.on_opportunity("UPDATE crm.opportunity SET \"deletedAt\" = now() WHERE \"oppId\" = $1::text::uuid", &soft).await;
    let orphan: String = db
        .client
        .query_one(
            "INSERT INTO crm.opportunity (title, \"pipelineCode\", \"stageId\") VALUES ('no account', 'retail', 1) RETURNING \"oppId\"::text",
            &[],
        )
        .await
        .expect("insert")
        .get(0);
    let unknown_pipeline: String = db
        .client
        .query_one(
            "INSERT INTO crm.opportunity (title, \"pipelineCode\", \"stageId\") VALUES ('odd pipeline', 'leasing', 1) RETURNING \"oppId\"::text",
            &[],
        )
        .await
        .expect("insert")
        .get(0);
    let daemon = db.start();
    db.wait_drained(Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_eq!(db.owner_of(&soft).await, 1, "a soft-deleted opportunity is not routed");
    assert_eq!(db.owner_of(&orphan).await, 100, "no province: the retail pipeline's fallback owner");
    assert_eq!(db.owner_of(&unknown_pipeline).await, 100, "a pipeline without rules: the global fallback owner");
    let why: String = db
        .client
        .query_one("SELECT explanation::text FROM oppty_router.assignments_explained WHERE opp_id = $1", &[&orphan])
        .await
        .expect("audit")
        .get(0);
    assert!(why.contains("no known territory in province"), "{why}");
    let why: String = db
        .client
        .query_one(
            "SELECT explanation::text FROM oppty_router.assignments_explained WHERE opp_id = $1",
            &[&unknown_pipeline],
        )
        .await
        .expect("audit")
        .get(0);
    assert!(why.contains("pipeline `leasing` has no rules"), "{why}");
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.dead_letter").await, 0, "nothing failed");
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.assignments").await, 2);
}

/// An opportunity of the `i`th Đà Nẵng customer nobody owns yet (a repeat customer would go back
/// to their last owner).
async fn new_customer_in_da_nang(db: &TestDb, i: i64) -> String {
    db.client
        .query_one(
            "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\") \
             SELECT 'Đà Nẵng', (SELECT \"accountId\" FROM crm.account WHERE \"provinceCode\" = 'DN' AND \"ownerId\" IS NULL \
             ORDER BY 1 OFFSET $1 LIMIT 1), 'retail', 1 RETURNING \"oppId\"::text",
            &[&i],
        )
        .await
        .expect("insert")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_and_activeness_come_from_the_crm_when_the_config_says_so() {
    let db = crm_db("directory").await;
    db.install().await;
    // Hải leaves the bank: the CRM marks him inactive. Quang (305) is in Đà Nẵng's team in the CRM only.
    db.client.batch_execute("UPDATE crm.users SET active = false WHERE id = 301").await.expect("deactivate");
    let daemon = {
        let cfg = std::sync::Arc::new(db.cfg.clone());
        let engine = oppty_router::load_rules(&cfg).expect("rules");
        Daemon::start(cfg, engine)
    };
    let mut owners = std::collections::HashSet::new();
    for i in 0..6i64 {
        // Six different customers (a repeat customer would go back to their last owner).
        let opp = new_customer_in_da_nang(&db, i).await;
        owners.insert(db.wait_owned(&opp, Duration::from_secs(3)).await.0);
    }
    daemon.stop().await;
    let last: String = db
        .client
        .query_one("SELECT explanation::text FROM oppty_router.assignments_explained ORDER BY id DESC LIMIT 1", &[])
        .await
        .expect("audit")
        .get(0);
    assert_eq!(
        owners,
        [302, 305].into_iter().collect(),
        "302 and the CRM's new member 305 share them; 301 is inactive: {last}"
    );
    let why: String = db
        .client
        .query_one("SELECT explanation::text FROM oppty_router.assignments_explained ORDER BY id LIMIT 1", &[])
        .await
        .expect("audit")
        .get(0);
    assert!(why.contains("inactive in the CRM") && why.contains("301"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_or_a_cap_the_crm_keeps_per_team_membership_holds_in_that_team() {
    let db = crm_db("membership").await;
    db.install().await;
    // In Đà Nẵng's team (CRM id 13): Quang (305) opted out of automatic assignment there, Hải (301)
    // takes at most 2 per 30 days through it; Dũng (302) has no limit.
    db.client
        .batch_execute(
            "UPDATE crm.sales_team_member SET \"autoAssign\" = false WHERE \"teamId\" = 13 AND \"userId\" = 305; \
             UPDATE crm.sales_team_member SET \"maxPer30Days\" = 2 WHERE \"teamId\" = 13 AND \"userId\" = 301",
        )
        .await
        .expect("membership settings");
    let daemon = {
        let cfg = std::sync::Arc::new(db.cfg.clone());
        let engine = oppty_router::load_rules(&cfg).expect("rules");
        Daemon::start(cfg, engine)
    };
    let mut owners: HashMap<i32, usize> = HashMap::new();
    let mut last = String::new();
    for i in 0..8i64 {
        let opp = new_customer_in_da_nang(&db, i).await;
        *owners.entry(db.wait_owned(&opp, Duration::from_secs(3)).await.0).or_default() += 1;
        last = opp;
    }
    daemon.stop().await;
    assert_eq!(owners.get(&305), None, "paused in this team by the CRM: {owners:?}");
    assert_eq!(owners.get(&301), Some(&2), "two through this team in 30 days, then no more: {owners:?}");
    assert_eq!(owners.get(&302), Some(&6), "{owners:?}");
    let (text, _) = oppty_router::explain::explain(&db.client, &db.cfg, &last).await.expect("explain");
    assert!(
        text.contains("excluded (paused in this team (the CRM)): 305"),
        "explain says which source applied: {text}"
    );
    assert!(text.contains("excluded (at cap in this team (the CRM)): 301"), "{text}");
    let (status, _) = oppty_router::status::status(&db.client, &db.cfg).await.expect("status");
    assert!(
        status.contains("paused in one team by the CRM: 305 in team danang-retail"),
        "a paused member shows as paused: {status}"
    );

    // A restart counts what was already given through the team: Hải stays at his cap.
    let daemon = {
        let cfg = std::sync::Arc::new(db.cfg.clone());
        let engine = oppty_router::load_rules(&cfg).expect("rules");
        Daemon::start(cfg, engine)
    };
    let opp = db.insert_opportunity("after a restart", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    daemon.stop().await;
    assert_eq!(owner, 302, "the cap held across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_opportunity_waits_for_capacity_and_is_routed_when_it_frees() {
    let mut db = crm_db("hold").await;
    let rules = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        rules.path().join("rules.toml"),
        r#"
[settings]
fallback_owner = "100"
hold_retry = "1s"
hold_max = "1h"
[[territory]]
id = "DN"
[[member]]
id = "301"
max_open = 1
[[team]]
id = "dn"
crm_id = "13"
pipelines = ["retail"]
territories = ["DN"]
members = ["301"]
[[pipeline]]
id = "retail"
[[pipeline.rule]]
id = "province"
team = { territory = "province" }
member = "fewest_open"
when_full = "hold"
"#,
    )
    .expect("write rules");
    db.cfg.router.rules_dir = rules.path().to_path_buf();
    db.cfg.directory = None;
    db.install().await;
    let daemon = db.start();
    let first = db.insert_opportunity("first", "DN", "retail").await;
    assert_eq!(db.wait_owned(&first, Duration::from_secs(3)).await.0, 301);
    let second = db.insert_opportunity("second", "DN", "retail").await;
    let held = format!("SELECT count(*) FROM oppty_router.assignments WHERE opp_id = '{second}' AND outcome = 'held'");
    wait_until("the second one is held: 301 is at its cap", Duration::from_secs(3), || async {
        db.count(&held).await > 0
    })
    .await;
    assert_eq!(db.owner_of(&second).await, 1, "held, not given to the fallback owner");
    assert_eq!(
        db.count("SELECT count(*) FROM oppty_router.events WHERE kind = 'route'").await,
        1,
        "queued again for later"
    );
    // 301 wins the first deal: capacity frees, and the held one goes to 301 at its next try.
    db.on_opportunity("UPDATE crm.opportunity SET \"stageId\" = 3 WHERE \"oppId\" = $1::text::uuid", &first).await;
    let (owner, _) = db.wait_owned(&second, Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_eq!(owner, 301);
    let outcomes: Vec<String> = db
        .client
        .query("SELECT outcome FROM oppty_router.assignments WHERE opp_id = $1 ORDER BY id", &[&second])
        .await
        .expect("audit")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(outcomes.first().map(String::as_str), Some("held"));
    assert_eq!(outcomes.last().map(String::as_str), Some("rule"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_while_opportunities_stream_in_routes_each_once_by_a_valid_set_and_versions_only_move_forward() {
    use oppty_router::reload;
    use std::sync::Arc;

    let Reloading { db, rules, cfg, live: rules_swap, directory, reloader } = reloading("storm").await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(reload::watch(
        reloader.clone(),
        rules.path().to_path_buf(),
        cfg.router.reload_debounce,
        shutdown.clone(),
    ));
    let daemon = tokio::spawn(oppty_router::daemon::run(
        cfg.clone(),
        rules_swap.clone(),
        shutdown.clone(),
        oppty_router::daemon::RunOptions { directory, reloader: Some(reloader.clone()), ..Default::default() },
    ));

    // Every version that was ever in force, watched closely.
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let watcher = {
        let (seen, rules_swap, shutdown) = (seen.clone(), rules_swap.clone(), shutdown.clone());
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Ok(mut s) = seen.lock() {
                    s.insert(rules_swap.load().version.clone());
                }
                pace(Duration::from_millis(2)).await;
            }
        })
    };

    let people = rules.path().join("01-people.toml");
    let original = std::fs::read_to_string(&people).expect("read");
    let started = Instant::now();
    let mut inserted = 0i64;
    let mut i = 0u32;
    while started.elapsed() < Duration::from_secs(10) {
        i += 1;
        let text = if i % 2 == 0 {
            original.replacen("weight = 2 ", &format!("weight = {} ", 2 + i % 7), 1)
        // valid, and different
        } else {
            original.replacen("weight = 2 ", "weight = = 2 ", 1) // invalid TOML
        };
        std::fs::write(&people, text).expect("rewrite");
        devkit::demo::insert_opportunities(&db.client, 5, if i % 3 == 0 { "corporate" } else { "retail" }, i, 0)
            .await
            .expect("insert");
        inserted += 5;
        pace(Duration::from_millis(50)).await;
    }
    std::fs::write(&people, &original).expect("restore");
    db.wait_drained(Duration::from_secs(20)).await;
    shutdown.cancel();
    let _ = daemon.await;
    let _ = watcher.await;

    let st = reloader.status.load();
    // The directory is never quiet for a settle: broken saves are never judged, good ones go in force.
    assert!(st.reloads >= 10 && st.refused == 0, "a real storm: {} sets in force, {} refused", st.reloads, st.refused);
    assert_eq!(
        db.count("SELECT count(*) FROM crm.opportunity WHERE \"accountOwnerId\" = 1").await,
        0,
        "every opportunity routed"
    );
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.assignments").await, inserted, "each once");
    let versions: Vec<String> = db
        .client
        .query("SELECT rules_version FROM oppty_router.assignments ORDER BY id", &[])
        .await
        .expect("audit")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let seen = seen.lock().expect("seen").clone();
    let seq = |v: &str| v.split('-').next().and_then(|n| n.parse::<u64>().ok()).expect("version sequence");
    let mut last = 0;
    for v in &versions {
        assert!(seen.contains(v), "decided by {v}, a set that was in force (valid)");
        assert!(seq(v) >= last, "versions only move forward: {v} after {last}");
        last = seq(v);
    }
    let distinct: std::collections::BTreeSet<&String> = versions.iter().collect();
    assert!(distinct.len() >= 5, "the stream was routed by many successive sets: {}", distinct.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_field_query_times_out_is_isolated_and_dead_lettered_not_retried_for_ever() {
    let mut db = with_segment_condition("slowrow", "o.title <> 'slow' OR pg_sleep(0.8) IS NOT NULL").await;
    db.cfg.router.max_attempts = 2;
    db.cfg.router.retry_backoff = Duration::from_millis(50);
    // The daemon's statements time out after 300 ms.
    db.cfg.router.statement_timeout = Duration::from_millis(300);
    db.cfg.router.lock_timeout = Duration::from_millis(100);
    db.install().await;
    let (slow, (opp, _, error)) = one_dead_letter_among_routed_ones(&db, "slow").await;
    assert_eq!(opp, slow);
    assert!(error.contains("statement timeout"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_never_takes_more_than_batch_size_events_whatever_plan_the_server_picks() {
    let mut db = crm_db("bounded").await;
    db.cfg.router.batch_size = 100;
    db.install().await;
    // Statistics taken while the event table was empty (its normal idle state), and a planner
    // steered to the nested loop that re-runs a `LIMIT` subquery once per row.
    db.client.batch_execute("ANALYZE oppty_router.events").await.expect("analyze");
    for setting in ["enable_hashjoin", "enable_mergejoin", "enable_hashagg", "enable_material", "enable_sort"] {
        db.client.batch_execute(&format!("ALTER DATABASE {} SET {setting} = off", db.name)).await.expect(setting);
    }
    db.client
        .batch_execute(
            "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\") \
             SELECT 'backlog ' || g, (SELECT \"accountId\" FROM crm.account WHERE \"provinceCode\" = 'HCM' \
             AND \"ownerId\" IS NULL ORDER BY 1 LIMIT 1), 'retail', 1 FROM generate_series(1, 1000) g",
        )
        .await
        .expect("a backlog of 1,000");
    let (mut drain, mut client) = db.manual_drain().await;
    let mut sizes = Vec::new();
    loop {
        let report = drain.batch(&mut client).await.expect("batch");
        if report.claimed == 0 {
            break;
        }
        sizes.push(report.claimed);
    }
    assert_eq!(sizes.iter().sum::<usize>(), 1000, "every event drained: {sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 100), "no batch exceeds batch_size = 100: {sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_field_fails_is_retried_alone_and_never_again_fails_a_batch_or_its_owners_changes() {
    // Division by zero for an opportunity titled with six letters (`poison`).
    let mut db = with_segment_condition("retryalone", "1 / (length(o.title) - 6) IS NOT NULL").await;
    db.cfg.router.max_attempts = 3;
    db.cfg.router.retry_backoff = Duration::from_millis(1);
    db.install().await;
    let (mut drain, mut client) = db.manual_drain().await;
    let poison = db.insert_opportunity("poison", "HCM", "retail").await;
    let closed = db.insert_opportunity("Poison", "HCM", "retail").await;
    let mut healthy = Vec::new();
    for i in 0..4 {
        healthy.push(db.insert_opportunity(&format!("healthy {i}"), "HCM", "retail").await);
    }
    let first = drain.batch(&mut client).await.expect("first batch");
    assert_eq!((first.isolated, first.retried, first.routed), (6, 2, 4), "the first failure isolates its batch once");

    // A person closes one of the two (nothing left to route there, nothing to fail); more arrive.
    db.on_opportunity("UPDATE crm.opportunity SET \"stageId\" = 3 WHERE \"oppId\" = $1::text::uuid", &closed).await;
    for round in 0..2 {
        for i in 0..3 {
            healthy.push(db.insert_opportunity(&format!("healthy {round}.{i}"), "DN", "retail").await);
        }
        // The poisoned one's retry (1 ms of backoff) is due before the batch claims.
        wait_until("every retry is due", Duration::from_secs(2), || async {
            db.count("SELECT count(*) FROM oppty_router.events WHERE next_attempt_at > clock_timestamp()").await == 0
        })
        .await;
        let r = drain.batch(&mut client).await.expect("batch");
        assert_eq!(r.isolated, 0, "round {round}: the retry ran alone; the fresh batch was not failed by it: {r:?}");
        assert_eq!(r.routed, 3, "round {round}: {r:?}");
    }
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.events").await, 0, "nothing left queued");
    let dead: Vec<(String, String, i32)> = db
        .client
        .query("SELECT kind, opp_id, attempts FROM oppty_router.dead_letter", &[])
        .await
        .expect("dead letter")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(dead, vec![("route".to_string(), poison.clone(), 3)], "only the failing event, after its 3 attempts");
    assert_eq!(db.owner_of(&closed).await, 1, "the closed one is left alone");
    for id in &healthy {
        assert_ne!(db.owner_of(id).await, 1, "every healthy opportunity is routed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opportunity_a_crm_transaction_holds_locked_waits_alone_while_the_rest_are_routed() {
    let mut db = crm_db("rowlock").await;
    db.cfg.router.retry_backoff = Duration::from_millis(200);
    db.install().await;
    let held = db.insert_opportunity("held by a person's open transaction", "HCM", "retail").await;
    // A CRM screen holds the row (SELECT … FOR UPDATE) and stays open.
    let mut crm = oppty_router::db::connect(&db.cfg.database, " crm").await.expect("connect");
    let lock = crm.transaction().await.expect("begin");
    lock.query("SELECT 1 FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid FOR UPDATE", &[&held])
        .await
        .expect("lock the row");
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(db.insert_opportunity(&format!("other {i}"), "DN", "retail").await);
    }
    let daemon = db.start();
    for id in &others {
        db.wait_owned(id, Duration::from_secs(3)).await;
    }
    // The barrier: the locked one was tried, and put back for later.
    let put_back =
        format!("SELECT count(*) FROM oppty_router.events WHERE opp_id = '{held}' AND next_attempt_at > '-infinity'");
    wait_until("the locked one is put back", Duration::from_secs(3), || async { db.count(&put_back).await > 0 }).await;
    assert_eq!(db.owner_of(&held).await, 1, "the locked one is not written while it is held");
    // A stop while the row is still held is clean and quick (no batch waits on it).
    let stopping = Instant::now();
    daemon.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(3), "stopped in {:?}", stopping.elapsed());
    let daemon = db.start();
    lock.commit().await.expect("the person's transaction ends");
    let (_, waited) = db.wait_owned(&held, Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.dead_letter").await, 0, "nothing dead-lettered: {waited:?}");
    let routed = db
        .count(&format!(
            "SELECT count(*) FROM oppty_router.assignments WHERE opp_id = '{held}' AND owner_id IS NOT NULL"
        ))
        .await;
    assert_eq!(routed, 1, "routed once");
}

/// A rule set the CRM refuses (a member id that is not one of its users) is only ever a
/// candidate: the daemon, which owns the database, never puts it in force; `status` says why; the
/// next good edit goes in force at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_set_the_crm_refuses_never_goes_in_force_and_the_next_good_one_does() {
    use oppty_router::reload;
    use std::sync::Arc;

    let Reloading { db: _db, rules, cfg, live, directory, reloader } = reloading("refused").await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let dir = rules.path().to_path_buf();
    tokio::spawn(reload::watch(reloader.clone(), dir.clone(), cfg.router.reload_debounce, shutdown.clone()));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = oppty_router::daemon::RunOptions {
        directory,
        reloader: Some(reloader.clone()),
        ready: Some(ready.clone()),
        ..Default::default()
    };
    let daemon = tokio::spawn(oppty_router::daemon::run(cfg.clone(), live.clone(), shutdown.clone(), options));
    let until = |what: &'static str, ok: Box<dyn Fn() -> bool>| async move {
        wait_until(what, Duration::from_secs(10), || async { ok() }).await;
    };
    let r = ready.clone();
    until("the daemon leads", Box::new(move || r.load(std::sync::atomic::Ordering::SeqCst))).await;
    let good = live.load().version.clone();

    // Member 999 is not a user of the CRM: the set compiles, and the CRM refuses it.
    std::fs::write(dir.join("90-new.toml"), "[[member]]\nid = \"999\"\nname = \"Nobody\"\n").expect("write");
    let rl = reloader.clone();
    until("the refusal is recorded", Box::new(move || rl.status.load().last_error.is_some())).await;
    let why = reloader.status.load().last_error.clone().map(|e| e.1).unwrap_or_default();
    assert!(why.contains("999"), "status names the id: {why}");
    assert!(reloader.latest().member_index("999").is_some(), "the refused set is the latest candidate");
    assert_eq!(live.load().version, good, "and never in force");
    assert!(live.load().member_index("999").is_none());

    // The next good edit (a user the CRM has) is promoted.
    std::fs::write(dir.join("90-new.toml"), "[[member]]\nid = \"100\"\nname = \"Sales admin again\"\n").expect("write");
    let l = live.clone();
    until("a good edit goes in force", Box::new(move || l.load().version != good)).await;
    shutdown.cancel();
    let _ = daemon.await;
}

/// A CRM database whose rules are a copy of the shipped ones in a directory of its own (edited by
/// the test), with a reloader over them: what a reloading daemon needs.
struct Reloading {
    db: TestDb,
    rules: tempfile::TempDir,
    cfg: std::sync::Arc<oppty_router::config::Config>,
    live: std::sync::Arc<arc_swap::ArcSwap<oppty_router::engine::Engine>>,
    directory: std::sync::Arc<arc_swap::ArcSwap<oppty_router::rules::Directory>>,
    reloader: std::sync::Arc<oppty_router::reload::Reloader>,
}

async fn reloading(label: &str) -> Reloading {
    use arc_swap::ArcSwap;
    use std::sync::Arc;
    let mut db = crm_db(label).await;
    let rules = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(rules_dir()).expect("rules") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, rules.path().join(p.file_name().expect("name"))).expect("copy");
    }
    db.cfg.router.rules_dir = rules.path().to_path_buf();
    db.cfg.directory = None;
    db.cfg.router.reload_debounce = Duration::from_millis(20);
    db.cfg.router.reload_settle = Duration::from_millis(200);
    db.install().await;
    let cfg = Arc::new(db.cfg.clone());
    let live = Arc::new(ArcSwap::from_pointee(oppty_router::load_rules(&cfg).expect("rules")));
    let directory = Arc::new(ArcSwap::from_pointee(oppty_router::rules::Directory::default()));
    let reloader = Arc::new(oppty_router::reload::Reloader::new(cfg.clone(), live.clone(), directory.clone()));
    Reloading { db, rules, cfg, live, directory, reloader }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_prepares_each_statement_once_per_session_and_then_only_executes_it() {
    let db = crm_db("prepared").await;
    db.install().await;
    let (mut drain, mut client) = db.manual_drain().await;
    // The session's own view of what it holds prepared (the driver's statements are named).
    let held = "SELECT count(*) FROM pg_prepared_statements";
    let claims = "SELECT coalesce(sum(generic_plans + custom_plans), 0)::int8 FROM pg_prepared_statements \
                  WHERE statement LIKE 'UPDATE %events SET attempts = attempts + 1, claimed_by%ANY(ARRAY(SELECT%'";
    let mut counts = Vec::new();
    for round in 0..4 {
        for i in 0..3 {
            db.insert_opportunity(&format!("prepared {round}.{i}"), "HCM", "retail").await;
        }
        let r = drain.batch(&mut client).await.expect("batch");
        assert_eq!(r.routed, 3, "round {round}: {r:?}");
        counts.push(client.query_one(held, &[]).await.expect("prepared").get::<_, i64>(0));
    }
    assert!(counts[0] >= 8, "the claim, context, write-back, audit, ownership, loads… are prepared: {counts:?}");
    assert!(counts.iter().all(|n| *n == counts[0]), "no statement is prepared again in later batches: {counts:?}");
    let claimed = client.query_one(claims, &[]).await.expect("claims").get::<_, i64>(0);
    assert_eq!(claimed, 4, "one prepared claim statement ran four times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanly_stopped_leader_leaves_the_crms_inserts_without_notify_and_routes_them_on_restart() {
    let db = crm_db("quietstop").await;
    db.install().await;
    let idle = "SELECT count(*) FROM oppty_router.wakeup WHERE idle";
    let daemon = db.start();
    let first = db.insert_opportunity("before the stop", "HCM", "retail").await;
    db.wait_owned(&first, Duration::from_secs(10)).await;
    wait_until("a waiting leader asks the triggers to NOTIFY", Duration::from_secs(10), || async {
        db.count(idle).await == 1
    })
    .await;
    daemon.stop().await;
    assert_eq!(db.count(idle).await, 0, "once stopped, nobody listens: the triggers are told not to NOTIFY");

    let while_stopped = assert_no_notify_from(
        &db,
        "oppty_router_wakeup",
        db.insert_opportunity("while stopped", "HCM", "retail"),
        "an insert while no daemon runs sends no NOTIFY",
    )
    .await;

    let daemon = db.start();
    db.wait_owned(&while_stopped, Duration::from_secs(10)).await;
    daemon.stop().await;
    db.assert_routed_once(&[&first, &while_stopped]).await;
}

/// Open opportunities per owner, as the sample CRM counts them.
async fn open_loads(db: &TestDb) -> HashMap<String, i64> {
    let rows = db
        .client
        .query(
            "SELECT o.\"accountOwnerId\"::text AS owner, count(*) AS n FROM crm.opportunity o \
             JOIN crm.stage s ON s.id = o.\"stageId\" WHERE NOT s.is_won AND NOT s.is_lost AND o.\"deletedAt\" IS NULL GROUP BY 1",
            &[],
        )
        .await
        .expect("loads");
    rows.iter().map(|r| (r.get("owner"), r.get("n"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drained_on_two_connections_at_once_routes_each_opportunity_once_and_holds_every_cap() {
    let mut db = crm_db("lanes").await;
    db.cfg.router.batch_size = 40;
    db.install().await;
    let before = open_loads(&db).await;
    let start: String = db.client.query_one("SELECT now()::text AS t", &[]).await.expect("now").get("t");
    devkit::demo::insert_opportunities(&db.client, 2_000, "retail", 5, 0).await.expect("backlog");
    let (mut drain, mut client) = db.manual_drain().await;
    let lane = oppty_router::db::connect(&db.cfg.database, " lane 2").await.expect("connect");
    drain.add_lane(oppty_router::drain::Lane::start(lane, &db.cfg).await.expect("lane"));
    let report = drain.drain_all(&mut client, &tokio_util::sync::CancellationToken::new()).await.expect("drain");
    let per = drain.batches_per_connection();
    assert!(per.len() == 2 && per.iter().all(|b| *b > 5), "both connections drained batches: {per:?}");
    // Both take their locks in one order (explanations, loads, turns; each sorted), so neither
    // ever waits for the other in a cycle: no deadlock, no batch done again.
    assert_eq!(report.contended, 0, "no batch met a deadlock: {report:?}");
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.events WHERE next_attempt_at <= now()").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM (SELECT opp_id FROM oppty_router.assignments WHERE owner_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d").await,
        0,
        "no opportunity was given an owner twice"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM crm.opportunity o WHERE o.\"createdAt\" >= '{start}' AND o.\"accountOwnerId\" = 1 \
                 AND NOT EXISTS (SELECT 1 FROM oppty_router.unrouted u WHERE u.opp_id = o.\"oppId\"::text)"
        ))
        .await,
        0,
        "every opportunity is owned, or parked with why"
    );
    let decisions = db.count("SELECT count(*) FROM oppty_router.assignments").await;
    let stored = db.count("SELECT count(*) FROM oppty_router.explanations").await;
    let distinct = db.count("SELECT count(DISTINCT explanation::text) FROM oppty_router.assignments_explained").await;
    assert!(
        stored > 0 && stored < decisions && stored == distinct,
        "{decisions} decisions share {stored} explanations ({distinct} distinct), each stored once"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM oppty_router.assignments_explained WHERE explanation IS NULL").await,
        0,
        "every decision reads its explanation"
    );
    let after = open_loads(&db).await;
    let engine = db.engine();
    let mut at_cap = 0;
    for m in &engine.members {
        let given =
            db.count(&format!("SELECT count(*) FROM oppty_router.assignments WHERE owner_id = '{}'", m.id)).await;
        for cap in &m.caps {
            let max = i64::from(cap.max);
            match cap.window {
                oppty_router::engine::Window::Open => {
                    let (was, now) =
                        (before.get(&*m.id).copied().unwrap_or(0), after.get(&*m.id).copied().unwrap_or(0));
                    assert!(now <= max.max(was), "{} has {now} open, cap {max} (had {was})", m.id);
                    at_cap += usize::from(now == max);
                }
                _ => {
                    assert!(given <= max, "{} was given {given}, cap {} at {max}", m.id, cap.label);
                    at_cap += usize::from(given == max);
                }
            }
        }
    }
    assert!(at_cap >= 3, "the backlog fills caps, so they were put to the test ({at_cap} reached)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_leader_keeps_the_notify_flag_alive_and_a_killed_ones_expires_within_the_lease() {
    let mut db = crm_db("flagexpiry").await;
    db.cfg.router.leader_lease = Duration::from_secs(1);
    db.install().await;
    let live = "SELECT count(*) FROM oppty_router.wakeup WHERE idle AND idle_until > now()";
    let daemon = db.start();
    let first = db.insert_opportunity("before the wait", "HCM", "retail").await;
    db.wait_owned(&first, Duration::from_secs(10)).await;
    // Waiting three leases: the flag is renewed all along.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        pace(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_millis(500) {
            assert_eq!(db.count(live).await, 1, "a waiting leader keeps the flag raised ({:?})", started.elapsed());
        }
    }
    // Killed while it waited: no clean stop lowers the flag; it expires by itself.
    let task = daemon.task;
    task.abort();
    let _ = task.await;
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.wakeup WHERE idle").await, 1, "still raised");
    // The lease is 1 s; the flag was renewed at most a lease ago.
    wait_until("the flag expires within the lease", Duration::from_millis(1_500), || async {
        db.count(live).await == 0
    })
    .await;
    assert_no_notify_from(
        &db,
        "oppty_router_wakeup",
        db.insert_opportunity("after the kill", "HCM", "retail"),
        "nobody listens, and the CRM's insert sends no NOTIFY",
    )
    .await;
}

/// The example rules, copied so a test can edit them: An's (101) rolling cap set to `cap`.
fn rules_with_cap(dir: &std::path::Path, cap: u32) {
    for e in std::fs::read_dir(rules_dir()).expect("rules") {
        let p = e.expect("entry").path();
        let text = std::fs::read_to_string(&p).expect("read");
        let text = text
            .replace("caps = [{ max = 150, per = \"24h\" }]", &format!("caps = [{{ max = {cap}, per = \"24h\" }}]"));
        std::fs::write(dir.join(p.file_name().expect("name")), text).expect("write");
    }
}

/// Car loans in Hanoi: An (101) is the only one selling them, up to his cap.
async fn car_loans_to_an(
    db: &TestDb,
    drain: &mut oppty_router::drain::Drain,
    client: &mut tokio_postgres::Client,
    n: usize,
) -> i64 {
    for i in 0..n {
        let opp = db.insert_opportunity(&format!("car loan {i}"), "HN", "retail").await;
        db.on_opportunity("UPDATE crm.opportunity SET \"productCode\" = 'AUTO' WHERE \"oppId\" = $1::text::uuid", &opp)
            .await;
    }
    drain.drain_all(client, &tokio_util::sync::CancellationToken::new()).await.expect("drain");
    db.count("SELECT count(*) FROM crm.opportunity WHERE \"accountOwnerId\" = 101 AND title LIKE 'car loan%'").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_cap_counts_what_the_last_leader_gave_even_after_it_is_lowered_and_raised_again() {
    let mut db = crm_db("history").await;
    db.install().await;
    let rules = tempfile::tempdir().expect("tempdir");
    db.cfg.router.rules_dir = rules.path().to_path_buf();
    rules_with_cap(rules.path(), 5);
    let (mut drain, mut client) = manual_drain_with(&db.cfg).await;
    assert_eq!(car_loans_to_an(&db, &mut drain, &mut client, 6).await, 5, "five in 24 hours, then no more");

    // The cap lowered to 3 while no leader ran: the next one reads only An's latest 3, enough to
    // know he is at it.
    rules_with_cap(rules.path(), 3);
    let (mut drain, mut client) = manual_drain_with(&db.cfg).await;
    assert_eq!(car_loans_to_an(&db, &mut drain, &mut client, 1).await, 5, "at his cap of 3 (he has 5)");

    // Raised to 7 in force: the leader reads his latest 7, finds 5, and gives him exactly 2 more.
    rules_with_cap(rules.path(), 7);
    let engine = std::sync::Arc::new(oppty_router::load_rules(&db.cfg).expect("rules"));
    drain.swap_engine(&mut client, engine).await.expect("swap");
    assert_eq!(car_loans_to_an(&db, &mut drain, &mut client, 4).await, 7, "7 in 24 hours, not 5 + 3 + 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_connection_drains_only_during_a_backlog_and_a_steady_trickle_is_served_by_two() {
    let mut db = crm_db("steady").await;
    db.cfg.router.batch_size = 40;
    db.install().await;
    let (mut drain, mut client) = db.manual_drain().await;
    for n in 2..=3 {
        let lane = oppty_router::db::connect(&db.cfg.database, &format!(" lane {n}")).await.expect("connect");
        drain.add_lane(oppty_router::drain::Lane::start(lane, &db.cfg).await.expect("lane"));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    devkit::demo::insert_opportunities(&db.client, 1_000, "retail", 5, 0).await.expect("backlog");
    drain.drain_all(&mut client, &stop).await.expect("backlog drained");
    let per = drain.batches_per_connection();
    assert!(per.iter().all(|b| *b > 3), "a backlog: all three connections drained batches: {per:?}");

    // A trickle, batch after short batch: the third connection never even claims.
    let before = drain.claims_per_connection();
    for i in 0..5 {
        devkit::demo::insert_opportunities(&db.client, 10, "retail", 6 + i, 0).await.expect("trickle");
        drain.drain_all(&mut client, &stop).await.expect("trickle drained");
    }
    let after = drain.claims_per_connection();
    assert!(
        after[0] >= before[0] + 5 && after[1] >= before[1] + 5,
        "two connections served it: {before:?} → {after:?}"
    );
    assert_eq!(after[2], before[2], "the third did not claim: {before:?} → {after:?}");

    // A burst: a round whose batches come back full brings the third back.
    devkit::demo::insert_opportunities(&db.client, 400, "retail", 11, 0).await.expect("burst");
    drain.drain_for(&mut client, &stop, Some(Duration::from_millis(1))).await.expect("one round");
    assert_eq!(drain.claims_per_connection()[2], after[2], "the burst's first round: two connections");
    drain.drain_all(&mut client, &stop).await.expect("burst drained");
    assert!(drain.claims_per_connection()[2] > after[2], "then all three: {:?}", drain.claims_per_connection());
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.events WHERE next_attempt_at <= now()").await, 0);
}
