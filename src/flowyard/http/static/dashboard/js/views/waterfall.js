// An execution's steps on a time axis (a waterfall): one row per step in dependency order,
// a bar from when the step was queued to when its job started (waiting) and on to its end
// (running), a running step's bar growing to now. The longest bar is marked.
//
// Times come from the execution's events: `step_queued` (its job created), `step_started`
// (the job claimed or delivered), then `step_completed`, `step_failed` or `step_cancelled`.
// A map step runs from `map_started`, a child step from `child_starting`; a step waiting for a
// signal waits from `step_waiting` until the signal completes it.

import { fill, h, s } from "../dom.js";
import { layers } from "../graph.js";

const BEGINS = new Set(["step_queued", "map_started", "child_starting", "step_waiting"]);
const STARTS = new Set(["step_started", "item_started"]);
const ENDS = new Set(["step_completed", "step_failed", "step_cancelled"]);
const RUNNING_FROM_BEGIN = new Set(["map_started", "child_starting"]);
const TICKS_MS = [10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3,
  900e3, 1800e3, 3600e3, 7200e3, 21600e3, 43200e3, 86400e3];

/**
 * Each step's span, in dependency order: {stepId, status, queued, started, ended, waitsFor}
 * (epoch ms or null). Only the step's last round counts (a resumed or retried step starts
 * again at its latest `step_queued`).
 * @param {object} execution GET /infra/workflows/executions/{id}
 * @param {object[]} events its events, oldest first
 * @param {object[]|null} blueprintSteps the blueprint's steps (for the order), when known
 */
export function stepSpans(execution, events, blueprintSteps) {
  const byStep = new Map();
  for (const event of events) {
    if (!event.step_id) continue;
    if (!byStep.has(event.step_id)) byStep.set(event.step_id, []);
    byStep.get(event.step_id).push(event);
  }
  const states = new Map(execution.steps.map((st) => [st.step_id, st]));
  const steps = blueprintSteps || execution.steps.map((st) => ({ id: st.step_id }));
  const order = layers(steps).flat().filter((id) => states.has(id));
  return order.map((stepId) => {
    const state = states.get(stepId);
    const own = byStep.get(stepId) || [];
    let from = -1;
    own.forEach((ev, i) => {
      if (BEGINS.has(ev.type)) from = i;
    });
    const span = { stepId, status: state.status, queued: null, started: null, ended: null, waitsFor: null };
    if (from >= 0 && state.status !== "pending" && state.status !== "skipped") {
      const begin = own[from];
      span.queued = Date.parse(begin.at);
      if (RUNNING_FROM_BEGIN.has(begin.type)) span.started = span.queued;
      if (begin.type === "step_waiting") span.waitsFor = "signal";
      for (const ev of own.slice(from + 1)) {
        if (span.started === null && STARTS.has(ev.type)) span.started = Date.parse(ev.at);
        if (ENDS.has(ev.type)) {
          span.ended = Date.parse(ev.at);
          break;
        }
      }
    } else if (state.started_at && state.status !== "pending" && state.status !== "skipped") {
      // events beyond what was read: the step's own times still place it
      span.queued = Date.parse(state.started_at);
      span.started = span.queued;
      span.ended = state.completed_at ? Date.parse(state.completed_at) : null;
    }
    if (span.ended === null && !["running", "queued", "waiting"].includes(state.status) && state.completed_at) {
      span.ended = Date.parse(state.completed_at);
    }
    return span;
  });
}

/** The waterfall of `spans` at time `now` (ms): a list of rows under a time axis. */
export function renderWaterfall(execution, spans, now) {
  const origin = Date.parse(execution.started_at);
  const finished = execution.completed_at ? Date.parse(execution.completed_at) : null;
  const endOf = (span) => span.ended ?? (span.queued === null ? null : Math.max(now, span.queued));
  const ends = spans.map(endOf).filter((t) => t !== null);
  const last = Math.max(finished ?? now, ...ends);
  const width = Math.max(last - origin, 1);
  const at = (t) => `${(((t - origin) / width) * 100).toFixed(3)}%`;
  const long = spans.map((span) => (span.queued === null ? -1 : endOf(span) - span.queued));
  const longest = Math.max(...long);
  const step = TICKS_MS.find((t) => width / t <= 6) || TICKS_MS[TICKS_MS.length - 1];
  const ticks = [];
  for (let t = 0; t <= width; t += step) ticks.push(`${((t / width) * 100).toFixed(3)}%`);
  const grid = ticks.map((x) => s("line", { class: "wf-grid", x1: x, x2: x, y1: 0, y2: 20 }));
  const rows = spans.map((span, i) => row(span, endOf(span), at, long[i] > 0 && long[i] === longest, grid));
  return h("div", { class: "waterfall" },
    h("div", { class: "wf-row wf-axis", "aria-hidden": "true" }, h("span", { class: "wf-label" }), axis(width, step)),
    h("ol", { class: "wf-rows", "aria-label": "Steps on a time axis" }, rows),
    h("p", { class: "legend muted" },
      h("span", { class: "key-box wf-wait" }), " waiting (queued, not yet started) ",
      h("span", { class: "key-box wf-run" }), " running ",
      h("span", { class: "wf-mark" }, "longest"), " the step that took longest"));
}

function row(span, end, at, isLongest, grid) {
  const total = span.queued === null ? null : end - span.queued;
  const waitEnd = span.started ?? end;
  const wait = span.queued === null ? null : waitEnd - span.queued;
  const run = span.started === null ? null : end - span.started;
  const live = span.ended === null && span.queued !== null;
  const label = describe(span, wait, run, total, live);
  const bars = [];
  if (span.queued !== null) {
    if (wait > 0 || span.started === null) {
      bars.push(s("rect", { class: "wf-wait", x: at(span.queued), width: widthOf(at, span.queued, waitEnd), y: 3, height: 14 },
        s("title", {}, `${span.stepId} ${span.waitsFor === "signal" ? "waited for a signal" : "waited"} ${ms(wait)}: ${clock(span.queued)} to ${clock(waitEnd)}`)));
    }
    if (span.started !== null) {
      bars.push(s("rect", { class: `wf-run st-${span.status}`, x: at(span.started), width: widthOf(at, span.started, end), y: 3, height: 14 },
        s("title", {}, `${span.stepId} ${live ? "running for" : "ran"} ${ms(run)}: ${clock(span.started)} to ${live ? "now" : clock(end)}`)));
    }
  }
  const track = span.queued === null
    ? h("span", { class: "wf-none muted" }, span.status === "skipped" ? "skipped" : "not started")
    : s("svg", { class: "wf-track", role: "img", "aria-label": label }, s("title", {}, label), grid.map((line) => line.cloneNode()), bars);
  return h("li", {
    class: `wf-row st-${span.status}${isLongest ? " longest" : ""}${live ? " live" : ""}`,
    "data-step": span.stepId, "data-status": span.status,
    "data-total-ms": total === null ? null : String(Math.round(total)),
    title: label,
  },
  h("span", { class: "wf-label" },
    h("code", {}, span.stepId), " ",
    h("span", { class: "wf-dur" }, total === null ? span.status : `${live ? (span.started === null ? "waiting " : "running ") : ""}${ms(total)}`),
    isLongest ? [" ", h("span", { class: "wf-mark" }, "longest")] : null),
  track);
}

function widthOf(at, from, to) {
  const w = parseFloat(at(to)) - parseFloat(at(from));
  return `${Math.max(w, 0.4).toFixed(3)}%`; // an instant still shows as a sliver
}

/** What a bar says in words: its times and durations. */
function describe(span, wait, run, total, live) {
  const parts = [`${span.stepId}: ${span.status}`];
  parts.push(`${span.waitsFor === "signal" ? "waiting for a signal since" : "queued"} ${clock(span.queued)}`);
  if (span.started !== null) parts.push(`started ${clock(span.started)} after ${ms(wait)}`);
  if (span.ended !== null) parts.push(`ended ${clock(span.ended)}`);
  if (run !== null) parts.push(`${live ? "running for" : "ran"} ${ms(run)}`);
  parts.push(`${ms(total)} in all`);
  return parts.join(", ");
}

function axis(width, step) {
  const ticks = [];
  for (let t = 0; t <= width; t += step) ticks.push(t);
  return s("svg", { class: "wf-track wf-ticks" },
    ticks.map((t) => {
      const x = `${((t / width) * 100).toFixed(3)}%`;
      const anchor = t === 0 ? "start" : t / width > 0.92 ? "end" : "middle";
      return [s("line", { x1: x, x2: x, y1: 14, y2: 20 }), s("text", { x, y: 11, "text-anchor": anchor }, `+${ms(t)}`)];
    }));
}

/** Milliseconds as "120 ms", "3.2 s", "4 min 5 s", "2 h 3 min". */
export function ms(value) {
  if (value === null || value === undefined) return "—";
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60000) return `${(value / 1000).toFixed(value < 10000 ? 1 : 0)} s`;
  const secs = Math.round(value / 1000);
  if (secs < 3600) return `${Math.floor(secs / 60)} min ${secs % 60} s`;
  return `${Math.floor(secs / 3600)} h ${Math.floor((secs % 3600) / 60)} min`;
}

function clock(t) {
  const d = new Date(t);
  return `${d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/** Draw into `box`. */
export function drawWaterfall(box, execution, events, blueprintSteps, now) {
  fill(box, renderWaterfall(execution, stepSpans(execution, events, blueprintSteps), now));
}
