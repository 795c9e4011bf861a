// The JSON API, called with the signed-in key as `Authorization: Bearer` (never in a URL).

const KEY = "flowyard.key";
const PROJECT = "flowyard.project";
const METRICS_TOKEN = "flowyard.metrics_token";

/** An error answer: {status, code, message, details}. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "error";
    this.details = (body && body.details) || [];
  }
}

export const store = {
  key: () => sessionStorage.getItem(KEY),
  setKey: (key) => sessionStorage.setItem(KEY, key),
  project: () => sessionStorage.getItem(PROJECT),
  setProject: (id) => sessionStorage.setItem(PROJECT, id),
  /** The server's --metrics-token, for GET /metrics (kept like the key: this tab only). */
  metricsToken: () => sessionStorage.getItem(METRICS_TOKEN),
  setMetricsToken: (token) => sessionStorage.setItem(METRICS_TOKEN, token),
  clear: () => {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(PROJECT);
    sessionStorage.removeItem(METRICS_TOKEN);
  },
};

let onUnauthorized = () => {};
/** What to do when the key stops working (revoked): sign out. */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * Call the API; the decoded JSON answer, or an ApiError.
 * @param {string} path e.g. "/infra/jobs"
 * @param {{method?: string, body?: any, params?: object, key?: string}} options
 */
export async function api(path, options = {}) {
  const key = options.key || store.key();
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method: options.method || "GET", headers, cache: "no-store" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path + query(options.params), init);
  } catch (err) {
    throw new ApiError(0, { code: "network_error", message: `the server did not answer (${err.message})` });
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { message: text.slice(0, 200) };
  }
  if (!response.ok) {
    const error = new ApiError(response.status, body);
    if (response.status === 401 && !options.key) onUnauthorized(error);
    throw error;
  }
  return body;
}

/** Every page of a list, up to `maxPages`: {items, more}. */
export async function allPages(path, field, params = {}, maxPages = 10) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const answer = await api(path, { params: { ...params, limit: 100, cursor } });
    items.push(...answer[field]);
    cursor = answer.next_cursor;
    if (!cursor) return { items, more: false };
  }
  return { items, more: true };
}
