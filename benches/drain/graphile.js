// graphile-worker draining N no-op jobs (the benchmark's comparison; run by benches/drain/suite.rs).
// Usage: node graphile.js <connection string> <jobs> <concurrency>; prints one JSON line.
const { run, runMigrations, Logger } = require("graphile-worker");
const { Client } = require("pg");

async function main() {
  const [connectionString, jobs, concurrency] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
  const logger = new Logger(() => () => {});
  await runMigrations({ connectionString, logger });
  const db = new Client({ connectionString });
  await db.connect();
  await db.query(
    "SELECT graphile_worker.add_jobs(array_agg(row('noop', '{}'::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec)) FROM generate_series(1, $1)",
    [jobs],
  );
  const started = process.hrtime.bigint();
  const runner = await run({
    connectionString,
    logger,
    noHandleSignals: true,
    taskList: { noop: async () => {} },
    preset: {
      worker: { concurrentJobs: concurrency, localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0, pollInterval: 100 },
    },
  });
  for (;;) {
    const r = await db.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
    if (r.rows[0].n === 0) break;
    await new Promise((ok) => setTimeout(ok, 10));
  }
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  await runner.stop();
  await db.end();
  console.log(JSON.stringify({ jobs, secs, rate: jobs / secs }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
