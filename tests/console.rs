//! The web console over HTTP, on a real PostgreSQL with a daemon routing: an admin logs in and sees
//! what `status` sees; every write needs a session, its CSRF token and a same-origin request;
//! what the CRM or a rule file holds is shown escaped.

mod common;

use std::time::Duration;

use common::web::{console_on, instagram_lead, rule_that_routed};
use common::*;
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
    answer(&text)
}

/// An HTTP/1.1 answer as read.
fn answer(text: &str) -> Answer {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
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
    console_on(db.cfg.clone(), dir).await
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

    // Guessing a password: after five failures the name waits, even with the right password.
    for _ in 0..5 {
        assert_eq!(request(port, "POST", "/login", &[], "name=lan&password=a+guess").status, 401);
    }
    let held = request(port, "POST", "/login", &[], "name=lan&password=lan%27s+long+password");
    assert_eq!(held.status, 429, "{}", held.body);
    assert!(held.body.contains("Too many failed logins"), "{}", held.body);
    assert_eq!(
        request(port, "POST", "/login", &[], "name=minh&password=minh%27s+long+password").status,
        303,
        "another name logs in"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_moves_a_rule_up_saves_it_and_the_daemon_routes_by_it_while_a_broken_draft_saves_nothing() {
    let db = crm_db("console_move").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), &db.cfg.database.url, "");
    let retail = dir.path().join("rules/10-retail.toml");
    let before = std::fs::read_to_string(&retail).expect("the retail rules");
    let (daemon, logs) = start_daemon(&config);
    logs.wait_for("connected and leading", Duration::from_secs(20)).await;
    let kept = instagram_lead(&db, 101).await;
    assert_eq!(rule_that_routed(&db, &kept).await, "keep-the-relationship", "rule 1 wins as the files stand");

    let cfg = oppty_router::config::Config::load(&config).expect("the config");
    let (port, stop) = console_on(cfg, dir.path()).await;
    let origin = format!("http://127.0.0.1:{port}");
    let viewer = log_in(port, "minh", "minh's long password");
    let seen = request(port, "GET", "/pipelines", &[("Cookie", &viewer)], "");
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(seen.body.contains("keep-the-relationship") && seen.body.contains("Pick the member"), "{}", seen.body);
    assert!(!seen.body.contains("/pipelines/move"), "a viewer gets no controls");
    let csrf = csrf_of(&seen.body);
    let by_viewer = format!("csrf={csrf}&pipeline=retail&rule=instagram-to-digital&to=0");
    let refused = request(port, "POST", "/pipelines/move", &[("Cookie", &viewer), ("Origin", &origin)], &by_viewer);
    assert_eq!(refused.status, 403, "a viewer cannot change the rules");

    let editor = log_in(port, "lan", "lan's long password");
    let page = request(port, "GET", "/pipelines", &[("Cookie", &editor)], "");
    assert!(page.body.contains("aria-label=\"Move rule instagram-to-digital up\""), "keyboard controls: {}", page.body);
    let csrf = csrf_of(&page.body);
    let post =
        |path: &str, body: String| request(port, "POST", path, &[("Cookie", &editor), ("Origin", &origin)], &body);

    // Below the province rule, the Instagram rule is never reached: the file's own test fails.
    let down = post("/pipelines/move", format!("csrf={csrf}&pipeline=retail&rule=instagram-to-digital&to=2"));
    assert_eq!(down.status, 303, "{}", down.body);
    let broken = request(port, "GET", "/pipelines", &[("Cookie", &editor)], "").body;
    assert!(broken.contains("rule instagram-to-digital moved from position 2 to 3"), "{broken}");
    assert!(broken.contains("does not compile") && broken.contains("an Instagram lead is tagged"), "{broken}");
    let not_saved = post("/draft/save", format!("csrf={csrf}"));
    assert_eq!(not_saved.status, 422, "{}", not_saved.body);
    assert_eq!(std::fs::read_to_string(&retail).expect("read"), before, "nothing was saved");
    assert_eq!(post("/draft/discard", format!("csrf={csrf}")).status, 303);

    let up = post("/pipelines/move", format!("csrf={csrf}&pipeline=retail&rule=instagram-to-digital&to=0"));
    assert_eq!(up.status, 303, "{}", up.body);
    // Tried first: the lead kept by the relationship rule would go to the Instagram rule instead.
    let tried = request(port, "GET", &format!("/try?days=1&opp={kept}"), &[("Cookie", &editor)], "").body;
    assert!(tried.contains("data-load=\"/try/report?days=1\""), "the replay is loaded after the page: {tried}");
    let replay = request(port, "GET", "/try/report?days=1", &[("Cookie", &editor)], "").body;
    assert!(replay.starts_with("<section id=\"simulated\"") && replay.contains("would change owner"), "{replay}");
    let side = tried.split("<section id=\"explain\">").nth(1).expect("the side-by-side explain");
    let row = side.split("<th>Rule</th>").nth(1).and_then(|r| r.split("</tr>").next()).expect("the rule row");
    assert_eq!(row.matches("<td>").count(), 3, "decided, in force and draft side by side: {row}");
    assert!(
        row.find("keep-the-relationship") < row.rfind("instagram-to-digital")
            && row.matches("keep-the-relationship").count() == 2,
        "decided and in force by rule 1, the draft by the moved rule: {row}"
    );
    let saved = post("/draft/save", format!("csrf={csrf}"));
    assert_eq!(saved.status, 200, "{}", saved.body);
    let hash = saved.body.split("data-hash=\"").nth(1).and_then(|s| s.split('"').next()).expect("the hash").to_string();
    let after = std::fs::read_to_string(&retail).expect("read");
    let (social, relationship) = (after.find("# 2. Social-media leads"), after.find("# 1. A returning customer"));
    assert!(social < relationship, "the rule moved with its comment: {after}");
    assert_eq!(after.len(), before.len(), "nothing else changed");
    let journal = std::fs::read_to_string(dir.path().join("console-journal.jsonl")).expect("the journal");
    assert!(journal.contains("\"user\":\"lan\"") && journal.contains("instagram-to-digital moved"), "{journal}");
    wait_until("the saved rules go in force", Duration::from_secs(20), || async {
        rules_version(&db.client).await.is_some_and(|v| v.ends_with(&hash))
    })
    .await;
    let moved = instagram_lead(&db, 101).await;
    assert_eq!(rule_that_routed(&db, &moved).await, "instagram-to-digital", "the moved rule now comes first");
    stop.cancel();
    signal(&daemon, nix::sys::signal::Signal::SIGTERM);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_pauses_a_member_and_caps_another_in_a_draft_and_the_teams_page_says_whose_word_it_is() {
    let db = crm_db("console_teams").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, stop) = console_over(&db, dir.path()).await;
    let origin = format!("http://127.0.0.1:{port}");
    let editor = log_in(port, "lan", "lan's long password");
    let page = request(port, "GET", "/teams", &[("Cookie", &editor)], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Trần Thị Bình (102)") && page.body.contains("of 400 open"), "{}", page.body);
    assert!(page.body.contains("paused (rule files)"), "103 is paused in 01-people.toml: {}", page.body);
    let csrf = csrf_of(&page.body);
    let post =
        |body: String| request(port, "POST", "/teams/member", &[("Cookie", &editor), ("Origin", &origin)], &body);
    assert_eq!(post(format!("csrf={csrf}&member=301&key=paused&value=true&action=set")).status, 303);
    assert_eq!(post(format!("csrf={csrf}&member=302&key=max_open&value=25&action=set")).status, 303);
    let refused = post(format!("csrf={csrf}&member=302&key=max_open&value=lots&action=set"));
    assert_eq!(refused.status, 422, "a cap is a number: {}", refused.body);
    let after = request(port, "GET", "/teams", &[("Cookie", &editor)], "").body;
    let row = |id: &str| {
        after.split(&format!("({id})</td>")).nth(1).and_then(|r| r.split("</tr>").next()).unwrap_or("").to_string()
    };
    assert!(row("301").contains("paused (rule files)"), "the draft pauses 301: {}", row("301"));
    assert!(row("302").contains("of 25 open"), "the draft caps 302 at 25: {}", row("302"));
    let pipelines = request(port, "GET", "/pipelines", &[("Cookie", &editor)], "").body;
    assert!(pipelines.contains("member 301: paused") && pipelines.contains("member 302: max_open = 25"), "{pipelines}");
    // Pausing the member the files' own tests expect breaks the draft: the page says why, and
    // still shows the directory (the files on disk) so the change can be undone.
    assert_eq!(post(format!("csrf={csrf}&member=102&key=paused&value=true&action=set")).status, 303);
    let broken = request(port, "GET", "/teams", &[("Cookie", &editor)], "").body;
    assert!(broken.contains("Your draft does not compile") && broken.contains("Trần Thị Bình (102)"), "{broken}");
    assert_eq!(post(format!("csrf={csrf}&member=102&key=paused&action=remove")).status, 303);
    let mended = request(port, "GET", "/teams", &[("Cookie", &editor)], "").body;
    assert!(!mended.contains("does not compile"), "the pause lifted, the draft compiles again");
    let files = request(port, "GET", "/teams", &[("Cookie", &log_in(port, "minh", "minh's long password"))], "").body;
    assert!(!files.contains("/teams/member"), "a viewer gets no controls");
    assert!(files.contains("Đặng Văn Hải (301)</td><td>receiving"), "a viewer sees the files as they are: {files}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_console_with_the_login_it_prints_until_it_is_stopped() {
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_oppty-router"))
        .args(["demo", "--seconds", "1", "--rate", "50", "--backlog", "200", "--console"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run the demo");
    let logs = Logs::of(demo.stdout.take().expect("stdout"));
    let demo = Child(demo);
    logs.wait_for("the console: http://", Duration::from_secs(120)).await;
    let line = logs.so_far().lines().find(|l| l.contains("the console: http://")).expect("the line").to_string();
    let address = line.split("http://").nth(1).and_then(|a| a.split('/').next()).expect("an address");
    let password = line.split("password ").nth(1).and_then(|p| p.split(')').next()).expect("a password");
    let port: u16 = address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let cookie = log_in(port, "demo", password);
    let page = request(port, "GET", "/pipelines", &[("Cookie", &cookie)], "");
    assert!(page.status == 200 && page.body.contains("keep-the-relationship"), "{}", page.body);
    assert!(page.body.contains("/pipelines/move"), "the demo's account is an editor");
    signal(&demo, nix::sys::signal::Signal::SIGINT);
    let mut demo = demo;
    let status = exited_within(&mut demo, Duration::from_secs(60)).expect("the demo stops on Ctrl-C");
    assert!(status.success(), "{}", logs.so_far());
    assert!(logs.so_far().contains("stopped the throwaway PostgreSQL"), "{}", logs.so_far());
}

/// One HTTPS request to the console, trusting `ca` (a PEM certificate) for `localhost`.
fn request_tls(port: u16, ca: &str, method: &str, path: &str, body: &str) -> Answer {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).expect("PEM")).expect("a root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("a TLS client");
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n");
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    std::io::Write::write_all(&mut tls, req.as_bytes()).expect("send over TLS");
    let mut raw = Vec::new();
    // A server may close without close_notify once it has answered: what was read is the answer.
    let _ = std::io::Read::read_to_end(&mut tls, &mut raw);
    answer(&String::from_utf8_lossy(&raw))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_console_answers_https_only_and_its_cookie_is_secure() {
    let db = crm_db("console_tls").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params").self_signed(&key).expect("cert");
    let (cert_file, key_file) = (dir.path().join("console.crt"), dir.path().join("console.key"));
    std::fs::write(&cert_file, cert.pem()).expect("cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("key");

    let mut wrong = db.cfg.clone();
    wrong.console.tls = Some((cert_file.clone(), dir.path().join("missing.key")));
    wrong.console.users = dir.path().join("console-users.toml");
    console::accounts::add_user(&wrong.console.users, "lan", console::accounts::Role::Editor, "lan's long password")
        .expect("an account");
    let refused = console::Console::new(std::sync::Arc::new(wrong)).err().expect("a missing key is refused");
    assert!(
        refused.to_string().starts_with("console.tls_key:") && refused.to_string().contains("missing.key"),
        "{refused}"
    );

    let mut cfg = db.cfg.clone();
    cfg.console.tls = Some((cert_file, key_file));
    let (port, stop) = console_on(cfg, dir.path()).await;
    let ca = cert.pem();
    let page = tokio::task::spawn_blocking(move || request_tls(port, &ca, "GET", "/login", "")).await.expect("https");
    assert_eq!(page.status, 200, "{}", page.body);
    let ca = cert.pem();
    let login = tokio::task::spawn_blocking(move || {
        request_tls(port, &ca, "POST", "/login", "name=lan&password=lan%27s+long+password")
    })
    .await
    .expect("https");
    assert_eq!(login.status, 303, "{}", login.body);
    let cookie = login.header("set-cookie").expect("a cookie");
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
    let plain = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let _ = std::io::Write::write_all(&mut s, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut raw = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut raw);
        String::from_utf8_lossy(&raw).to_string()
    })
    .await
    .expect("plain");
    assert!(!plain.contains("200 OK"), "no page over plain HTTP: {plain}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rule_catches_everything_until_it_gets_a_condition_and_removing_it_gives_the_files_back() {
    let db = crm_db("console_rules").await;
    db.install().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, stop) = console_over(&db, dir.path()).await;
    let origin = format!("http://127.0.0.1:{port}");
    let editor = log_in(port, "lan", "lan's long password");
    let csrf = csrf_of(&request(port, "GET", "/pipelines", &[("Cookie", &editor)], "").body);
    let post =
        |path: &str, body: String| request(port, "POST", path, &[("Cookie", &editor), ("Origin", &origin)], &body);
    let page = || request(port, "GET", "/pipelines", &[("Cookie", &editor)], "").body;

    // A team block's choices: the teams, by id, in each file's own syntax.
    let before = page();
    assert!(before.contains("<option value=\"{ id = &quot;digital&quot; }\">team digital</option>"), "{before}");
    assert!(before.contains("<option value=\"{&quot;id&quot;: &quot;corporate-senior&quot;}\">"), "JSON: {before}");
    assert_eq!(post("/pipelines/rule", format!("csrf={csrf}&pipeline=retail&rule=vip-desk&action=add")).status, 303);
    let added = page();
    assert!(added.contains("id=\"rule-retail-vip-desk\"") && added.contains("rule vip-desk added"), "{added}");
    assert!(
        added.contains("does not compile") && added.contains("Cần Thơ has no team"),
        "it takes Cần Thơ from the fallback: {added}"
    );
    // A word block is set at a click: the choices are the words the compiler takes.
    assert!(added.contains("aria-label=\"Choose the pick the member of rule vip-desk\""), "{added}");
    assert!(added.contains("<option value=\"&quot;fewest_open&quot;\">fewest_open</option>"), "{added}");
    let chosen = post(
        "/pipelines/block",
        format!("csrf={csrf}&pipeline=retail&rule=vip-desk&key=member&action=set&value=%22fewest_open%22"),
    );
    assert_eq!(chosen.status, 303, "{}", chosen.body);
    assert!(
        page().contains("rule vip-desk: member = &quot;fewest_open&quot;"),
        "the choice is a change like any other"
    );
    // Checked as typed: a condition on a field the mapping does not have is refused on the spot.
    let when = "csrf={csrf}&pipeline=retail&rule=vip-desk&key=when&action=set&value=";
    let typo = post(
        "/pipelines/check",
        format!("{}{}", when.replace("{csrf}", &csrf), "%7B+field+%3D+%22sauce%22%2C+equals+%3D+%22vip%22+%7D"),
    );
    assert!(typo.body.contains("sauce"), "{}", typo.body);
    let ok = post(
        "/pipelines/check",
        format!("{}{}", when.replace("{csrf}", &csrf), "%7B+field+%3D+%22source%22%2C+equals+%3D+%22vip-desk%22+%7D"),
    );
    assert!(ok.body.contains("the draft compiles with this value"), "{}", ok.body);
    let set = post(
        "/pipelines/block",
        format!("{}{}", when.replace("{csrf}", &csrf), "%7B+field+%3D+%22source%22%2C+equals+%3D+%22vip-desk%22+%7D"),
    );
    assert_eq!(set.status, 303, "{}", set.body);
    let fixed = page();
    assert!(
        !fixed.contains("does not compile")
            && fixed
                .contains("rule vip-desk: when = { field = &quot;source&quot;, equals = &quot;vip-desk&quot; } added"),
        "{fixed}"
    );

    assert_eq!(post("/pipelines/rule", format!("csrf={csrf}&pipeline=retail&rule=vip-desk&action=remove")).status, 303);
    let removed = page();
    assert!(!removed.contains("id=\"rule-retail-vip-desk\"") && removed.contains("rule vip-desk removed"), "{removed}");
    let saved = post("/draft/save", format!("csrf={csrf}"));
    assert_eq!(saved.status, 409, "the files are as they were: nothing to save");
    assert!(saved.body.contains("nothing to save"), "{}", saved.body);
    stop.cancel();
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
