// Jobs: the list with status, trigger type and queue filters, and a form to create one.

import { api } from "../api.js";
import {
  actionButton, badge, card, choice, field, fill, h, JOB_STATUSES, link, outcome, parseJson,
  table, TRIGGER_TYPES, when,
} from "../dom.js";
import { clearProblems, createdLine, fieldProblem, showProblems } from "../forms.js";
import { listJobs } from "../source.js";

const PRESETS = {
  "Pull job": {
    name: "send-email",
    trigger: { type: "pull", queue: "emails" },
    payload: { to: "ada@example.com" },
  },
  "Immediate push job": {
    name: "notify",
    trigger: { type: "immediate" },
    handler: "https://example.com/hooks/notify",
    payload: { hello: "world" },
  },
  "Delayed push job": {
    trigger: { type: "delayed", delay_seconds: 60 },
    handler: "https://example.com/hooks/later",
    payload: null,
  },
  "Scheduled (cron) job": {
    name: "daily-digest",
    trigger: { type: "scheduled", schedule: "0 9 * * *", timezone: "UTC" },
    handler: "https://example.com/hooks/digest",
    payload: { kind: "daily" },
  },
};

export function queueOf(job) {
  return job.trigger && job.trigger.queue ? job.trigger.queue : null;
}

export function renderJobs(main, ctx) {
  const list = listCard(ctx);
  const parts = [h("h1", {}, "Jobs")];
  if (ctx.foreign) {
    parts.push(h("p", { class: "notice" }, `Viewing ${ctx.viewLabel} through the admin API (read-only).`));
    parts.push(list);
  } else {
    parts.push(h("div", { class: "split forms-left" },
      h("div", { class: "column side" }, createCard(() => list.reload())),
      h("div", { class: "column" }, list)));
  }
  fill(main, ...parts);
  return null;
}

function listCard(ctx) {
  const status = field("Status", choice(JOB_STATUSES, "Any status", ctx.query.get("status")));
  const type = field("Trigger type", choice(TRIGGER_TYPES, "Any type", ctx.query.get("trigger_type")));
  const queue = field("Queue", h("input", { type: "text", name: "queue", placeholder: "any", value: ctx.query.get("queue") || "" }));
  const apply = h("button", { type: "submit", class: "secondary" }, "Apply");
  const filters = h("form", { class: "filters", "aria-label": "Filter jobs" }, status, type, queue, apply);
  const list = h("div");
  const problem = outcome();
  const loaded = [];
  let cursor = null;
  const more = actionButton("Load more", () => load(false), { class: "secondary", hidden: true });
  const current = () => ({ status: status.control.value, trigger_type: type.control.value, queue: queue.control.value.trim() });

  const columns = ["Job", "Name", "Status", "Trigger", "Queue", "Attempts", "Created", ...(ctx.foreign ? ["Project"] : [])];
  const row = (job) => {
    const cells = [
      ctx.foreign ? h("code", {}, job.id) : link(`/dashboard/jobs/${encodeURIComponent(job.id)}`, job.id),
      job.name || (job.workflow ? `step ${job.workflow.step_id}` : "—"),
      badge(job.status),
      job.trigger.type,
      queueOf(job) || "—",
      `${job.attempt}/${job.max_attempts}`,
      when(job.created_at),
    ];
    return ctx.foreign ? [...cells, h("span", { title: job.project_id }, ctx.projectName(job.project_id))] : cells;
  };

  async function load(fromStart) {
    problem.clear();
    try {
      const answer = await listJobs(ctx, { ...current(), cursor: fromStart ? null : cursor });
      if (fromStart) loaded.length = 0;
      loaded.push(...answer.jobs);
      cursor = answer.next_cursor;
    } catch (error) {
      problem.fail(error);
      return;
    }
    fill(list, table(columns, loaded.map(row), "No jobs match."));
    more.hidden = !cursor;
  }
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.setQuery(current());
    load(true);
  });
  const section = card("Job list", filters, problem, list, more);
  section.classList.add("wide");
  section.reload = () => load(true);
  load(true);
  return section;
}

function createCard(onCreated) {
  const preset = field("Start from", h("select", { name: "preset" }, Object.keys(PRESETS).map((name) => h("option", { value: name }, name))));
  const body = field("Job (JSON body of POST /infra/jobs)",
    h("textarea", { name: "job", rows: 12, class: "code", spellcheck: "false" }, JSON.stringify(PRESETS["Pull job"], null, 2)),
    "trigger, handler, payload, name, timeout, max_attempts, backoff, priority, callback_url, idempotency_key, enabled.");
  preset.control.addEventListener("change", () => {
    body.control.value = JSON.stringify(PRESETS[preset.control.value], null, 2);
  });
  const fields = { job: body };
  const summary = outcome();
  const submit = h("button", { type: "submit" }, "Create job");
  const form = h("form", { novalidate: true, "aria-label": "Create job" }, preset, body, submit, summary);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(fields, summary);
    let spec;
    try {
      spec = parseJson(body.control.value, "The job");
    } catch (err) {
      fieldProblem(body, err.message);
      body.control.focus();
      return;
    }
    submit.disabled = true;
    try {
      const job = await api("/infra/jobs", { method: "POST", body: spec });
      createdLine(summary, `Created job ${job.id} (${job.status}).`, `/dashboard/jobs/${encodeURIComponent(job.id)}`, "Open it");
      onCreated(job);
    } catch (error) {
      showProblems(fields, summary, error, "job");
    } finally {
      submit.disabled = false;
    }
  });
  return card("Create job", form);
}
