// The execution page's "Send signal" card: a signal's name (prefilled from the step that
// waits), its JSON data and an optional idempotency key. The form shows while the execution is
// live; once it ends, the card stays only to show the answer to a signal sent from it.

import { api } from "../api.js";
import { card, field, h, outcome, parseJson } from "../dom.js";
import { clearProblems, showProblems } from "../forms.js";

const LIVE = new Set(["running", "paused"]);

/**
 * The card; `update(execution)` follows the execution, `after()` runs once a signal is sent.
 * @param {string} base the execution's API path
 * @param {() => void} after
 */
export function signalCard(base, after) {
  const answer = outcome();
  const names = h("datalist", { id: "fy-signal-names" });
  const name = field("Signal name",
    h("input", { type: "text", name: "name", required: true, maxlength: 128, list: "fy-signal-names", autocomplete: "off" }),
    "The oldest step waiting for this name takes the signal; otherwise it is kept for the next one.");
  const data = field("Data (JSON, optional)",
    h("textarea", { name: "data", rows: 3, class: "code", spellcheck: "false", placeholder: "{\"approved\": true}" }),
    "Becomes the output of the step that takes it; leave it empty to send no data.");
  const key = field("Idempotency key (optional)", h("input", { type: "text", name: "idempotency_key", maxlength: 128 }));
  const fields = { name, data, idempotency_key: key };
  const submit = h("button", { type: "submit" }, "Send signal");
  const form = h("form", { class: "signal", "aria-label": "Send signal" }, name, names, data, key, submit);
  const ended = h("p", { class: "muted", hidden: true }, "The execution has ended: it takes no more signals.");
  let prefilled = "";
  let answered = false;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(fields, answer);
    const body = { name: name.control.value };
    try {
      const value = parseJson(data.control.value, "Data");
      body.data = value === undefined ? null : value;
    } catch (err) {
      answer.fail(err);
      data.control.focus();
      return;
    }
    if (key.control.value.trim()) body.idempotency_key = key.control.value.trim();
    submit.disabled = true;
    answered = true; // keep the card for the answer, should the execution end meanwhile
    try {
      const sent = await api(`${base}/signals`, { method: "POST", body });
      answer.ok(sent.consumed_by
        ? `Signal ${sent.signal_id} completed step ${sent.consumed_by}.`
        : `Signal ${sent.signal_id} is kept: no step waits for "${sent.name}" yet.`);
    } catch (error) {
      showProblems(fields, answer, error, "name");
    } finally {
      submit.disabled = false;
    }
    after();
  });

  const section = card("Send signal", form, answer, ended);
  section.update = (execution) => {
    const live = LIVE.has(execution.status);
    form.hidden = !live;
    ended.hidden = live;
    section.hidden = !live && !answered;
    const waiting = execution.steps.filter((st) => st.status === "waiting" && st.signal);
    const wanted = [...new Set(waiting.map((st) => st.signal))];
    names.replaceChildren(...wanted.map((value) => h("option", { value })));
    // Prefill the name the oldest waiting step waits for, unless the user typed another.
    const oldest = waiting.slice().sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""))[0];
    const suggestion = oldest ? oldest.signal : "";
    if (name.control.value === prefilled) name.control.value = suggestion;
    prefilled = suggestion;
  };
  return section;
}
