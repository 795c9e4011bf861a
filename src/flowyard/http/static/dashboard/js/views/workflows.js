// Workflows: create a blueprint, the blueprint catalog, the trigger card, the executions list.

import { api } from "../api.js";
import {
  actionButton, badge, card, choice, EXECUTION_STATUSES, field, fill, h, link, outcome, parseJson,
  table, when,
} from "../dom.js";
import { clearProblems, createdLine, fieldProblem, showProblems } from "../forms.js";
import { listExecutions } from "../source.js";

const EXAMPLE_STEPS = [
  {
    id: "charge",
    job_trigger: { trigger: { type: "pull", queue: "payments" } },
    payload_template: { order_id: "{{input.order_id}}" },
  },
  {
    id: "ship",
    depends_on: ["charge"],
    job_trigger: { trigger: { type: "pull", queue: "shipping" } },
    payload_template: { charge_id: "{{steps.charge.output.charge_id}}" },
  },
];

export function renderWorkflows(main, ctx) {
  const heading = h("h1", {}, "Workflows");
  if (ctx.foreign) {
    fill(main, heading,
      h("p", { class: "notice" }, `Viewing ${ctx.viewLabel} through the admin API: executions are read-only here, `,
        "and blueprints, triggers and controls need a key of that project."),
      executionsCard(ctx));
    return null;
  }
  const trigger = triggerCard(ctx);
  const executions = executionsCard(ctx);
  const catalog = catalogCard({
    onTrigger: (id) => trigger.choose(id),
    onExecutions: (id) => executions.filterBlueprint(id),
    onLoaded: (items) => trigger.offer(items),
  });
  const create = createCard({
    onCreated: (blueprint) => {
      catalog.refresh();
      trigger.choose(blueprint.id, false);
    },
  });
  fill(main, heading, h("div", { class: "split forms-left" },
    h("div", { class: "column side" }, create, trigger),
    h("div", { class: "column" }, catalog, executions)));
  catalog.refresh();
  return null;
}

function createCard({ onCreated }) {
  const name = field("Name", h("input", { type: "text", name: "name", required: true, maxlength: 256 }));
  const description = field("Description", h("textarea", { name: "description", rows: 2, maxlength: 1000 }));
  const steps = field("Steps (JSON array)",
    h("textarea", { name: "steps", rows: 12, class: "code", spellcheck: "false" }, JSON.stringify(EXAMPLE_STEPS, null, 2)),
    "Each step: id, job_trigger, payload_template, depends_on, catch.");
  const maxDuration = field("Max duration (seconds)",
    h("input", { type: "number", name: "max_duration_sec", min: 1, max: 86400, placeholder: "86400" }));
  const fields = { name, description, steps, max_duration_sec: maxDuration };
  const summary = outcome();
  const submit = h("button", { type: "submit" }, "Create blueprint");
  const form = h("form", { novalidate: true, "aria-label": "Create blueprint" },
    name, description, steps, maxDuration, submit, summary);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(fields, summary);
    const body = { name: name.control.value };
    if (description.control.value.trim()) body.description = description.control.value;
    if (maxDuration.control.value) body.max_duration_sec = Number(maxDuration.control.value);
    try {
      body.steps = parseJson(steps.control.value, "Steps");
    } catch (err) {
      fieldProblem(steps, err.message);
      steps.control.focus();
      return;
    }
    submit.disabled = true;
    try {
      const blueprint = await api("/infra/workflows/blueprints", { method: "POST", body });
      createdLine(summary, `Created blueprint ${blueprint.name} (${blueprint.id}).`);
      onCreated(blueprint);
    } catch (error) {
      showProblems(fields, summary, error, "steps");
    } finally {
      submit.disabled = false;
    }
  });
  return card("Create blueprint", form);
}

function catalogCard({ onTrigger, onExecutions, onLoaded }) {
  const list = h("div", { class: "catalog" });
  const status = h("p", { class: "muted", role: "status" });
  const loaded = [];
  let cursor = null;
  const more = actionButton("Load more", () => load(false), { class: "secondary", hidden: true });
  const refresh = actionButton("Refresh", () => load(true), { class: "secondary" });
  const problem = outcome();

  const row = (b) => [
    h("span", { class: "strong" }, b.name),
    h("code", {}, b.id),
    when(b.created_at),
    b.description || h("span", { class: "muted" }, "—"),
    h("span", { class: "row-actions" },
      h("button", { type: "button", class: "small", onclick: () => onTrigger(b.id), "aria-label": `Trigger ${b.name}` }, "Trigger"),
      h("button", { type: "button", class: "small secondary", onclick: () => onExecutions(b.id), "aria-label": `Executions of ${b.name}` }, "Executions")),
  ];

  async function load(fromStart) {
    problem.clear();
    try {
      const answer = await api("/infra/workflows/blueprints", { params: { cursor: fromStart ? null : cursor } });
      if (fromStart) loaded.length = 0;
      loaded.push(...answer.blueprints);
      cursor = answer.next_cursor;
    } catch (error) {
      problem.fail(error);
      return;
    }
    fill(list, table(["Name", "ID", "Created", "Description", ""], loaded.map(row), "No blueprints yet."));
    status.textContent = `${loaded.length} blueprint${loaded.length === 1 ? "" : "s"} shown${cursor ? ", more to load" : ""}.`;
    more.hidden = !cursor;
    onLoaded(loaded);
  }

  const section = card("Blueprint catalog", h("div", { class: "toolbar" }, refresh), problem, list, status, more);
  section.classList.add("wide");
  section.refresh = () => load(true);
  return section;
}

function triggerCard(ctx) {
  const options = h("datalist", { id: "blueprint-options" });
  const blueprint = field("Blueprint ID", h("input", {
    type: "text", name: "blueprint_id", list: "blueprint-options", required: true, autocomplete: "off",
    placeholder: "wf_…",
  }));
  const input = field("Input data (JSON object)", h("textarea", { name: "input_data", rows: 4, class: "code", spellcheck: "false" }, "{}"));
  const idem = field("Idempotency key (optional)", h("input", { type: "text", name: "idempotency_key", maxlength: 128 }));
  const fields = { blueprint_id: blueprint, input_data: input, idempotency_key: idem };
  const summary = outcome();
  const submit = h("button", { type: "submit" }, "Trigger");
  const form = h("form", { novalidate: true, "aria-label": "Trigger execution" }, blueprint, options, input, idem, submit, summary);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(fields, summary);
    const id = blueprint.control.value.trim();
    if (!id) {
      fieldProblem(blueprint, "Choose or paste a blueprint ID.");
      blueprint.control.focus();
      return;
    }
    const body = {};
    try {
      const data = parseJson(input.control.value, "Input data");
      if (data !== undefined) body.input_data = data;
    } catch (err) {
      fieldProblem(input, err.message);
      input.control.focus();
      return;
    }
    if (idem.control.value.trim()) body.idempotency_key = idem.control.value.trim();
    submit.disabled = true;
    try {
      const answer = await api(`/infra/workflows/blueprints/${encodeURIComponent(id)}/trigger`, { method: "POST", body });
      ctx.navigate(`/dashboard/executions/${encodeURIComponent(answer.execution_id)}`);
    } catch (error) {
      showProblems(fields, summary, error, "input_data");
      if (error.status === 404) fieldProblem(blueprint, error.message);
      submit.disabled = false;
    }
  });
  const section = card("Trigger execution", form);
  section.choose = (id, focus = true) => {
    blueprint.control.value = id;
    if (focus) input.control.focus();
  };
  section.offer = (items) => fill(options, items.map((b) => h("option", { value: b.id }, b.name)));
  return section;
}

function executionsCard(ctx) {
  const status = field("Status", choice(EXECUTION_STATUSES, "Any status", ctx.query.get("status")));
  const blueprint = field("Blueprint ID", h("input", {
    type: "text", name: "blueprint_filter", placeholder: "any", value: ctx.query.get("blueprint_id") || "",
  }));
  const apply = h("button", { type: "submit", class: "secondary" }, "Apply");
  const filters = h("form", { class: "filters", "aria-label": "Filter executions" }, status, blueprint, apply);
  const list = h("div");
  const problem = outcome();
  const loaded = [];
  let cursor = null;
  const more = actionButton("Load more", () => load(false), { class: "secondary", hidden: true });

  const current = () => ({ status: status.control.value, blueprint_id: blueprint.control.value.trim() });
  const row = (e) => {
    const id = ctx.foreign ? stepsDetails(e) : link(`/dashboard/executions/${encodeURIComponent(e.id)}`, e.id);
    const cells = [id, badge(e.status), h("code", {}, e.blueprint_id), when(e.started_at), when(e.completed_at)];
    return ctx.foreign ? [...cells, h("span", { title: e.project_id }, ctx.projectName(e.project_id))] : cells;
  };
  const columns = ["Execution", "Status", "Blueprint", "Started", "Completed", ...(ctx.foreign ? ["Project"] : [])];

  async function load(fromStart) {
    problem.clear();
    try {
      const answer = await listExecutions(ctx, { ...current(), cursor: fromStart ? null : cursor });
      if (fromStart) loaded.length = 0;
      loaded.push(...answer.executions);
      cursor = answer.next_cursor;
    } catch (error) {
      problem.fail(error);
      return;
    }
    fill(list, table(columns, loaded.map(row), "No executions match."));
    more.hidden = !cursor;
  }
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.setQuery(current());
    load(true);
  });
  const section = card("Executions", filters, problem, list, more);
  section.classList.add("wide");
  section.filterBlueprint = (id) => {
    blueprint.control.value = id;
    ctx.setQuery(current());
    load(true);
    blueprint.control.focus();
  };
  load(true);
  return section;
}

/** A read-only execution (admin view of another project): its steps behind a disclosure. */
function stepsDetails(execution) {
  return h("details", {},
    h("summary", {}, h("code", {}, execution.id)),
    table(["Step", "Status", "Job", "Attempt"], execution.steps.map((st) => [
      st.step_id, badge(st.status), st.job_id ? h("code", {}, st.job_id) : "—", String(st.attempt ?? "—"),
    ])),
    execution.error ? h("p", { class: "bad-text" }, `${execution.error.code}: ${execution.error.message}`) : null);
}
