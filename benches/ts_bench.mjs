// TypeScript benchmarks (run after `cd typescript && npm run build`; use a release addon for
// real figures: `npx napi build --release ...`, see BENCHMARKS.md).
//
//   node benches/ts_bench.mjs latency DATABASE_URL [N]   submit -> awaiting agent resumed,
//                                                        answer from another process
//   node benches/ts_bench.mjs parked DATABASE_URL [N]    N parked awaits in one process:
//                                                        memory, idle CPU
import { fork } from "node:child_process";
import os from "node:os";
import { awaitHuman, Client } from "../typescript/dist/src/index.js";

const [mode, url, nArg, ns] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const SCHEMA = { type: "object", properties: { t: { type: "number" } }, required: ["t"] };

function pct(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.max(0, Math.round((p / 100) * s.length) - 1))];
  return `n=${s.length} p50=${at(50).toFixed(2)} ms p95=${at(95).toFixed(2)} ms p99=${at(99).toFixed(2)} ms max=${s[s.length - 1].toFixed(2)} ms`;
}

const machine = () =>
  `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "unknown CPU"}, Node ${process.version}`;

async function answerer(url, ns, n) {
  const c = new Client({ databaseUrl: url, namespace: ns });
  let done = 0;
  const seen = new Set();
  while (done < n) {
    const page = await c.list({ status: "pending", limit: 10 });
    const fresh = page.items.filter((t) => !seen.has(t.id));
    if (fresh.length === 0) {
      await sleep(0.5);
      continue;
    }
    for (const t of fresh) {
      seen.add(t.id);
      await sleep(2); // let the agent park first
      const now = performance.timeOrigin + performance.now();
      await c.answer(t.id, { t: now }, { by: "bench" });
      done += 1;
    }
  }
  await c.close();
}

async function latency(url, n) {
  const namespace = `lat-${Date.now()}`;
  const client = new Client({ databaseUrl: url, namespace });
  await client.list({});
  const child = fork(new URL(import.meta.url).pathname, ["answerer", url, String(n + 20), namespace]);
  const samples = [];
  for (let i = 0; i < n + 20; i++) {
    const answer = await awaitHuman({ title: "bench", payload: { i }, responseSchema: SCHEMA, key: `k${i}`, client });
    const resumed = performance.timeOrigin + performance.now();
    if (i >= 20) samples.push(resumed - answer.t);
  }
  await new Promise((r) => child.on("exit", r));
  await client.close();
  console.log(`machine: ${machine()}`);
  console.log(`TS resume latency (answer from another process): ${pct(samples)}`);
}

async function parked(url, n) {
  const namespace = `park-${Date.now()}`;
  const client = new Client({ databaseUrl: url, namespace });
  await client.list({});
  const t0 = performance.now();
  const ids = [];
  for (let i = 0; i < n; i += 256) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 256); j++) {
      batch.push(client.create({ title: "park", payload: { j }, responseSchema: { type: "boolean" }, key: `p${j}` }));
    }
    for (const t of await Promise.all(batch)) ids.push(t.id);
  }
  console.log(`created ${n} tasks in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  global.gc?.();
  const before = process.memoryUsage().rss / 2 ** 20;
  const t1 = performance.now();
  const waits = ids.map((id) => client.wait(id));
  const engine = await client._engine();
  while (engine.parked() < n) await sleep(100);
  console.log(`parked ${n} awaits in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  await sleep(1000);
  const rss = process.memoryUsage().rss / 2 ** 20;
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  await sleep(10000);
  const used = process.cpuUsage(c0);
  const cpu = ((used.user + used.system) / 1000 / (performance.now() - w0)) * 100;
  console.log(`machine: ${machine()}`);
  console.log(
    `RSS ${before.toFixed(0)} MB before, ${rss.toFixed(0)} MB with ${n} parked (+${(rss - before).toFixed(0)} MB, ${(((rss - before) * 1024) / n).toFixed(2)} KB per await)`,
  );
  console.log(`CPU while idle over 10 s: ${cpu.toFixed(2)}% of one core`);
  const other = new Client({ databaseUrl: url, namespace });
  const sample = ids.filter((_, i) => i % Math.max(1, Math.floor(n / 1000)) === 0);
  const t2 = performance.now();
  await Promise.all(sample.map((id) => other.answer(id, true, { by: "bench" })));
  const byId = new Map(ids.map((id, i) => [id, waits[i]]));
  await Promise.all(sample.map((id) => byId.get(id)));
  console.log(`answered ${sample.length} from another client; all resumed in ${((performance.now() - t2) / 1000).toFixed(2)} s`);
  process.exit(0);
}

if (mode === "answerer") await answerer(url, ns, Number(nArg));
else if (mode === "latency") await latency(url, Number(nArg ?? 500));
else if (mode === "parked") await parked(url, Number(nArg ?? 100000));
else {
  console.error("usage: node benches/ts_bench.mjs latency|parked DATABASE_URL [N]");
  process.exit(2);
}
