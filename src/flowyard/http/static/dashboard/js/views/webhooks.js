// Webhooks: the project's subscriptions (create, enable or disable, send a test) and, for the
// one chosen, its delivery history with the retry of a failed delivery.

import { api } from "../api.js";
import { actionButton, badge, card, facts, field, fill, h, outcome, table } from "../dom.js";
import { clearProblems, showProblems } from "../forms.js";
import { deliveriesCard, numberOr, problemText, snippet } from "./deliveries.js";

const TOPIC_HINT = "One pattern per line (or comma-separated): a topic such as jobs.completed, "
  + "a prefix such as workflows.*, or * for every event.";

/** The patterns typed in the topics box, in order, without blanks. */
export function topicList(text) {
  return text.split(/[\n,]/).map((t) => t.trim()).filter(Boolean);
}

/** The list of the key's own project cannot be missing: a 404 means this server has no
 * webhook routes at all (it predates them). */
function missingRoutes(error) {
  return error.status === 404;
}

export function renderWebhooks(main, ctx) {
  const heading = h("h1", {}, "Webhooks");
  if (ctx.foreign) {
    fill(main, heading,
      h("p", { class: "notice" }, `Webhooks are managed with a key of their project; the admin API has no webhook view `,
        `(viewing ${ctx.viewLabel}).`));
    return null;
  }
  const deliveries = deliveriesCard({
    onFilter: (webhookId, status) => ctx.setQuery({ webhook: webhookId, status }),
  });
  const list = listCard({
    onDeliveries: (webhook) => {
      ctx.setQuery({ webhook: webhook.id });
      deliveries.show(webhook);
      deliveries.querySelector("h2").scrollIntoView({ block: "nearest" });
    },
    // The address names a webhook (a reload, a shared link): open its history, reading it
    // alone when it is not on the first page; one that is gone is simply not opened.
    onLoaded: async (items) => {
      const wanted = ctx.query.get("webhook");
      if (!wanted) return;
      const chosen = items.find((w) => w.id === wanted)
        || await api(`/infra/webhooks/${encodeURIComponent(wanted)}`).catch(() => null);
      if (chosen) deliveries.show(chosen, ctx.query.get("status") || "");
    },
  });
  fill(main, heading, h("div", { class: "split forms-left" },
    h("div", { class: "column side" }, createCard(() => list.reload())),
    h("div", { class: "column" }, list, deliveries)));
  list.reload();
  return () => deliveries.stop();
}

function listCard({ onDeliveries, onLoaded }) {
  const list = h("div");
  const problem = outcome();
  const answer = outcome();
  const loaded = [];
  let cursor = null;
  let first = true;
  const more = actionButton("Load more", () => load(false), { class: "secondary", hidden: true });
  const refresh = actionButton("Refresh", () => load(true), { class: "secondary" });

  const toggle = (w) => async () => {
    answer.clear();
    try {
      const changed = await api(`/infra/webhooks/${encodeURIComponent(w.id)}`, { method: "PATCH", body: { enabled: !w.enabled } });
      answer.ok(`${changed.name} is ${changed.enabled ? "enabled" : "disabled"}.`);
    } catch (error) {
      answer.fail(error);
    }
    await load(true);
  };

  const test = (w) => async () => {
    answer.clear();
    try {
      const result = await api(`/infra/webhooks/${encodeURIComponent(w.id)}/test`, { method: "POST" });
      showTest(answer, w, result);
    } catch (error) {
      answer.fail(error);
    }
  };

  const row = (w) => [
    h("span", { class: "strong" }, w.name),
    h("code", {}, w.url),
    h("span", { class: "topics" }, (w.topics || []).map((t, i) => [i ? ", " : "", h("code", {}, t)])),
    badge(w.enabled ? "enabled" : "disabled"),
    h("span", { class: "row-actions" },
      actionButton(w.enabled ? "Disable" : "Enable", toggle(w), {
        class: "small secondary", "aria-label": `${w.enabled ? "Disable" : "Enable"} ${w.name}`,
      }),
      actionButton("Send test", test(w), { class: "small secondary", "aria-label": `Send a test to ${w.name}` }),
      h("button", { type: "button", class: "small", onclick: () => onDeliveries(w), "aria-label": `Deliveries of ${w.name}` },
        "Deliveries")),
  ];

  async function load(fromStart) {
    problem.clear();
    let page;
    try {
      page = await api("/infra/webhooks", { params: { cursor: fromStart ? null : cursor } });
    } catch (error) {
      if (missingRoutes(error)) {
        fill(list, h("p", { class: "notice" },
          "This server has no webhooks API, so there is nothing to show or create here. ",
          `(${problemText(error)})`));
      } else {
        problem.fail(error);
      }
      more.hidden = true;
      return;
    }
    if (fromStart) loaded.length = 0;
    loaded.push(...page.webhooks);
    cursor = page.next_cursor;
    fill(list, table(["Name", "URL", "Topics", "State", ""], loaded.map(row), "No webhooks yet."));
    more.hidden = !cursor;
    if (first) onLoaded(loaded);
    first = false;
  }

  const section = card("Webhook list", h("div", { class: "toolbar" }, refresh), answer, problem, list, more);
  section.classList.add("wide");
  section.reload = () => load(true);
  return section;
}

/** The answer to "send a test": the receiver's HTTP status (none on a connection error),
 * how long it took, and the start of what it answered. */
function showTest(answer, webhook, result) {
  const ok = result.status !== null && result.status >= 200 && result.status < 300;
  answer.className = `outcome ${ok ? "ok" : "bad"}`;
  fill(answer,
    h("p", { class: "strong" }, `Test of ${webhook.name}: ${ok ? "delivered" : "not delivered"}`),
    facts([
      ["HTTP status", result.status === null ? "no answer (connection failed)" : String(result.status)],
      ["Duration", numberOr(result.duration_ms, " ms")],
      ["Response", snippet(result.response_snippet, `Test answer from ${webhook.name}`)],
    ]));
}

function createCard(onCreated) {
  const name = field("Name", h("input", { type: "text", name: "name", required: true, maxlength: 128 }));
  const url = field("URL", h("input", { type: "url", name: "url", required: true, placeholder: "https://example.com/hooks/flowyard" }));
  const topics = field("Topics", h("textarea", { name: "topics", rows: 3, class: "code", spellcheck: "false" }, "jobs.*"), TOPIC_HINT);
  const secret = field("Secret (optional)", h("input", { type: "text", name: "secret", autocomplete: "off", spellcheck: "false" }),
    "16 to 256 characters; one is generated when left empty.");
  const fields = { name, url, topics, secret };
  const summary = outcome();
  const submit = h("button", { type: "submit" }, "Create webhook");
  const form = h("form", { novalidate: true, "aria-label": "Create webhook" }, name, url, topics, secret, submit, summary);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(fields, summary);
    const body = { name: name.control.value.trim(), url: url.control.value.trim(), topics: topicList(topics.control.value) };
    if (secret.control.value) body.secret = secret.control.value;
    submit.disabled = true;
    try {
      const created = await api("/infra/webhooks", { method: "POST", body });
      summary.className = "outcome ok";
      fill(summary, `Created webhook ${created.name} (${created.id}). Its signing secret: `,
        h("code", { class: "secret" }, created.secret || "—"));
      secret.control.value = "";
      onCreated(created);
    } catch (error) {
      showProblems(fields, summary, error, "topics");
    } finally {
      submit.disabled = false;
    }
  });
  return card("Create webhook", form);
}
