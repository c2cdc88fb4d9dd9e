//! `oppty-router revert` from a shell, on a real PostgreSQL with the real daemon: after a bad
//! edit goes in force, the versions kept are listed with what changed, a dry run shows the diff
//! and writes nothing, and the revert gives the directory back the old files (a file the old
//! version did not have is set aside, not deleted), which the daemon puts in force again.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

fn oppty(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).arg("-c").arg(config).env("USER", "ops-anna").output().expect("run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

async fn in_force(db: &TestDb, other_than: &str) -> String {
    wait_until("a new version in force", Duration::from_secs(20), || async {
        rules_version(&db.client).await.is_some_and(|v| v != other_than)
    })
    .await;
    rules_version(&db.client).await.expect("a version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_edit_is_reverted_from_the_shell_and_the_daemon_puts_the_old_rules_back() {
    let db = crm_db("revert").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), &db.cfg.database.url, "");
    let rules = dir.path().join("rules");
    let retail = rules.join("10-retail.toml");
    let original = std::fs::read_to_string(&retail).expect("the retail rules");
    let (daemon, logs) = start_daemon(&config);
    logs.wait_for("connected and leading", Duration::from_secs(20)).await;
    let good = in_force(&db, "").await;

    // An extra file (a tag of its own), then the bad edit: each goes in force in turn.
    let tag = "# an extra file the good version did not have\n[[tag]]\nname = \"fax\"\nwhen = { field = \"source\", equals = \"fax\" }\n";
    std::fs::write(rules.join("40-extra.toml"), tag).expect("extra");
    let extra = in_force(&db, &good).await;
    let moved =
        oppty_router::rules::edit::move_rule(&original, false, "retail", "instagram-to-digital", 0).expect("move");
    std::fs::write(&retail, &moved).expect("a hand edit");
    let bad = in_force(&db, &extra).await;

    let (code, listed) = oppty(&config, &["revert", "--list"]);
    assert_eq!(code, 0, "{listed}");
    let (at_bad, at_good) = (listed.find(&bad), listed.find(&good));
    assert!(at_bad.is_some() && at_bad < at_good, "the latest first: {listed}");
    assert!(listed.lines().next().is_some_and(|l| l.contains("~retail")), "what changed, in words: {listed}");

    let (code, dry) = oppty(&config, &["revert", "--to", &good, "--dry-run"]);
    assert_eq!(code, 0, "{dry}");
    assert!(dry.contains("write    ") && dry.contains("10-retail.toml"), "{dry}");
    assert!(dry.contains("set aside") && dry.contains("40-extra.toml"), "{dry}");
    assert!(dry.contains("--- a/10-retail.toml") && dry.contains("dry run: nothing written"), "{dry}");
    assert_eq!(std::fs::read_to_string(&retail).expect("read"), moved, "a dry run writes nothing");

    let number = good.split('-').next().expect("the version's number");
    let (code, done) = oppty(&config, &["revert", "--to", number]);
    assert_eq!(code, 0, "{done}");
    assert_eq!(std::fs::read_to_string(&retail).expect("read"), original, "the good version's file, byte for byte");
    assert!(!rules.join("40-extra.toml").exists(), "the extra file is no longer read");
    let aside = rules.join(format!(".40-extra.toml.before-{good}"));
    assert!(aside.exists(), "…but kept beside, hidden: {done}");
    let hash = good.split_once('-').map(|(_, h)| h.to_string()).expect("a hash");
    assert!(done.contains(&hash), "says the version it goes in force as: {done}");
    wait_until("the good rules in force again", Duration::from_secs(20), || async {
        rules_version(&db.client).await.is_some_and(|v| v != bad && v.ends_with(&hash))
    })
    .await;
    let journal = std::fs::read_to_string(dir.path().join("console-journal.jsonl")).expect("the journal");
    assert!(journal.contains("\"action\":\"revert\"") && journal.contains("\"user\":\"ops-anna\""), "{journal}");

    let (code, nothing) = oppty(&config, &["revert", "--to", &good]);
    assert_eq!(code, 0, "{nothing}");
    assert!(nothing.contains("nothing to do"), "{nothing}");
    let (code, unknown) = oppty(&config, &["revert", "--to", "999-nope"]);
    assert_eq!(code, 1, "{unknown}");
    assert!(unknown.contains("no version `999-nope` was kept") && unknown.contains("--list"), "{unknown}");
    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
}
