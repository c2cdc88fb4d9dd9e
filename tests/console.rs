//! The web console over HTTP, on a real PostgreSQL with a daemon routing: an admin logs in and sees
//! what `status` sees; every write needs a session, its CSRF token and a same-origin request;
//! what the CRM or a rule file holds is shown escaped.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use console::accounts::{add_user, Role};
use tokio_util::sync::CancellationToken;

/// An answer: its status, its header lines (lower-case names), its body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to the console (the connection closed after it).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the console");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    std::io::Write::write_all(&mut s, req.as_bytes()).expect("send");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer { status, headers, body: body.to_string() }
}

/// A console over `db`, with an editor `lan` and a viewer `minh`; its port.
async fn console_over(db: &TestDb, dir: &std::path::Path) -> (u16, CancellationToken) {
    let users = dir.join("console-users.toml");
    add_user(&users, "lan", Role::Editor, "lan's long password").expect("editor");
    add_user(&users, "minh", Role::Viewer, "minh's long password").expect("viewer");
    let mut cfg = db.cfg.clone();
    cfg.console.users = users;
    let console = Arc::new(console::Console::new(Arc::new(cfg)).expect("the console starts"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = CancellationToken::new();
    tokio::spawn(console::serve_on(console, listener, stop.clone()));
    (port, stop)
}

/// Log in; the session cookie (`name=value`) to send back.
fn log_in(port: u16, name: &str, password: &str) -> String {
    let body = format!("name={name}&password={}", password.replace(' ', "+").replace('\'', "%27"));
    let a = request(port, "POST", "/login", &[("Origin", &format!("http://127.0.0.1:{port}"))], &body);
    assert_eq!(a.status, 303, "logged in: {}", a.body);
    let cookie = a.header("set-cookie").expect("a session cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    cookie.split(';').next().expect("name=value").to_string()
}

/// The CSRF token a page of this session carries.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().expect("its value").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_logs_in_and_sees_what_is_in_force_the_queue_and_the_last_hours_decisions() {
    let db = crm_db("console_overview").await;
    db.install().await;
    let daemon = db.start();
    let opp = db.insert_opportunity("Home loan", "HN", "retail").await;
    db.wait_owned(&opp, Duration::from_secs(5)).await;
    let version = wait_for_version(&db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, stop) = console_over(&db, dir.path()).await;

    let first = request(port, "GET", "/", &[], "");
    assert_eq!((first.status, first.header("location")), (303, Some("/login")), "not logged in: to the login page");
    let wrong = request(port, "POST", "/login", &[], "name=lan&password=not+hers+at+all");
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong name or password."), "{}", wrong.body);

    let cookie = log_in(port, "lan", "lan's long password");
    let page = request(port, "GET", "/", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&version), "the version in force, as status says it ({version}): {}", page.body);
    assert!(page.body.contains("Decisions in the last hour") && page.body.contains("<td>rule</td>"), "{}", page.body);
    assert!(page.body.contains("lan (editor)"), "who is logged in");
    for (h, want) in [
        ("content-security-policy", "default-src 'self'"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        assert!(page.header(h).is_some_and(|v| v.contains(want)), "{h}: {:?}", page.header(h));
    }
    let fragment = request(port, "GET", "/overview", &[("Cookie", &cookie)], "");
    assert_eq!(fragment.status, 200);
    assert!(
        fragment.body.starts_with("<section id=\"overview\"") && fragment.body.contains(&version),
        "{}",
        fragment.body
    );
    assert_eq!(request(port, "GET", "/overview", &[], "").status, 401, "the live section needs a session too");
    let (status, _) = oppty_router::status::status(&db.client, &db.cfg).await.expect("status");
    assert!(status.contains("decisions in the last hour: rule 1"), "status says the same: {status}");
    let js = request(port, "GET", "/assets/console.js", &[], "");
    assert!(js.status == 200 && js.body.contains("data-refresh"), "the script is the console's own");
    stop.cancel();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_session_its_token_or_from_another_site_is_refused() {
    let db = crm_db("console_writes").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, stop) = console_over(&db, dir.path()).await;
    let cookie = log_in(port, "minh", "minh's long password");
    let page = request(port, "GET", "/", &[("Cookie", &cookie)], "");
    let csrf = csrf_of(&page.body);
    let origin = format!("http://127.0.0.1:{port}");
    let token = format!("csrf={csrf}");

    assert_eq!(request(port, "POST", "/logout", &[], &token).status, 401, "no session");
    assert_eq!(request(port, "POST", "/logout", &[("Cookie", &cookie)], "csrf=").status, 403, "no token");
    let other = request(port, "POST", "/logout", &[("Cookie", &cookie), ("Origin", "https://evil.example")], &token);
    assert_eq!(other.status, 403, "another site's form");
    let fetched = request(port, "POST", "/logout", &[("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")], &token);
    assert_eq!(fetched.status, 403, "another site's script");
    let login_elsewhere = request(
        port,
        "POST",
        "/login",
        &[("Origin", "https://evil.example")],
        "name=minh&password=minh%27s+long+password",
    );
    assert_eq!(login_elsewhere.status, 403, "a login from another site");
    assert_eq!(request(port, "GET", "/", &[("Cookie", &cookie)], "").status, 200, "the session is still open");

    let out = request(port, "POST", "/logout", &[("Cookie", &cookie), ("Origin", &origin)], &token);
    assert_eq!((out.status, out.header("location")), (303, Some("/login")));
    assert_eq!(request(port, "GET", "/", &[("Cookie", &cookie)], "").status, 303, "logged out: the session is gone");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_database_holds_is_shown_escaped_never_as_markup() {
    let db = crm_db("console_escape").await;
    db.install().await;
    let daemon = db.start();
    let opp = db.insert_opportunity("<b>loan</b>", "HN", "retail").await;
    db.wait_owned(&opp, Duration::from_secs(5)).await;
    wait_for_version(&db).await;
    // A refusal whose words hold markup (as a rule file's text may).
    db.client
        .execute(
            "UPDATE oppty_router.daemon_status SET last_error = $1, last_error_at = now()",
            &[&"50-x.toml:1:1: team.id: `<script>alert(1)</script>` is not a team"],
        )
        .await
        .expect("a hostile refusal");
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, stop) = console_over(&db, dir.path()).await;
    let cookie = log_in(port, "lan", "lan's long password");
    let page = request(port, "GET", "/", &[("Cookie", &cookie)], "").body;
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "shown as text: {page}");
    stop.cancel();
    daemon.stop().await;
}

/// The version the leading daemon reports, once it does.
async fn wait_for_version(db: &TestDb) -> String {
    wait_until("the daemon reports its rules", Duration::from_secs(10), || async {
        rules_version(&db.client).await.is_some()
    })
    .await;
    rules_version(&db.client).await.expect("reported")
}

#[test]
fn an_account_is_added_from_the_shell_and_the_console_without_one_says_how() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_file(dir.path(), "host=/nonexistent dbname=crm", "");
    let bin = env!("CARGO_BIN_EXE_oppty-router");
    let out = std::process::Command::new(bin).args(["console", "-c"]).arg(&cfg).output().expect("console");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "no account: a person must add one: {said}");
    assert!(said.contains("console-users.toml") && said.contains("console user add NAME --role editor"), "{said}");

    let mut add = std::process::Command::new(bin)
        .args(["console", "user", "add", "lan", "--role", "editor", "-c"])
        .arg(&cfg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("user add");
    std::io::Write::write_all(add.stdin.as_mut().expect("stdin"), b"a long enough password\n").expect("password");
    let out = add.wait_with_output().expect("added");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let users =
        std::fs::read_to_string(dir.path().join("console-users.toml")).expect("the accounts file, beside the config");
    assert!(
        users.contains("name = \"lan\"") && users.contains("$argon2id$") && !users.contains("long enough"),
        "{users}"
    );
    let wrong = std::process::Command::new(bin)
        .args(["console", "user", "add", "minh", "--role", "admin", "-c"])
        .arg(&cfg)
        .output()
        .expect("a wrong role");
    assert_eq!(wrong.status.code(), Some(2), "clap refuses a role that is not one");
}
