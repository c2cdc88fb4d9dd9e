//! Production install: the CRM keeps writing with its own role after `install`, the daemon runs
//! with a narrow role holding exactly what `grants` prints, over TLS to a server that refuses
//! anything else; errors say what the server said and exit with the code that tells systemd what
//! to do; `check` catches what would fail at run time; no output shows a password.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use devkit::demo;
use devkit::throwaway::{Cluster, ClusterOptions, ServerTls};
use oppty_router::config::Config;
use oppty_router::{db, install};
use tokio_postgres::Client;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

// ---------- a TLS-only server, with a CA of the test's own ----------

struct TlsServer {
    cluster: Cluster,
    _files: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    client_crt: PathBuf,
    client_key: PathBuf,
}

static TLS: OnceLock<TlsServer> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(label: &str) -> String {
    format!("{label}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn make_ca(name: &str) -> Ca {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let key = rcgen::KeyPair::generate().expect("CA key");
    let cert = p.self_signed(&key).expect("self-sign the CA");
    Ca { cert, issuer: rcgen::Issuer::new(p, key) }
}

impl Ca {
    /// A certificate for `names` (DNS names; an IP address for 127.0.0.1), or for a client's CN.
    fn issue(&self, cn: &str, names: &[&str]) -> (String, String) {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if !names.is_empty() {
            p.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

const HBA: &str = "local all all trust\n\
                   hostssl all cert_user 127.0.0.1/32 cert\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\n\
                   hostnossl all all 127.0.0.1/32 reject\n";

fn tls_server() -> &'static TlsServer {
    TLS.get_or_init(|| {
        let files = tempfile::tempdir().expect("tempdir");
        let ca = make_ca("oppty-router test CA");
        let other = make_ca("somebody else's CA");
        let (server_crt, server_key) = ca.issue("localhost", &["localhost"]);
        let (client_crt, client_key) = ca.issue("cert_user", &[]);
        let write = |name: &str, text: &str| {
            let p = files.path().join(name);
            std::fs::write(&p, text).expect("write a certificate file");
            p
        };
        let ca_path = write("ca.pem", &ca.cert.pem());
        let other_ca = write("other-ca.pem", &other.cert.pem());
        let client_crt = write("client.crt", &client_crt);
        let client_key = write("client.key", &client_key);
        let cluster = Cluster::start_with(ClusterOptions {
            durable: false,
            tcp: true,
            tls: Some(ServerTls { cert_pem: server_crt, key_pem: server_key, ca_pem: Some(ca.cert.pem()) }),
            hba: Some(HBA.into()),
            settings: Vec::new(),
        })
        .expect("start a TLS-only PostgreSQL cluster");
        cluster.stop_when_gone(std::process::id());
        TlsServer { cluster, _files: files, ca: ca_path, other_ca, client_crt, client_key }
    })
}

/// The superuser, over the server's private Unix socket.
async fn admin(db: &str) -> Client {
    db::connect(&db_config(&tls_server().cluster.url(db)), "").await.expect("connect as the superuser")
}

/// A database on the TLS server holding the sample CRM, and a login role with a password.
async fn tls_crm_db(label: &str) -> (String, Client) {
    let name = unique(label);
    admin("postgres").await.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create database");
    let client = admin(&name).await;
    for (file, sql) in demo::DEMO_SQL {
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("load {file}: {e}"));
    }
    (name, client)
}

async fn login_role(admin: &Client, label: &str, password: &str) -> String {
    let role = unique(label);
    admin.batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")).await.expect("create role");
    role
}

/// What a CRM application's role typically holds: data rights on its own tables, nothing else.
async fn grant_crm_app(admin: &Client, role: &str) {
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA crm TO \"{role}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO \"{role}\";
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO \"{role}\";"
        ))
        .await
        .expect("grant the CRM role");
}

/// TCP to the TLS server as `user`, with `extra` libpq settings.
fn tcp_url(db: &str, user: &str, extra: &str) -> String {
    format!("{} {extra}", tls_server().cluster.tcp_url(db, user))
}

fn verify_full(db: &str, user: &str, password: &str) -> String {
    tcp_url(db, user, &format!("password={password} sslmode=verify-full sslrootcert={}", tls_server().ca.display()))
}

/// The example config mapping the sample CRM, with this URL.
fn config_for(url: &str, edit: impl FnOnce(&mut String)) -> Config {
    let mut text = demo::EXAMPLE_CONFIG.to_string();
    edit(&mut text);
    let mut cfg = Config::parse(&text, Path::new("oppty-router.toml")).expect("example config parses");
    cfg.database.url = url.to_string();
    cfg.router.rules_dir = rules_dir();
    cfg.router.poll_interval = Duration::from_millis(100);
    cfg.router.reconnect_max_backoff = Duration::from_millis(500);
    cfg
}

/// Insert an opportunity of the sample CRM with whatever client (role) the CRM uses.
async fn crm_insert(client: &Client, title: &str, province: &str) -> String {
    client
        .query_one(
            "INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\") \
             SELECT $1, (SELECT \"accountId\" FROM crm.account WHERE \"provinceCode\" = $2 AND \"ownerId\" IS NULL ORDER BY 1 LIMIT 1), 'retail', 1 \
             RETURNING \"oppId\"::text",
            &[&title, &province],
        )
        .await
        .expect("the CRM's own role inserts an opportunity")
        .get(0)
}

async fn owner(client: &Client, opp: &str) -> Option<i32> {
    client
        .query_opt("SELECT \"accountOwnerId\" FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid", &[&opp])
        .await
        .expect("read the owner")
        .map(|r| r.get(0))
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

async fn wait_drained(client: &Client, cfg: &Config) {
    demo::wait_until_drained(client, cfg, Duration::from_secs(20)).await.expect("events drained in time");
}

/// What the CRM does all day, as its own role, first: new opportunities. Returns their ids.
async fn new_deals(crm: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, p) in ["HN", "DN", "HCM", "HN", "DN", "HN", "DN", "HCM"].iter().enumerate() {
        ids.push(crm_insert(crm, &format!("Deal {i}"), p).await);
    }
    ids
}

/// Then, on routed deals: an edit, a close, a soft delete, a hard delete, a call and an e-mail.
async fn working_on_them(crm: &Client, ids: &[String]) {
    let on = |sql: &'static str, id: &String| {
        let id = id.clone();
        async move { crm.execute(sql, &[&id]).await.unwrap_or_else(|e| panic!("{sql}: {e}")) }
    };
    on("UPDATE crm.opportunity SET title = 'Deal 0 (renamed)' WHERE \"oppId\" = $1::text::uuid", &ids[0]).await;
    on(
        "UPDATE crm.opportunity SET \"stageId\" = (SELECT id FROM crm.stage WHERE pipeline = 'retail' AND is_won LIMIT 1) \
         WHERE \"oppId\" = $1::text::uuid",
        &ids[5],
    )
    .await;
    on("UPDATE crm.opportunity SET \"deletedAt\" = now() WHERE \"oppId\" = $1::text::uuid", &ids[6]).await;
    on("DELETE FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid", &ids[7]).await;
    on(
        "INSERT INTO crm.activity (\"opportunityId\", kind, \"userId\") SELECT \"oppId\", 'call', \"accountOwnerId\" \
         FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid",
        &ids[1],
    )
    .await;
    on(
        "INSERT INTO crm.mail_message (model, res_id, author_id, body) SELECT 'crm.opportunity', \"oppId\"::text, \
         \"accountOwnerId\", 'hello' FROM crm.opportunity WHERE \"oppId\" = $1::text::uuid",
        &ids[2],
    )
    .await;
}

/// After `working_on_them`: the first five are owned, the closed, soft-deleted and deleted ones
/// are no longer the router's to watch, and the owner's call and e-mail reset the reclaim clock.
async fn assert_all_routed_and_followed(crm: &Client, admin: &Client, ids: &[String]) {
    for opp in &ids[..5] {
        let o = owner(crm, opp).await.expect("still there");
        assert_ne!(o, 1, "{opp} was routed");
    }
    assert_eq!(owner(crm, &ids[7]).await, None, "deleted");
    for opp in &ids[5..] {
        let sql = format!("SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}'");
        assert_eq!(count(admin, &sql).await, 0, "{opp}: closed or deleted, no longer watched");
    }
    for opp in &ids[1..3] {
        let sql = format!(
            "SELECT count(*) FROM oppty_router.ownership WHERE opp_id = '{opp}' AND last_owner_touch_at > assigned_at"
        );
        assert_eq!(count(admin, &sql).await, 1, "{opp}: the owner's activity was captured");
    }
    assert_eq!(count(admin, "SELECT count(*) FROM oppty_router.dead_letter").await, 0, "nothing failed");
}

// ---------- the CRM keeps working ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_install_a_crm_role_without_rights_on_the_router_schema_keeps_working_and_everything_is_captured() {
    let db = crm_db("crmrole").await;
    db.install().await;
    let role = format!("crm_app_{}", db.name);
    db.client.batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN")).await.expect("create the CRM's role");
    grant_crm_app(&db.client, &role).await;
    let crm =
        db::connect(&db_config(&format!("{} user={role}", db.cfg.database.url)), "").await.expect("connect as the CRM");
    let denied = crm.query_one("SELECT count(*) FROM oppty_router.events", &[]).await.expect_err("no rights there");
    assert_eq!(
        denied.as_db_error().map(|d| d.code().code()),
        Some("42501"),
        "the CRM role has no rights on the router's schema"
    );

    let ids = new_deals(&crm).await;
    let kinds = |k: &str| format!("SELECT count(*) FROM oppty_router.events WHERE kind = '{k}'");
    assert_eq!(db.count(&kinds("route")).await, 8, "every insert captured");
    let daemon = db.start();
    db.wait_drained(Duration::from_secs(20)).await;
    daemon.stop().await;

    working_on_them(&crm, &ids).await;
    assert_eq!(db.count(&kinds("changed")).await, 3, "the close, the soft delete and the delete");
    assert_eq!(db.count(&kinds("activity")).await, 2, "the call and the e-mail");
    let daemon = db.start();
    db.wait_drained(Duration::from_secs(20)).await;
    assert_all_routed_and_followed(&crm, &db.client, &ids).await;
    daemon.stop().await;
}

#[test]
fn the_capture_functions_run_as_their_owner_with_a_pinned_search_path_and_string_syntax() {
    let cfg = Config::parse(demo::EXAMPLE_CONFIG, Path::new("oppty-router.toml")).expect("example parses");
    let sql = oppty_router::capture::install_sql(&cfg);
    let functions = sql.matches("CREATE OR REPLACE FUNCTION").count();
    assert_eq!(functions, 4, "opportunity, owner edits, two activity tables");
    let header = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on AS";
    assert_eq!(sql.matches(header).count(), functions, "{sql}");
    assert_eq!(sql.matches("REVOKE ALL ON FUNCTION").count(), functions, "{sql}");
}

// ---------- the whole story: TLS-only server, CRM role, narrow daemon role ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_production_the_crm_and_a_narrow_daemon_role_meet_over_tls_and_everything_is_routed() {
    let (name, admin) = tls_crm_db("story").await;
    let crm_role = login_role(&admin, "crm_app", "crm-pw").await;
    let router_role = login_role(&admin, "router", "router-pw").await;
    grant_crm_app(&admin, &crm_role).await;

    // The DBA installs (over the socket, as the database owner) and prints the daemon's grants.
    let dba_cfg = config_for(&tls_server().cluster.url(&name), |_| {});
    let mut dba = db::connect(&dba_cfg.database, " install").await.expect("connect as the DBA");
    install::install(&mut dba, &dba_cfg).await.expect("install");
    let dir = tempfile::tempdir().expect("tempdir");
    let dba_file = write_config(dir.path(), "dba.toml", &tls_server().cluster.url(&name));
    let out = Command::new(BIN).args(["grants", &router_role, "-c"]).arg(&dba_file).output().expect("run grants");
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{script}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        script.contains(&format!(
            "GRANT SELECT, UPDATE (\"accountOwnerId\", \"assignedAt\", \"salesTeamId\") ON TABLE crm.opportunity TO \"{router_role}\";"
        )),
        "only the owner, team and write_back.set columns are writable:\n{script}"
    );
    assert!(!script.contains("GRANT ALL"), "{script}");
    admin.batch_execute(&script).await.expect("the printed grants run as they are");

    // The daemon: its own role, password in a file, verify-full against the test CA.
    let pw = dir.path().join("db-password");
    std::fs::write(&pw, "router-pw\n").expect("password file");
    let mut cfg = config_for(
        &tcp_url(&name, &router_role, &format!("sslmode=verify-full sslrootcert={}", tls_server().ca.display())),
        |_| {},
    );
    cfg.database.password_file = Some(pw);
    cfg.router.reclaim_interval = Duration::from_millis(200);
    let report = oppty_router::check::check(&cfg, false).await;
    assert!(report.ok && report.database_checked, "check passes as the narrow role: {:?}", report.lines);
    assert!(!report.lines.iter().any(|l| l.contains("superuser")), "{:?}", report.lines);
    let daemon = Daemon::start(Arc::new(cfg.clone()), load_rules(&cfg));

    let crm =
        db::connect(&db_config(&verify_full(&name, &crm_role, "crm-pw")), "").await.expect("the CRM connects over TLS");
    let ids = new_deals(&crm).await;
    wait_drained(&admin, &cfg).await;
    working_on_them(&crm, &ids).await;
    wait_drained(&admin, &cfg).await;
    assert_all_routed_and_followed(&crm, &admin, &ids).await;
    // A sweep with the narrow role: one deal left untouched for thirty days is taken back (or
    // kept, when nobody else in its team may have it), written as this role.
    let tracked = admin
        .query_one("SELECT opp_id FROM oppty_router.ownership WHERE opp_id = ANY($1) ORDER BY opp_id LIMIT 1", &[&ids])
        .await
        .expect("a tracked deal")
        .get::<_, String>(0);
    admin
        .execute(
            "UPDATE oppty_router.ownership SET assigned_at = now() - interval '30 days', \
             last_owner_touch_at = now() - interval '30 days', due_at = now() - interval '1 day' WHERE opp_id = $1",
            &[&tracked],
        )
        .await
        .expect("age it");
    let swept = format!(
        "SELECT count(*) FROM oppty_router.assignments WHERE opp_id = '{tracked}' AND outcome IN ('reclaim', 'kept')"
    );
    wait_until("a sweep decides on the stale deal", Duration::from_secs(10), || async {
        count(&admin, &swept).await > 0
    })
    .await;
    assert!(!daemon.task.is_finished(), "the daemon is still running (sweeps work with these grants)");

    // Every router session is encrypted and runs as the narrow role.
    let sessions = admin
        .query(
            "SELECT a.usename::text, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.application_name IN ('oppty-router', 'oppty-router listener') AND a.datname = current_database()",
            &[],
        )
        .await
        .expect("sessions");
    assert!(sessions.len() >= 2, "the main and the LISTEN connections");
    for s in &sessions {
        assert_eq!(s.get::<_, String>(0), router_role);
        assert!(s.get::<_, bool>(1), "over TLS");
    }
    // And the role is narrow: it cannot write what the router does not write.
    let narrow = db::connect(&db_config(&verify_full(&name, &router_role, "router-pw")), "").await.expect("connect");
    let e = narrow
        .execute("UPDATE crm.opportunity SET title = 'x' WHERE \"oppId\" = $1::text::uuid", &[&ids[0]])
        .await
        .expect_err("the title is not the router's to write");
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("42501"));
    daemon.stop().await;

    // The sales-ops commands, as the narrow role over TLS: what happened, and a replay.
    let narrow_file = write_config(dir.path(), "narrow.toml", &verify_full(&name, &router_role, "router-pw"));
    let (code, out) = run_cli(&["report", "--since", "1h"], &narrow_file);
    assert!(code == Some(0) && out.contains("Gini"), "report as the narrow role: {out}");
    let rules = rules_dir().display().to_string();
    let (code, out) = run_cli(&["simulate", "--rules", &rules, "--since", "1h"], &narrow_file);
    assert_eq!(code, Some(0), "simulate as the narrow role: {out}");
    let kept = count(
        &admin,
        "SELECT count(DISTINCT a.opp_id) FROM oppty_router.assignments a \
         JOIN crm.opportunity o ON o.\"oppId\"::text = a.opp_id WHERE a.outcome <> 'reclaim' AND o.\"deletedAt\" IS NULL",
    )
    .await;
    let decided =
        count(&admin, "SELECT count(DISTINCT opp_id) FROM oppty_router.assignments WHERE outcome <> 'reclaim'").await;
    // Replayed from what the router saw: those deleted from the CRM since as well.
    assert!(decided > kept, "some were deleted since: {decided} decided, {kept} still in the CRM");
    assert!(out.contains(&format!("· {decided} opportunities")), "every decision replayed ({decided}): {out}");
    assert!(!out.contains("not replayed"), "{out}");
}

fn load_rules(cfg: &Config) -> oppty_router::engine::Engine {
    oppty_router::load_rules(cfg).expect("example rules load")
}

fn write_config(dir: &Path, file: &str, url: &str) -> PathBuf {
    let text = demo::EXAMPLE_CONFIG
        .replace("host=/var/run/postgresql dbname=crm user=oppty_router", url)
        .replace("/etc/oppty-router/rules", &rules_dir().display().to_string());
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write config");
    path
}

// ---------- TLS ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_means_what_libpq_says() {
    let t = tls_server();
    let (name, admin) = tls_crm_db("sslmodes").await;
    let role = login_role(&admin, "app", "app-pw").await;
    admin.batch_execute("CREATE ROLE cert_user LOGIN").await.ok();
    let ca = t.ca.display().to_string();
    let other = t.other_ca.display().to_string();
    let (crt, key) = (t.client_crt.display().to_string(), t.client_key.display().to_string());
    let wrong_host = format!(
        "host=wrong.example hostaddr=127.0.0.1 port={} user={role} dbname={name} password=app-pw",
        t.cluster.port
    );
    // A TLS failure is said in words: which certificate, which file (the driver's account after).
    let not_signed = format!("the server's certificate is not signed by the CA in {other} (sslrootcert) (");
    let cases: Vec<(String, Result<(), &str>)> = vec![
        (tcp_url(&name, &role, "password=app-pw sslmode=disable"), Err("no encryption (28000)")),
        (tcp_url(&name, &role, "password=app-pw sslmode=prefer"), Ok(())),
        (tcp_url(&name, &role, "password=app-pw sslmode=allow"), Ok(())),
        (tcp_url(&name, &role, "password=app-pw sslmode=require"), Ok(())),
        (tcp_url(&name, &role, &format!("password=app-pw sslmode=require sslrootcert={other}")), Err(&not_signed)),
        (tcp_url(&name, &role, &format!("password=app-pw sslmode=verify-ca sslrootcert={ca}")), Ok(())),
        (tcp_url(&name, &role, &format!("password=app-pw sslmode=verify-full sslrootcert={ca}")), Ok(())),
        (tcp_url(&name, &role, &format!("password=app-pw sslmode=verify-full sslrootcert={other}")), Err(&not_signed)),
        (format!("{wrong_host} sslmode=verify-ca sslrootcert={ca}"), Ok(())),
        (
            format!("{wrong_host} sslmode=verify-full sslrootcert={ca}"),
            Err(
                "the server's certificate is not valid for the host name wrong.example (sslmode=verify-full checks it)",
            ),
        ),
        (
            format!(
                "postgresql://{role}:app-pw@localhost:{}/{name}?sslmode=verify-full&sslrootcert={ca}",
                t.cluster.port
            ),
            Ok(()),
        ),
        (
            tcp_url(&name, "cert_user", &format!("sslmode=verify-full sslrootcert={ca} sslcert={crt} sslkey={key}")),
            Ok(()),
        ),
        (tcp_url(&name, "cert_user", &format!("sslmode=verify-full sslrootcert={ca}")), Err("certificate")),
    ];
    for (url, want) in cases {
        let got = db::connect(&db_config(&url), "").await;
        match (got, want) {
            (Ok(c), Ok(())) => {
                let ssl: bool = c
                    .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
                    .await
                    .expect("ask")
                    .get(0);
                assert!(ssl, "{url}: connected over TLS");
            }
            (Err(e), Err(needle)) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{url}: expected `{needle}` in: {msg}");
                assert_eq!(e.kind(), db::ErrorKind::Refused, "{url}: {msg} is not worth retrying");
                assert!(!msg.contains("app-pw"), "{msg}");
            }
            (Ok(_), Err(needle)) => panic!("{url}: connected, but expected a refusal with `{needle}`"),
            (Err(e), Ok(())) => panic!("{url}: {e}"),
        }
    }
}

// ---------- errors say what the server said ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_carry_the_servers_message_and_sqlstate() {
    let (name, admin) = tls_crm_db("errors").await;
    let role = login_role(&admin, "x", "right-pw").await;
    let ca = format!("sslmode=verify-full sslrootcert={}", tls_server().ca.display());
    let cases = [
        (
            tcp_url(&name, &role, &format!("password=wrong-pw {ca}")),
            format!("password authentication failed for user \"{role}\" (28P01)"),
        ),
        (
            tcp_url("no_such_db", &role, &format!("password=right-pw {ca}")),
            "database \"no_such_db\" does not exist (3D000)".to_string(),
        ),
        (
            tcp_url(&name, "no_such_user", &format!("password=x {ca}")),
            "password authentication failed for user \"no_such_user\" (28P01)".to_string(),
        ),
    ];
    for (url, needle) in cases {
        let e = db::connect(&db_config(&url), "").await.expect_err("refused");
        assert!(e.to_string().contains(&needle), "expected `{needle}` in: {e}");
        assert_eq!(e.kind(), db::ErrorKind::Refused);
        assert!(!e.to_string().contains("wrong-pw") && !e.to_string().contains("right-pw"), "{e}");
    }
    let port = free_port();
    let e = db::connect(&db_config(&format!("host=127.0.0.1 port={port} user=x dbname=y sslmode=disable")), "")
        .await
        .expect_err("nobody listens there");
    assert_eq!(e.kind(), db::ErrorKind::Connection, "{e}");
    assert!(e.to_string().contains("Connection refused"), "{e}");
}

fn run_cli(args: &[&str], config: &Path) -> (Option<i32>, String) {
    let out =
        Command::new(BIN).args(args).arg("-c").arg(config).env_remove("RUST_LOG").output().expect("run the binary");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_69_when_it_cannot_reach_the_database_and_78_when_refused_or_not_installed() {
    let (name, admin) = tls_crm_db("checkcodes").await;
    let role = login_role(&admin, "x", "right-pw").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = format!("sslmode=verify-full sslrootcert={}", tls_server().ca.display());
    let cases = [
        (
            format!("host=127.0.0.1 port={} user=x dbname=y", free_port()),
            69,
            "the database cannot be reached".to_string(),
        ),
        (
            tcp_url(&name, &role, &format!("password=wrong-pw {ca}")),
            78,
            format!("password authentication failed for user \"{role}\" (28P01)"),
        ),
        (
            tcp_url("nope", &role, &format!("password=right-pw {ca}")),
            78,
            "database \"nope\" does not exist (3D000)".to_string(),
        ),
        (
            tcp_url(&name, &role, &format!("password=right-pw {ca}")),
            78,
            "router.schema: the router's schema `oppty_router` is not installed".to_string(),
        ),
        (tls_server().cluster.url(&name), 78, "run `oppty-router install`".to_string()),
    ];
    for (i, (url, code, needle)) in cases.iter().enumerate() {
        let file = write_config(dir.path(), &format!("c{i}.toml"), url);
        let (got, out) = run_cli(&["check"], &file);
        assert_eq!(got, Some(*code), "{url}: {out}");
        assert!(out.contains(needle.as_str()), "{url}: expected `{needle}` in:\n{out}");
        assert!(!out.contains("wrong-pw") && !out.contains("right-pw"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_with_78_on_a_wrong_password_or_a_missing_router_schema_instead_of_retrying_for_ever() {
    let (name, admin) = tls_crm_db("runcodes").await;
    let role = login_role(&admin, "x", "right-pw").await;
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA crm TO \"{role}\"; GRANT SELECT ON ALL TABLES IN SCHEMA crm TO \"{role}\""
        ))
        .await
        .expect("grant");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = format!("sslmode=verify-full sslrootcert={}", tls_server().ca.display());
    let cases = [
        (tcp_url(&name, &role, &format!("password=wrong-pw {ca}")), "(28P01)"),
        (tcp_url(&name, &role, &format!("password=right-pw {ca}")), "is not installed in this database"),
    ];
    for (i, (url, needle)) in cases.iter().enumerate() {
        let file = write_config(dir.path(), &format!("r{i}.toml"), url);
        let started = Instant::now();
        let (code, out) = run_cli(&["run"], &file);
        assert_eq!(code, Some(78), "EX_CONFIG, so systemd stops restarting: {out}");
        assert!(out.contains(needle), "expected `{needle}` in:\n{out}");
        assert!(started.elapsed() < Duration::from_secs(20), "it gave up at once");
        assert!(!out.contains("wrong-pw") && !out.contains("right-pw"), "{out}");
    }
}

// ---------- check catches what would fail at run time ----------

struct MisfitCase {
    story: &'static str,
    /// Run on the CRM before `install`.
    crm_sql: &'static str,
    config: &'static [(&'static str, &'static str)],
    expect: &'static str,
}

const MISFITS: &[MisfitCase] = &[
    MisfitCase {
        story: "the id column is not the primary key",
        crm_sql: "",
        config: &[("id = \"oppId\"", "id = \"title\"")],
        expect: "opportunity.id: column `title` is neither the primary key nor unique of crm.opportunity",
    },
    MisfitCase {
        story: "the id column is unique but nullable",
        crm_sql: "ALTER TABLE crm.opportunity ADD COLUMN \"altId\" uuid UNIQUE",
        config: &[("id = \"oppId\"", "id = \"altId\"")],
        expect: "opportunity.id: column `altId` is nullable and not the primary key",
    },
    MisfitCase {
        story: "the team column cannot hold the teams' crm_ids",
        crm_sql: "ALTER TABLE crm.opportunity DROP CONSTRAINT \"opportunity_salesTeamId_fkey\", ALTER COLUMN \"salesTeamId\" TYPE uuid USING NULL",
        config: &[],
        expect: "is not a valid value of the CRM's team column (opportunity.team)",
    },
    MisfitCase {
        story: "an unowned value the owner column cannot hold",
        crm_sql: "",
        config: &[("unowned_values = [\"1\"]", "unowned_values = [\"1\", \"queue\"]")],
        expect: "opportunity.unowned_values[1]: `queue` cannot be a value of the owner column (integer)",
    },
    MisfitCase {
        story: "the fallback owner is itself an unowned value",
        crm_sql: "",
        config: &[("unowned_values = [\"1\"]", "unowned_values = [\"1\", \"100\"]")],
        expect: "settings.fallback_owner: `100` (fallback_owner of `settings`) is one of opportunity.unowned_values",
    },
    MisfitCase {
        story: "the fallback owner has left the company",
        crm_sql: "UPDATE crm.users SET active = false WHERE id = 100",
        config: &[],
        expect: "owner id(s) `100` named by the rules (fallback owner, team lead or reclaim owner) are not active users",
    },
    MisfitCase {
        story: "an actor column that can never hold an owner",
        crm_sql: "ALTER TABLE crm.mail_message DROP CONSTRAINT mail_message_author_id_fkey, ALTER COLUMN author_id TYPE uuid USING NULL",
        config: &[],
        expect: "activity[1].actor: is uuid but opportunity.owner is integer",
    },
    MisfitCase {
        story: "an activity link that can never name an opportunity",
        crm_sql: "ALTER TABLE crm.activity DROP CONSTRAINT \"activity_opportunityId_fkey\", ALTER COLUMN \"opportunityId\" TYPE bigint USING 0",
        config: &[],
        expect: "activity[0].opportunity: is bigint but opportunity.id is uuid",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_catches_what_would_fail_at_run_time() {
    let db = crm_db("misfitok").await;
    db.install().await;
    let report = oppty_router::check::check(&db.cfg, false).await;
    assert!(report.ok, "the sample CRM fits: {:?}", report.lines);
    assert!(
        report.lines.iter().any(|l| l.starts_with("warning: connected as the superuser `postgres`")),
        "a superuser is called out: {:?}",
        report.lines
    );
    for case in MISFITS {
        let db = crm_db_with("misfit", |text| {
            for (from, to) in case.config {
                assert!(text.contains(from), "{}: the example config has {from}", case.story);
                *text = text.replace(from, to);
            }
        })
        .await;
        if !case.crm_sql.is_empty() {
            db.client.batch_execute(case.crm_sql).await.unwrap_or_else(|e| panic!("{}: {e}", case.story));
        }
        let mut c = db::connect(&db.cfg.database, "").await.expect("connect");
        install::install(&mut c, &db.cfg).await.unwrap_or_else(|e| panic!("{}: install: {e}", case.story));
        let report = oppty_router::check::check(&db.cfg, false).await;
        assert!(!report.ok, "{}: check must fail: {:?}", case.story, report.lines);
        assert_eq!(report.exit_code(), 78);
        assert!(
            report.lines.iter().any(|l| l.contains(case.expect)),
            "{}: expected `{}` in:\n{}",
            case.story,
            case.expect,
            report.lines.join("\n")
        );
    }
}

// ---------- no password in any output ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_shows_a_password_in_any_connection_string_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let secret = "Xy9-s3cret";
    let forms = [
        format!("host=127.0.0.1 port={port} dbname=crm user=u password={secret}"),
        format!("host=127.0.0.1 port={port} dbname=crm user=u password = {secret}"),
        format!("host=127.0.0.1 port={port} dbname=crm user=u password = '{secret}'"),
        format!("postgres://u:{secret}@127.0.0.1:{port}/crm"),
        format!("postgresql://u@127.0.0.1:{port}/crm?password={secret}"),
        format!("postgresql://u@127.0.0.1:{port}/crm?application_name=x&password=Xy9%2Ds3cret"),
    ];
    for (i, url) in forms.iter().enumerate() {
        let file = write_config(dir.path(), &format!("p{i}.toml"), url);
        let (code, out) = run_cli(&["check"], &file);
        assert_eq!(code, Some(69), "{out}");
        assert!(out.contains("password=***"), "the redacted form is shown: {out}");
        assert!(!out.contains(secret) && !out.contains("s3cret"), "form {i}: {out}");
        // The daemon's start line and its reconnect warnings.
        let mut child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&file)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let reader = Logs::of(child.stderr.take().expect("stderr"));
        let tried = holds_within_blocking(Duration::from_secs(10), || reader.count("cannot reach the database") > 0);
        assert!(tried, "the daemon says it cannot reach the database: {}", reader.so_far());
        let _ = child.kill();
        let _ = child.wait();
        let logs = reader.join().expect("read logs");
        assert!(logs.contains("starting") && logs.contains("cannot reach the database"), "{logs}");
        assert!(!logs.contains('\x1b'), "no colour codes when the logs do not go to a terminal: {logs}");
        assert!(!logs.contains("s3cret"), "form {i}: {logs}");
    }
}

// ---------- the config the service reads ----------

#[test]
fn a_config_the_service_user_cannot_read_says_who_must_read_it_and_how() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), "oppty-router.toml", "host=/nonexistent dbname=crm");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The service user runs a copy it can reach wherever the checkout is (under /root, say).
    let stage = ServiceDir::new("unreadable");
    let mut cmd = Command::new(if nix::unistd::geteuid().is_root() { stage.binary() } else { BIN.into() });
    cmd.args(["check", "--offline", "-c"]).arg(&file);
    let user = if nix::unistd::geteuid().is_root() {
        // Root reads anything: run as the unprivileged `postgres` user, as systemd runs the service.
        use std::os::unix::process::CommandExt;
        let u = nix::unistd::User::from_name("postgres").expect("lookup").expect("a postgres user (the tests need it)");
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        "postgres".to_string()
    } else {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map(|u| u.name).unwrap_or_default()
    };
    let out = cmd.output().expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains(&format!("this process runs as user `{user}`")), "{stderr}");
    assert!(stderr.contains("chmod 0640"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_for_ops_written_statements_name_what_they_insert_and_update() {
    let db = crm_db_with("grantsstmt", |text| {
        *text = text.replace(
            "[write_back.set]\nassignedAt = \"now()\"\n",
            r#"[write_back]
statement = """
  UPDATE crm.opportunity SET "accountOwnerId" = :owner::int, "assignedAt" = now()
  WHERE "oppId" = :opportunity_id::uuid AND "accountOwnerId" = 1
  RETURNING "accountOwnerId"::text AS owner
"""
reclaim_statement = """
  WITH note AS (INSERT INTO crm.activity ("opportunityId", kind, "userId") VALUES (:opportunity_id::uuid, 'reassigned', :owner::int))
  UPDATE crm.opportunity SET "accountOwnerId" = :owner::int WHERE "oppId" = :opportunity_id::uuid AND "accountOwnerId" = :previous_owner::int
  RETURNING "accountOwnerId"::text AS owner
"""
"#,
        );
    })
    .await;
    assert!(matches!(db.cfg.write_back, oppty_router::config::WriteBack::Statement { .. }), "the edit applied");
    db.install().await;
    let mut c = db::connect(&db.cfg.database, "").await.expect("connect");
    let script = oppty_router::grants::grants(&mut c, &db.cfg, "router_x").await.expect("grants");
    for line in [
        // The columns the statements write, never those they read (`"oppId"` in a WHERE).
        "GRANT INSERT (\"opportunityId\", \"userId\", kind), SELECT ON TABLE crm.activity TO \"router_x\";  -- write_back.reclaim_statement",
        "GRANT USAGE ON SEQUENCE crm.activity_id_seq TO \"router_x\";  -- write_back.reclaim_statement",
        "GRANT SELECT, UPDATE (\"accountOwnerId\", \"assignedAt\") ON TABLE crm.opportunity TO \"router_x\";",
        // The owner column's foreign-key target, which the id check reads.
        "GRANT SELECT ON TABLE crm.users TO \"router_x\";  -- directory.active_members, opportunity.owner (the users its foreign key references",
    ] {
        assert!(script.contains(line), "expected {line} in:\n{script}");
    }
    let odd =
        oppty_router::grants::grants(&mut c, &db.cfg, "x\"; DROP TABLE crm.opportunity; --").await.expect("grants");
    assert!(
        odd.contains("TO \"x\"\"; DROP TABLE crm.opportunity; --\";"),
        "a role name is an identifier, never SQL:\n{odd}"
    );
    let empty = oppty_router::grants::grants(&mut c, &db.cfg, "").await;
    assert!(matches!(empty, Err(oppty_router::grants::GrantsError::BadRole(..))));

    // The DBA runs all of it but the INSERT the reclaim statement needs: `check`, as that role,
    // refuses with the GRANT that fixes it (the daemon would have stopped at its first reclaim).
    let role = login_role_for_test(&db.client, "router_noinsert").await;
    let script = oppty_router::grants::grants(&mut c, &db.cfg, &role).await.expect("grants");
    let forgot = script.replace(
        "INSERT (\"opportunityId\", \"userId\", kind), SELECT ON TABLE crm.activity",
        "SELECT ON TABLE crm.activity",
    );
    assert_ne!(forgot, script);
    db.client.batch_execute(&forgot).await.expect("the other grants");
    let mut cfg = db.cfg.clone();
    cfg.database.url = as_role(&db.cfg.database.url, &role);
    let report = oppty_router::check::check(&cfg, false).await;
    let text = report.lines.join("\n");
    assert_eq!(report.exit_code(), 78, "{text}");
    assert!(text.contains("this role lacks 1 privilege(s)"), "{text}");
    let fix = format!("GRANT INSERT (\"opportunityId\", \"userId\", kind) ON TABLE crm.activity TO {role};  -- write_back.reclaim_statement");
    assert!(text.contains(&fix), "{text}");
    db.client
        .batch_execute(&format!("GRANT INSERT (\"opportunityId\", \"userId\", kind) ON crm.activity TO {role}"))
        .await
        .expect("grant");
    let report = oppty_router::check::check(&cfg, false).await;
    assert_eq!(report.exit_code(), 0, "{}", report.lines.join("\n"));
    assert!(report.lines.iter().any(|l| l.contains("rights OK")), "{}", report.lines.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_grant_stops_the_daemon_at_start_naming_the_grant_and_charges_no_event() {
    let db = crm_db("nogrant").await;
    db.install().await;
    let role = format!("router_{}", db.name);
    db.client.batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN")).await.expect("create role");
    let mut c = db::connect(&db.cfg.database, "").await.expect("connect");
    let script = oppty_router::grants::grants(&mut c, &db.cfg, &role).await.expect("grants");
    // The DBA forgot the write-back's UPDATE.
    let forgot: String = script
        .lines()
        .map(|l| {
            if l.starts_with("GRANT SELECT, UPDATE (") && l.contains("ON TABLE crm.opportunity") {
                format!("GRANT SELECT ON TABLE crm.opportunity TO \"{role}\";")
            } else {
                l.into()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(forgot.replace('\n', ""), script.replace('\n', ""), "{script}");
    db.client.batch_execute(&forgot).await.expect("the other grants");
    let mut cfg = db.cfg.clone();
    cfg.database.url = format!("{} user={role}", db.cfg.database.url);
    let daemon = Daemon::start(Arc::new(cfg.clone()), load_rules(&cfg));
    let opp = db.insert_opportunity("Needs an owner", "HN", "retail").await;
    let ended = tokio::time::timeout(Duration::from_secs(20), daemon.task).await.expect("the daemon stops by itself");
    let err = ended.expect("no panic").expect_err("a refusal");
    let msg = err.to_string();
    assert!(matches!(err, oppty_router::daemon::DaemonError::Refused(_)), "{msg}");
    assert!(msg.contains("the daemon's role lacks 1 privilege(s)"), "{msg}");
    let fix = format!(
        "GRANT UPDATE (\"accountOwnerId\", \"assignedAt\", \"salesTeamId\") ON TABLE crm.opportunity TO {role};"
    );
    assert!(msg.contains(&fix) && msg.contains("write_back.set"), "the GRANT that fixes it, and what needs it: {msg}");
    assert!(msg.contains("oppty-router grants ROLE"), "the hint names the fix: {msg}");
    assert_eq!(db.owner_of(&opp).await, 1, "nothing written");
    assert_eq!(
        db.count("SELECT count(*) FROM oppty_router.events WHERE kind = 'route' AND attempts = 0").await,
        1,
        "still queued, not charged"
    );
    assert_eq!(db.count("SELECT count(*) FROM oppty_router.dead_letter").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_server_certificate_given_as_its_own_root_is_trusted_as_libpq_trusts_it() {
    // The PostgreSQL manual's recipe: one self-signed certificate for the server, marked a CA.
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    p.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = p.self_signed(&key).expect("self-sign");
    let cluster = Cluster::start_with(ClusterOptions {
        durable: false,
        tcp: true,
        tls: Some(ServerTls { cert_pem: cert.pem(), key_pem: key.serialize_pem(), ca_pem: None }),
        hba: Some("local all all trust\nhostssl all all 127.0.0.1/32 trust\n".into()),
        settings: Vec::new(),
    })
    .expect("a TLS cluster");
    let files = tempfile::tempdir().expect("tempdir");
    let own = files.path().join("server.crt");
    std::fs::write(&own, cert.pem()).expect("write");
    let other = files.path().join("other.crt");
    std::fs::write(&other, make_ca("somebody else's CA").cert.pem()).expect("write");
    for mode in ["verify-ca", "verify-full"] {
        let url = |root: &std::path::Path| {
            format!("{} sslmode={mode} sslrootcert={}", cluster.tcp_url("postgres", "postgres"), root.display())
        };
        let c = db::connect(&db_config(&url(&own)), "").await.unwrap_or_else(|e| panic!("{mode}: {e}"));
        c.query_one("SELECT 1", &[]).await.expect("a query over TLS");
        let refused = match db::connect(&db_config(&url(&other)), "").await {
            Ok(_) => panic!("{mode}: a certificate another CA did not sign is refused"),
            Err(e) => e,
        };
        assert_eq!(refused.kind(), db::ErrorKind::Refused, "{mode}: {refused}");
    }
}
