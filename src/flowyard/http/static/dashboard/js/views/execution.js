// One execution: why it failed (at the top), its DAG coloured by step status (live while it
// runs), its steps on a time axis, each step's job, the event log, the cancel, pause and
// resume controls, and a form that sends a signal to its waiting steps.

import { api } from "../api.js";
import {
  actionButton, badge, card, EXECUTION_TERMINAL, facts, field, fill, h, inlineJson, jsonBlock, link,
  outcome, parseJson, when,
} from "../dom.js";
import { renderGraph } from "../graph.js";
import { itemsSection, progressText } from "./items.js";
import { signalCard } from "./signal_form.js";
import { drawWaterfall } from "./waterfall.js";

const POLL_MS = 1000;

export function renderExecution(main, ctx) {
  const [executionId] = ctx.params;
  const base = `/infra/workflows/executions/${encodeURIComponent(executionId)}`;
  const state = { execution: null, blueprint: null, fingerprint: "", selected: null, jobs: new Map(), events: [], stopped: false };
  let timer = null;

  const title = h("h1", {}, "Execution ", h("code", {}, executionId));
  ctx.setTitle(`Execution ${executionId}`);
  const reason = h("div", { class: "failure", role: "note", "aria-label": "Why it ended", hidden: true });
  const summary = h("div", { class: "summary" });
  const live = h("p", { class: "muted live", role: "status" });
  const graphBox = h("div", { class: "graph-box" });
  const stepBox = h("div", { class: "step-box" }, h("p", { class: "muted" }, "Select a step in the graph."));
  const stepList = h("div", { class: "step-list" });
  const timeline = h("ol", { class: "timeline" });
  const waterfall = h("div", { class: "waterfall-box" });
  const controls = controlsCard(base, () => {
    state.fingerprint = "";
    poll();
  });
  const signals = signalCard(base, () => {
    state.fingerprint = "";
    poll();
  });

  fill(main,
    h("p", {}, link("/dashboard/workflows", "← Workflows")),
    title, reason, summary, live,
    h("div", { class: "split exec" },
      h("div", { class: "column" }, card("Graph", graphBox, legend(), stepList),
        card("Timeline", waterfall), card("Events", timeline)),
      h("div", { class: "column side" }, controls, signals, card("Step", stepBox))));

  function select(stepId) {
    state.selected = stepId;
    drawGraph();
    drawStep();
  }

  function drawGraph() {
    const { execution, blueprint } = state;
    if (!execution) return;
    // Redrawing replaces the nodes: give focus back to the same step in the same place.
    const active = document.activeElement;
    const focused = active && active.dataset && active.dataset.step ? active.dataset.step : null;
    const where = focused && (graphBox.contains(active) ? graphBox : stepList.contains(active) ? stepList : null);
    const statuses = new Map(execution.steps.map((st) => [st.step_id, st.status]));
    const progress = new Map(execution.steps.filter((st) => st.items).map((st) => [st.step_id, progressText(st.items)]));
    const steps = blueprint ? blueprint.steps : execution.steps.map((st) => ({ id: st.step_id }));
    const children = new Map(execution.steps.filter((st) => st.child_execution_id).map((st) => [st.step_id, st.child_execution_id]));
    fill(graphBox, renderGraph(steps, statuses, { selected: state.selected, onSelect: select, children, progress }));
    fill(stepList, h("ul", { class: "chips", "aria-label": "Steps" }, execution.steps.map((st) => h("li", {},
      h("button", {
        type: "button", class: `chip st-${st.status}`, "aria-pressed": st.step_id === state.selected ? "true" : "false",
        "data-step": st.step_id, onclick: () => select(st.step_id),
      }, st.step_id, " · ", st.status, st.items ? ` · ${progressText(st.items)}` : "")))));
    if (where) {
      const again = where.querySelector(`[data-step="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  async function drawStep() {
    const step = state.execution && state.execution.steps.find((st) => st.step_id === state.selected);
    if (!step) return;
    let job = step.job_id ? state.jobs.get(step.job_id) : null;
    const render = () => fill(stepBox,
      h("h3", {}, step.step_id, " ", badge(step.status)),
      facts([
        ["Job", step.job_id ? link(`/dashboard/jobs/${encodeURIComponent(step.job_id)}`, step.job_id) : "—"],
        ...(step.child_execution_id ? [["Child execution", executionLink(step.child_execution_id)]] : []),
        ["Attempt", String(step.attempt ?? "—")],
        ["Job attempts", job ? `${job.attempt} of ${job.max_attempts}` : "—"],
        ["Started", when(step.started_at)],
        ["Completed", when(step.completed_at)],
        ["Caught by", step.caught_by || "—"],
        ...(step.skip_reason === "condition_false" ? [["Skipped", "its when was false"]] : []),
        ...(step.signal ? [["Signal", step.signal_id ? `${step.signal} (${step.signal_id})` : `${step.signal} (waiting)`]] : []),
      ]),
      step.items ? null : [h("h4", {}, "Payload"), job ? jsonBlock(job.payload, "Payload") : h("p", { class: "muted" }, step.job_id ? "Loading…" : step.signal ? "No job: the step waits for a signal." : step.child_execution_id ? "None: the step runs a child execution." : "No job yet.")],
      h("h4", {}, "Output"), jsonBlock(step.output, "Output"),
      h("h4", {}, "Error"), step.error ? h("p", { class: "bad-text" }, `${step.error.code}: ${step.error.message}`) : h("p", { class: "muted" }, "—"),
      step.items ? itemsSection(base, step) : null);
    render();
    if (step.job_id && (!job || job.status !== "completed")) {
      try {
        job = await api(`/infra/jobs/${encodeURIComponent(step.job_id)}`);
        state.jobs.set(step.job_id, job);
      } catch (error) {
        job = null;
        stepBox.append(h("p", { class: "bad-text" }, `Job: ${error.message}`));
        return;
      }
      if (state.selected === step.step_id) render();
    }
  }

  async function drawEvents() {
    const events = [];
    let cursor = null;
    do {
      const answer = await api(`${base}/events`, { params: { limit: 100, cursor } });
      events.push(...answer.events);
      cursor = answer.next_cursor;
    } while (cursor && events.length < 2000);
    state.events = events;
    fill(timeline, events.map((ev) => h("li", { class: `event ev-${ev.type}` },
      h("span", { class: "seq" }, `#${ev.seq}`), " ", when(ev.at), " ",
      h("strong", {}, ev.type), ev.step_id ? [" ", h("code", {}, ev.step_id)] : null,
      eventData(ev.data))));
  }

  /** The steps on a time axis; "now" is never before the newest event (a clock behind the
   * server's would otherwise draw bars ending before they start). */
  function drawTimeline() {
    const { execution, blueprint, events } = state;
    if (!execution) return;
    const newest = events.length ? Date.parse(events[events.length - 1].at) : 0;
    drawWaterfall(waterfall, execution, events, blueprint ? blueprint.steps : null, Math.max(Date.now(), newest));
  }

  function drawSummary() {
    const e = state.execution;
    fill(summary, facts([
      ["Status", badge(e.status)],
      ["Blueprint", state.blueprint ? `${state.blueprint.name} (${e.blueprint_id})` : e.blueprint_id],
      ...(e.parent ? [["Parent", h("span", {}, executionLink(e.parent.execution_id), " step ", h("code", {}, e.parent.step_id), ...(e.parent.item_index === null || e.parent.item_index === undefined ? [] : [` item ${e.parent.item_index}`]))]] : []),
      ["Started", when(e.started_at)],
      ["Completed", when(e.completed_at)],
      ["Deadline", when(e.deadline_at)],
      ["Input", inlineJson(e.input_data)],
      ["Error", e.error ? h("span", { class: "bad-text" }, `${e.error.code}: ${e.error.message}`) : "—"],
    ]));
    title.dataset.status = e.status;
    const lines = failureLines(e);
    reason.hidden = lines === null;
    if (lines) {
      fill(reason, h("strong", {}, e.status === "compensated" ? "Compensated: " : "Failed: "),
        lines.length === 1 ? lines[0] : h("ul", {}, lines.map((line) => h("li", {}, line))));
    } else {
      reason.replaceChildren();
    }
  }

  async function poll() {
    clearTimeout(timer);
    if (state.stopped) return;
    try {
      const execution = await api(base);
      if (!state.blueprint) {
        state.blueprint = await api(`/infra/workflows/blueprints/${encodeURIComponent(execution.blueprint_id)}`).catch(() => null);
      }
      if (state.stopped) return;
      const fingerprint = JSON.stringify(execution);
      if (fingerprint !== state.fingerprint) {
        state.fingerprint = fingerprint;
        state.execution = execution;
        if (!state.selected && execution.steps.length) state.selected = execution.steps[0].step_id;
        drawSummary();
        drawGraph();
        controls.update(execution);
        signals.update(execution);
        drawStep();
        await drawEvents();
      }
      if (state.stopped) return;
      const terminal = EXECUTION_TERMINAL.has(execution.status);
      drawTimeline(); // every tick while it runs: running bars grow to now
      live.textContent = terminal ? `Finished: ${execution.status}.` : `Live: refreshing every second (${execution.status}).`;
      if (!terminal) timer = setTimeout(poll, POLL_MS);
    } catch (error) {
      if (error.status === 404) {
        live.textContent = `Not found: ${error.message}.`;
      } else {
        live.textContent = `Could not refresh: ${error.message}. Retrying.`;
        timer = setTimeout(poll, POLL_MS * 3);
      }
    }
  }

  poll();
  return () => {
    state.stopped = true;
    clearTimeout(timer);
  };
}

/**
 * Why a failed or compensated execution ended so, one line per failure: each caught step
 * with the catch step that ran for it, then each failed step nothing caught (or, for a
 * failure of no step, such as a deadline, the execution's own error). Null otherwise.
 */
function failureLines(execution) {
  if (execution.status !== "failed" && execution.status !== "compensated") return null;
  const byId = new Map(execution.steps.map((st) => [st.step_id, st]));
  const failed = execution.steps.filter((st) => st.status === "failed" && st.error);
  const lines = [];
  for (const st of failed.filter((x) => x.caught_by)) {
    const handler = byId.get(st.caught_by);
    const outcomeText = handler && handler.status !== "completed" ? ` (${handler.status})` : "";
    lines.push(["step ", h("code", {}, st.step_id), ` failed with ${errorText(st.error)}; catch step `,
      h("code", {}, st.caught_by), ` ran${outcomeText}.`]);
  }
  const uncaught = failed.filter((x) => !x.caught_by);
  for (const st of uncaught) lines.push(["step ", h("code", {}, st.step_id), ` failed with ${errorText(st.error)}.`]);
  const own = execution.error;
  if (own && !uncaught.some((st) => st.error.code === own.code && st.error.message === own.message)) {
    lines.push(`${errorText(own)}.`);
  }
  return lines.length ? lines : [execution.status === "failed" ? "no failed step was recorded." : "a catch step ran."];
}

/** A link to another execution's page (a parent's or a child's). */
function executionLink(executionId) {
  return link(`/dashboard/executions/${encodeURIComponent(executionId)}`, executionId);
}

function errorText(error) {
  return `${error.code}: ${error.message}`;
}

/** An event's data on one line, leaving out fields that are null. */
function eventData(data) {
  const shown = Object.entries(data || {}).filter(([, value]) => value !== null && value !== undefined);
  if (!shown.length) return null;
  return h("span", { class: "event-data" }, JSON.stringify(Object.fromEntries(shown)));
}

function legend() {
  return h("p", { class: "legend muted" },
    h("span", { class: "key solid" }), " depends on ", h("span", { class: "key dashed" }), " catch (on failure)");
}

function controlsCard(base, after) {
  const answer = outcome();
  const act = (action, body) => async () => {
    answer.clear();
    try {
      answer.ok(await api(`${base}/${action}`, { method: "POST", body }));
    } catch (error) {
      answer.fail(error);
    }
    after();
  };
  const cancel = actionButton("Cancel execution", act("cancel"), { class: "danger" });
  const pause = actionButton("Pause", act("pause"), { class: "secondary" });

  const stepSelect = h("select", { name: "step_id" }, h("option", { value: "" }, "No step (continue everything)"));
  const step = field("Step", stepSelect);
  const override = field("Override output (JSON, optional)",
    h("textarea", { name: "override_output", rows: 3, class: "code", spellcheck: "false", placeholder: "{\"approved\": true}" }),
    "Marks the step completed with this output instead of running it again.");
  const reason = field("Reason", h("input", { type: "text", name: "reason", maxlength: 1000 }));
  const submit = h("button", { type: "submit" }, "Resume");
  const form = h("form", { class: "resume", "aria-label": "Resume execution" }, step, override, reason, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    if (stepSelect.value) body.step_id = stepSelect.value;
    try {
      const output = parseJson(override.control.value, "Override output");
      if (output !== undefined) body.override_output = output;
    } catch (err) {
      answer.fail(err);
      override.control.focus();
      return;
    }
    if (reason.control.value.trim()) body.reason = reason.control.value.trim();
    submit.disabled = true;
    await act("resume", body)();
    submit.disabled = false;
  });

  const done = h("p", { class: "muted", hidden: true });
  const section = card("Controls", done, h("div", { class: "toolbar" }, pause, cancel), form, answer);
  section.update = (execution) => {
    const chosen = stepSelect.value;
    const ids = execution.steps.map((st) => st.step_id);
    const existing = [...stepSelect.options].slice(1).map((o) => o.value);
    if (ids.join("\n") !== existing.join("\n")) {
      fill(stepSelect, h("option", { value: "" }, "No step (continue everything)"),
        ids.map((id) => h("option", { value: id }, id)));
      stepSelect.value = ids.includes(chosen) ? chosen : "";
    }
    for (const option of [...stepSelect.options].slice(1)) {
      const st = execution.steps.find((x) => x.step_id === option.value);
      option.textContent = `${st.step_id} (${st.status})`;
    }
    const status = execution.status;
    const settled = status === "completed" || status === "compensated";
    pause.hidden = status !== "running";
    cancel.hidden = settled || status === "cancelled";
    form.hidden = settled;
    done.hidden = !settled;
    done.textContent = settled ? `The execution is ${status}: nothing left to control.` : "";
  };
  return section;
}
