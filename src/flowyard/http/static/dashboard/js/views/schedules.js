// Schedules: blueprints triggered on a cron schedule. Create one, enable or disable it, fire it
// now, and follow the link to the execution it started last.

import { api } from "../api.js";
import { actionButton, badge, card, field, fill, h, link, outcome, parseJson, table, when } from "../dom.js";
import { clearProblems, fieldProblem, showProblems } from "../forms.js";

const CRON_HINT = "Five fields: minute hour day-of-month month day-of-week, e.g. */15 * * * * "
  + "or 0 9 * * 1-5.";
const OVERLAP_HINT = "Skip: no fire while the previous execution is running or paused.";

export function renderSchedules(main, ctx) {
  const heading = h("h1", {}, "Schedules");
  if (ctx.foreign) {
    fill(main, heading,
      h("p", { class: "notice" }, "Schedules are managed with a key of their project; the admin API has no schedule view ",
        `(viewing ${ctx.viewLabel}).`));
    return null;
  }
  const names = new Map(); // blueprint id -> name, from the create form's list
  const list = listCard(names);
  fill(main, heading, h("div", { class: "split forms-left" },
    h("div", { class: "column side" }, createCard(names, () => list.reload())),
    h("div", { class: "column" }, list)));
  list.reload();
  return null;
}

function listCard(names) {
  const list = h("div");
  const problem = outcome();
  const answer = outcome();
  const loaded = [];
  let cursor = null;
  const more = actionButton("Load more", () => load(false), { class: "secondary", hidden: true });
  const refresh = actionButton("Refresh", () => load(true), { class: "secondary" });

  const toggle = (s) => async () => {
    answer.clear();
    try {
      const changed = await api(`/infra/workflows/schedules/${encodeURIComponent(s.id)}`, { method: "PATCH", body: { enabled: !s.enabled } });
      answer.ok(`Schedule ${changed.id} is ${changed.enabled ? "enabled" : "disabled"}.`);
    } catch (error) {
      answer.fail(error);
    }
    await load(true);
  };

  const fire = (s) => async () => {
    answer.clear();
    try {
      const started = await api(`/infra/workflows/schedules/${encodeURIComponent(s.id)}/trigger`, { method: "POST" });
      answer.className = "outcome ok";
      fill(answer, `Fired ${s.id}: execution `, link(`/dashboard/executions/${encodeURIComponent(started.execution_id)}`, started.execution_id),
        ` is ${started.status}.`);
    } catch (error) {
      answer.fail(error);
    }
    await load(true);
  };

  const row = (s) => [
    h("span", {}, h("code", { class: "nowrap" }, s.schedule), h("br"),
      h("span", { class: "muted" }, s.timezone), h("br"), h("code", { class: "muted small-id nowrap" }, s.id)),
    h("span", { title: s.blueprint_id }, names.get(s.blueprint_id) || h("code", { class: "small-id" }, s.blueprint_id)),
    when(s.next_fire_at),
    s.last_execution_id
      ? h("span", {}, link(`/dashboard/executions/${encodeURIComponent(s.last_execution_id)}`, s.last_execution_id), h("br"),
        h("span", { class: "muted" }, when(s.last_fire_at)))
      : "—",
    h("span", {}, badge(s.enabled ? "enabled" : "disabled"), h("br"),
      h("span", { class: "muted" }, s.overlap === "allow" ? "overlap allowed" : "skips overlaps")),
    h("span", { class: "row-actions" },
      actionButton(s.enabled ? "Disable" : "Enable", toggle(s), {
        class: "small secondary", "aria-label": `${s.enabled ? "Disable" : "Enable"} ${s.id}`,
      }),
      actionButton("Fire now", fire(s), { class: "small", "aria-label": `Fire ${s.id} now` })),
  ];

  async function load(fromStart) {
    problem.clear();
    let page;
    try {
      page = await api("/infra/workflows/schedules", { params: { cursor: fromStart ? null : cursor } });
    } catch (error) {
      problem.fail(error);
      more.hidden = true;
      return;
    }
    if (fromStart) loaded.length = 0;
    loaded.push(...page.schedules);
    cursor = page.next_cursor;
    const columns = ["Schedule", "Blueprint", "Next fire", "Last execution", "State", ""];
    fill(list, table(columns, loaded.map(row), "No schedules yet."));
    more.hidden = !cursor;
  }

  const section = card("Schedule list", h("div", { class: "toolbar" }, refresh), answer, problem, list, more);
  section.classList.add("wide");
  section.reload = () => load(true);
  return section;
}

function createCard(names, onCreated) {
  const blueprint = field("Blueprint", h("select", { name: "blueprint_id", required: true }),
    "The blueprint to trigger at every fire.");
  const schedule = field("Cron schedule", h("input", { type: "text", name: "schedule", required: true, value: "*/15 * * * *", class: "code", spellcheck: "false" }), CRON_HINT);
  const timezone = field("Timezone", h("input", { type: "text", name: "timezone", value: "UTC", spellcheck: "false" }),
    "An IANA name such as Europe/Paris.");
  const input = field("Input data (JSON)", h("textarea", { name: "input_data", rows: 4, class: "code", spellcheck: "false" }, "{}"),
    "Every {{input.*}} the blueprint reads must be here.");
  const overlap = field("Overlap", h("select", { name: "overlap" },
    h("option", { value: "skip" }, "skip"), h("option", { value: "allow" }, "allow")), OVERLAP_HINT);
  const enabled = field("State", h("select", { name: "enabled" },
    h("option", { value: "true" }, "enabled"), h("option", { value: "false" }, "disabled")),
    "A disabled schedule does not fire; Fire now still works.");
  const fields = { blueprint_id: blueprint, schedule, timezone, input_data: input, overlap, enabled };
  const summary = outcome();
  const submit = h("button", { type: "submit" }, "Create schedule");
  const form = h("form", { novalidate: true, "aria-label": "Create schedule" },
    blueprint, schedule, timezone, input, overlap, enabled, submit, summary);

  api("/infra/workflows/blueprints", { params: { limit: 100 } }).then((page) => {
    for (const b of page.blueprints) names.set(b.id, b.name);
    fill(blueprint.control, page.blueprints.map((b) => h("option", { value: b.id }, `${b.name} · ${b.id}`)));
    if (!page.blueprints.length) fieldProblem(blueprint, "No blueprints yet: create one first.");
    else onCreated(null); // the list again, with the blueprints' names
  }).catch((error) => summary.fail(error));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(fields, summary);
    let data;
    try {
      data = parseJson(input.control.value, "Input data") ?? {};
    } catch (error) {
      fieldProblem(input, error.message);
      input.control.focus();
      return;
    }
    const body = {
      blueprint_id: blueprint.control.value,
      schedule: schedule.control.value.trim(),
      timezone: timezone.control.value.trim() || "UTC",
      input_data: data,
      overlap: overlap.control.value,
      enabled: enabled.control.value === "true",
    };
    submit.disabled = true;
    try {
      const created = await api("/infra/workflows/schedules", { method: "POST", body });
      summary.className = "outcome ok";
      fill(summary, `Created schedule ${created.id}; next fire `, when(created.next_fire_at), ".");
      onCreated(created);
    } catch (error) {
      showProblems(fields, summary, error, "input_data");
    } finally {
      submit.disabled = false;
    }
  });
  return card("Create schedule", form);
}
