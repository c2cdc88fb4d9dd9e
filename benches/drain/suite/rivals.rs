//! What the router is measured against: the bare SQL floor, the PL/pgSQL trigger a DBA would
//! write, and graphile-worker. Each measures itself and adds its rows; none uses the router.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use devkit::demo;
use oppty_router::config::Config;
use oppty_router::db;

use super::{rules_dir, Bench, INSERT_SCRIPT};

impl Bench<'_> {
    /// Section 5: the bare SQL floor, on a queue of its own opportunities.
    pub(super) fn floor(&mut self, cfg: &Config) {
        let n = self.opts.floor_events;
        let s = cfg.router.schema.quoted();
        let rate = self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            demo::insert_opportunities(&c, n, "retail", 11, 0).await.expect("floor queue");
            c.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
            // The router's own writes are marked so the capture triggers skip them; so are these.
            c.batch_execute("SET oppty_router.origin = 'router'").await.expect("origin");
            let sql = format!(
                "WITH c AS (DELETE FROM {s}.events WHERE id = ANY(ARRAY(SELECT id FROM {s}.events \
                   WHERE attempts = 0 ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)) RETURNING opp_id), \
                 u AS (UPDATE crm.opportunity o SET \"accountOwnerId\" = 402 FROM c \
                   WHERE o.\"oppId\" = c.opp_id::uuid AND (o.\"accountOwnerId\" IS NULL OR o.\"accountOwnerId\" = 1) RETURNING 1) \
                 SELECT (SELECT count(*) FROM c) AS claimed, (SELECT count(*) FROM u) AS written"
            );
            let stmt = c.prepare(&sql).await.expect("prepare the floor");
            let (started, mut claimed, mut written) = (Instant::now(), 0i64, 0i64);
            loop {
                let r = c.query_one(&stmt, &[]).await.expect("floor step");
                let (n, w): (i64, i64) = (r.get("claimed"), r.get("written"));
                if n == 0 {
                    break;
                }
                claimed += n;
                written += w;
            }
            assert_eq!(claimed, i64::from(n), "the floor claimed every event");
            assert_eq!(written, i64::from(n), "the floor wrote every owner");
            claimed as f64 / started.elapsed().as_secs_f64()
        });
        self.table.push(
            format!("bare SQL floor: {n} events, claim 100 + owner UPDATE + delete, 1 connection"),
            rate,
            "events/s",
            "",
        );
    }

    /// Section 6: the PL/pgSQL trigger a DBA would write, in a copy of the CRM without the router.
    pub(super) fn plpgsql(&mut self) {
        let cap = 20;
        let members = self.rt.block_on(async {
            let cfg = demo::prepare_crm(&self.cluster, "crm_plpgsql", rules_dir()).await.expect("sample CRM");
            let c = db::connect(&cfg.database, "").await.expect("connect");
            c.batch_execute(&PLPGSQL.replace("$CAP", &cap.to_string())).await.expect("the trigger");
            c.query_one("SELECT count(*) AS n FROM crm.rr_member", &[]).await.expect("members").get::<_, i64>("n")
        });
        let insert = self.script("insert.sql", INSERT_SCRIPT);
        let tps = self.pgbench_8("crm_plpgsql", &insert, &[]);
        let (over, assigned) = self.rt.block_on(async {
            let c = self.connect("crm_plpgsql").await;
            let r = c
                .query_one(
                    "SELECT coalesce(sum(greatest(l.n - m.cap, 0)), 0)::int8 AS over, \
                       (SELECT count(*) FROM crm.opportunity WHERE title = 'bench' AND \"accountOwnerId\" <> 1) AS assigned \
                     FROM crm.rr_member m JOIN crm.rr_load l ON l.id = m.id",
                    &[],
                )
                .await
                .expect("violations");
            (r.get::<_, i64>("over"), r.get::<_, i64>("assigned"))
        });
        self.table.push(
            "PL/pgSQL trigger (least-loaded under a cap) inside the CRM's INSERT, 8 clients",
            tps,
            "TPS",
            "",
        );
        self.table.push(
            "PL/pgSQL trigger: assignments past a member's cap",
            over as f64,
            "opportunities",
            format!("{members} members, each capped at {cap} more open; {assigned} assigned"),
        );
    }

    /// Section 7: graphile-worker (from the npm registry, kept under `target/bench-node`) draining
    /// as many no-op jobs as the backlog, with its local queue and batched completion.
    pub(super) fn graphile(&mut self) {
        let node_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-node"));
        if !node_dir.join("node_modules/graphile-worker/package.json").exists() {
            let out = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&node_dir)
                .arg(format!("graphile-worker@{GRAPHILE_WORKER}"))
                .output()
                .expect("npm is missing: `apt-get install nodejs npm` (`cargo xtask test` does)");
            assert!(out.status.success(), "npm install graphile-worker: {}", String::from_utf8_lossy(&out.stderr));
        }
        self.rt.block_on(async {
            self.connect("postgres").await.batch_execute("CREATE DATABASE gw").await.expect("create gw")
        });
        let url = format!("postgres://postgres@/gw?host={}&port={}", self.cluster.dir.display(), self.cluster.port);
        let jobs = self.opts.backlog.to_string();
        let out = Command::new("node")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/drain/graphile.js"))
            .args([&url, &jobs, "10"])
            .env("NODE_PATH", node_dir.join("node_modules"))
            .output()
            .expect("node is missing: `apt-get install nodejs` (`cargo xtask test` does)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "graphile-worker: {text}{}", String::from_utf8_lossy(&out.stderr));
        let result: serde_json::Value = serde_json::from_str(text.trim()).expect("graphile.js prints JSON");
        let rate = result["rate"].as_f64().expect("a rate");
        self.table.push(
            format!("graphile-worker {GRAPHILE_WORKER}: {jobs} no-op jobs, local queue 500, batched completion, 10 concurrent"),
            rate,
            "jobs/s",
            "",
        );
    }
}

/// The graphile-worker version the issue measured (npm registry).
pub(super) const GRAPHILE_WORKER: &str = "0.17.3";

/// Least-loaded under a cap, inside the insert: what a DBA writes instead of a router (the sample
/// CRM writes 1 for "nobody"). Loads are counted at insert time; concurrent inserts see the same
/// counts, so two can take a member's last place.
pub(super) const PLPGSQL: &str = "CREATE TABLE crm.rr_member (id int PRIMARY KEY, cap int NOT NULL);
CREATE VIEW crm.rr_load AS SELECT u.id, (SELECT count(*) FROM crm.opportunity o JOIN crm.stage s ON s.id = o.\"stageId\"
  WHERE o.\"accountOwnerId\" = u.id AND NOT s.is_won AND NOT s.is_lost) AS n FROM crm.users u;
INSERT INTO crm.rr_member SELECT id, n + $CAP FROM crm.rr_load WHERE id NOT IN (1, 402) ORDER BY id LIMIT 12;
CREATE FUNCTION crm.assign_least_loaded() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE chosen int;
BEGIN
  IF NEW.\"accountOwnerId\" = 1 THEN
    SELECT m.id INTO chosen FROM crm.rr_member m
      CROSS JOIN LATERAL (SELECT count(*) AS n FROM crm.opportunity o JOIN crm.stage s ON s.id = o.\"stageId\"
        WHERE o.\"accountOwnerId\" = m.id AND NOT s.is_won AND NOT s.is_lost) c
      WHERE c.n < m.cap ORDER BY c.n, m.id LIMIT 1;
    NEW.\"accountOwnerId\" := coalesce(chosen, 1);
  END IF;
  RETURN NEW;
END $f$;
CREATE TRIGGER assign_least_loaded BEFORE INSERT ON crm.opportunity FOR EACH ROW EXECUTE FUNCTION crm.assign_least_loaded();";
