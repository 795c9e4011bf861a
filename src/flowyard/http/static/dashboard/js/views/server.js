// The overview's "Server" card: live figures from GET /metrics (the counters Prometheus
// scrapes), sampled every few seconds. Rates come from the last two samples; job wait
// quantiles from the histogram buckets observed over the last minute.
//
// /metrics is server-wide (every project together) and takes no API key: with
// --metrics-token it takes that token as a Bearer header, which the card asks for once and
// keeps in this tab's sessionStorage.

import { store } from "../api.js";
import { field, fill, h } from "../dom.js";
import { bucketsBetween, byLabel, parseMetrics, quantile, rate, total } from "../prometheus.js";

export const SAMPLE_MS = 3000;
const WINDOW_MS = 60000;
const TOP_QUEUES = 5;

/** The card and its stop function: {card, stop}. */
export function serverCard(titleId) {
  const figures = h("div", { class: "figures" });
  const queues = h("div", { class: "queue-depths" });
  const status = h("p", { class: "muted small", role: "status" });
  const tokenBox = h("div", { hidden: true });
  const note = h("p", { class: "muted small" },
    "Server-wide: ", h("code", {}, "/metrics"), " counts every project on this server, not only yours.");
  const card = h("section", { class: "card server span2", "aria-labelledby": titleId },
    h("h2", { id: titleId }, "Server"), tokenBox, figures, queues, status, note);
  const samples = [];
  let timer = null;
  let stopped = false;

  async function sample() {
    clearTimeout(timer);
    if (stopped) return;
    const token = store.metricsToken();
    try {
      const response = await fetch("/metrics", {
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        cache: "no-store",
      });
      if (stopped) return;
      if (response.status === 401) {
        askForToken(token !== null);
        return; // no more sampling until a token is given
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const families = parseMetrics(await response.text());
      if (!tokenBox.hidden) fill(tokenBox).hidden = true;
      samples.push({ at: Date.now(), families });
      while (samples.length > 2 && samples[samples.length - 1].at - samples[1].at >= WINDOW_MS) samples.shift();
      draw();
      status.textContent = `Sampled every ${SAMPLE_MS / 1000} s from /metrics.`;
    } catch (error) {
      if (stopped) return;
      status.textContent = `Could not read /metrics: ${error.message}. Retrying.`;
    }
    timer = setTimeout(sample, SAMPLE_MS);
  }

  function draw() {
    const now = samples[samples.length - 1];
    const before = samples.length > 1 ? samples[samples.length - 2] : null;
    const oldest = samples.length > 1 ? samples[0] : null;
    const perSecond = (family) => {
      const value = rate(before, now, family);
      return value === null ? "…" : value.toFixed(value >= 10 ? 0 : 1);
    };
    const observed = bucketsBetween(oldest, now, "flowyard_job_wait_seconds");
    const p50 = quantile(0.5, observed);
    const p95 = quantile(0.95, observed);
    fill(figures,
      figure("jobs-finished-rate", perSecond("flowyard_jobs_finished"), "jobs finished / s"),
      figure("executions-finished-rate", perSecond("flowyard_executions_finished"), "executions finished / s"),
      figure("executions-live", String(total(now.families, "flowyard_executions_live")), "live executions"),
      figure("http-requests-rate", perSecond("flowyard_http_requests"), "HTTP requests / s"),
      figure("job-wait", p50 === null ? "—" : `${seconds(p50)} / ${seconds(p95)}`,
        oldest ? "job wait p50 / p95 (1 min)" : "job wait p50 / p95"));
    const depths = byLabel(now.families, "flowyard_job_queue_depth", "queue");
    fill(queues, h("h3", {}, "Queue depth (pending jobs)"),
      depths.length
        ? h("ul", { class: "depths", "aria-label": "Queue depth" },
          depths.slice(0, TOP_QUEUES).map(([queue, depth]) =>
            h("li", { "data-queue": queue, "data-depth": depth }, h("code", {}, queue), `: ${depth}`)),
          depths.length > TOP_QUEUES ? h("li", { class: "muted" }, `and ${depths.length - TOP_QUEUES} more`) : null)
        : h("p", { class: "muted" }, "No queues yet."));
  }

  function askForToken(refused) {
    const input = h("input", { type: "password", name: "metrics-token", autocomplete: "off", spellcheck: "false", required: true });
    const submit = h("button", { type: "submit" }, "Use token");
    const form = h("form", { class: "token", "aria-label": "Read /metrics with a token" },
      field("Metrics token", input, "Kept in this browser tab only (sessionStorage) and sent as a Bearer header to /metrics."),
      submit);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      store.setMetricsToken(token);
      samples.length = 0;
      status.textContent = "Reading /metrics with the token…";
      sample();
    });
    fill(tokenBox, h("p", { class: refused ? "bad-text" : "notice" }, refused
      ? "The metrics token was refused (401): this server's /metrics wants another one."
      : "This server protects /metrics with a token (flowyard serve --metrics-token): paste it to see the figures."),
    form);
    tokenBox.hidden = false;
    figures.replaceChildren();
    queues.replaceChildren();
    status.textContent = "401: /metrics needs the server's metrics token.";
  }

  sample();
  return {
    card,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

function figure(name, value, label) {
  return h("div", { class: "figure", "data-figure": name },
    h("span", { class: "figure-n" }, value), h("span", { class: "figure-label" }, label));
}

/** Seconds as "3 ms", "1.2 s", "4 min". */
function seconds(value) {
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(1)} s`;
  return `${Math.round(value / 60)} min`;
}
