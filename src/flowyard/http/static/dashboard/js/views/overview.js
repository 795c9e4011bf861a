// Overview: the server's live figures (from /metrics), the cluster's nodes (admin keys only),
// counts by status, throughput over the last minutes, the oldest pending job per queue.
//
// Throughput is computed here, from the `completed_at` of the most recently created completed
// jobs (up to 500, newest first); /core/tokens/usage counts calls per day, too coarse for it.

import {
  actionButton, badge, card, duration, EXECUTION_STATUSES, fill, h, JOB_STATUSES, link, newId, outcome,
  s, table, when,
} from "../dom.js";
import { allJobs, listExecutions, statusCounts } from "../source.js";
import { nodesCard } from "./nodes.js";
import { allQueues } from "./queues.js";
import { serverCard } from "./server.js";

const REFRESH_MS = 10000;
const WINDOW_MINUTES = 15;
const THROUGHPUT_PAGES = 5;

export function renderOverview(main, ctx) {
  const executions = h("div", { class: "tiles" });
  const jobs = h("div", { class: "tiles" });
  const countsNote = h("p", { class: "muted small" });
  const chart = h("div", { class: "chart" });
  const queues = h("div");
  const recent = h("div");
  const problem = outcome();
  let timer = null;
  let stopped = false;

  const server = serverCard(newId("card"));
  const nodes = ctx.session.admin ? nodesCard() : null; // GET /admin/cluster: admin keys only
  const refreshButton = actionButton("Refresh", () => refresh(), { class: "secondary" });
  fill(main,
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), refreshButton),
    ctx.foreign ? h("p", { class: "notice" }, `Viewing ${ctx.viewLabel} through the admin API.`) : null,
    problem,
    h("div", { class: "overview" },
      server.card,
      nodes && nodes.card,
      card("Executions by status", executions),
      card("Jobs by status", jobs, countsNote),
      card(`Throughput: jobs completed per minute, last ${WINDOW_MINUTES} min`, chart),
      card("Oldest pending job per queue", queues),
      Object.assign(card("Latest executions", recent), { className: "card span2" })));

  async function section(target, work) {
    try {
      await work();
    } catch (error) {
      fill(target, h("p", { class: "bad-text" }, `${error.status ? `${error.status} ` : ""}${error.message}`));
    }
  }

  async function refresh() {
    clearTimeout(timer);
    if (stopped) return;
    problem.clear();
    await Promise.all([
      nodes && nodes.refresh(),
      section(executions, async () => {
        const { counts, exact } = await statusCounts(ctx, "executions");
        fill(executions, tiles(EXECUTION_STATUSES, counts, exact));
      }),
      section(jobs, async () => {
        const { counts, exact } = await statusCounts(ctx, "jobs");
        fill(jobs, tiles(JOB_STATUSES, counts, exact));
        countsNote.textContent = ctx.session.admin ? "From /admin/stats." : "Counted from the lists (up to 1,000 per status).";
      }),
      section(chart, async () => {
        const { items } = await allJobs(ctx, { status: "completed" }, THROUGHPUT_PAGES);
        fill(chart, throughputChart(items, Date.now()));
      }),
      section(queues, async () => {
        if (ctx.foreign) {
          fill(queues, h("p", { class: "muted" }, "Queues are read with a key of the project."));
          return;
        }
        const all = await allQueues();
        const rows = all.map((q) => [
          link(`/dashboard/jobs?queue=${encodeURIComponent(q.name)}&status=pending`, q.name),
          String(q.depth), String(q.running), duration(q.oldest_pending_age_seconds),
          q.paused ? badge("paused") : "",
        ]);
        fill(queues, table(["Queue", "Depth", "Running", "Oldest pending", ""], rows, "No queues yet."));
      }),
      section(recent, async () => {
        const answer = await listExecutions(ctx, { limit: 5 });
        fill(recent, table(["Execution", "Status", "Blueprint", "Started"], answer.executions.map((e) => [
          ctx.foreign ? h("code", {}, e.id) : link(`/dashboard/executions/${encodeURIComponent(e.id)}`, e.id),
          badge(e.status), h("code", {}, e.blueprint_id), when(e.started_at),
        ]), "No executions yet."));
      }),
    ]);
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    server.stop();
  };
}

function tiles(statuses, counts, exact) {
  return statuses.map((status) => {
    const n = counts[status] || 0;
    return h("div", { class: `tile st-${status}`, "data-status": status },
      h("span", { class: "tile-n" }, exact || n < 1000 ? String(n) : `${n}+`),
      h("span", { class: "tile-label" }, status));
  });
}

/** Per-minute bins of completed_at over the last WINDOW_MINUTES minutes, oldest first. */
export function bins(jobs, now) {
  const counts = new Array(WINDOW_MINUTES).fill(0);
  const start = now - WINDOW_MINUTES * 60000;
  for (const job of jobs) {
    const at = Date.parse(job.completed_at);
    if (Number.isNaN(at) || at < start || at > now) continue;
    counts[Math.min(WINDOW_MINUTES - 1, Math.floor((at - start) / 60000))] += 1;
  }
  return counts;
}

function throughputChart(jobs, now) {
  const counts = bins(jobs, now);
  const total = counts.reduce((a, b) => a + b, 0);
  const peak = Math.max(1, ...counts);
  const width = 300;
  const height = 120;
  const barW = width / counts.length;
  const bars = counts.map((n, i) => {
    const barH = n ? Math.max(2, (n / peak) * (height - 20)) : 0;
    const ago = WINDOW_MINUTES - i;
    return s("rect", {
      class: "bar", x: i * barW + 2, y: height - 14 - barH, width: barW - 4, height: barH, "data-count": n,
    }, s("title", {}, `${n} completed ${ago - 1}–${ago} min ago`));
  });
  return [
    s("svg", {
      class: "bars", viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `${total} jobs completed in the last ${WINDOW_MINUTES} minutes, at most ${Math.max(...counts)} in one minute`,
    },
    s("line", { class: "axis", x1: 0, y1: height - 13, x2: width, y2: height - 13 }),
    bars,
    s("text", { class: "axis-label", x: 0, y: height - 1 }, `-${WINDOW_MINUTES} min`),
    s("text", { class: "axis-label", x: width, y: height - 1, "text-anchor": "end" }, "now"),
    s("text", { class: "axis-label", x: 0, y: 10 }, `peak ${Math.max(...counts)}/min`)),
    h("p", { class: "muted small", "data-total": total },
      `${total} completed in the last ${WINDOW_MINUTES} minutes (from the ${jobs.length} most recently created completed jobs).`),
  ];
}
