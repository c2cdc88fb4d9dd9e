//! Mapping an existing CRM by configuration alone: key types, quoted names, and `check` naming the
//! config key of whatever does not match the database.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use oppty_router::config::Config;

/// A minimal legacy table per key type; the router must route every one of them.
const KEY_TYPES: &[(&str, &str, &str)] = &[
    // (label, key column type, default expression for the key)
    ("integer", "integer", "nextval('legacy.seq')::integer"),
    ("bigint", "bigint", "nextval('legacy.seq')"),
    ("uuid", "uuid", "gen_random_uuid()"),
    ("char36", "character(36)", "gen_random_uuid()::text"),
    ("text", "text", "'deal-' || nextval('legacy.seq')"),
];

fn legacy_config(url: &str, rules: &Path) -> String {
    format!(
        r#"
[database]
url = "{url}"
[router]
schema = "Router Schema"
channel = "routerWake"
rules_dir = "{rules}"
poll_interval = "50ms"
[opportunity]
table = '"Legacy"."Deals"'
id = "DealKey"
owner = "ownerUserId"
unowned_values = ["0"]
open_when = 'o."isClosed" = 0'
deleted_when = 'o.deleted = 1'
watch_columns = ["isClosed", "deleted"]
[opportunity.fields]
region = "Region"
"#,
        rules = rules.display()
    )
}

const LEGACY_RULES: &str = r#"
[[territory]]
id = "N"
[[member]]
id = "7"
[[member]]
id = "8"
[[team]]
id = "north"
pipelines = ["default"]
territories = ["N"]
members = ["7", "8"]
[[pipeline]]
id = "default"
fallback_owner = "99"
[[pipeline.rule]]
id = "region"
team = { territory = "region" }
member = "fewest_open"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_primary_key_and_quoted_names_route() {
    for (label, key_type, default) in KEY_TYPES {
        let (_name, url, client) = empty_db(&format!("key_{label}")).await;
        client
            .batch_execute(&format!(
                r#"CREATE SCHEMA legacy; CREATE SEQUENCE legacy.seq;
                   CREATE SCHEMA "Legacy";
                   CREATE TABLE "Legacy"."Deals" ("DealKey" {key_type} PRIMARY KEY DEFAULT {default},
                       "ownerUserId" integer NOT NULL DEFAULT 0, "Region" text, "isClosed" smallint NOT NULL DEFAULT 0,
                       deleted smallint NOT NULL DEFAULT 0);"#
            ))
            .await
            .expect("legacy schema");
        let rules = tempfile::tempdir().expect("tempdir");
        std::fs::write(rules.path().join("rules.toml"), LEGACY_RULES).expect("write rules");
        let cfg = Config::parse(&legacy_config(&url, rules.path()), Path::new("legacy.toml")).expect("legacy config");
        let mut c = oppty_router::db::connect(&cfg.database, "").await.expect("connect");
        oppty_router::install::install(&mut c, &cfg).await.expect("install");
        let engine = oppty_router::load_rules(&cfg).expect("rules");
        let daemon = Daemon::start(std::sync::Arc::new(cfg.clone()), engine);
        client
            .batch_execute(
                r#"INSERT INTO "Legacy"."Deals" ("Region") VALUES ('N'), ('N'), ('S'), (NULL);
                              INSERT INTO "Legacy"."Deals" ("Region", deleted) VALUES ('N', 1);"#,
            )
            .await
            .expect("insert deals");
        devkit::demo::wait_until_drained(&client, &cfg, Duration::from_secs(5)).await.expect("drained");
        daemon.stop().await;
        let owners: Vec<(Option<String>, i32)> = client
            .query(
                r#"SELECT "Region", "ownerUserId" FROM "Legacy"."Deals" ORDER BY "Region" NULLS LAST, "ownerUserId""#,
                &[],
            )
            .await
            .expect("read")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            owners,
            vec![
                (Some("N".into()), 0),
                (Some("N".into()), 7),
                (Some("N".into()), 8),
                (Some("S".into()), 99),
                (None, 99)
            ],
            "{label}: north deals shared by 7 and 8, others to the fallback, the soft-deleted one left alone"
        );
        let audited = client
            .query_one(r#"SELECT count(*) FROM "Router Schema".assignments"#, &[])
            .await
            .expect("audit")
            .get::<_, i64>(0);
        assert_eq!(audited, 4, "{label}");
    }
}

/// `check` against a live database: each wrong name is reported under its config key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_config_key_of_whatever_does_not_match_the_database() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (what, replace this, with this, expected in the report)
        (
            "a misspelt owner column",
            "owner = \"accountOwnerId\"",
            "owner = \"accountOwnerID\"",
            "opportunity.owner: column `accountOwnerID` does not exist in crm.opportunity",
        ),
        (
            "a missing table",
            "table = \"crm.opportunity\"",
            "table = \"crm.opportunities\"",
            "opportunity.table: table crm.opportunities does not exist",
        ),
        (
            "a field expression with a wrong column",
            "a.\\\"provinceCode\\\" FROM",
            "a.\\\"province\\\" FROM",
            "opportunity.fields.province.sql: column a.province does not exist",
        ),
        (
            "a plain field naming a missing column",
            "source = \"source\"",
            "source = \"sourceChannel\"",
            "opportunity.fields.source: column `sourceChannel` does not exist",
        ),
        (
            "an activity actor column that is not there",
            "actor = \"userId\"",
            "actor = \"user_id\"",
            "activity[0].actor: column `user_id` does not exist in crm.activity",
        ),
        (
            "a write-back column that is not there",
            "assignedAt = \"now()\"",
            "assigned_at = \"now()\"",
            "write_back.set.assigned_at: column `assigned_at` does not exist",
        ),
        (
            "an open predicate of the wrong type",
            "open_when = \"EXISTS",
            "open_when = \"o.title || 'x' || EXISTS",
            "opportunity.open_when:",
        ),
    ];
    for (what, from, to, expected) in cases {
        let db = crm_db_with("check", |text| {
            assert!(text.contains(from), "{what}: the example config contains {from}");
            *text = text.replacen(from, to, 1);
        })
        .await;
        let report = oppty_router::check::check(&db.cfg, false).await;
        let text = report.lines.join("\n");
        assert!(!report.ok, "{what}: check fails\n{text}");
        assert!(report.database_checked, "{what}");
        assert!(text.contains(expected), "{what}: expected `{expected}` in\n{text}");
    }
    // And the example config, unchanged, passes.
    let db = crm_db("check_ok").await;
    db.install().await;
    let report = oppty_router::check::check(&db.cfg, false).await;
    assert!(report.ok, "{}", report.lines.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_member_ids_the_crm_owner_column_cannot_hold() {
    let db = crm_db("badids").await;
    let rules = example_rules_with_member_402_as("lan");
    let mut cfg = db.cfg.clone();
    cfg.router.rules_dir = rules.path().to_path_buf();
    let report = oppty_router::check::check(&cfg, false).await;
    let text = report.lines.join("\n");
    assert!(!report.ok, "{text}");
    assert!(text.contains(".id: `lan` is not a valid value of the CRM's owner column"), "where it is written: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_member_ids_that_are_not_users_of_the_crm() {
    let db = crm_db("nousers").await;
    db.install().await;
    let rules = example_rules_with_member_402_as("9402");
    let mut cfg = db.cfg.clone();
    cfg.router.rules_dir = rules.path().to_path_buf();
    let report = oppty_router::check::check(&cfg, false).await;
    let text = report.lines.join("\n");
    assert!(!report.ok, "{text}");
    assert!(text.contains(".id: `9402` is not a user in crm.users (the owner column's foreign key)"), "{text}");
    // The daemon refuses the set too (exit 78: here the CRM's directory already says the user is
    // not active), instead of dead-lettering every assignment to it.
    let daemon = Daemon::start(std::sync::Arc::new(cfg.clone()), oppty_router::load_rules(&cfg).expect("rules"));
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), daemon.task).await.expect("stops");
    let err = ended.expect("no panic").expect_err("refused");
    assert!(err.to_string().contains("9402"), "{err}");
}

/// The example rules, with member 402 renamed everywhere.
fn example_rules_with_member_402_as(id: &str) -> tempfile::TempDir {
    let rules = tempfile::tempdir().expect("tempdir");
    for f in std::fs::read_dir(rules_dir()).expect("rules dir") {
        let f = f.expect("entry").path();
        let text = std::fs::read_to_string(&f).expect("read").replace("\"402\"", &format!("\"{id}\""));
        std::fs::write(rules.path().join(f.file_name().expect("name")), text).expect("write");
    }
    rules
}
