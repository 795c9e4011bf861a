// The diamond on BullMQ, for `python -m bench.compare` (see bench/compare.py).
//
//   node compare_bullmq.mjs --modules DIR --port PORT --phases COUNT:IN_FLIGHT[,COUNT:IN_FLIGHT]
//                           [--workers 8] [--concurrency 10] [--time-limit 120]
//
// One queue ("diamond") on the Redis at 127.0.0.1:PORT. A's processor completes A and adds,
// with FlowProducer, the flow D <- {B, C}; B's and C's processors complete; D's processor reads
// its children's values and completes the workflow. A's v is n+1, B's 2a, C's 3a, D's b+c, so
// D's value is 5(n+1) (checked). A driver keeps IN_FLIGHT workflows in flight: it adds a new
// A when a D completes, until COUNT workflows have been added. Latency of a workflow: A added
// (before the add call) -> D's "completed" event.
//
// bullmq is loaded from DIR (an npm install folder). stdout carries one JSON line per phase
// event: {"event": "start", "phase": i} when a phase begins and {"event": "end", ...figures}
// when it ends, then {"event": "done"}; the caller samples Redis's CPU at each.

import { createRequire } from "node:module";
import path from "node:path";

function options(argv) {
  const out = { workers: 8, concurrency: 10, timeLimit: 120 };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (name === "--modules") out.modules = value;
    else if (name === "--port") out.port = Number(value);
    else if (name === "--phases") out.phases = value;
    else if (name === "--workers") out.workers = Number(value);
    else if (name === "--concurrency") out.concurrency = Number(value);
    else if (name === "--time-limit") out.timeLimit = Number(value);
    else throw new Error(`unknown option ${name}`);
  }
  if (!out.modules || !out.port || !out.phases) {
    throw new Error("--modules, --port and --phases are required");
  }
  out.phases = out.phases.split(",").map((p) => p.split(":").map(Number));
  return out;
}

const opts = options(process.argv.slice(2));
const require = createRequire(path.join(path.resolve(opts.modules), "package.json"));
const { Queue, Worker, FlowProducer } = require("bullmq");
const bullmqVersion = require("bullmq/package.json").version;
const ioredisVersion = require("ioredis/package.json").version;

const QUEUE = "diamond";
const connection = { host: "127.0.0.1", port: opts.port, maxRetriesPerRequest: null };
const emit = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const queue = new Queue(QUEUE, { connection });
const flows = new FlowProducer({ connection });
// Completed and failed jobs are removed as they finish: Redis keeps no history that grows.
const removal = { removeOnComplete: true, removeOnFail: 1000 };

async function processor(job) {
  switch (job.name) {
    case "A": {
      const v = job.data.n + 1;
      await flows.add({
        name: "D",
        queueName: QUEUE,
        data: { n: job.data.n },
        opts: removal,
        children: [
          { name: "B", queueName: QUEUE, data: { a: v }, opts: removal },
          { name: "C", queueName: QUEUE, data: { a: v }, opts: removal },
        ],
      });
      return { v };
    }
    case "B":
      return { v: job.data.a * 2 };
    case "C":
      return { v: job.data.a * 3 };
    case "D": {
      const values = Object.values(await job.getChildrenValues());
      const v = values.reduce((sum, child) => sum + child.v, 0);
      return { v, ok: values.length === 2 && v === 5 * (job.data.n + 1) };
    }
    default:
      throw new Error(`unknown step ${job.name}`);
  }
}

function percentile(sorted, pct) {
  if (!sorted.length) return null;
  const rank = Math.max(1, Math.ceil((pct / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

const round = (x, digits) => (x === null ? null : Number(x.toFixed(digits)));

let onD = null; // the running phase's handler of a completed D

const workers = [];
for (let i = 0; i < opts.workers; i++) {
  const worker = new Worker(QUEUE, processor, { connection, concurrency: opts.concurrency });
  worker.on("completed", (job, result) => {
    if (job.name === "D" && onD) onD(job, result);
  });
  worker.on("failed", (job, err) => {
    process.stderr.write(`[bullmq] ${job ? job.name : "?"} failed: ${err}\n`);
  });
  workers.push(worker);
}
await Promise.all(workers.map((w) => w.waitUntilReady()));

function runPhase(index, count, inFlight) {
  return new Promise((resolve) => {
    const latencies = [];
    const added = new Map(); // n -> high-resolution time the add began
    let issued = 0;
    let finished = 0;
    let wrong = 0;
    let addErrors = 0;
    const base = index * 1_000_000;
    const cpuBefore = process.cpuUsage();
    const began = performance.now();
    let timer = null;

    const finish = (timedOut) => {
      clearTimeout(timer);
      onD = null;
      const elapsed = (performance.now() - began) / 1000;
      const cpu = process.cpuUsage(cpuBefore);
      latencies.sort((x, y) => x - y);
      resolve({
        event: "end",
        phase: index,
        workflows: count,
        in_flight: inFlight,
        finished,
        wrong,
        add_errors: addErrors,
        timed_out: timedOut,
        elapsed_s: round(elapsed, 3),
        workflows_per_s: round(finished / elapsed, 1),
        p50_ms: round(percentile(latencies, 50), 2),
        p99_ms: round(percentile(latencies, 99), 2),
        max_ms: round(latencies.length ? latencies[latencies.length - 1] : null, 2),
        node_cpu_s: round((cpu.user + cpu.system) / 1e6, 2),
      });
    };

    const addOne = () => {
      if (issued >= count) return;
      const n = base + issued++;
      added.set(n, performance.now());
      queue.add("A", { n }, removal).catch((err) => {
        addErrors++;
        process.stderr.write(`[bullmq] add failed: ${err}\n`);
        added.delete(n);
        finished++; // counted as done so that the phase ends
        if (finished >= count) finish(false);
        else addOne();
      });
    };

    onD = (job, result) => {
      const start = added.get(job.data.n);
      if (start === undefined) return; // a late job of an earlier phase
      added.delete(job.data.n);
      latencies.push(performance.now() - start);
      finished++;
      if (!result || !result.ok) wrong++;
      if (finished >= count) finish(false);
      else addOne();
    };

    timer = setTimeout(() => finish(true), opts.timeLimit * 1000);
    emit({ event: "start", phase: index });
    for (let i = 0; i < Math.min(inFlight, count); i++) addOne();
  });
}

for (const [index, [count, inFlight]] of opts.phases.entries()) {
  emit(await runPhase(index, count, inFlight));
}
await Promise.all(workers.map((w) => w.close()));
await flows.close();
await queue.close();
emit({ event: "done", bullmq: bullmqVersion, ioredis: ioredisVersion, node: process.version });
process.exit(0);
