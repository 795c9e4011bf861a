// DOM building and formatting helpers. Data from the API only ever becomes text nodes or
// attribute values, never markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.setAttribute("class", value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name in el && typeof value !== "string" && !(el instanceof SVGElement)) {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("button", {type: "button", onclick}, "Label"). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A fresh id for label/aria wiring. */
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled control in a form: {label, control, hint} -> wrapper with an error slot. */
export function field(label, control, hint) {
  control.id = control.id || newId("f");
  const error = h("p", { class: "field-error", id: `${control.id}-error`, hidden: true });
  const hintEl = hint ? h("p", { class: "hint", id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  const wrap = h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintEl, error);
  wrap.control = control;
  wrap.error = error;
  return wrap;
}

/** A status pill. */
export function badge(status) {
  return h("span", { class: `badge st-${status || "none"}` }, status || "—");
}

/** RFC 3339 -> local time (today) or date and time (other days); null -> dash. */
export function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  const today = date.toDateString() === new Date().toDateString();
  const text = today
    ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  return h("time", { datetime: value, title: value }, text);
}

/** Seconds -> "4 s", "3 min 2 s", "2 h 5 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const total = Math.max(0, Math.round(seconds));
  if (total < 60) return `${total} s`;
  if (total < 3600) return `${Math.floor(total / 60)} min ${total % 60} s`;
  return `${Math.floor(total / 3600)} h ${Math.floor((total % 3600) / 60)} min`;
}

/** Any JSON value, pretty-printed in a <pre>; no value (null) is a dash, not "null". */
export function jsonBlock(value, label) {
  const text = value === undefined || value === null ? "—" : JSON.stringify(value, null, 2);
  return h("pre", { class: "json", tabindex: 0, "aria-label": label || "JSON" }, text);
}

/** A JSON value on one line in a <code>; null is a dash. */
export function inlineJson(value) {
  return value === undefined || value === null ? "—" : h("code", {}, JSON.stringify(value));
}

/** A <dl> of [term, value] pairs. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

/** A card section with a heading. */
export function card(title, ...children) {
  const headingId = newId("card");
  return h("section", { class: "card", "aria-labelledby": headingId }, h("h2", { id: headingId }, title), ...children);
}

/** A table whose cells carry their column name (phone layout stacks rows as cards). */
export function table(columns, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", { class: "list" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) => h("td", { "data-label": columns[i] }, cell)))))));
}

/** An in-app link that the router handles. */
export function link(href, text) {
  return h("a", { href, "data-nav": true }, text);
}

/** A live region showing the outcome of an action: ok(text or value) / fail(error). */
export function outcome() {
  const el = h("div", { class: "outcome", role: "status", "aria-live": "polite" });
  el.ok = (value) => {
    el.className = "outcome ok";
    fill(el, typeof value === "string" ? value : jsonBlock(value, "Server answer"));
  };
  el.fail = (error) => {
    el.className = "outcome bad";
    fill(el, h("strong", {}, error.code ? `${error.status} ${error.code}: ` : "Error: "), error.message || String(error));
  };
  el.clear = () => {
    el.className = "outcome";
    el.replaceChildren();
  };
  return el;
}

/** Parse a textarea's JSON; throws an Error whose message says what is wrong. */
export function parseJson(text, what) {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${err.message}`);
  }
}

/** A button that disables itself while its async action runs. */
export function actionButton(label, action, attrs = {}) {
  const button = h("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export const EXECUTION_STATUSES = ["running", "paused", "completed", "failed", "compensated", "cancelled"];
export const EXECUTION_TERMINAL = new Set(["completed", "failed", "compensated", "cancelled"]);
export const JOB_STATUSES = ["pending", "running", "scheduled", "completed", "failed", "cancelled"];
export const TRIGGER_TYPES = ["immediate", "delayed", "scheduled", "queue", "pull"];

/** A <select> with an "any" option first. */
export function choice(options, anyLabel, value) {
  return h("select", {},
    anyLabel === null ? null : h("option", { value: "" }, anyLabel),
    options.map((o) => h("option", { value: o, selected: o === value }, o)));
}

/** Run `redraw` (which replaces `container`'s content) and give focus back to the control with
 * the same aria-label or name, so a refresh does not throw a keyboard user out. */
export function keepFocus(container, redraw) {
  const active = document.activeElement;
  const key = active && container.contains(active)
    ? active.getAttribute("aria-label") || active.getAttribute("name") : null;
  redraw();
  if (key) {
    const again = [...container.querySelectorAll("[aria-label], [name]")]
      .find((el) => (el.getAttribute("aria-label") || el.getAttribute("name")) === key);
    if (again) again.focus();
  }
}
