// A blueprint's DAG as SVG: rows by depends_on depth (catch steps below the steps that route
// to them), depends_on edges solid, catch edges dashed, each node coloured by its status.

import { s } from "./dom.js";

const NODE_W = 156;
const NODE_H = 46;
const GAP_X = 28;
const GAP_Y = 62;
const PAD = 16;

/**
 * Rows of step ids, top to bottom. A step sits one row below the deepest step it depends on;
 * a catch step one row below the deepest step whose `catch` names it.
 * @param {{id: string, depends_on?: string[], catch?: string|null}[]} steps
 * @returns {string[][]}
 */
export function layers(steps) {
  const byId = new Map(steps.map((step) => [step.id, step]));
  const catchers = new Map();
  for (const step of steps) {
    if (step.catch && byId.has(step.catch)) {
      if (!catchers.has(step.catch)) catchers.set(step.catch, []);
      catchers.get(step.catch).push(step.id);
    }
  }
  const depth = new Map();
  const visiting = new Set();
  const level = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0; // a cycle cannot be stored; be safe anyway
    visiting.add(id);
    const step = byId.get(id);
    const above = [...(step.depends_on || []), ...(catchers.get(id) || [])].filter((d) => byId.has(d));
    const value = above.length ? Math.max(...above.map(level)) + 1 : 0;
    visiting.delete(id);
    depth.set(id, value);
    return value;
  };
  const rows = [];
  for (const step of steps) {
    const row = level(step.id);
    (rows[row] ||= []).push(step.id);
  }
  const filled = rows.map((row) => row || []);
  // One downward sweep ordering each row by the mean position of its parents (fewer crossings).
  const position = new Map();
  filled.forEach((row, r) => {
    if (r > 0) {
      const key = (id) => {
        const step = byId.get(id);
        const parents = [...(step.depends_on || []), ...(catchers.get(id) || [])].filter((p) => position.has(p));
        return parents.length ? parents.reduce((sum, p) => sum + position.get(p), 0) / parents.length : Infinity;
      };
      row.sort((a, b) => key(a) - key(b));
    }
    row.forEach((id, i) => position.set(id, i - (row.length - 1) / 2));
  });
  return filled;
}

function edgePath(from, to) {
  const x1 = from.x + NODE_W / 2;
  const y1 = from.y + NODE_H;
  const x2 = to.x + NODE_W / 2;
  const y2 = to.y;
  const bend = Math.max(24, (y2 - y1) / 2);
  return `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2 - 2}`;
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The graph as an <svg>.
 * @param {object[]} steps blueprint steps
 * @param {Map<string, string>} statuses step id -> status
 * @param {{selected?: string, onSelect?: (id: string) => void, children?: Map<string, string>, progress?: Map<string, string>}} options
 *   children: step id -> the child execution its sub_workflow runs (the node is marked)
 *   `progress`: step id -> a for_each step's "done/total", shown under its status
 */
export function renderGraph(steps, statuses, options = {}) {
  const rows = layers(steps);
  const widest = Math.max(1, ...rows.map((row) => row.length));
  const width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X;
  const height = PAD * 2 + rows.length * NODE_H + (rows.length - 1) * GAP_Y;
  const at = new Map();
  rows.forEach((row, r) => {
    const rowWidth = row.length * NODE_W + (row.length - 1) * GAP_X;
    row.forEach((id, i) => {
      at.set(id, { x: (width - rowWidth) / 2 + i * (NODE_W + GAP_X), y: PAD + r * (NODE_H + GAP_Y) });
    });
  });

  const edges = [];
  for (const step of steps) {
    for (const dep of step.depends_on || []) {
      if (at.has(dep)) {
        edges.push(s("path", { class: "edge", d: edgePath(at.get(dep), at.get(step.id)), "marker-end": "url(#fy-arrow)" }));
      }
    }
    if (step.catch && at.has(step.catch)) {
      edges.push(s("path", {
        class: "edge catch", d: edgePath(at.get(step.id), at.get(step.catch)), "marker-end": "url(#fy-arrow-catch)",
      }, s("title", {}, `${step.id} catches into ${step.catch}`)));
    }
  }

  const nodes = steps.map((step) => {
    const { x, y } = at.get(step.id);
    const status = statuses.get(step.id) || "pending";
    const selected = options.selected === step.id;
    const child = options.children ? options.children.get(step.id) : undefined;
    const progress = options.progress ? options.progress.get(step.id) : undefined;
    const shown = `${child ? `${status} ⤷ child` : status}${progress ? ` · ${progress}` : ""}`;
    const node = s("g", {
      class: `node st-${status}${selected ? " selected" : ""}${child ? " has-child" : ""}`,
      transform: `translate(${x},${y})`,
      tabindex: 0,
      role: "button",
      "aria-pressed": selected ? "true" : "false",
      "aria-label": `Step ${step.id}: ${status}${progress ? `, ${progress} items done` : ""}`,
      "data-step": step.id,
      "data-status": status,
      ...(child ? { "data-child": child } : {}),
      ...(progress ? { "data-progress": progress } : {}),
    },
    s("title", {}, child ? `${step.id}: ${status} (child execution ${child})` : `${step.id}: ${shown}`),
    s("rect", { width: NODE_W, height: NODE_H, rx: 8, ry: 8 }),
    s("text", { x: NODE_W / 2, y: 19, class: "node-id" }, clip(step.id, 20)),
    s("text", { x: NODE_W / 2, y: 36, class: "node-status" }, shown));
    if (options.onSelect) {
      node.addEventListener("click", () => options.onSelect(step.id));
      node.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          options.onSelect(step.id);
        }
      });
    }
    return node;
  });

  const arrow = (id, cls) => s("marker", {
    id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, s("path", { d: "M0,0 L10,5 L0,10 z", class: cls }));

  const svg = s("svg", {
    class: "dag", viewBox: `0 0 ${width} ${height}`, role: "group",
    "aria-label": `Workflow graph with ${steps.length} steps`,
  },
  s("defs", {}, arrow("fy-arrow", "arrow"), arrow("fy-arrow-catch", "arrow catch")),
  s("g", { class: "edges" }, edges),
  s("g", { class: "nodes" }, nodes));
  // Natural size at most; narrower screens shrink it to 60% before the box scrolls.
  svg.style.maxWidth = `${width}px`;
  svg.style.minWidth = `${Math.round(width * 0.6)}px`;
  return svg;
}
