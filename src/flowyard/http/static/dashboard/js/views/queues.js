// Queues: depth, running count, age of the oldest pending job, limits; pause and unpause.

import { api } from "../api.js";
import { actionButton, badge, card, duration, field, fill, h, keepFocus, outcome, table } from "../dom.js";
import { clearProblems, showProblems } from "../forms.js";

const REFRESH_MS = 3000;

/** Every queue of the key's project (all pages). */
export async function allQueues() {
  const queues = [];
  let cursor = null;
  do {
    const answer = await api("/infra/queues", { params: { limit: 100, cursor } });
    queues.push(...answer.queues);
    cursor = answer.next_cursor;
  } while (cursor);
  return queues;
}

export function renderQueues(main, ctx) {
  if (ctx.foreign) {
    fill(main, h("h1", {}, "Queues"),
      h("p", { class: "notice" }, `Queues are read with a project key; the admin API has no queue view (viewing ${ctx.viewLabel}).`));
    return null;
  }
  const list = h("div");
  const answer = outcome();
  let timer = null;
  let stopped = false;

  const put = async (name, body) => {
    answer.clear();
    try {
      answer.ok(await api(`/infra/queues/${encodeURIComponent(name)}`, { method: "PUT", body }));
    } catch (error) {
      answer.fail(error);
    }
    await refresh();
  };

  async function refresh() {
    clearTimeout(timer);
    if (stopped) return;
    try {
      const queues = await allQueues();
      if (stopped) return;
      keepFocus(list, () => fill(list, table(["Queue", "State", "Depth", "Running", "Oldest pending", "Concurrency", "Rate / s", ""],
        queues.map((q) => [
          h("span", { class: "strong" }, q.name),
          badge(q.paused ? "paused" : "active"),
          String(q.depth),
          String(q.running),
          duration(q.oldest_pending_age_seconds),
          q.concurrency === null ? "no limit" : String(q.concurrency),
          q.rate_limit_per_second === null ? "no limit" : String(q.rate_limit_per_second),
          actionButton(q.paused ? "Unpause" : "Pause", () => put(q.name, { paused: !q.paused }), {
            class: "small secondary", "aria-label": `${q.paused ? "Unpause" : "Pause"} queue ${q.name}`,
          }),
        ]), "No queues yet: a queue exists once a job names it.")));
    } catch (error) {
      answer.fail(error);
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  const settings = settingsForm(() => refresh());
  fill(main, h("h1", {}, "Queues"),
    h("div", { class: "split exec" },
      h("div", { class: "column" },
        card("Queues", h("div", { class: "toolbar" }, actionButton("Refresh", refresh, { class: "secondary" })), list, answer)),
      h("div", { class: "column side" }, card("Configure a queue", settings))));
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function settingsForm(after) {
  const name = field("Queue name", h("input", { type: "text", name: "queue_name", required: true, maxlength: 128 }));
  const concurrency = field("Concurrency", h("input", { type: "number", name: "concurrency", min: 1, placeholder: "unchanged" }));
  const rate = field("Rate limit per second", h("input", { type: "number", name: "rate_limit_per_second", min: 0, step: "any", placeholder: "unchanged" }));
  const fields = { name, concurrency, rate_limit_per_second: rate };
  const summary = outcome();
  const form = h("form", { novalidate: true, "aria-label": "Configure a queue" },
    name, concurrency, rate, h("button", { type: "submit" }, "Save"), summary);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(fields, summary);
    const body = {};
    if (concurrency.control.value) body.concurrency = Number(concurrency.control.value);
    if (rate.control.value) body.rate_limit_per_second = Number(rate.control.value);
    try {
      const queue = await api(`/infra/queues/${encodeURIComponent(name.control.value.trim())}`, { method: "PUT", body });
      summary.ok(queue);
      after();
    } catch (error) {
      showProblems(fields, summary, error, "name");
    }
  });
  return form;
}
