//! The binary as ops use it: exit codes, messages, `install --dry-run`, and `run` stopping cleanly
//! on SIGTERM with JSON logs that never show the password.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

/// A copy of the example rules in `dir/rules`, for a test that edits them.
fn own_rules(dir: &std::path::Path) -> std::path::PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    for e in std::fs::read_dir(rules_dir()).expect("rules") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, rules.join(p.file_name().expect("name"))).expect("copy");
    }
    rules
}

fn example_config_with(dir: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = devkit::demo::EXAMPLE_CONFIG
        .replace("host=/var/run/postgresql dbname=crm user=oppty_router", url)
        .replace("/etc/oppty-router/rules", &rules_dir().display().to_string());
    for (from, to) in extra {
        assert!(text.contains(from), "example config contains {from}");
        text = text.replace(from, to);
    }
    let path = dir.join("oppty-router.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn check_offline_accepts_the_shipped_example_and_exits_78_with_file_line_on_a_broken_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = example_config_with(dir.path(), "host=/nonexistent dbname=crm", &[]);
    let out = Command::new(BIN).args(["check", "--offline", "-c"]).arg(&good).output().expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("rules OK") && !stdout.contains("warning"), "{stdout}");

    // A member whose remit shares nothing with the team's domain: the set is good, check warns.
    let rules = own_rules(dir.path());
    let teams = std::fs::read_to_string(rules.join("02-teams.toml")).expect("teams");
    let teams = teams.replacen("members = [\"301\", \"302\"]", "accepts = { field = \"province\", in = [\"DN\"] }\nmembers = [\"301\", { id = \"302\", accepts = { field = \"province\", equals = \"HN\" } }]", 1);
    std::fs::write(rules.join("02-teams.toml"), teams).expect("edit");
    let out = Command::new(BIN)
        .args(["check", "--offline", "--rules"])
        .arg(&rules)
        .arg("-c")
        .arg(&good)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "a warning is not a failure: {stdout}");
    assert!(stdout.contains("warning: team `danang-retail`: member `302`: their remit in the team"), "{stdout}");

    let bad = example_config_with(
        dir.path(),
        "host=/nonexistent dbname=crm",
        &[("batch_size = 500", "batch_size = \"lots\"")],
    );
    let out = Command::new(BIN).args(["check", "--offline", "-c"]).arg(&bad).output().expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG: {stderr}");
    let line = devkit::demo::EXAMPLE_CONFIG.lines().position(|l| l.starts_with("batch_size")).expect("line") + 1;
    assert!(stderr.contains(&format!("oppty-router.toml:{line}:")), "file:line: {stderr}");
    assert!(stderr.contains("invalid type"), "{stderr}");
}

#[test]
fn install_dry_run_prints_the_schema_and_the_generated_triggers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = example_config_with(dir.path(), "host=/nonexistent dbname=crm", &[]);
    let out = Command::new(BIN).args(["install", "--dry-run", "-c"]).arg(&cfg).output().expect("run install");
    let sql = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(sql.contains("CREATE TABLE \"oppty_router\".events"), "{sql}");
    assert!(sql.contains("CREATE TRIGGER oppty_router_capture_update AFTER UPDATE OF \"accountOwnerId\", \"stageId\", \"deletedAt\" ON \"crm\".\"opportunity\"\n    FOR EACH ROW WHEN (current_setting('oppty_router.origin', true) IS DISTINCT FROM 'router' AND (OLD.\"accountOwnerId\" IS DISTINCT FROM NEW.\"accountOwnerId\""), "{sql}");
    assert!(sql.contains("NEW.\"model\" = 'crm.opportunity'"), "the polymorphic activity link: {sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_routes_then_exits_0_on_sigterm_with_json_logs_and_no_password() {
    let db = crm_db("sigterm").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("{} password=hunter2-secret", db.cfg.database.url);
    let cfg = example_config_with(
        dir.path(),
        &url,
        &[("format = \"text\"", "format = \"json\""), ("level = \"info\"", "level = \"debug\"")],
    );
    // Read the logs while it runs: a full pipe would block the daemon's writes.
    let (mut child, reader) = start_daemon(&cfg);
    let opp = db.insert_opportunity("Mortgage", "DN", "retail").await;
    let (owner, _) = db.wait_owned(&opp, Duration::from_secs(10)).await;
    assert!([301, 302].contains(&owner));
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = exited_within(&mut child, Duration::from_secs(10)).expect("the daemon exits promptly on SIGTERM");
    let stderr = reader.join().expect("read logs");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "the password never reaches the logs:\n{stderr}");
    let mut saw_batch = false;
    let mut saw_decision = false;
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        saw_batch |= v["message"] == "batch";
        saw_decision |= v["message"] == "decision" && v["opportunity"] == opp.as_str();
    }
    assert!(saw_batch && saw_decision, "a batch line at info and a decision line at debug:\n{stderr}");
    assert!(stderr.contains("shut down cleanly"), "{stderr}");
    assert!(stderr.contains("connected as a superuser"), "the daemon warns when it runs as a superuser: {stderr}");
    // `status` says it stopped, not "running" until the heartbeat goes stale.
    let out = Command::new(BIN).args(["status", "-c"]).arg(&cfg).output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "nobody is leading: {text}");
    assert!(text.contains("daemon: stopped cleanly at"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_on_a_database_without_the_router_says_not_installed() {
    let db = crm_db("statusnone").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = example_config_with(dir.path(), &db.cfg.database.url, &[]);
    let out = Command::new(BIN).args(["status", "-c"]).arg(&cfg).output().expect("status");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("router: the router's schema `oppty_router` is not installed in this database"), "{text}");
    assert!(!text.contains("db error"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_78_when_the_mapping_does_not_match_the_database() {
    let db = crm_db("run78").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg =
        example_config_with(dir.path(), &db.cfg.database.url, &[("owner = \"accountOwnerId\"", "owner = \"ownerId\"")]);
    let out = Command::new(BIN).args(["run", "-c"]).arg(&cfg).env_remove("RUST_LOG").output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG so systemd stops restarting: {stderr}");
    assert!(stderr.contains("opportunity.owner: column `ownerId` does not exist in crm.opportunity"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_on_a_live_daemon_keeps_routing_and_status_shows_where_it_is_wrong() {
    let db = crm_db("status").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = own_rules(dir.path());
    let cfg = example_config_with(dir.path(), &db.cfg.database.url, &[]);
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace(&rules_dir().display().to_string(), &rules.display().to_string());
    std::fs::write(&cfg, text).expect("write");
    let mut child = Child(
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon"),
    );
    let first = db.insert_opportunity("before the edit", "DN", "retail").await;
    db.wait_owned(&first, Duration::from_secs(10)).await;

    // The admin saves a typo.
    let people = rules.join("01-people.toml");
    std::fs::write(
        &people,
        std::fs::read_to_string(&people).expect("read").replacen("max_open = 400", "max_opn = 400", 1),
    )
    .expect("save");
    let status = || Command::new(BIN).args(["status", "-c"]).arg(&cfg).output().expect("status");
    let last = std::cell::RefCell::new(None);
    let shown = holds_within_blocking(Duration::from_secs(10), || {
        let out = status();
        let refused = String::from_utf8_lossy(&out.stdout).contains("latest refusal");
        *last.borrow_mut() = Some(out);
        refused
    });
    let out = last.into_inner().expect("status ran");
    assert!(shown, "status shows the refused reload: {}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("daemon: running"), "{text}");
    let line =
        std::fs::read_to_string(&people).expect("read").lines().position(|l| l.starts_with("max_opn")).expect("line")
            + 1;
    assert!(
        text.contains(&format!("01-people.toml:{line}:1: member[0].max_opn: unknown field `max_opn`")),
        "file:line:column and the key: {text}"
    );

    // Routing goes on with the last good rules.
    let second = db.insert_opportunity("after the bad edit", "DN", "retail").await;
    db.wait_owned(&second, Duration::from_secs(5)).await;

    // The fix is picked up: one more reload, and the new version routes.
    std::fs::write(
        &people,
        std::fs::read_to_string(&people).expect("read").replacen("max_opn = 400", "max_open = 399", 1),
    )
    .expect("fix");
    let json = || {
        let out = Command::new(BIN).args(["status", "--json", "-c"]).arg(&cfg).output().expect("status --json");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("status --json prints JSON")
    };
    let reloads_before = json()["daemon"]["reloads"].as_i64().expect("reloads");
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    let loaded = holds_within_blocking(Duration::from_secs(10), || {
        let report = json();
        let reloaded = report["daemon"]["reloads"].as_i64() > Some(reloads_before);
        *last.borrow_mut() = report;
        reloaded
    });
    let report = last.into_inner();
    assert!(loaded, "the fix is loaded: {report}");
    assert!(
        report["daemon"]["last_refused"].is_null(),
        "the refusal is history once good rules are in force: {report}"
    );
    assert_eq!(report["healthy"], true, "{report}");
    let text = String::from_utf8_lossy(&status().stdout).to_string();
    assert!(!text.contains("latest refusal"), "{text}");
    assert!(text.contains("paused in the rule files: 103 (Lê Văn Cường)"), "a paused member shows as paused: {text}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    assert_eq!(child.0.wait().expect("exit").code(), Some(0));
}

/// The rules version the daemon with this pid reports, once it does.
async fn version_reported_by(db: &TestDb, pid: u32) -> String {
    let version = std::cell::RefCell::new(None);
    wait_until("the daemon reports its rules", Duration::from_secs(10), || async {
        let row = db
            .client
            .query_opt("SELECT rules_version FROM oppty_router.daemon_status WHERE pid = $1", &[&(pid as i32)])
            .await
            .expect("daemon_status");
        *version.borrow_mut() = row.and_then(|r| r.get::<_, Option<String>>(0));
        version.borrow().is_some()
    })
    .await;
    version.into_inner().expect("reported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_keeps_the_version_of_the_same_rules_and_numbers_new_ones_after_it() {
    let db = crm_db("versions").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = example_config_with(dir.path(), &db.cfg.database.url, &[]);
    let (child, logs) = start_daemon(&cfg);
    let first = version_reported_by(&db, child.0.id()).await;
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    logs.wait_for("cause=\"SIGHUP\"", Duration::from_secs(10)).await;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let logs = logs.join().expect("logs");
    assert!(logs.contains("rules reloaded: no change") && logs.contains("cause=\"SIGHUP\""), "{logs}");
    drop(child);

    // The same files, a new process: the same version.
    let (child, logs) = start_daemon(&cfg);
    let second = version_reported_by(&db, child.0.id()).await;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let logs = logs.join().expect("logs");
    assert_eq!(first, second, "identical content keeps its version:\n{logs}");
    drop(child);

    // Other rules, a new process: the next number, never one used before.
    let rules = dir.path().join("rules");
    copy_rules(&rules_dir(), &rules);
    let people = rules.join("01-people.toml");
    std::fs::write(&people, std::fs::read_to_string(&people).expect("read").replacen("weight = 2 ", "weight = 5 ", 1))
        .expect("edit");
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace(&rules_dir().display().to_string(), &rules.display().to_string());
    std::fs::write(&cfg, text).expect("write");
    let (child, logs) = start_daemon(&cfg);
    let third = version_reported_by(&db, child.0.id()).await;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let logs = logs.join().expect("logs");
    let seq = |v: &str| v.split_once('-').map(|(s, h)| (s.parse::<u64>().expect("sequence"), h.to_string()));
    let ((a, ha), (c, hc)) = (seq(&first).expect("version"), seq(&third).expect("version"));
    assert!(c == a + 1 && ha != hc, "{first} then {third}:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_file_tests_run_against_the_members_the_crm_adds() {
    let db = crm_db("dirtests").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = own_rules(dir.path());
    // 305 is in Đà Nẵng's team in the CRM only (`directory.team_members`), not in the files.
    let test = |member: &str| {
        format!(
            "[[test]]\nname = \"Đà Nẵng's third member takes the next one\"\npipeline = \"retail\"\n\
             fields = {{ province = \"DN\" }}\nopen = {{ \"301\" = 9, \"302\" = 9 }}\nexpect = {{ member = \"{member}\" }}\n"
        )
    };
    std::fs::write(rules.join("90-crm-members.toml"), test("305")).expect("write the test");
    let cfg = example_config_with(dir.path(), &db.cfg.database.url, &[]);
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace(&rules_dir().display().to_string(), &rules.display().to_string());
    std::fs::write(&cfg, text).expect("write");
    let check = |offline: bool| {
        let mut c = Command::new(BIN);
        c.arg("check");
        if offline {
            c.arg("--offline");
        }
        let out = c.arg("-c").arg(&cfg).output().expect("check");
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, text) = check(true);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("rule-file test(s) not run: they run against the rules with the CRM's directory"), "{text}");
    let (code, text) = check(false);
    assert_eq!(code, Some(0), "the test passes with the CRM's members: {text}");
    assert!(text.contains("rules OK with it, rule-file tests included"), "{text}");

    // The daemon starts with them too.
    let (child, logs) = start_daemon(&cfg);
    version_reported_by(&db, child.0.id()).await;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let logs = logs.join().expect("logs");
    assert!(logs.contains("shut down cleanly"), "{logs}");
    drop(child);

    // A test that really fails says so, in one readable line, and the daemon refuses to start.
    std::fs::write(rules.join("90-crm-members.toml"), test("302")).expect("write the test");
    let (code, text) = check(false);
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("90-crm-members.toml:2:8: test `Đà Nẵng's third member takes the next one`: member: expected 302, got 305 ("),
        "{text}"
    );
    let (mut child, logs) = start_daemon(&cfg);
    let Some(status) = exited_within(&mut child, Duration::from_secs(20)) else {
        signal(&child, nix::sys::signal::Signal::SIGTERM);
        panic!("the daemon did not refuse the rules: {}", logs.join().expect("logs"));
    };
    let logs = logs.join().expect("logs");
    assert_eq!(status.code(), Some(78), "a provisional set never routes: {logs}");
    assert!(logs.contains("member: expected 302, got 305"), "{logs}");
}

#[test]
fn the_demo_tells_the_story_a_reload_mid_run_a_reclaim_caps_held_fallbacks_with_reasons_and_a_report() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oppty-router"))
        .args(["demo", "--seconds", "4", "--rate", "150", "--backlog", "2000"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "01-people.toml edited and saved by an admin: 203 Vũ Thị Giang's daily cap raised from 50 to 80",
        "── rules reloaded without a restart: version 1-",
        "reclaimed by the sweeper: 3",
        "fairness within each team",
        "corporate-junior    1.00 / Gini 0.000",
        "203 Vũ Thị Giang             ",
        "no team (no team of the pipeline covers province = `CT`)",
        "still unowned: 0; dead-lettered events: 0",
        "opportunities replayed from what the router saw, 0 would change",
    ] {
        assert!(text.contains(line), "expected `{line}` in the demo's output:\n{text}");
    }
    let page =
        text.lines().find_map(|l| l.split("`oppty-router report --html FILE`): ").nth(1)).expect("the page's path");
    let html = std::fs::read_to_string(page.trim()).expect("the report page");
    assert!(html.contains("<svg id=\"load\"") && html.contains("corporate/junior-for-the-rest"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_is_said_once_in_the_servers_words_not_at_every_reconnect() {
    let db = crm_db("said_once").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = example_config_with(
        dir.path(),
        &db.cfg.database.url,
        &[("poll_interval = \"500ms\"", "poll_interval = \"100ms\"")],
    );
    let (mut child, reader) = start_daemon(&cfg);
    // Three times: the daemon's sessions are ended by an administrator, and it reconnects.
    for round in 0..3 {
        let opp = db.insert_opportunity(&format!("round {round}"), "DN", "retail").await;
        db.wait_owned(&opp, Duration::from_secs(20)).await;
        db.count(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name LIKE 'oppty-router%' AND pid <> pg_backend_pid()",
            db.name
        ))
        .await;
    }
    let opp = db.insert_opportunity("after the reconnects", "DN", "retail").await;
    db.wait_owned(&opp, Duration::from_secs(20)).await;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let _ = child.0.wait();
    let logs = reader.join().expect("read logs");
    assert!(logs.matches("database session lost").count() >= 3, "{logs}");
    assert_eq!(logs.matches("connected as a superuser").count(), 1, "said once a process:\n{logs}");
    assert!(!logs.contains("error=db error"), "every error in the server's words:\n{logs}");
}
