//! The console as the tests reach it: served in-process on a free port with an editor `lan` and a
//! viewer `minh`, and the Instagram lead whose routing shows which rule comes first.

use std::sync::Arc;
use std::time::Duration;

use console::accounts::{add_user, Role};
use tokio_util::sync::CancellationToken;

use super::TestDb;

/// A console with this config, with an editor `lan` and a viewer `minh` (their accounts in
/// `dir`); its port, and the token that stops it.
pub async fn console_on(mut cfg: oppty_router::config::Config, dir: &std::path::Path) -> (u16, CancellationToken) {
    let users = dir.join("console-users.toml");
    add_user(&users, "lan", Role::Editor, "lan's long password").expect("editor");
    add_user(&users, "minh", Role::Viewer, "minh's long password").expect("viewer");
    cfg.console.users = users;
    let console = Arc::new(console::Console::new(Arc::new(cfg)).expect("the console starts"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = CancellationToken::new();
    tokio::spawn(console::serve_on(console, listener, stop.clone()));
    (port, stop)
}

/// A retail opportunity from Instagram, from an account whose owner is `owner`: the relationship
/// rule keeps it with them, unless the Instagram rule comes first. Its id.
pub async fn instagram_lead(db: &TestDb, owner: i32) -> String {
    db.client
        .query_one(
            "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\", source) \
             SELECT 'Instagram lead', (SELECT \"accountId\" FROM crm.account WHERE \"ownerId\" = $1 ORDER BY 1 LIMIT 1), 'retail', 1, 'instagram' \
             RETURNING \"oppId\"::text",
            &[&owner],
        )
        .await
        .expect("insert an Instagram lead")
        .get(0)
}

/// The rule that routed `opp`, as the audit has it, once it is owned.
pub async fn rule_that_routed(db: &TestDb, opp: &str) -> String {
    db.wait_owned(opp, Duration::from_secs(10)).await;
    db.client
        .query_one("SELECT rule_id FROM oppty_router.assignments WHERE opp_id = $1 AND owner_id IS NOT NULL", &[&opp])
        .await
        .expect("its decision")
        .get(0)
}
