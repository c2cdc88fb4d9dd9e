//! What the server spent its time on during a section (pg_stat_statements), and the plan of
//! the start-up's reads: printed beside the table, never part of it.

use oppty_router::config::Config;
use oppty_router::db;

use super::Bench;

impl Bench<'_> {
    /// Profiling: pg_stat_statements from zero.
    pub(super) fn reset_statements(&self, cfg: &Config) {
        self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
                .await
                .expect("pg_stat_statements");
        });
    }

    /// Profiling: the statements that took the server's time since the reset, most first.
    pub(super) fn print_statements(&self, cfg: &Config) {
        let rows = self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            c.query(
                "SELECT calls, rows, total_exec_time::float8 AS ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS q \
                 FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20",
                &[],
            )
            .await
            .expect("pg_stat_statements")
        });
        eprintln!("  server time by statement (pg_stat_statements, since the last reset):");
        for r in rows {
            let (calls, n, ms, q): (i64, i64, f64, String) = (r.get("calls"), r.get("rows"), r.get("ms"), r.get("q"));
            eprintln!("  {ms:>9.0} ms {calls:>7} calls {n:>8} rows  {q}");
        }
    }

    /// Profiling: the plans of the leader's two reads before its first decision.
    pub(super) fn explain_start_up(&self, cfg: &Config) {
        self.rt.block_on(async {
            let c = db::connect(&cfg.database, "").await.expect("connect");
            let crm = oppty_router::crm::prepare(&c, cfg).await.expect("mapping");
            let store = oppty_router::store::Statements::new(&cfg.router.schema);
            let engine = oppty_router::load_rules(cfg).expect("rules");
            let need = oppty_router::engine::history::HistoryNeed::of(&engine);
            let (members, teams, depths) = need.columns();
            let history: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&members, &teams, &depths, &need.window];
            for (what, sql, params) in
                [("open loads", crm.full_count, &[][..]), ("recent assignments", store.history, &history[..])]
            {
                eprintln!("  EXPLAIN ANALYZE, {what}:");
                for r in c.query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), params).await.expect("explain") {
                    eprintln!("    {}", r.get::<_, String>(0));
                }
            }
        });
    }
}
