// The overview's "Nodes" card: the nodes serving this database and the shards each one owns,
// from GET /admin/cluster (DESIGN §11). A single server is one node owning every shard.
//
// The route takes an admin key, and the nodes are the whole service's, not a project's: the
// card is shown to admin keys only (whatever project they view), and left out for others.

import { api } from "../api.js";
import { card, duration, fill, h, table } from "../dom.js";

/** The card and its refresh function: {card, refresh}. */
export function nodesCard() {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const summary = h("p", { class: "muted small" });
  const section = Object.assign(card("Nodes", body, summary), { className: "card nodes" });

  async function refresh() {
    try {
      const state = await api("/admin/cluster");
      draw(state, Date.now());
    } catch (error) {
      fill(body, h("p", { class: "bad-text" }, `${error.status ? `${error.status} ` : ""}${error.message}`));
      summary.textContent = "";
    }
  }

  function draw(state, now) {
    const rows = state.nodes.map((node) => [
      h("code", { "data-node": node.node_id }, node.node_id),
      h("code", {}, node.url),
      h("span", { "data-shards": node.shards.length, title: ranges(node.shards) }, String(node.shards.length)),
      lastSeen(node.last_seen_at, now),
    ]);
    fill(body, table(["Node", "URL", "Shards", "Last seen"], rows, "No live node."));
    const { total, unowned } = state.shards;
    summary.dataset.unowned = String(unowned);
    summary.dataset.total = String(total);
    summary.className = unowned ? "bad-text small" : "muted small";
    summary.textContent = unowned
      ? `${unowned} of ${total} shards unowned: being taken over by a live node.`
      : `0 of ${total} shards unowned.`;
  }

  return { card: section, refresh };
}

/** "2 s ago", with the exact time as its title. */
function lastSeen(value, now) {
  const at = Date.parse(value);
  if (Number.isNaN(at)) return "—";
  return h("time", { datetime: value, title: value }, `${duration((now - at) / 1000)} ago`);
}

/** Shard numbers as ranges for a tooltip: [0, 1, 2, 5] -> "shards 0–2, 5". */
function ranges(shards) {
  const parts = [];
  let start = null;
  let previous = null;
  for (const shard of [...shards, null]) {
    if (shard !== null && previous !== null && shard === previous + 1) {
      previous = shard;
      continue;
    }
    if (start !== null) parts.push(start === previous ? String(start) : `${start}–${previous}`);
    start = shard;
    previous = shard;
  }
  return parts.length ? `shards ${parts.join(", ")}` : "no shards";
}
