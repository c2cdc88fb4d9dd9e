//! Nothing the CRM or a poisoned row does stalls the leader: a person's transaction idle on rows
//! due for reclaim, a row whose field fails with an error that ends the session (class 53), a
//! statement that never returns (the lease follows the drain's progress, so a standby takes
//! over), and a role whose own `statement_timeout` would cancel the daemon's statements.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// `n` opportunities titled `title i`, routed by `db`'s daemon.
async fn routed(db: &TestDb, title: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(db.insert_opportunity(&format!("{title} {i}"), "HCM", "retail").await);
    }
    for opp in &ids {
        db.wait_owned(opp, Duration::from_secs(10)).await;
    }
    ids
}

/// These assignments made due for reclaim long ago: owned for thirty days without a touch.
async fn age(db: &TestDb, ids: &[String]) {
    db.client
        .execute(
            "UPDATE oppty_router.ownership SET assigned_at = now() - interval '30 days', \
             last_owner_touch_at = now() - interval '30 days', due_at = now() - interval '1 day' \
             WHERE opp_id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("age the assignments");
}

async fn reclaimed_among(db: &TestDb, ids: &[String]) -> i64 {
    let list = ids.iter().map(|d| format!("'{d}'")).collect::<Vec<_>>().join(",");
    db.count(&format!(
        "SELECT count(DISTINCT opp_id) FROM oppty_router.assignments WHERE outcome = 'reclaim' AND opp_id IN ({list})"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_session_idle_in_transaction_on_rows_due_for_reclaim_does_not_stop_routing() {
    let mut db = crm_db("idle_reclaim").await;
    db.cfg.router.reclaim_interval = Duration::from_millis(200);
    db.install().await;
    let daemon = db.start();
    let due = routed(&db, "stale", 5).await;
    let control = routed(&db, "control", 1).await;
    // A salesperson's session opens a transaction on those five rows and goes to lunch.
    let mut person = oppty_router::db::connect(&db.cfg.database, " person").await.expect("connect");
    let lunch = person.transaction().await.expect("begin");
    let held = lunch
        .execute("SELECT 1 FROM crm.opportunity WHERE \"oppId\"::text = ANY($1) FOR UPDATE", &[&due])
        .await
        .expect("lock");
    assert_eq!(held, 5);
    // All six come due; the sweep reclaims the one nobody holds, so it has met the five locks.
    age(&db, &[due.clone(), control.clone()].concat()).await;
    wait_until("a sweep meets the locks", Duration::from_secs(10), || async {
        reclaimed_among(&db, &control).await == 1
    })
    .await;
    assert_eq!(reclaimed_among(&db, &due).await, 0, "the held rows are not reclaimed under the person's lock");
    let started = Instant::now();
    let mut fresh = Vec::new();
    for i in 0..10 {
        fresh.push(db.insert_opportunity(&format!("during lunch {i}"), "HCM", "retail").await);
    }
    for opp in &fresh {
        db.wait_owned(opp, Duration::from_secs(4)).await;
    }
    println!("10 of 10 routed in {:?} while a CRM session held 5 rows due for reclaim", started.elapsed());
    let owners_before: Vec<i32> = owners_of(&db, &due).await;
    // Back from lunch: the sweep comes back to the rows it skipped, and reclaims them.
    lunch.commit().await.expect("commit");
    let all = || async { reclaimed_among(&db, &due).await == 5 };
    assert!(
        holds_within(Duration::from_secs(10), all).await,
        "{} of 5 reclaimed after the locks went",
        reclaimed_among(&db, &due).await
    );
    assert_ne!(owners_of(&db, &due).await, owners_before, "reclaimed: another owner each");
    daemon.stop().await;
}

async fn owners_of(db: &TestDb, opps: &[String]) -> Vec<i32> {
    let mut v = Vec::new();
    for o in opps {
        v.push(db.owner_of(o).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_field_fails_with_out_of_memory_is_dead_lettered_and_the_rest_of_its_batch_routed() {
    let mut db = with_segment_condition("oom", "crm.explode(o.title)").await;
    db.client
        .batch_execute(
            "CREATE FUNCTION crm.explode(t text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN \
             IF t = 'oom' THEN RAISE EXCEPTION 'out of memory' USING ERRCODE = '53200'; END IF; RETURN true; END $$",
        )
        .await
        .expect("function");
    db.cfg.router.max_attempts = 2;
    db.cfg.router.retry_backoff = Duration::from_millis(50);
    db.install().await;
    // Class 53 ends the session (the server is out of something): the claim's charge stands, so
    // the event is tried alone, and dead-lettered once claimed more than max_attempts times.
    let (oom, (opp, attempts, error)) = one_dead_letter_among_routed_ones(&db, "oom").await;
    assert_eq!(opp, oom);
    assert_eq!(attempts, 3, "claimed twice without finishing, dead-lettered at the third claim");
    assert!(error.contains("claimed 2 times and never finished"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_wedged_in_a_statement_loses_its_lease_and_a_standby_routes_on() {
    let mut db = with_segment_condition("wedge", "o.title <> 'wedge' OR pg_sleep(20) IS NOT NULL").await;
    db.cfg.router.leader_lease = Duration::from_secs(1);
    db.cfg.router.statement_timeout = Duration::from_secs(60);
    // One connection each: no second lane routes on beside the wedged one.
    db.cfg.router.drain_connections = 1;
    db.cfg.router.max_attempts = 2;
    db.install().await;
    let a = db.start();
    let first = db.insert_opportunity("before the wedge", "HCM", "retail").await;
    db.wait_owned(&first, Duration::from_secs(10)).await;
    let b = db.start();
    // One row's field sleeps 20 s: the leader's batch never returns within its lease.
    let wedge = db.insert_opportunity("wedge", "HCM", "retail").await;
    wait_until("the leader's batch is wedged in the row's field", Duration::from_secs(5), || async {
        db.count("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND application_name LIKE 'oppty-router%'")
            .await
            > 0
    })
    .await;
    let started = Instant::now();
    let after = db.insert_opportunity("after the wedge", "HCM", "retail").await;
    let (_, took) = db.wait_owned(&after, Duration::from_secs(10)).await;
    println!("routed {took:?} after the leader wedged (lease 1 s)");
    wait_until("the wedging event reaches the dead letter", Duration::from_secs(20), || async {
        db.count("SELECT count(*) FROM oppty_router.dead_letter").await > 0
    })
    .await;
    assert_eq!(db.owner_of(&wedge).await, 1, "the wedging one keeps the queue owner");
    db.assert_routed_once(&[&first, &after]).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_level_statement_timeout_does_not_apply_to_the_daemons_statements() {
    let db = crm_db("role_timeout").await;
    db.install().await;
    // A DBA's safety net for the role: far shorter than the daemon's statements take.
    db.client
        .batch_execute(&format!("ALTER DATABASE {} SET statement_timeout = '1ms'", db.name))
        .await
        .expect("statement_timeout");
    let daemon = db.start();
    let mut opps = Vec::new();
    for i in 0..5 {
        opps.push(db.insert_opportunity(&format!("under a 1 ms timeout {i}"), "HCM", "retail").await);
    }
    for opp in &opps {
        db.wait_owned(opp, Duration::from_secs(10)).await;
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_resumes_within_a_second_of_the_database_accepting_connections_after_an_outage() {
    let cluster = devkit::throwaway::Cluster::start(false).expect("a cluster of the test's own (it is stopped)");
    let admin = oppty_router::db::connect(&db_config(&cluster.url("postgres")), "").await.expect("connect");
    admin.batch_execute("CREATE DATABASE outage").await.expect("create database");
    let url = cluster.url("outage");
    let text = devkit::demo::EXAMPLE_CONFIG.replace("host=/var/run/postgresql dbname=crm user=oppty_router", &url);
    let mut cfg =
        oppty_router::config::Config::parse(&text, std::path::Path::new("oppty-router.toml")).expect("config");
    cfg.router.rules_dir = rules_dir();
    let client = oppty_router::db::connect(&cfg.database, "").await.expect("connect");
    for (file, sql) in devkit::demo::DEMO_SQL {
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let db = TestDb { name: "outage".into(), cfg, client };
    db.install().await;
    let daemon = db.start();
    let before = db.insert_opportunity("before the outage", "HCM", "retail").await;
    db.wait_owned(&before, Duration::from_secs(10)).await;

    // Twenty seconds down: a reconnect delay doubling from 100 ms would next look 5 to 18 s
    // after the server is back.
    cluster.stop_server().expect("stop");
    pace(Duration::from_secs(20)).await;
    cluster.start_server().expect("start");
    let back = Instant::now();
    let client = oppty_router::db::connect(&db.cfg.database, "").await.expect("connect again");
    let db = TestDb { client, ..db };
    let after = db.insert_opportunity("as the server comes back", "HCM", "retail").await;
    db.wait_owned(&after, Duration::from_secs(10)).await;
    let resumed = back.elapsed();
    println!("routing resumed {resumed:?} after the server accepted connections again (20 s outage)");
    assert!(resumed < Duration::from_secs(1), "resumed within a second: {resumed:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_claimed_by_a_live_session_is_claimed_by_no_other_and_once_it_ends_alone_charged_once_more() {
    let db = crm_db("claims").await;
    db.install().await;
    let opp = db.insert_opportunity("claimed", "HCM", "retail").await;
    let store = oppty_router::store::Statements::new(&db.cfg.router.schema);
    let a = oppty_router::db::connect(&db.cfg.database, " lane a").await.expect("connect");
    let b = oppty_router::db::connect(&db.cfg.database, " lane b").await.expect("connect");
    let unfenced: Option<i32> = None;
    let claimed = a.query(&store.claim, &[&100i64, &unfenced]).await.expect("claim");
    assert_eq!(claimed.len(), 1, "A claims the event");
    let attempts: i32 = claimed[0].try_get("attempts").expect("attempts");
    assert_eq!(attempts, 1, "charged as it is claimed, in the claim's own statement");
    // While A's session lives, B finds nothing: not as fresh, not as one to try again.
    assert!(b.query(&store.claim, &[&100i64, &unfenced]).await.expect("claim").is_empty());
    assert!(b.query_opt(&store.claim_retry, &[&unfenced]).await.expect("retry").is_none());
    // A's session ends without finishing (a crash, a kill): B claims it again, alone, charged again.
    drop(a);
    let found = std::cell::RefCell::new(None);
    wait_until("claimed again once A's session is gone", Duration::from_secs(5), || async {
        let row = b.query_opt(&store.claim_retry, &[&unfenced]).await.expect("retry");
        *found.borrow_mut() = row;
        found.borrow().is_some()
    })
    .await;
    let again = found.into_inner().expect("claimed");
    assert_eq!(again.try_get::<_, String>("opp_id").expect("opp"), opp);
    assert_eq!(again.try_get::<_, i32>("attempts").expect("attempts"), 2);
    assert!(b.query_opt(&store.claim_retry, &[&unfenced]).await.expect("retry").is_none(), "and by nobody else");
}
