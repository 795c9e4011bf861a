// Sign in by pasting an API key; it is kept in this tab's sessionStorage only.

import { field, fill, h, outcome } from "../dom.js";

export function renderSignIn(main, { onKey, problem }) {
  const input = h("input", {
    type: "password", name: "api-key", autocomplete: "off", spellcheck: "false", required: true,
    placeholder: "sk_live_…",
  });
  const keyField = field("API key", input,
    "Kept in this browser tab only (sessionStorage) and sent as an Authorization header.");
  const result = outcome();
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "signin", "aria-label": "Sign in" }, keyField, submit, result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    submit.disabled = true;
    result.clear();
    try {
      await onKey(key);
    } catch (error) {
      result.fail(error);
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  fill(main, h("section", { class: "card narrow" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API key. Admin keys can look at every project."),
    form));
  if (problem) result.fail(problem);
  input.focus();
}
