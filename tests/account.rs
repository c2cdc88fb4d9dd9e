//! A true account (#28): what the router tells an admin — the log, `status` — says what really
//! happened. Only the daemon says a set is in force; a refusal is one ERROR with every problem
//! where the files write it, kept in `status` until a later set goes in force; versions count the
//! sets in force, and the same content keeps its version.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

/// The example config over a copy of the example rules, both in `dir`.
fn own_setup(dir: &std::path::Path, url: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let rules = dir.join("rules");
    copy_rules(&rules_dir(), &rules);
    let text = devkit::demo::EXAMPLE_CONFIG
        .replace("host=/var/run/postgresql dbname=crm user=oppty_router", url)
        .replace("/etc/oppty-router/rules", &rules.display().to_string())
        .replace("reload_settle = \"1s\"", "reload_settle = \"300ms\"");
    let cfg = dir.join("oppty-router.toml");
    std::fs::write(&cfg, text).expect("write config");
    (cfg, rules)
}

fn status_json(cfg: &std::path::Path) -> serde_json::Value {
    let out = Command::new(BIN).args(["status", "--json", "-c"]).arg(cfg).output().expect("status --json");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn status_text(cfg: &std::path::Path) -> String {
    let out = Command::new(BIN).args(["status", "-c"]).arg(cfg).output().expect("status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (10 s at most) until `status --json` satisfies `ok`; returns it.
fn status_until(cfg: &std::path::Path, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    let held = holds_within_blocking(Duration::from_secs(10), || {
        *last.borrow_mut() = status_json(cfg);
        ok(&last.borrow())
    });
    let s = last.into_inner();
    assert!(held, "{what} within 10 s: {s}");
    s
}

fn version(s: &serde_json::Value) -> String {
    s["daemon"]["rules_version"].as_str().unwrap_or_default().to_string()
}

fn refused(s: &serde_json::Value) -> i64 {
    s["daemon"]["refused_reloads"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_naming_a_user_the_crm_lacks_is_refused_where_it_is_written_until_good_rules_go_in_force() {
    let db = crm_db("account_refused").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, rules) = own_setup(dir.path(), &db.cfg.database.url);
    let (child, logs) = start_daemon(&cfg);
    let first = status_until(&cfg, "the daemon leads", |s| !version(s).is_empty());
    let v1 = version(&first);

    // Eight edits over a few seconds, each naming member 999, whom the CRM does not have.
    let new = rules.join("90-new.toml");
    for i in 0..8 {
        std::fs::write(&new, format!("[[member]]\nid = \"999\"\nname = \"Nobody {i}\"\n")).expect("save");
        status_until(&cfg, "each edit is refused", |s| refused(s) == i + 1);
    }
    let text = status_text(&cfg);
    assert!(text.contains(&format!("rules: version {v1} in force since")), "{text}");
    assert!(text.contains("latest refusal"), "status keeps the refusal: {text}");
    assert!(text.contains("90-new.toml:2:6: member[0].id: `999` is not a user in"), "file, line, key: {text}");

    // SIGHUP with the file unchanged: looked at again, and still refused; status still says so.
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    let s = status_until(&cfg, "the SIGHUP's refusal", |s| refused(s) == 9);
    assert_eq!(version(&s), v1, "nothing went in force");
    assert!(!s["daemon"]["last_refused"].is_null(), "{s}");

    // Back to the rules in force: the refusal is history, and the version is the same.
    std::fs::remove_file(&new).expect("revert");
    let s = status_until(&cfg, "the revert", |s| s["daemon"]["last_refused"].is_null());
    assert_eq!(version(&s), v1, "the same content keeps its version");

    // A good edit goes in force as the next version.
    let people = rules.join("01-people.toml");
    let text = std::fs::read_to_string(&people).expect("read").replacen("weight = 2 ", "weight = 3 ", 1);
    std::fs::write(&people, text).expect("a good edit");
    let s = status_until(&cfg, "the good edit in force", |s| version(s) != v1);
    let seq = |v: &str| v.split_once('-').and_then(|(n, _)| n.parse::<u64>().ok()).expect("sequence");
    assert_eq!(seq(&version(&s)), seq(&v1) + 1, "versions count the sets in force: {v1} then {}", version(&s));
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let logs = logs.join().expect("logs");
    drop(child);

    let lines = |needle: &str| logs.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("rules reloaded from"), 0, "a candidate is never said to be reloaded: {logs}");
    assert_eq!(
        lines(" in force from="),
        2,
        "two sets went in force (the first with the CRM's directory, the good edit), each said once: {logs}"
    );
    assert_eq!(lines(&format!("rules {} in force", version(&s))), 1, "by the daemon, with its version: {logs}");
    assert_eq!(lines("ERROR"), 9, "one ERROR per refusal (8 edits, 1 SIGHUP): {logs}");
    assert_eq!(lines("new rules refused by the CRM"), 9, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_huge_broken_file_is_judged_exits_cleanly_within_a_second() {
    let db = crm_db("account_sigterm").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, rules) = own_setup(dir.path(), &db.cfg.database.url);
    let (child, logs) = start_daemon_logging(&cfg, Some("info,oppty_router::reload=debug"));
    status_until(&cfg, "the daemon leads", |s| !version(s).is_empty());
    let big: String = (0..20_000)
        .map(|i| format!("[[team]]\nid = \"t{i}\"\nmembers = [\"nobody-{i}\"]\npipelines = [\"retail\"]\n\n"))
        .collect();
    std::fs::write(rules.join("50-big.toml"), big).expect("a huge broken save");
    // The save is being read and judged when the signal comes.
    logs.wait_for("reading the rule files", Duration::from_secs(10)).await;
    let asked = Instant::now();
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let mut child = child;
    let code = child.0.wait().expect("exit").code();
    let took = asked.elapsed();
    let logs = logs.join().expect("logs");
    assert_eq!(code, Some(0), "{logs}");
    assert!(took < Duration::from_secs(1), "exited {took:?} after SIGTERM:\n{logs}");
}

fn run(cfg: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).arg("-c").arg(cfg).output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_since_is_range_checked_a_requeue_names_the_ids_it_missed_and_a_closed_pipe_is_quiet() {
    let db = crm_db("account_cli").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, rules) = own_setup(dir.path(), &db.cfg.database.url);
    for args in [
        &["backfill", "--since", "100000000d"][..],
        &["requeue", "--unassigned", "--since", "100000000d"],
        &["report", "--since", "100000000d"],
        &["simulate", "--rules", rules.to_str().expect("path"), "--since", "100000000d"],
    ] {
        let (code, _, err) = run(&cfg, args);
        assert_eq!(code, Some(2), "{args:?}: a usage error, never a panic: {err}");
        assert!(err.contains("`100000000d` reaches back too far; use at most 36500d"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }

    // Requeue by id: the ids that matched nothing are named; none matching at all is a failure.
    let (code, out, err) = run(&cfg, &["requeue", "--unassigned", "--id", "424242", "--id", " 77 "]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("queued 0 unassigned opportunities again"), "{out}");
    assert!(err.contains("--id 424242: matched nothing: not unassigned"), "{err}");
    assert!(err.contains("--id 77: matched nothing"), "a padded id is read trimmed: {err}");

    // A reader that goes away (`| head`) ends the command quietly.
    let mut child = Command::new(BIN)
        .args(["report", "--json", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("report");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("report ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
}
