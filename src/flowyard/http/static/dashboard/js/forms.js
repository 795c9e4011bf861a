// Server validation errors next to the fields they name: each `details[].path` such as
// `$.steps[1].depends_on[0]` goes to the field of its first segment (`steps`).

import { fill, h } from "./dom.js";

/** The top-level body field a JSON path names (`$.steps[1].id` -> "steps"), or null. */
export function topField(path) {
  const match = /^\$\.([A-Za-z0-9_]+)/.exec(path || "");
  return match ? match[1] : null;
}

/** Remove every field's error and the form's summary. */
export function clearProblems(fields, summary) {
  for (const wrap of Object.values(fields)) {
    wrap.error.hidden = true;
    wrap.error.replaceChildren();
    wrap.control.removeAttribute("aria-invalid");
    const hint = wrap.querySelector(".hint");
    if (hint) wrap.control.setAttribute("aria-describedby", hint.id);
    else wrap.control.removeAttribute("aria-describedby");
  }
  if (summary) summary.clear();
}

/** Put one message under a field and mark it invalid. */
export function fieldProblem(wrap, ...lines) {
  wrap.error.hidden = false;
  wrap.error.append(...lines.map((line) => h("span", { class: "problem" }, line)));
  wrap.control.setAttribute("aria-invalid", "true");
  const hint = wrap.querySelector(".hint");
  wrap.control.setAttribute("aria-describedby", [hint && hint.id, wrap.error.id].filter(Boolean).join(" "));
}

/**
 * Show an error answer: each detail under its field (`fields[name]`), the rest in the
 * summary; focus the first invalid field.
 * @param {Record<string, HTMLElement>} fields field wrappers made by dom.field()
 * @param {ReturnType<typeof import("./dom.js").outcome>} summary
 * @param {{status?: number, code?: string, message: string, details?: {path: string, message: string}[]}} error
 * @param {string} [fallback] the field that gets details naming no known field (e.g. "$")
 */
export function showProblems(fields, summary, error, fallback) {
  clearProblems(fields, summary);
  summary.fail(error);
  const leftover = [];
  let first = null;
  for (const detail of error.details || []) {
    const name = topField(detail.path);
    const wrap = fields[name] || fields[fallback];
    if (!wrap) {
      leftover.push(detail);
      continue;
    }
    fieldProblem(wrap, h("code", {}, detail.path), " ", detail.message);
    first ||= wrap;
  }
  if (leftover.length) {
    summary.append(h("ul", {}, leftover.map((d) => h("li", {}, h("code", {}, d.path), " ", d.message))));
  }
  if (first) first.control.focus();
}

/** A short "created X" line with a link. */
export function createdLine(summary, text, href, linkText) {
  summary.className = "outcome ok";
  fill(summary, text, " ", href ? h("a", { href, "data-nav": true }, linkText) : null);
}
