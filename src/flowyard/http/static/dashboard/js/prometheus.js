// The Prometheus text exposition format (version 0.0.4), read in the browser: families of
// samples, sums over labels, rates between two scrapes and quantiles from histogram buckets.
//
// Families are grouped as prometheus_client's own parser groups them (a counter's family name
// loses its `_total`; a family with no TYPE is "unknown"), so the tests can compare both on
// the same text.

/**
 * Parse an exposition into families, in the order they appear.
 * @param {string} text what GET /metrics answers
 * @returns {{name: string, type: string, help: string,
 *   samples: {name: string, labels: Object<string, string>, value: number}[]}[]}
 */
export function parseMetrics(text) {
  const families = [];
  let family = null;
  let allowed = [];
  const close = () => {
    if (family === null) return;
    if (family.type === "counter") {
      if (family.name.endsWith("_total")) family.name = family.name.slice(0, -6);
      else for (const sample of family.samples) sample.name += "_total";
    }
    families.push(family);
    family = null;
  };
  const open = (name) => {
    close();
    family = { name, type: "unknown", help: "", samples: [] };
    allowed = [name];
  };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    if (line.startsWith("#")) {
      const match = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (!match) continue; // a plain comment
      const [, keyword, name, rest = ""] = match;
      if (family === null || family.name !== name) open(name);
      if (keyword === "HELP") {
        family.help = rest.replace(/\\(\\|n)/g, (_, c) => (c === "n" ? "\n" : "\\"));
      } else {
        family.type = rest.trim() === "untyped" ? "unknown" : rest.trim();
        const suffixes = { histogram: ["_count", "_sum", "_bucket"], summary: ["_count", "_sum", ""] }[family.type] || [""];
        allowed = suffixes.map((suffix) => name + suffix);
      }
      continue;
    }
    const sample = parseSample(line);
    if (family !== null && allowed.includes(sample.name)) {
      family.samples.push(sample);
    } else {
      close();
      allowed = [];
      families.push({ name: sample.name, type: "unknown", help: "", samples: [sample] });
    }
  }
  close();
  return families;
}

/** One sample line: `name{label="value",...} value [timestamp]`. */
function parseSample(line) {
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!name) throw new Error(`not a metric line: ${line.slice(0, 80)}`);
  let at = name[0].length;
  const labels = {};
  if (line[at] === "{") {
    at += 1;
    for (;;) {
      while (line[at] === " " || line[at] === ",") at += 1;
      if (line[at] === "}") {
        at += 1;
        break;
      }
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(at));
      if (!label) throw new Error(`bad labels in: ${line.slice(0, 80)}`);
      at += label[0].length;
      let value = "";
      while (at < line.length && line[at] !== '"') {
        if (line[at] === "\\") {
          at += 1;
          value += line[at] === "n" ? "\n" : line[at];
        } else {
          value += line[at];
        }
        at += 1;
      }
      if (at >= line.length) throw new Error(`unterminated label value in: ${line.slice(0, 80)}`);
      at += 1; // the closing quote
      labels[label[1]] = value;
    }
  }
  const [value] = line.slice(at).trim().split(/\s+/);
  return { name: name[0], labels, value: number(value) };
}

function number(text) {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const value = Number(text);
  if (text === undefined || text === "" || Number.isNaN(value)) throw new Error(`not a sample value: ${text}`);
  return value;
}

/** The samples of one family, by family name (a counter's without `_total`); [] if absent. */
function samplesOf(families, name) {
  const family = families.find((f) => f.name === name);
  return family ? family.samples : [];
}

/**
 * The sum of a counter's or gauge's samples (by family name: a counter's without `_total`)
 * whose labels match `where`; 0 when there are none.
 */
export function total(families, family, where = () => true) {
  return samplesOf(families, family)
    .filter((s) => (s.name === family || s.name === `${family}_total`) && where(s.labels))
    .reduce((sum, s) => sum + s.value, 0);
}

/** A gauge's value per value of one label, largest first: [[label value, value], ...]. */
export function byLabel(families, family, label) {
  return samplesOf(families, family)
    .filter((s) => label in s.labels)
    .map((s) => [s.labels[label], s.value])
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}

/**
 * Per second between two scrapes of a counter (all label values summed); null when there is
 * no earlier scrape or the counter went back (the server restarted).
 */
export function rate(before, after, family) {
  if (!before) return null;
  const seconds = (after.at - before.at) / 1000;
  const delta = total(after.families, family) - total(before.families, family);
  if (seconds <= 0 || delta < 0) return null;
  return delta / seconds;
}

/** A histogram's cumulative buckets, summed over its other labels: [[upper bound, count], ...]. */
export function buckets(families, family) {
  const counts = new Map();
  for (const s of samplesOf(families, family)) {
    if (s.name !== `${family}_bucket`) continue;
    const le = number(s.labels.le);
    counts.set(le, (counts.get(le) || 0) + s.value);
  }
  return [...counts.entries()].sort((a, b) => a[0] - b[0]);
}

/** Buckets observed between two scrapes (after minus before); `after`'s alone with no before. */
export function bucketsBetween(before, after, family) {
  const now = buckets(after.families, family);
  if (!before) return now;
  const then = new Map(buckets(before.families, family));
  return now.map(([le, count]) => [le, count - (then.get(le) || 0)]);
}

/**
 * The q-quantile of cumulative buckets, interpolated inside the bucket it falls in, as
 * Prometheus's histogram_quantile does; null without observations. A quantile in the +Inf
 * bucket is the largest finite bound.
 */
export function quantile(q, cumulative) {
  if (!cumulative.length) return null;
  const count = cumulative[cumulative.length - 1][1];
  if (!(count > 0)) return null;
  const rank = q * count;
  let lower = 0;
  let below = 0;
  for (const [le, upto] of cumulative) {
    if (upto >= rank) {
      if (le === Infinity) return lower;
      const inBucket = upto - below;
      return inBucket > 0 ? lower + ((le - lower) * (rank - below)) / inBucket : le;
    }
    lower = le;
    below = upto;
  }
  return lower;
}
