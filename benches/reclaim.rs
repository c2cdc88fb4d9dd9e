//! Reclaim benchmark (prints figures; `cargo bench --bench reclaim`): 1,000,000 open assigned
//! opportunities, 10,000 of them stale; one sweep finds and reroutes the stale ones; then a sweep
//! with nothing stale. Also prints the query plan of the due scan, and the one-off cost of the first
//! sweep under a new reclaim rule.
//! `OPPTY_BENCH_OPEN` (default 1000000) and `OPPTY_BENCH_STALE` (default 10000) change the sizes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use devkit::demo;
use devkit::throwaway::Cluster;
use oppty_router::config::Config;
use oppty_router::drain::Drain;
use oppty_router::{crm, db, install};

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let open = env_num("OPPTY_BENCH_OPEN", 1_000_000);
    let stale = env_num("OPPTY_BENCH_STALE", 10_000);
    let cluster = Cluster::start(true).expect("throwaway PostgreSQL");
    cluster.stop_when_gone(std::process::id());
    let rules = tempfile::tempdir().expect("tempdir");
    let members: Vec<String> = (1000..1100).map(|m| format!("\"{m}\"")).collect();
    let defs: String = (1000..1100).map(|m| format!("[[member]]\nid = \"{m}\"\n")).collect();
    std::fs::write(
        rules.path().join("bench.toml"),
        format!(
            "{defs}[[team]]\nid = \"bench\"\ncrm_id = \"13\"\npipelines = [\"retail\"]\nmembers = [{}]\n\
             [[pipeline]]\nid = \"retail\"\n[pipeline.reclaim]\nafter = \"48h\"\n\
             [[pipeline.rule]]\nid = \"any\"\nmember = \"fewest_open\"\n",
            members.join(", ")
        ),
    )
    .expect("rules");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut cfg: Config = demo::prepare_crm(&cluster, "crm", rules.path().to_path_buf()).await.expect("sample CRM");
        cfg.directory = None;
        let cfg = Arc::new(cfg);
        let mut client = db::connect(&cfg.database, " bench").await.expect("connect");
        install::install_with(&mut client, &cfg, false).await.expect("install");
        let started = Instant::now();
        client
            .batch_execute(&format!(
                "INSERT INTO crm.users (id, login, \"fullName\") SELECT 1000 + g, 'bench' || g, 'Bench ' || g FROM generate_series(0, 99) g;
                 SET session_replication_role = replica; -- bulk load for the benchmark only: no triggers
                 INSERT INTO crm.opportunity (title, \"accountId\", \"pipelineCode\", \"stageId\", \"accountOwnerId\", \"salesTeamId\")
                 SELECT 'bench ' || g, md5('account' || (1 + g % 400))::uuid::text, 'retail', 1, 1000 + g % 100, 13
                 FROM generate_series(1, {open}) g;
                 SET session_replication_role = origin;
                 INSERT INTO oppty_router.ownership (opp_id, owner_id, team_id, pipeline, assigned_at, last_owner_touch_at, due_at)
                 SELECT \"oppId\"::text, \"accountOwnerId\"::text, 'bench', 'retail', now() - interval '5 days',
                        now() - interval '1 hour', now() + interval '47 hours'
                 FROM crm.opportunity;"
            ))
            .await
            .expect("bulk load");
        for t in ["crm.opportunity", "oppty_router.ownership", "oppty_router.assignments"] {
            client.batch_execute(&format!("VACUUM ANALYZE {t}")).await.expect("vacuum");
        }
        println!("oppty-router reclaim benchmark: {open} open assigned opportunities, {stale} stale (loaded in {:.0} s)", started.elapsed().as_secs_f64());
        let sql = crm::prepare(&client, &cfg).await.expect("mapping");
        let engine = Arc::new(oppty_router::load_rules(&cfg).expect("rules"));
        let mut drain = Drain::new(cfg.clone(), sql, engine, None);
        drain.reconcile(&mut client).await.expect("loads");
        // The first sweep under a rule set whose reclaim rule is new brings due times forward once.
        let t = Instant::now();
        assert_eq!(drain.sweep(&mut client).await.expect("first sweep"), 0);
        println!("first sweep under a new reclaim rule (due times aligned once): {:.2} s", t.elapsed().as_secs_f64());
        // Then {stale} of them go quiet: last touched three days ago, due a day ago.
        client
            .batch_execute(&format!(
                "UPDATE oppty_router.ownership SET last_owner_touch_at = now() - interval '3 days', \
                 due_at = now() - interval '1 day' WHERE opp_id IN (SELECT opp_id FROM oppty_router.ownership LIMIT {stale})"
            ))
            .await
            .expect("stale rows");
        client.batch_execute("VACUUM ANALYZE oppty_router.ownership").await.expect("vacuum");
        let plan: Vec<String> = client
            .query(
                "EXPLAIN SELECT w.opp_id FROM oppty_router.ownership w WHERE w.pipeline = 'retail' \
                 AND w.due_at <= now() ORDER BY w.due_at LIMIT 500 FOR UPDATE OF w SKIP LOCKED",
                &[],
            )
            .await
            .expect("plan")
            .iter()
            .map(|r| r.get(0))
            .collect();
        println!("the due scan's plan:\n  {}", plan.join("\n  "));
        let t = Instant::now();
        let reclaimed = drain.sweep(&mut client).await.expect("sweep");
        let full = t.elapsed();
        let mut empty = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let n = drain.sweep(&mut client).await.expect("sweep");
            assert_eq!(n, 0);
            empty.push(t.elapsed());
        }
        empty.sort();
        let left: i64 = client
            .query_one("SELECT count(*) FROM oppty_router.ownership WHERE due_at <= now()", &[])
            .await
            .expect("count")
            .get(0);
        println!("sweep with {stale} stale: {reclaimed} reclaimed in {:.2} s ({left} still stale)", full.as_secs_f64());
        println!("sweep with nothing stale: median {:.1} ms, max {:.1} ms (20 sweeps)", ms(empty[10]), ms(empty[19]));
        // An admin shortens the window from 48 h to 24 h: every due time moves forward once.
        let text = std::fs::read_to_string(rules.path().join("bench.toml")).expect("rules");
        std::fs::write(rules.path().join("bench.toml"), text.replace("after = \"48h\"", "after = \"24h\"")).expect("rules");
        let shorter = Arc::new(oppty_router::load_rules(&cfg).expect("rules"));
        drain.swap_engine(&mut client, shorter).await.expect("swap");
        let t = Instant::now();
        let n = drain.sweep(&mut client).await.expect("sweep");
        println!(
            "first sweep after the window shrinks to 24 h (every due time brought forward): {:.2} s, {n} reclaimed",
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        drain.sweep(&mut client).await.expect("sweep");
        println!("the sweep after that: {:.1} ms", ms(t.elapsed()));
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
