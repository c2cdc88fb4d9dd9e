//! The systemd service: the shipped unit verifies and is hardened (`systemd-analyze`), the daemon
//! tells systemd what it is doing (READY, STATUS, WATCHDOG, RELOADING, STOPPING), and it runs
//! under the unit's restrictions: a read-only file system with a private /tmp and no home
//! directories, an unprivileged user, no capabilities, no new privileges (emulated with a mount
//! namespace and `setpriv`, as systemd would set them up; the system call filter and address
//! family restrictions are systemd's own and are only checked by `systemd-analyze`).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/oppty-router.service");
const CONSOLE_UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/oppty-router-console.service");

/// A fresh directory outside /tmp (hidden by PrivateTmp), readable by the service user.
fn work_dir(label: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("service-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn config_at(dir: &Path, url: &str) -> PathBuf {
    config_with_rules(dir, url, &rules_dir())
}

fn config_with_rules(dir: &Path, url: &str, rules: &Path) -> PathBuf {
    let text = devkit::demo::EXAMPLE_CONFIG
        .replace("host=/var/run/postgresql dbname=crm user=oppty_router", url)
        .replace("/etc/oppty-router/rules", &rules.display().to_string());
    let path = dir.join("oppty-router.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze is missing: `apt-get install systemd` (`cargo xtask test` does)")
}

/// The unit at `path` verifies (its commands pointed at the binary under test) and systemd rates
/// its exposure at most `most`; its text.
fn verified_and_rated(path: &str, most: f64) -> String {
    let name = Path::new(path).file_name().and_then(|n| n.to_str()).expect("a unit name").to_string();
    let dir = work_dir(&format!("verify-{name}"));
    let unit = dir.join(&name);
    let text = std::fs::read_to_string(path).expect("the unit");
    std::fs::write(&unit, text.replace("/usr/bin/oppty-router", BIN)).expect("write the unit");
    let out = systemd_analyze(&["verify", &unit.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify {name}: {stderr}");

    let out = systemd_analyze(&["security", "--offline=true", path]);
    let rated = String::from_utf8_lossy(&out.stdout);
    let level: f64 = rated
        .lines()
        .find_map(|l| l.split(&format!("Overall exposure level for {name}:")).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an overall exposure level in:\n{rated}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(level <= most, "{name}: exposure {level} > {most}:\n{rated}");
    text
}

#[test]
fn the_shipped_units_verify_and_systemd_rates_each_exposure_at_most_1_5() {
    let daemon = verified_and_rated(UNIT, 1.5);
    for setting in
        ["WatchdogSec=", "TimeoutStartSec=5min", "RestartPreventExitStatus=78", "SystemCallFilter=@system-service"]
    {
        assert!(daemon.contains(setting), "the daemon's unit sets {setting}");
    }
    assert!(!daemon.contains("ReadWritePaths"), "the daemon writes nothing to the file system");
    let console = verified_and_rated(CONSOLE_UNIT, 1.5);
    for setting in [
        "ExecStart=/usr/bin/oppty-router --config /etc/oppty-router/oppty-router.toml console",
        "RestartPreventExitStatus=78",
        "ReadWritePaths=/etc/oppty-router/rules\n",
        "SystemCallFilter=@system-service",
    ] {
        assert!(console.contains(setting), "the console's unit sets {setting}");
    }
}

/// Everything sent to a notify socket, one message per datagram.
fn notify_socket(dir: &Path) -> (PathBuf, mpsc::Receiver<String>) {
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            if tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                break;
            }
        }
    });
    (path, rx)
}

/// Wait for a message containing `want`; returns every message seen until then.
fn expect_message(rx: &mpsc::Receiver<String>, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(m.clone());
            if m.contains(want) {
                return;
            }
        }
    }
    panic!("no `{want}` from the daemon; it said: {seen:?}");
}

fn spawn_run(cfg: &Path, notify: &Path) -> Child {
    Child(
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(cfg)
            .env("NOTIFY_SOCKET", notify)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_systemd_it_is_ready_alive_reloading_and_stopping() {
    let db = crm_db("notify").await;
    db.install().await;
    let dir = work_dir("notify");
    let cfg = config_at(&dir, &db.cfg.database.url);
    let (notify, rx) = notify_socket(&dir);
    let mut child = spawn_run(&cfg, &notify);
    let mut seen = Vec::new();
    expect_message(&rx, "READY=1", &mut seen);
    assert!(seen.last().is_some_and(|m| m.contains("STATUS=routing with rules ")), "READY with a status: {seen:?}");
    expect_message(&rx, "WATCHDOG=1", &mut seen);
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    expect_message(&rx, "RELOADING=1", &mut seen);
    expect_message(&rx, "READY=1", &mut seen);
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    expect_message(&rx, "STOPPING=1", &mut seen);
    assert_eq!(child.0.wait().expect("exit").code(), Some(0));

    // A database that cannot be reached: the status says so while it retries.
    let cfg = config_at(&dir, "host=127.0.0.1 port=9 user=nobody dbname=nothing connect_timeout=1");
    let child = spawn_run(&cfg, &notify);
    let mut seen = Vec::new();
    expect_message(&rx, "STATUS=waiting for the database", &mut seen);
    signal(&child, nix::sys::signal::Signal::SIGTERM);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_routes_under_the_units_restrictions() {
    assert!(nix::unistd::Uid::effective().is_root(), "this test sets up the unit's sandbox and must run as root");
    let db = crm_db("sandbox").await;
    db.install().await;
    // The binary, the config and the rules where the service user reaches them, wherever the
    // checkout is, and the sandbox leaves them visible.
    let stage = ServiceDir::new("sandbox");
    let dir = stage.0.clone();
    let bin = stage.binary();
    // The server's socket lives under /tmp, which the sandbox replaces: bind it outside first.
    let pg: tokio_postgres::Config = db.cfg.database.url.parse().expect("url");
    let (url, bind) = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Unix(sock)) => {
            let inside = dir.join("pg");
            std::fs::create_dir(&inside).expect("mkdir");
            let url = db.cfg.database.url.replace(&sock.display().to_string(), &inside.display().to_string());
            (url, format!("mount --bind '{}' '{}'", sock.display(), inside.display()))
        }
        _ => (db.cfg.database.url.clone(), String::new()),
    };
    let cfg = config_with_rules(&dir, &url, &stage.rules());
    let script = format!(
        "set -e; mount --make-rprivate /; {bind}; \
         mount -o remount,bind,ro /; mount -t tmpfs -o mode=1777 tmpfs /tmp; \
         mount -t tmpfs tmpfs /root; mount -t tmpfs tmpfs /home; \
         exec setpriv --reuid=postgres --regid=postgres --clear-groups --bounding-set=-all --inh-caps=-all \
         --no-new-privs '{}' run -c '{}'",
        bin.display(),
        cfg.display()
    );
    Command::new("setpriv")
        .arg("--version")
        .output()
        .expect("setpriv is missing: `apt-get install util-linux` (`cargo xtask test` does)");
    let mut child = Child(
        Command::new("unshare")
            .args(["--mount", "sh", "-c", &script])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare is missing: `apt-get install util-linux` (`cargo xtask test` does)"),
    );
    let logs = Logs::of(child.0.stderr.take().expect("stderr"));
    let opp = db.insert_opportunity("routed from inside the sandbox", "HCM", "retail").await;
    let owned = tokio::time::timeout(Duration::from_secs(20), db.wait_owned(&opp, Duration::from_secs(20))).await;
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    // The reload the signal asks for is read and judged (its files read under the sandbox).
    logs.wait_for("SIGHUP", Duration::from_secs(10)).await;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let code = child.0.wait().expect("exit").code();
    let logs = logs.join().expect("logs");
    assert!(owned.is_ok(), "routed under the sandbox; the daemon said:\n{logs}");
    assert_eq!(code, Some(0), "a clean stop; the daemon said:\n{logs}");
    for bad in ["Read-only file system", "Permission denied", "Operation not permitted", "ERROR"] {
        assert!(!logs.contains(bad), "`{bad}` under the sandbox:\n{logs}");
    }
}

/// A replica of the daemon, and its logs as they come.
fn spawn_replica(cfg: &Path) -> (Child, Logs) {
    let mut child = Child(
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(cfg)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a replica"),
    );
    let logs = Logs::of(child.0.stderr.take().expect("stderr"));
    (child, logs)
}

async fn leader_pid(db: &TestDb) -> Option<i32> {
    let row = db.client.query_opt("SELECT pid FROM oppty_router.daemon_status WHERE stopped_at IS NULL", &[]).await;
    row.expect("daemon_status").map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_taken_over_by_a_standby_within_its_lease() {
    let db = crm_db("frozen").await;
    db.install().await;
    let dir = work_dir("frozen");
    let cfg = config_at(&dir, &db.cfg.database.url);
    let text = std::fs::read_to_string(&cfg).expect("config");
    let text = text
        .replace("leader_lease = \"5s\"", "leader_lease = \"2s\"")
        .replace("poll_interval = \"500ms\"", "poll_interval = \"100ms\"");
    std::fs::write(&cfg, text).expect("config");
    let (a, a_logs) = spawn_replica(&cfg);
    let first = db.insert_opportunity("for the first leader", "HCM", "retail").await;
    db.wait_owned(&first, Duration::from_secs(15)).await;
    wait_until("A reports itself as the leader", Duration::from_secs(15), || async {
        leader_pid(&db).await == Some(a.0.id() as i32)
    })
    .await;
    let (b, b_logs) = spawn_replica(&cfg);
    b_logs.wait_for("standing by", Duration::from_secs(10)).await;

    // Freeze the leader: its connections stay open (the kernel still answers for it).
    signal(&a, nix::sys::signal::Signal::SIGSTOP);
    let frozen_at = Instant::now();
    let during = db.insert_opportunity("while the leader is frozen", "HCM", "retail").await;
    let (_, took) = db.wait_owned(&during, Duration::from_secs(15)).await;
    println!("SIGSTOP: routing resumed {:?} after the freeze (lease 2 s)", frozen_at.elapsed());
    assert!(took < Duration::from_secs(6), "taken over within the lease and a few polls: {took:?}");
    assert_eq!(leader_pid(&db).await, Some(b.0.id() as i32), "B leads now");

    // The old leader wakes: its session is gone; it stands by and routes nothing twice.
    signal(&a, nix::sys::signal::Signal::SIGCONT);
    let after = db.insert_opportunity("after the thaw", "HCM", "retail").await;
    db.wait_owned(&after, Duration::from_secs(10)).await;
    // The barrier: A has found its session gone and stands by (it never stood by before).
    a_logs.wait_for("standing by", Duration::from_secs(10)).await;
    db.assert_routed_once(&[&first, &during, &after]).await;

    // kill -9 of the leader: its connections close, the server releases the lock at once.
    let mut b = b;
    signal(&b, nix::sys::signal::Signal::SIGKILL);
    let _ = b.0.wait();
    let killed_at = Instant::now();
    let last = db.insert_opportunity("after kill -9", "HCM", "retail").await;
    db.wait_owned(&last, Duration::from_secs(10)).await;
    println!("kill -9: routing resumed {:?} after the kill", killed_at.elapsed());
    assert_eq!(leader_pid(&db).await, Some(a.0.id() as i32), "A leads again");
    let mut a = a;
    signal(&a, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.0.wait().expect("exit").code(), Some(0), "the thawed replica stops cleanly");
}
