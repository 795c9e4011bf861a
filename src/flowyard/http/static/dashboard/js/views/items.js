// The items of a for_each step: its progress ("done/total") and the list of its items, in
// item order, with each item's status, job (or child execution), output and error (100 at a
// time).

import { api } from "../api.js";
import { h, inlineJson, link, table } from "../dom.js";

const PAGE = 100;

/** "completed/total" of a step's item counts. */
export function progressText(items) {
  return `${items.completed}/${items.total}`;
}

/** What is out or went wrong, for the progress line: "2 running, 1 failed". */
function countsText(items) {
  const parts = [["running", items.running], ["queued", items.queued], ["failed", items.failed], ["cancelled", items.cancelled]]
    .filter(([, n]) => n)
    .map(([name, n]) => `${n} ${name}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

/** An item's job, or its child execution (a for_each sub_workflow step), as a link. */
function runsText(item) {
  if (item.job_id) return link(`/dashboard/jobs/${encodeURIComponent(item.job_id)}`, item.job_id);
  if (item.child_execution_id) {
    const id = item.child_execution_id;
    return link(`/dashboard/executions/${encodeURIComponent(id)}`, id);
  }
  return "—";
}

/**
 * The "Items" part of the step panel: progress, then the items, loaded page by page.
 * @param {string} base the execution's API path
 * @param {{step_id: string, items: object}} step
 */
export function itemsSection(base, step) {
  const path = `${base}/steps/${encodeURIComponent(step.step_id)}/items`;
  const box = h("div", { class: "items", "aria-label": `Items of ${step.step_id}` }, h("p", { class: "muted" }, "Loading items…"));
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more items");
  const rows = [];
  let cursor = null;

  const draw = () => {
    box.replaceChildren(table(["#", "Status", "Job or child", "Attempt", "Output", "Error"], rows, "No items."));
  };
  const load = async () => {
    more.disabled = true;
    try {
      const answer = await api(path, { params: { limit: PAGE, cursor } });
      for (const item of answer.items) {
        rows.push([
          String(item.index),
          h("span", { class: `badge st-${item.status}`, "data-item-status": item.status }, item.status),
          runsText(item),
          String(item.attempt),
          inlineJson(item.output),
          item.error ? h("span", { class: "bad-text" }, `${item.error.code}: ${item.error.message}`) : "—",
        ]);
      }
      cursor = answer.next_cursor;
      draw();
    } catch (error) {
      box.append(h("p", { class: "bad-text" }, `Items: ${error.message}`));
    }
    more.hidden = !cursor;
    more.disabled = false;
  };
  more.addEventListener("click", load);
  load();
  return [
    h("h4", {}, "Items"),
    h("p", { class: "progress", "data-progress": progressText(step.items) },
      `${progressText(step.items)} done${countsText(step.items)}`),
    box, more,
  ];
}
