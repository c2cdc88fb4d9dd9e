//! The leader never scans its queue: every statement of the router's that the leader runs finds
//! the events it needs by index, whatever the backlog. Checked on the plans the server would run
//! once it settles on a generic plan for a prepared statement (`plan_cache_mode =
//! force_generic_plan`), over a queue of 200,000 events.

mod common;

use common::*;
use oppty_router::store::Statements;

/// The plan of `sql` as a prepared statement, generic (its parameters NULL).
async fn generic_plan(client: &mut tokio_postgres::Client, sql: &str) -> String {
    let tx = client.transaction().await.expect("begin");
    let stmt = tx.prepare(sql).await.unwrap_or_else(|e| panic!("{sql}: {}", oppty_router::db::describe(&e)));
    let types: Vec<String> = stmt.params().iter().map(|t| format!("{}.{}", t.schema(), t.name())).collect();
    let nulls = vec!["NULL"; types.len()].join(", ");
    let args = if types.is_empty() { String::new() } else { format!("({})", types.join(", ")) };
    let execute = if types.is_empty() { "EXECUTE p".to_string() } else { format!("EXECUTE p({nulls})") };
    tx.batch_execute(&format!("SET LOCAL plan_cache_mode = force_generic_plan; PREPARE p{args} AS {sql}"))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", oppty_router::db::describe(&e)));
    let rows = tx
        .query(&format!("EXPLAIN {execute}"), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", oppty_router::db::describe(&e)));
    let plan = rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n");
    tx.rollback().await.expect("rollback");
    client.batch_execute("DEALLOCATE p").await.expect("deallocate");
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_of_the_leader_scans_a_queue_of_200000_events() {
    let db = crm_db("plans").await;
    db.install().await;
    db.client
        .batch_execute(
            "INSERT INTO oppty_router.events (kind, opp_id, attempts, next_attempt_at, created_at) \
             SELECT CASE WHEN g % 3 = 0 THEN 'activity' ELSE 'route' END, 'opp-' || (g % 50000), \
             CASE WHEN g % 50 = 0 THEN 1 ELSE 0 END, now() - interval '1 hour', now() - interval '1 hour' \
             FROM generate_series(1, 200000) g; ANALYZE oppty_router.events",
        )
        .await
        .expect("a large queue");
    let mut client = oppty_router::db::connect(&db.cfg.database, "").await.expect("connect");
    let crm = oppty_router::crm::prepare(&client, &db.cfg).await.expect("mapping");
    let store = Statements::new(&db.cfg.router.schema);
    let mut statements: Vec<(&str, String)> = store.named().into_iter().map(|(n, s)| (n, s.to_string())).collect();
    if let Some(oppty_router::crm::Reassign::Batch(sql)) = &crm.reassign {
        statements.push(("the CRM reassign (its guard reads the queue)", sql.clone()));
    }
    let mut scanning = Vec::new();
    for (name, sql) in &statements {
        let plan = generic_plan(&mut client, sql).await;
        if plan.contains("Seq Scan on events") {
            scanning.push(format!("{name}:\n{plan}"));
        }
    }
    assert!(statements.len() > 30, "every statement is looked at: {}", statements.len());
    assert!(scanning.is_empty(), "statements scanning the whole queue:\n{}", scanning.join("\n\n"));
}
