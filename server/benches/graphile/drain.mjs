// graphile-worker processing no-op jobs, as the anchor for Waymark's
// scale-out benchmark (server/benches/scale_out.rs runs this).
//
//   node drain.mjs <postgres-url> <jobs> <processes> <concurrency per process> [default|batched]
//
// `batched` turns on graphile-worker 0.17's batching (its performance docs):
// each process fetches and locks up to 500 jobs at a time
// (`localQueue.size`) and completes finished jobs together
// (`completeJobBatchDelay: 0`); `default` fetches and completes one job per
// statement. Starts the worker processes, waits until each is ready, adds
// the jobs in one statement, and prints `jobs=<n> seconds=<s>` once the queue is empty.
import { fork } from "node:child_process";
import { Logger, run, runMigrations } from "graphile-worker";
import pg from "pg";

const [url, jobs, processes, concurrency, mode = "default"] = process.argv.slice(2);
if (mode !== "default" && mode !== "batched") throw new Error(`mode: default or batched, not ${mode}`);

if (process.env.GRAPHILE_CHILD) {
  const runner = await run({
    connectionString: url,
    concurrency: Number(concurrency),
    noHandleSignals: false,
    pollInterval: 1000,
    // Quiet: a line per job would measure the terminal, not the queue.
    logger: new Logger(() => () => {}),
    taskList: { noop: async () => {} },
    ...(mode === "batched" && { preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0 } } }),
  });
  process.send("ready");
  await runner.promise;
} else {
  await runMigrations({ connectionString: url });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query("DELETE FROM graphile_worker._private_jobs");
  const children = [];
  for (let i = 0; i < Number(processes); i++) {
    const child = fork(process.argv[1], process.argv.slice(2), {
      env: { ...process.env, GRAPHILE_CHILD: "1" },
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    await new Promise((resolve) => child.once("message", resolve));
    children.push(child);
  }
  // One transaction, so that every job shows at once; in statements of
  // 10,000 with statistics after the first: on a fresh database (no
  // statistics) one statement adding 100,000 jobs ran for minutes.
  await client.query("BEGIN");
  for (let from = 1; from <= Number(jobs); from += 10000) {
    await client.query(
      "SELECT count(graphile_worker.add_job('noop', json_build_object('i', g))) FROM generate_series($1::int, $2::int) g",
      [from, Math.min(from + 9999, Number(jobs))],
    );
    if (from === 1) await client.query("ANALYZE graphile_worker._private_jobs");
  }
  await client.query("COMMIT");
  const started = process.hrtime.bigint();
  // Polled as Waymark's side is (every 100 ms), and by the first job left
  // rather than a count: a count of 100,000 rows every few milliseconds
  // took a share of the CPU the workers needed.
  for (;;) {
    const { rows } = await client.query("SELECT EXISTS (SELECT FROM graphile_worker._private_jobs) AS left");
    if (!rows[0].left) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`jobs=${jobs} seconds=${seconds.toFixed(3)}`);
  for (const child of children) child.kill("SIGTERM");
  await client.end();
  process.exit(0);
}
