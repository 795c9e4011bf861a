// One webhook's delivery history: status filter, paging, live while a delivery is pending, and
// the manual retry of a failed one.

import { api } from "../api.js";
import { actionButton, badge, card, choice, field, fill, h, jsonBlock, keepFocus, outcome, table, when } from "../dom.js";

export const DELIVERY_STATUSES = ["pending", "succeeded", "failed"];
const POLL_MS = 2000;
const PAGE = 25;

/** What an error answer says, with its status and code ("404 not_found: ..."). */
export function problemText(error) {
  return `${error.status ? `${error.status} ${error.code}: ` : ""}${error.message}`;
}

/** A short text (a receiver's answer) in a <pre>; none is a dash. */
export function snippet(text, label) {
  if (text === null || text === undefined || text === "") return "—";
  return h("pre", { class: "snippet", tabindex: 0, "aria-label": label }, String(text));
}

/** An optional number with its unit: "200", "35 ms"; none is a dash. */
export function numberOr(value, unit = "") {
  return value === null || value === undefined ? "—" : `${value}${unit}`;
}

/**
 * The deliveries card. `section.show(webhook, status)` lists a webhook's deliveries;
 * `section.stop()` ends the polling when the page goes away.
 * @param {{onFilter: (webhookId: string, status: string) => void}} options
 */
export function deliveriesCard({ onFilter }) {
  const heading = h("p", { class: "muted" }, "Choose Deliveries on a webhook to see what was sent to it.");
  const status = field("Status", choice(DELIVERY_STATUSES, "Any status", ""));
  const apply = h("button", { type: "submit", class: "secondary" }, "Apply");
  const filters = h("form", { class: "filters", "aria-label": "Filter deliveries", hidden: true }, status, apply);
  const list = h("div");
  const problem = outcome();
  const answer = outcome();
  const loaded = [];
  let webhook = null;
  let cursor = null;
  let timer = null;
  let stopped = false;
  let generation = 0;
  const more = actionButton("Load more", () => load(false), { class: "secondary", hidden: true });
  const refresh = actionButton("Refresh", () => load(true), { class: "secondary" });
  const toolbar = h("div", { class: "toolbar", hidden: true }, refresh);

  const base = () => `/infra/webhooks/${encodeURIComponent(webhook.id)}/deliveries`;

  const retry = (delivery) => async () => {
    answer.clear();
    try {
      const retried = await api(`${base()}/${encodeURIComponent(delivery.id)}/retry`, { method: "POST" });
      const now = retried && retried.status ? `: now ${retried.status}` : "";
      answer.ok(`Delivery ${delivery.id} gets another round of attempts${now}.`);
    } catch (error) {
      answer.fail(error);
    }
    await load(true);
  };

  const row = (d) => [
    h("details", {}, h("summary", {}, h("code", {}, d.id)), jsonBlock(d.payload, `Payload of ${d.id}`)),
    badge(d.status),
    h("span", { class: "topics" }, h("code", {}, d.topic)),
    numberOr(d.attempts),
    numberOr(d.http_status),
    snippet(d.response_snippet, `Answer to ${d.id}`),
    when(d.next_attempt_at),
    when(d.created_at),
    d.status === "failed"
      ? actionButton("Retry", retry(d), { class: "small", "aria-label": `Retry delivery ${d.id}` })
      : "",
  ];
  const columns = ["Delivery", "Status", "Topic", "Attempts", "HTTP status", "Response", "Next attempt", "Created", ""];

  async function load(fromStart) {
    clearTimeout(timer);
    if (stopped || !webhook) return;
    const mine = ++generation;
    problem.clear();
    // A refresh re-reads as many rows as are shown, so polling does not undo "Load more".
    const limit = fromStart ? Math.min(100, Math.max(PAGE, loaded.length)) : PAGE;
    let page;
    try {
      page = await api(base(), { params: { status: status.control.value, limit, cursor: fromStart ? null : cursor } });
    } catch (error) {
      if (mine !== generation) return;
      problem.fail(error);
      fill(list);
      more.hidden = true;
      return;
    }
    if (mine !== generation || stopped) return;
    if (fromStart) loaded.length = 0;
    loaded.push(...page.deliveries);
    cursor = page.next_cursor;
    keepFocus(list, () => fill(list, table(columns, loaded.map(row), "No deliveries match.")));
    more.hidden = !cursor;
    if (loaded.some((d) => d.status === "pending")) timer = setTimeout(() => load(true), POLL_MS);
  }

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    onFilter(webhook.id, status.control.value);
    load(true);
  });

  const section = card("Deliveries", heading, filters, toolbar, answer, problem, list, more);
  section.classList.add("wide");
  section.show = (chosen, wanted = "") => {
    webhook = chosen;
    cursor = null;
    loaded.length = 0;
    status.control.value = DELIVERY_STATUSES.includes(wanted) ? wanted : "";
    fill(heading, "Sent to ", h("span", { class: "strong" }, chosen.name || chosen.id), " ", h("code", {}, chosen.id));
    heading.className = "";
    filters.hidden = false;
    toolbar.hidden = false;
    answer.clear();
    fill(list);
    load(true);
  };
  section.stop = () => {
    stopped = true;
    clearTimeout(timer);
  };
  return section;
}
