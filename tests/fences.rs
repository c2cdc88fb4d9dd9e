//! Writes to the router's tables that run outside a batch's transaction are fenced too: an event's
//! failure is recorded only by the session that claimed it (as its claim is taken and given back),
//! and due times are brought forward only by the leader the lease names. ARCHITECTURE.md: "every
//! write to the router's tables is fenced".

mod common;

use common::*;
use oppty_router::db;
use oppty_router::store::Statements;

/// A connection of its own to the test's database (a session with its own backend).
async fn session(db: &TestDb) -> tokio_postgres::Client {
    db::connect(&db.cfg.database, " fence test").await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_failure_is_recorded_only_by_the_session_that_claimed_it() {
    let db = crm_db("fence_events").await;
    db.install().await;
    let s = db.cfg.router.schema.quoted();
    let stmts = Statements::new(&db.cfg.router.schema);
    db.insert_opportunity("first", "HN", "retail").await;
    db.insert_opportunity("second", "HN", "retail").await;
    let (claimer, other) = (session(&db).await, session(&db).await);
    let claimed = claimer.query(&stmts.claim, &[&10i64, &None::<i32>]).await.expect("claim");
    let ids: Vec<i64> = claimed.iter().map(|r| r.get("id")).collect();
    assert_eq!(ids.len(), 2, "both events claimed by the first session");

    // Another session (a lane, a replica) cannot retry or dead-letter what it did not claim.
    let retried = other.execute(&stmts.retry, &[&ids[0], &"not mine", &1000f64]).await.expect("retry");
    let lettered = other.execute(&stmts.dead_letter, &[&ids[1], &"not mine"]).await.expect("dead letter");
    assert_eq!((retried, lettered), (0, 0), "nothing written by a session that did not claim them");
    let pid: i32 = claimer.query_one("SELECT pg_backend_pid() AS pid", &[]).await.expect("pid").get("pid");
    let still: i64 = db
        .client
        .query_one(
            &format!("SELECT count(*) AS n FROM {s}.events WHERE claimed_by = $1 AND last_error IS NULL"),
            &[&pid],
        )
        .await
        .expect("count")
        .get("n");
    assert_eq!(still, 2, "both still the claimer's, untouched");

    // The claimer can.
    let retried = claimer.execute(&stmts.retry, &[&ids[0], &"failed", &1000f64]).await.expect("retry");
    let lettered = claimer.execute(&stmts.dead_letter, &[&ids[1], &"failed for good"]).await.expect("dead letter");
    assert_eq!((retried, lettered), (1, 1));
    let letters: i64 = (db.client.query_one(&format!("SELECT count(*) AS n FROM {s}.dead_letter"), &[]).await)
        .expect("count")
        .get("n");
    assert_eq!(letters, 1);
}

/// Whether the test assignment is still due more than a day from now.
async fn later(db: &TestDb, s: &str) -> bool {
    let sql = format!("SELECT due_at > now() + interval '1 day' AS later FROM {s}.ownership WHERE opp_id = 'o1'");
    db.client.query_one(&sql, &[]).await.expect("due").get("later")
}

/// How many pipelines have a recorded reclaim fingerprint.
async fn fingerprints(db: &TestDb, s: &str) -> i64 {
    db.client.query_one(&format!("SELECT count(*) AS n FROM {s}.reclaim_state"), &[]).await.expect("count").get("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_times_are_brought_forward_only_by_the_leader_the_lease_names() {
    let db = crm_db("fence_align").await;
    db.install().await;
    let s = db.cfg.router.schema.quoted();
    let sweep = Statements::new(&db.cfg.router.schema).sweep;
    db.client
        .batch_execute(&format!(
            "INSERT INTO {s}.ownership (opp_id, owner_id, assigned_at, last_owner_touch_at, pipeline, due_at) \
             VALUES ('o1', '101', now() - interval '2 days', now() - interval '2 days', 'retail', now() + interval '30 days'); \
             INSERT INTO {s}.leader_lease (holder, backend_pid, renewed_at, expires_at) \
             VALUES ('the leader', 424242, now(), now() + interval '1 minute')"
        ))
        .await
        .expect("an assignment due in 30 days, and a lease naming backend 424242");
    let (window, chunk) = (3_600i64, 100i64);

    // A leader the lease no longer names (another backend): nothing moves, nothing is recorded.
    let fenced = Some(7i32);
    let row =
        (db.client.query_one(&sweep.align_chunk[1], &[&"retail", &window, &chunk, &"", &fenced])).await.expect("align");
    assert_eq!((row.get::<_, i64>("seen"), row.get::<_, i64>("moved")), (1, 0), "seen, not moved");
    db.client.execute(&sweep.set_fingerprint, &[&"retail", &"fp", &fenced]).await.expect("fingerprint");
    assert!(later(&db, &s).await, "the due time stays where it was");
    assert_eq!(fingerprints(&db, &s).await, 0, "no fingerprint recorded");

    // The leader the lease names: brought forward to the new window, and recorded.
    let leader = Some(424242i32);
    let row =
        (db.client.query_one(&sweep.align_chunk[1], &[&"retail", &window, &chunk, &"", &leader])).await.expect("align");
    assert_eq!(row.get::<_, i64>("moved"), 1);
    db.client.execute(&sweep.set_fingerprint, &[&"retail", &"fp", &leader]).await.expect("fingerprint");
    assert!(!later(&db, &s).await, "brought forward");
    assert_eq!(fingerprints(&db, &s).await, 1);
}
