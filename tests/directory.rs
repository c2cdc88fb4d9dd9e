//! The CRM's word on people is live: with `[directory]` on, on every CRM shape (integer ids with
//! leads and opportunities in one table; uuid ids in a quoted camelCase schema; char(36) ids;
//! text ids with naive local times), the real daemon starts, routes to the members the CRM
//! lists, and applies a pause or a cap the CRM changes alone at its next refresh, logged in words
//! and as a new rules version.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tokio_postgres::Client;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");

/// One CRM shape: the id type of users and deals, how the rule files write the users' ids (and
/// how the CRM reads them back), and what is special about it.
struct Shape {
    label: &'static str,
    id_type: &'static str,
    /// An, Bình, Chi, the admin: as the rule files write them.
    in_files: [&'static str; 4],
    /// The same users as the CRM's owner column reads back as text.
    in_crm: [&'static str; 4],
    /// A deal's id, as text the id type reads, for deal `n`.
    deal: fn(u32) -> String,
    /// Leads and opportunities share the table: only `kind = 'opportunity'` is routed.
    shared_table: bool,
    /// The CRM writes naive local times (`timestamp without time zone` in Hanoi's time).
    naive_local_times: bool,
}

const SHAPES: &[Shape] = &[
    Shape {
        label: "integer",
        id_type: "integer",
        in_files: ["10", "11", "12", "99"],
        in_crm: ["10", "11", "12", "99"],
        deal: |n| (1000 + n).to_string(),
        shared_table: true,
        naive_local_times: false,
    },
    Shape {
        label: "uuid",
        id_type: "uuid",
        in_files: [
            "A0000000-0000-0000-0000-0000000000AA",
            "{A0000000-0000-0000-0000-0000000000BB}",
            "a0000000-0000-0000-0000-0000000000cc",
            "A0000000-0000-0000-0000-0000000000FF",
        ],
        in_crm: [
            "a0000000-0000-0000-0000-0000000000aa",
            "a0000000-0000-0000-0000-0000000000bb",
            "a0000000-0000-0000-0000-0000000000cc",
            "a0000000-0000-0000-0000-0000000000ff",
        ],
        deal: |n| format!("c0000000-0000-0000-0000-{n:012}"),
        shared_table: false,
        naive_local_times: false,
    },
    Shape {
        label: "char36",
        id_type: "char(36)",
        in_files: [
            "5e0a1b2c-0000-4000-8000-0000000000aa",
            "5e0a1b2c-0000-4000-8000-0000000000bb",
            "5e0a1b2c-0000-4000-8000-0000000000cc",
            "1",
        ],
        in_crm: [
            "5e0a1b2c-0000-4000-8000-0000000000aa",
            "5e0a1b2c-0000-4000-8000-0000000000bb",
            "5e0a1b2c-0000-4000-8000-0000000000cc",
            "1",
        ],
        deal: |n| format!("d{n:035}"),
        shared_table: false,
        naive_local_times: false,
    },
    Shape {
        label: "text",
        id_type: "text",
        in_files: ["an.nguyen", "Binh.Tran", "chi.le", "admin"],
        in_crm: ["an.nguyen", "Binh.Tran", "chi.le", "admin"],
        deal: |n| format!("DEAL-{n}"),
        shared_table: false,
        naive_local_times: true,
    },
];

impl Shape {
    fn crm_sql(&self) -> String {
        let t = self.id_type;
        let [a, b, c, admin] = self.in_crm;
        let created = if self.naive_local_times {
            // Hanoi's wall clock, as a CRM that stores local times writes it.
            "\"createdAt\" timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'Asia/Ho_Chi_Minh'),"
        } else {
            ""
        };
        format!(
            r#"
CREATE SCHEMA "SalesApp";
CREATE TABLE "SalesApp"."User" ("userId" {t} PRIMARY KEY, "displayName" text NOT NULL, "isActive" boolean NOT NULL DEFAULT true);
INSERT INTO "SalesApp"."User" ("userId", "displayName") VALUES ('{a}', 'An'), ('{b}', 'Bình'), ('{c}', 'Chi'), ('{admin}', 'Admin');
CREATE TABLE "SalesApp"."TeamMember" (
    "teamId" text NOT NULL, "userId" {t} NOT NULL REFERENCES "SalesApp"."User",
    "skipAutoAssign" boolean NOT NULL DEFAULT false, "maxPer30d" integer);
INSERT INTO "SalesApp"."TeamMember" ("teamId", "userId") VALUES ('T-NORTH', '{a}'), ('T-NORTH', '{b}'), ('T-NORTH', '{c}');
CREATE TABLE "SalesApp"."Deal" (
    "dealId" {t} PRIMARY KEY,
    "ownerUserId" {t} REFERENCES "SalesApp"."User",
    "Region" text,
    kind text NOT NULL DEFAULT 'opportunity',
    {created}
    "isClosed" boolean NOT NULL DEFAULT false
);
"#
        )
    }

    fn config(&self, url: &str, rules: &std::path::Path) -> String {
        let mut extra_opportunity = String::new();
        if self.shared_table {
            extra_opportunity
                .push_str("where = \"o.kind = 'opportunity'\"\nwatch_columns = [\"kind\", \"isClosed\"]\n");
        } else {
            extra_opportunity.push_str("watch_columns = [\"isClosed\"]\n");
        }
        let mut database = String::new();
        if self.naive_local_times {
            extra_opportunity.push_str("created_at = \"createdAt\"\n");
            database.push_str("naive_timestamps = \"Asia/Ho_Chi_Minh\"\n");
        }
        format!(
            r#"
[database]
url = "{url}"
{database}
[router]
rules_dir = "{rules}"
poll_interval = "100ms"
[opportunity]
table = '"SalesApp"."Deal"'
id = "dealId"
owner = "ownerUserId"
open_when = 'NOT o."isClosed"'
{extra_opportunity}
[opportunity.fields]
province = "Region"
[directory]
active_members = 'SELECT "userId"::text FROM "SalesApp"."User" WHERE "isActive"'
team_members = '''
    SELECT "teamId", "userId"::text, "skipAutoAssign" AS paused, "maxPer30d" AS max_assignments,
           CASE WHEN "maxPer30d" IS NOT NULL THEN '30d' END AS per
    FROM "SalesApp"."TeamMember"'''
refresh = "1s"
"#,
            rules = rules.display()
        )
    }

    fn rules(&self) -> String {
        let [a, b, c, admin] = self.in_files;
        format!(
            r#"
[settings]
fallback_owner = "{admin}"
[[territory]]
id = "HN"
name = "Hà Nội"
[[member]]
id = "{a}"
name = "An"
[[member]]
id = "{b}"
name = "Bình"
[[member]]
id = "{c}"
name = "Chi"
# Who is in the team, paused or capped there: the CRM says (directory.team_members).
[[team]]
id = "north"
name = "North"
crm_id = "T-NORTH"
pipelines = ["default"]
territories = ["HN"]
[[pipeline]]
id = "default"
[[pipeline.rule]]
id = "by-province"
team = {{ territory = "province" }}
member = "fewest_open"
[[test]]
name = "Hanoi goes to An when the others are busy"
fields = {{ province = "HN" }}
open = {{ "{b}" = 3, "{c}" = 3 }}
expect = {{ member = "{a}", team = "north" }}
"#
        )
    }
}

/// A shape's CRM in a database of its own, its config and rules in a directory of their own.
struct Crm<'s> {
    shape: &'s Shape,
    /// The CRM's own writes (its own role once [`Crm::as_in_production`] ran).
    client: Client,
    /// The database owner: reads the router's status.
    admin: Client,
    url: String,
    dir: tempfile::TempDir,
    next: u32,
}

impl Crm<'_> {
    fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("oppty-router.toml")
    }

    fn cli(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(self.config_path())
            .env_remove("RUST_LOG")
            .output()
            .expect("run the binary");
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// A new deal in Hanoi (`kind` lead or opportunity); its id.
    async fn deal(&mut self, kind: &str) -> String {
        self.next += 1;
        let id = (self.shape.deal)(self.next);
        let sql = format!(
            "INSERT INTO \"SalesApp\".\"Deal\" (\"dealId\", \"Region\", kind) VALUES ($1::text::{}, 'HN', $2)",
            self.shape.id_type
        );
        self.client.execute(&sql, &[&id, &kind]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        id
    }

    async fn owner(&self, deal: &str) -> Option<String> {
        let sql = format!(
            "SELECT rtrim(\"ownerUserId\"::text) FROM \"SalesApp\".\"Deal\" WHERE \"dealId\" = $1::text::{}",
            self.shape.id_type
        );
        self.client.query_one(&sql, &[&deal]).await.expect("owner").get(0)
    }

    async fn owned(&self, deal: &str) -> String {
        let what = format!("{}: deal {deal} to be owned", self.shape.label);
        wait_until(&what, Duration::from_secs(10), || async { self.owner(deal).await.is_some() }).await;
        self.owner(deal).await.expect("owned")
    }

    /// Route `n` new opportunities one after the other; who got each, by name.
    async fn route(&mut self, n: usize) -> Vec<&'static str> {
        let mut got = Vec::new();
        for _ in 0..n {
            let deal = self.deal("opportunity").await;
            let owner = self.owned(&deal).await;
            let at = self.shape.in_crm.iter().position(|c| *c == owner);
            got.push(at.map_or("someone else", |i| ["An", "Bình", "Chi", "Admin"][i]));
        }
        got
    }

    /// Change the CRM's directory with `sql`, then wait until the daemon routes with a new set.
    async fn change(&self, sql: &str) {
        change_and_wait_seen_by(&self.client, &self.admin, sql).await;
    }

    /// As a real install runs, once installed: the CRM's tables belong to a role of their own
    /// (neither a superuser nor the database owner), the CRM writes with another role holding
    /// data rights on its tables only, and the daemon runs as a role holding exactly what
    /// `grants` prints, each part run by the role it names (its config is rewritten to connect as
    /// it). Returns the daemon's role.
    async fn as_in_production(&mut self) -> String {
        let label = self.shape.label;
        let crm_role = login_role_for_test(&self.admin, "crm_app").await;
        let router_role = login_role_for_test(&self.admin, "router").await;
        let tables_owner = login_role_for_test(&self.admin, "crm_owner").await;
        self.admin
            .batch_execute(&format!(
                "ALTER SCHEMA \"SalesApp\" OWNER TO \"{tables_owner}\"; \
                 ALTER TABLE \"SalesApp\".\"User\" OWNER TO \"{tables_owner}\"; \
                 ALTER TABLE \"SalesApp\".\"TeamMember\" OWNER TO \"{tables_owner}\"; \
                 ALTER TABLE \"SalesApp\".\"Deal\" OWNER TO \"{tables_owner}\"; \
                 SET ROLE \"{tables_owner}\"; \
                 GRANT USAGE ON SCHEMA \"SalesApp\" TO \"{crm_role}\"; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"SalesApp\" TO \"{crm_role}\"; RESET ROLE"
            ))
            .await
            .expect("the CRM's owner and role");
        let (code, script) = self.cli(&["grants", &router_role]);
        assert_eq!(code, Some(0), "{label}: {script}");
        assert!(script.contains(&format!("-- part 1: as {tables_owner}, or a superuser")), "{label}: {script}");
        run_in_parts(&self.admin, &script, label).await;
        let cfg = std::fs::read_to_string(self.config_path()).expect("config");
        let daemon_url = as_role(&self.url, &router_role);
        std::fs::write(self.config_path(), cfg.replace(&self.url, &daemon_url)).expect("config");
        let crm_url = as_role(&self.url, &crm_role);
        self.client = oppty_router::db::connect(&db_config(&crm_url), "").await.expect("the CRM's role connects");
        router_role
    }
}

/// Run a `grants` script part by part, each as the role its header names (`SET ROLE`: with that
/// role's rights only, not the superuser's), the database's part as the database owner.
async fn run_in_parts(admin: &Client, script: &str, label: &str) {
    let mut parts = script.split("\n-- part ").skip(1).peekable();
    assert!(parts.peek().is_some(), "{label}: the script has parts: {script}");
    for part in parts {
        let header = part.lines().next().unwrap_or_default();
        let role = header.split(": as ").nth(1).and_then(|r| r.split([',', ' ']).next()).unwrap_or_default();
        assert!(!role.is_empty(), "{label}: `{header}` names its role");
        let body = part.split_once('\n').map_or("", |(_, b)| b);
        let sql = format!("SET ROLE {role};\n{body}\nRESET ROLE;");
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{label}: part `{header}` runs as {role}: {e}\n{sql}"));
        admin.batch_execute("RESET ROLE").await.expect("reset");
    }
}

async fn crm(shape: &Shape) -> Crm<'_> {
    let (_, url, client) = empty_db(&format!("dir_{}", shape.label)).await;
    client.batch_execute(&shape.crm_sql()).await.expect("the CRM");
    let admin = oppty_router::db::connect(&db_config(&url), "").await.expect("the owner");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("rules.toml"), shape.rules()).expect("rules");
    std::fs::write(dir.path().join("oppty-router.toml"), shape.config(&url, &rules)).expect("config");
    Crm { shape, client, admin, url, dir, next: 0 }
}

fn count(got: &[&str], who: &str) -> usize {
    got.iter().filter(|g| **g == who).count()
}

/// The whole story on one shape.
async fn the_crms_word_is_live_on(shape: &Shape) {
    let mut c = crm(shape).await;
    let label = shape.label;
    let (code, out) = c.cli(&["install"]);
    assert_eq!(code, Some(0), "{label}: {out}");
    let router_role = c.as_in_production().await;
    let (code, out) = c.cli(&["check"]);
    assert_eq!(code, Some(0), "{label}: check with the CRM's directory, as the daemon's narrow role: {out}");
    assert!(out.contains("rights OK"), "{label}: {out}");
    assert!(!out.contains("superuser"), "{label}: {out}");
    let (child, logs) = start_daemon(&c.config_path());

    // The members come from the CRM; fewest open spreads the first three.
    // In a table shared with leads, a lead saved first: the three routed after it are the barrier.
    let lead = if shape.shared_table { Some(c.deal("lead").await) } else { None };
    let got = c.route(3).await;
    assert_eq!((count(&got, "An"), count(&got, "Bình"), count(&got, "Chi")), (1, 1, 1), "{label}: {got:?}");
    if let Some(lead) = lead {
        assert_eq!(c.owner(&lead).await, None, "{label}: a lead in the shared table is not routed");
    }

    // Bình ticks the CRM's "skip auto assignment" for North, and nothing else changes.
    let [_, b, ch, _] = shape.in_crm;
    c.change(&format!("UPDATE \"SalesApp\".\"TeamMember\" SET \"skipAutoAssign\" = true WHERE \"userId\" = '{b}'"))
        .await;
    let got = c.route(4).await;
    assert_eq!(count(&got, "Bình"), 0, "{label}: paused in North by the CRM, from the next refresh on: {got:?}");
    let (code, status) = c.cli(&["status"]);
    assert_eq!(code, Some(0), "{status}");
    assert!(
        status.contains("paused in one team by the CRM: ") && status.contains("(Bình) in team north"),
        "{label}: status says what is in force: {status}"
    );

    // Chi's membership gets a cap of 2 per 30 days, alone: she has had 2 or more through North.
    c.change(&format!("UPDATE \"SalesApp\".\"TeamMember\" SET \"maxPer30d\" = 2 WHERE \"userId\" = '{ch}'")).await;
    let got = c.route(3).await;
    assert_eq!(got, ["An", "An", "An"], "{label}: Chi is at her CRM cap in North, Bình is paused");

    // Bình un-ticks it: she receives again, level with the others (not the whole backlog at once).
    c.change(&format!("UPDATE \"SalesApp\".\"TeamMember\" SET \"skipAutoAssign\" = false WHERE \"userId\" = '{b}'"))
        .await;
    let got = c.route(4).await;
    assert!(count(&got, "Bình") >= 1 && count(&got, "An") >= 1, "{label}: Bình re-enters fairly: {got:?}");

    // An is disabled in the CRM.
    let [a, ..] = shape.in_crm;
    c.change(&format!("UPDATE \"SalesApp\".\"User\" SET \"isActive\" = false WHERE \"userId\" = '{a}'")).await;
    let got = c.route(2).await;
    assert_eq!(got, ["Bình", "Bình"], "{label}: An disabled, Chi full: only Bình receives");
    let (_, status) = c.cli(&["status"]);
    for said in ["as the rules in force route", "disabled in the CRM: ", "(An)", "capped in one team by the CRM: "] {
        assert!(status.contains(said), "{label}: status shows what is in force (`{said}`): {status}");
    }
    assert!(status.contains("(Chi) in team north: 2 per"), "{label}: {status}");
    assert!(status.contains("warning: ") && status.contains("no longer holds"), "{label}: {status}");

    signal(&child, nix::sys::signal::Signal::SIGTERM);
    drop(child);
    let logs = logs.join().expect("logs");
    for said in [
        "paused in north by the CRM",
        "un-paused in north by the CRM",
        "'s cap in north none → 2 per 30 days by the CRM",
        "disabled by the CRM",
        // The admin's own test named An: it is said, and the CRM's word applies all the same.
        "test `Hanoi goes to An when the others are busy` no longer holds with the CRM's directory as it is now",
    ] {
        assert!(logs.contains(said), "{label}: the log says `{said}`: {logs}");
    }
    assert!(logs.contains("Bình ("), "{label}: people are named: {logs}");
    assert!(!logs.contains("connected as a superuser"), "{label}: the daemon ran as its narrow role: {logs}");
    assert!(!logs.contains("never compiled with the CRM's directory"), "{label}: {logs}");
    // Every decision of the story (a pause, a cap and a disabling by the CRM in between, each a
    // new rules version), decided again by the rules that made it from what the router saw.
    let out = Command::new(BIN)
        .args(["simulate", "--in-force", "--since", "1h", "--json", "-c"])
        .arg(c.config_path())
        .env_remove("RUST_LOG")
        .output()
        .expect("simulate");
    let replay: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{label}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(replay["changes"], serde_json::json!([]), "{label}: the rules in force change nothing: {replay}");
    assert!(replay["opportunities"].as_u64() >= Some(16), "{label}: {replay}");
    withdrawn_after_uninstall(&c, &router_role).await;
}

/// `uninstall` as the daemon's role changes nothing and names the owners; as the owner it
/// removes the router and says the role keeps its grants; `grants --revoke`, run in parts,
/// leaves the role holding nothing on the CRM's tables.
async fn withdrawn_after_uninstall(c: &Crm<'_>, router_role: &str) {
    let label = c.shape.label;
    let (code, out) = c.cli(&["uninstall"]);
    assert_eq!(code, Some(78), "{label}: {out}");
    assert!(out.contains("uninstall needs to own what it drops") && out.contains("(owned by"), "{label}: {out}");
    assert!(!out.contains("db error") && !out.contains("25P02"), "{label}: {out}");
    let cfg = std::fs::read_to_string(c.config_path()).expect("config");
    let owner_url = c.url.clone();
    std::fs::write(c.config_path(), cfg.replace(&as_role(&c.url, router_role), &owner_url)).expect("config");
    let (code, out) = c.cli(&["uninstall"]);
    assert_eq!(code, Some(0), "{label}: {out}");
    assert!(out.contains("grants --revoke ROLE"), "{label}: uninstall says the grants stay: {out}");
    let (code, revoke) = c.cli(&["grants", "--revoke", router_role]);
    assert_eq!(code, Some(0), "{label}: {revoke}");
    run_in_parts(&c.admin, &revoke, label).await;
    let held = c
        .admin
        .query_one(
            "SELECT (SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = $1) \
                  + (SELECT count(*) FROM information_schema.column_privileges WHERE grantee = $1)",
            &[&router_role],
        )
        .await
        .expect("privileges")
        .get::<_, i64>(0);
    assert_eq!(held, 0, "{label}: the revoke leaves the daemon's role nothing on the CRM's tables:\n{revoke}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_every_crm_shape_the_daemon_starts_with_the_directory_and_applies_a_pause_or_cap_the_crm_changes_alone() {
    for shape in SHAPES {
        the_crms_word_is_live_on(shape).await;
    }
}

/// The regression of the previous release: a directory that changes nothing the rule files
/// route by (`active_members` alone, everyone active) still puts the set compiled with it in
/// force; the provisional set before it never routes, and the daemon never stops with 78 for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_active_members_alone_that_changes_nothing_still_starts_the_daemon() {
    let shape = &SHAPES[1];
    let mut c = crm(shape).await;
    let cfg = std::fs::read_to_string(c.config_path()).expect("config");
    let start_at = cfg.find("team_members").expect("team_members");
    let end_at = cfg.find("refresh =").expect("refresh");
    std::fs::write(c.config_path(), format!("{}{}", &cfg[..start_at], &cfg[end_at..])).expect("config");
    let [a, b, ch, _] = shape.in_files;
    let rules_file = c.dir.path().join("rules/rules.toml");
    let rules = std::fs::read_to_string(&rules_file).expect("rules").replace(
        "territories = [\"HN\"]\n",
        &format!("territories = [\"HN\"]\nmembers = [\"{a}\", \"{b}\", \"{ch}\"]\n"),
    );
    std::fs::write(&rules_file, rules).expect("rules");
    let (code, out) = c.cli(&["install"]);
    assert_eq!(code, Some(0), "{out}");
    let (child, logs) = start_daemon(&c.config_path());
    let got = c.route(3).await;
    assert_eq!((count(&got, "An"), count(&got, "Bình"), count(&got, "Chi")), (1, 1, 1), "{got:?}");
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    drop(child);
    let logs = logs.join().expect("logs");
    assert!(logs.contains("compiled with the CRM's directory"), "the first set with the directory is said: {logs}");
}

/// A CRM whose "assigned in 30 days" counts every assignment, by a person or the router: the
/// column the CRM sets whenever the owner changes.
const COUNTING_CRM: &str = r#"
CREATE SCHEMA crm;
CREATE TABLE crm.users (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO crm.users VALUES (10, 'An'), (11, 'Bình'), (99, 'Admin');
CREATE TABLE crm.deal (
    id serial PRIMARY KEY, owner_id integer REFERENCES crm.users, region text,
    closed boolean NOT NULL DEFAULT false, assigned_at timestamptz);
CREATE FUNCTION crm.stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner_id IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.owner_id IS DISTINCT FROM OLD.owner_id) THEN
        NEW.assigned_at := coalesce(NEW.assigned_at, now());
        IF TG_OP = 'UPDATE' THEN NEW.assigned_at := now(); END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON crm.deal FOR EACH ROW EXECUTE FUNCTION crm.stamp();
"#;

const COUNTING_RULES: &str = r#"
[settings]
fallback_owner = "99"
[[territory]]
id = "HN"
[[member]]
id = "10"
name = "An"
caps = [{ max = 3, per = "30d", count = "crm" }]
[[member]]
id = "11"
name = "Bình"
caps = [{ max = 3, per = "30d", count = "crm" }]
[[team]]
id = "north"
pipelines = ["default"]
territories = ["HN"]
members = ["10", "11"]
[[pipeline]]
id = "default"
[[pipeline.rule]]
id = "by-province"
team = { territory = "province" }
member = "round_robin"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_counting_the_crms_assignments_counts_what_people_assigned_by_hand() {
    let (_, url, client) = empty_db("crmcount").await;
    client.batch_execute(COUNTING_CRM).await.expect("CRM");
    // Two deals An was given by hand this month, one long ago (outside the window).
    client
        .batch_execute(
            "INSERT INTO crm.deal (owner_id, region, assigned_at) VALUES (10, 'HN', now() - interval '1 day'), \
             (10, 'HN', now() - interval '2 days'), (10, 'HN', now() - interval '40 days')",
        )
        .await
        .expect("manual assignments");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("rules.toml"), COUNTING_RULES).expect("rules");
    let cfg = dir.path().join("oppty-router.toml");
    let config = format!(
        "[database]\nurl = \"{url}\"\n[router]\nrules_dir = \"{}\"\npoll_interval = \"100ms\"\n\
         [opportunity]\ntable = \"crm.deal\"\nid = \"id\"\nowner = \"owner_id\"\nopen_when = \"NOT o.closed\"\n\
         assigned_at = \"assigned_at\"\n[opportunity.fields]\nprovince = \"region\"\n\
         [directory]\nactive_members = \"SELECT id::text FROM crm.users\"\nrefresh = \"1s\"\n",
        rules.display()
    );
    std::fs::write(&cfg, &config).expect("config");
    // Without a column saying when the CRM assigns, the cap is refused where it is written.
    let unmapped = dir.path().join("unmapped.toml");
    std::fs::write(&unmapped, config.replace("assigned_at = \"assigned_at\"\n", "")).expect("config");
    let out = Command::new(BIN).args(["check", "-c"]).arg(&unmapped).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(text.contains("rules.toml:9:") && text.contains("needs `opportunity.assigned_at`"), "{text}");

    let out = Command::new(BIN).args(["install", "-c"]).arg(&cfg).output().expect("install");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = "the CRM's assignments read for caps that count them";
    let (child, logs) = start_daemon_logging(&cfg, Some("info,oppty_router::drain::crm_count=debug"));
    let owners = |n: usize| {
        let client = &client;
        async move {
            let mut got = Vec::new();
            for _ in 0..n {
                got.push(deal_owned(client, "INSERT INTO crm.deal (region) VALUES ('HN') RETURNING id", &[]).await);
            }
            got
        }
    };
    // An has 2 of 3 by the CRM's count: one more, then Bình.
    let got: Vec<i32> = owners(3).await.into_iter().map(|(_, o)| o).collect();
    assert_eq!(got.iter().filter(|o| **o == 10).count(), 1, "An's manual assignments count: {got:?}");
    // A manager gives Bình two by hand: with the router's one she is at 3 by the CRM's count.
    client
        .batch_execute("INSERT INTO crm.deal (owner_id, region) VALUES (11, 'HN'), (11, 'HN')")
        .await
        .expect("by hand");
    // Two reads of the CRM's count later (directory.refresh = 1s), the second begun after these.
    logs.wait_for_count(read, logs.count(read) + 2, Duration::from_secs(10)).await;
    let last = owners(1).await;
    assert_eq!(last[0].1, 99, "both at their CRM cap: the fallback owner");
    let out = Command::new(BIN).args(["explain", &last[0].0.to_string(), "-c"]).arg(&cfg).output().expect("explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the CRM's count, manual ones included"), "explain says which count: {text}");
    let out = Command::new(BIN).args(["status", "-c"]).arg(&cfg).output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("caps counting the CRM's assignments") && text.contains("10 (An): 3 per 30d"), "{text}");
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    drop(child);
    let _ = logs.join();
}

/// A CRM keeping its areas as a nested set, and which team covers which area.
const AREAS_CRM: &str = r#"
CREATE SCHEMA crm;
CREATE TABLE crm.users (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO crm.users VALUES (10, 'An'), (11, 'Bình'), (99, 'Admin');
CREATE TABLE crm.area (code text PRIMARY KEY, title text NOT NULL, lft integer NOT NULL, rgt integer NOT NULL);
INSERT INTO crm.area VALUES ('VN', 'Việt Nam', 1, 10), ('HN', 'Hà Nội', 2, 7), ('BD', 'Ba Đình', 3, 4),
    ('HK', 'Hoàn Kiếm', 5, 6), ('SG', 'Hồ Chí Minh', 8, 9);
CREATE TABLE crm.team_area (team text NOT NULL, area text NOT NULL);
INSERT INTO crm.team_area VALUES ('T-N', 'HN'), ('T-S', 'SG');
CREATE TABLE crm.deal (id serial PRIMARY KEY, owner_id integer REFERENCES crm.users, district text,
    closed boolean NOT NULL DEFAULT false);
"#;

/// No territory tree in the files: one alias added to the CRM's Hà Nội.
const AREAS_RULES: &str = r#"
[settings]
fallback_owner = "99"
[[territory]]
id = "HN"
aliases = ["Hanoi"]
[[member]]
id = "10"
name = "An"
[[member]]
id = "11"
name = "Bình"
[[team]]
id = "north"
crm_id = "T-N"
pipelines = ["default"]
members = ["10"]
[[team]]
id = "south"
crm_id = "T-S"
pipelines = ["default"]
members = ["11"]
[[pipeline]]
id = "default"
[[pipeline.rule]]
id = "by-district"
team = { territory = "district" }
member = "fewest_open"
[[test]]
name = "Ba Đình is in the north"
fields = { district = "Ba Đình" }
expect = { team = "north" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_territory_tree_and_who_covers_what_come_from_the_crms_nested_set_and_follow_its_changes() {
    let (_, url, client) = empty_db("areas").await;
    client.batch_execute(AREAS_CRM).await.expect("CRM");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("rules.toml"), AREAS_RULES).expect("rules");
    let cfg = dir.path().join("oppty-router.toml");
    let config = format!(
        "[database]\nurl = \"{url}\"\n[router]\nrules_dir = \"{}\"\npoll_interval = \"100ms\"\n\
         [opportunity]\ntable = \"crm.deal\"\nid = \"id\"\nowner = \"owner_id\"\nopen_when = \"NOT o.closed\"\n\
         [opportunity.fields]\ndistrict = \"district\"\n\
         [directory]\nterritories = \"SELECT code AS id, title AS name, lft, rgt FROM crm.area\"\n\
         team_territories = \"SELECT team, area FROM crm.team_area\"\nrefresh = \"1s\"\n",
        rules.display()
    );
    std::fs::write(&cfg, &config).expect("config");
    let run = |args: &[&str], file: &std::path::Path| {
        let out = Command::new(BIN).args(args).arg("-c").arg(file).env_remove("RUST_LOG").output().expect("run");
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = run(&["install"], &cfg);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["check"], &cfg);
    assert_eq!(code, Some(0), "the files' test runs against the CRM's tree: {out}");
    let (child, logs) = start_daemon(&cfg);
    let owner_of = |district: &'static str| {
        let client = &client;
        async move { deal_owned(client, "INSERT INTO crm.deal (district) VALUES ($1) RETURNING id", &[&district]).await.1 }
    };
    assert_eq!(owner_of("Ba Đình").await, 10, "a district under Hà Nội: the north, by the CRM's tree");
    assert_eq!(owner_of("Hồ Chí Minh").await, 11, "the south covers SG in the CRM");
    assert_eq!(owner_of("Hanoi").await, 10, "an alias the rule file adds to the CRM's node");
    assert_eq!(owner_of("Tây Hồ").await, 99, "not a territory yet: the fallback owner");

    // The CRM adds a district under Hà Nội (the nested set renumbered), and covers it.
    change_and_wait(
        &client,
        "UPDATE crm.area SET rgt = rgt + 2 WHERE rgt >= 7; UPDATE crm.area SET lft = lft + 2 WHERE lft > 7; \
         INSERT INTO crm.area VALUES ('TH', 'Tây Hồ', 7, 8)",
    )
    .await;
    assert_eq!(owner_of("Tây Hồ").await, 10, "the new district is under Hà Nội from the next refresh");
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    drop(child);
    let logs = logs.join().expect("logs");
    assert!(logs.contains("territories +th"), "the change is said: {logs}");

    // The same tree as a parent column: the files' test (Ba Đình is in the north) holds with it.
    let by_parent = dir.path().join("parent.toml");
    let parent = "CASE WHEN code IN ('HN', 'SG') THEN 'VN' WHEN code = 'VN' THEN NULL ELSE 'HN' END AS parent";
    let text = config.replace("lft, rgt FROM crm.area", &format!("{parent} FROM crm.area"));
    std::fs::write(&by_parent, text).expect("config");
    let (code, out) = run(&["check"], &by_parent);
    assert_eq!(code, Some(0), "a parent column reads the same tree: {out}");

    // A tree that names a parent it does not return is refused where it is configured.
    let broken = dir.path().join("broken.toml");
    let text = config.replace(
        "SELECT code AS id, title AS name, lft, rgt FROM crm.area",
        "SELECT code AS id, title AS name, CASE code WHEN 'BD' THEN 'XX' END AS parent FROM crm.area",
    );
    std::fs::write(&broken, text).expect("config");
    let (code, out) = run(&["check"], &broken);
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("directory.territories: territory `BD` has parent `XX`"), "{out}");
}
