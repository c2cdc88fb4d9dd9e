//! Reclaim: an opportunity its owner leaves untouched is taken back and given to someone else.
//! Windows are seconds here; nothing waits hours.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn rules(reclaim: &str, members: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let member_defs: String = members.iter().map(|m| format!("[[member]]\nid = \"{m}\"\n")).collect();
    let list = members.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        dir.path().join("rules.toml"),
        format!(
            "[settings]\nfallback_owner = \"100\"\n[[territory]]\nid = \"DN\"\n{member_defs}\
             [[team]]\nid = \"dn\"\ncrm_id = \"13\"\npipelines = [\"retail\"]\nterritories = [\"DN\"]\nmembers = [{list}]\n\
             [[pipeline]]\nid = \"retail\"\n[pipeline.reclaim]\n{reclaim}\n\
             [[pipeline.rule]]\nid = \"province\"\nteam = {{ territory = \"province\" }}\nmember = \"fewest_open\"\n"
        ),
    )
    .expect("write rules");
    dir
}

async fn setup(label: &str, reclaim: &str, members: &[&str]) -> (TestDb, tempfile::TempDir) {
    let mut db = crm_db(label).await;
    let dir = rules(reclaim, members);
    db.cfg.router.rules_dir = dir.path().to_path_buf();
    db.cfg.directory = None;
    db.cfg.router.reclaim_interval = Duration::from_millis(200);
    db.install().await;
    (db, dir)
}

async fn outcomes(db: &TestDb, opp: &str) -> Vec<(String, Option<String>, Option<String>)> {
    db.client
        .query(
            "SELECT outcome, owner_id, previous_owner FROM oppty_router.assignments WHERE opp_id = $1 ORDER BY id",
            &[&opp],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn wait_outcome(db: &TestDb, opp: &str, outcome: &str, limit: Duration) {
    let started = Instant::now();
    while !outcomes(db, opp).await.iter().any(|o| o.0 == outcome) {
        assert!(started.elapsed() < limit, "no `{outcome}` for {opp} after {limit:?}: {:?}", outcomes(db, opp).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_opportunity_is_reclaimed_to_another_member_of_the_team() {
    let (db, _rules) = setup("reclaim", "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("untouched", "DN", "retail").await;
    let (first, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    wait_outcome(&db, &opp, "reclaim", Duration::from_secs(5)).await;
    daemon.stop().await;
    let now = db.owner_of(&opp).await;
    assert_ne!(now, first, "never the same owner again");
    assert!([301, 302].contains(&now), "another member of the team");
    let o = outcomes(&db, &opp).await;
    let reclaim = o.iter().find(|x| x.0 == "reclaim").expect("reclaim row");
    assert_eq!(reclaim.2.as_deref(), Some(first.to_string().as_str()), "the audit names the previous owner");
    let why: String = db
        .client
        .query_one(
            "SELECT explanation->>'note' FROM oppty_router.assignments WHERE opp_id = $1 AND outcome = 'reclaim'",
            &[&opp],
        )
        .await
        .expect("note")
        .get(0);
    assert!(why.contains(&format!("reclaimed from {first} after")) && why.contains("without an interaction"), "{why}");
    let text = oppty_router::explain::explain(&db.client, &db.cfg, &opp).await.expect("explain");
    assert!(text.contains("2 decision(s)") && text.contains("reclaim: owner"), "the whole ownership history: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_who_keeps_working_on_it_keeps_it() {
    let (db, _rules) = setup("touched", "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("worked on", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    for _ in 0..8 {
        db.log_call(&opp, owner).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    daemon.stop().await;
    assert_eq!(db.owner_of(&opp).await, owner);
    assert!(!outcomes(&db, &opp).await.iter().any(|o| o.0 == "reclaim"), "kept: {:?}", outcomes(&db, &opp).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_reassignment_or_closing_in_the_meantime_is_left_alone() {
    let (db, _rules) = setup("person", "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let moved = db.insert_opportunity("reassigned by a manager", "DN", "retail").await;
    let won = db.insert_opportunity("won", "DN", "retail").await;
    db.wait_owned(&moved, Duration::from_secs(3)).await;
    db.wait_owned(&won, Duration::from_secs(3)).await;
    db.on_opportunity("UPDATE crm.opportunity SET \"accountOwnerId\" = 305 WHERE \"oppId\" = $1::text::uuid", &moved)
        .await;
    db.on_opportunity("UPDATE crm.opportunity SET \"stageId\" = 3 WHERE \"oppId\" = $1::text::uuid", &won).await;
    let won_owner = db.owner_of(&won).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.stop().await;
    assert_eq!(db.owner_of(&moved).await, 305, "the person's choice stands");
    assert_eq!(db.owner_of(&won).await, won_owner, "a closed deal is not reclaimed");
    for opp in [&moved, &won] {
        assert!(!outcomes(&db, opp).await.iter().any(|o| o.0 == "reclaim"), "{:?}", outcomes(&db, opp).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_maximum_of_reclaims_the_configured_owner_takes_it() {
    let (db, _rules) =
        setup("max", "after = \"1s\"\nmax_reclaims = 1\nthen = { owner = \"100\" }", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("nobody works on it", "DN", "retail").await;
    db.wait_owned(&opp, Duration::from_secs(3)).await;
    let started = Instant::now();
    while db.owner_of(&opp).await != 100 {
        assert!(started.elapsed() < Duration::from_secs(8), "{:?}", outcomes(&db, &opp).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await;
    let o: Vec<String> = outcomes(&db, &opp).await.into_iter().map(|o| o.0).collect();
    assert_eq!(o, ["rule", "reclaim", "reclaim"], "routed, reclaimed once within the team, then to the named owner");
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}'")).await,
        0,
        "no longer swept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_with_nobody_else_eligible_leaves_it_with_its_owner_never_the_same_owner_again() {
    let (db, _rules) = setup("alone", "after = \"1s\"\nwhen_nobody = \"leave\"", &["301"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("only one rep", "DN", "retail").await;
    assert_eq!(db.wait_owned(&opp, Duration::from_secs(3)).await.0, 301);
    wait_outcome(&db, &opp, "kept", Duration::from_secs(5)).await;
    daemon.stop().await;
    assert_eq!(db.owner_of(&opp).await, 301);
    let o = outcomes(&db, &opp).await;
    assert!(!o.iter().any(|x| x.0 == "reclaim"), "not reassigned to the same owner: {o:?}");
    let note: String = db
        .client
        .query_one(
            "SELECT explanation->>'note' FROM oppty_router.assignments WHERE opp_id = $1 AND outcome = 'kept' LIMIT 1",
            &[&opp],
        )
        .await
        .expect("note")
        .get(0);
    assert!(note.contains("nobody else in scope is eligible"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stale_opportunities_of_the_same_members_are_reclaimed_in_one_sweep() {
    let (db, _rules) = setup("many", "after = \"1s\"", &["301", "302", "305"]).await;
    let daemon = db.start();
    let mut first = Vec::new();
    for i in 0..9 {
        let opp = db.insert_opportunity(&format!("stale {i}"), "DN", "retail").await;
        first.push((opp.clone(), db.wait_owned(&opp, Duration::from_secs(3)).await.0));
    }
    for (opp, _) in &first {
        wait_outcome(&db, opp, "reclaim", Duration::from_secs(6)).await;
    }
    daemon.stop().await;
    for (opp, owner) in &first {
        assert_ne!(db.owner_of(opp).await, *owner, "{opp} moved on");
    }
    let drift = db
        .count(
            "SELECT count(*) FROM oppty_router.member_state m LEFT JOIN (SELECT \"accountOwnerId\"::text AS o, count(*) AS n \
             FROM crm.opportunity GROUP BY 1) c ON c.o = m.member_id WHERE m.open_count <> coalesce(c.n, 0)",
        )
        .await;
    assert_eq!(drift, 0, "loads follow the reclaims");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interaction_logged_just_before_the_sweep_writes_keeps_the_opportunity() {
    let (db, _rules) = setup("lastsecond", "after = \"1s\"", &["301", "302"]).await;
    let daemon = db.start();
    let opp = db.insert_opportunity("last-second call", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    daemon.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // stale now
                                                           // The rep logs a call: its event is queued, not yet drained when the sweep runs.
    db.log_call(&opp, owner).await;
    let cfg = std::sync::Arc::new(db.cfg.clone());
    let mut client = oppty_router::db::connect(&cfg.database, "").await.expect("connect");
    let sql = oppty_router::crm::prepare(&client, &cfg).await.expect("mapping");
    let engine = std::sync::Arc::new(oppty_router::load_rules(&cfg).expect("rules"));
    let mut drain = oppty_router::drain::Drain::new(cfg.clone(), sql, engine, None);
    drain.reconcile(&mut client).await.expect("loads");
    assert_eq!(drain.sweep(&mut client).await.expect("sweep"), 0, "the queued call keeps it");
    assert_eq!(db.owner_of(&opp).await, owner);
    // Without that call it would have gone: drain the event (the clock restarts), wait, sweep.
    drain.drain_all(&mut client, &tokio_util::sync::CancellationToken::new()).await.expect("drain");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(drain.sweep(&mut client).await.expect("sweep"), 1, "stale again after a quiet window");
    assert_ne!(db.owner_of(&opp).await, owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_is_warned_before_the_opportunity_is_taken_back() {
    let (db, _rules) = setup("warn", "after = \"3s\"\nwarn_at = 0.5", &["301", "302"]).await;
    let (listener, mut notes) =
        oppty_router::db::connect_listener(&db.cfg.database, " test listener").await.expect("listen");
    listener.batch_execute("LISTEN oppty_router_wakeup_reclaim_warning").await.expect("LISTEN");
    let daemon = db.start();
    let opp = db.insert_opportunity("going quiet", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(3)).await;
    let started = Instant::now();
    while db.count(&format!("SELECT count(*) FROM oppty_router.reclaim_warnings WHERE opp_id = '{opp}'")).await == 0 {
        assert!(started.elapsed() < Duration::from_secs(3), "a warning row appears after half the window");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() < Duration::from_millis(2900), "warned before the window ends");
    assert_eq!(db.owner_of(&opp).await, owner, "still the owner's when warned");
    tokio::time::timeout(Duration::from_secs(2), notes.recv())
        .await
        .expect("a NOTIFY on the documented channel")
        .expect("listener alive");
    let row = db
        .client
        .query_one(
            "SELECT owner_id, reclaim_at > idle_since FROM oppty_router.reclaim_warnings WHERE opp_id = $1",
            &[&opp],
        )
        .await
        .expect("warning row");
    assert_eq!(row.get::<_, String>(0), owner.to_string());
    assert!(row.get::<_, bool>(1));
    wait_outcome(&db, &opp, "reclaim", Duration::from_secs(6)).await;
    daemon.stop().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM oppty_router.reclaim_warnings WHERE opp_id = '{opp}' AND owner_id = '{owner}'"
        ))
        .await,
        1,
        "warned once per idle spell"
    );
}
