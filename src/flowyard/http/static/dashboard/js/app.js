// The dashboard's entry point: sign-in, the session (own project or, for admins, any project),
// and a small router over /dashboard/... paths.

import { api, ApiError, store, whenUnauthorized } from "./api.js";
import { fill, h } from "./dom.js";
import { renderExecution } from "./views/execution.js";
import { renderJob } from "./views/job.js";
import { renderJobs } from "./views/jobs.js";
import { renderOverview } from "./views/overview.js";
import { renderQueues } from "./views/queues.js";
import { renderSchedules } from "./views/schedules.js";
import { renderSignIn } from "./views/signin.js";
import { renderWebhooks } from "./views/webhooks.js";
import { renderWorkflows } from "./views/workflows.js";

const BASE = "/dashboard";
const main = document.getElementById("main");
let cleanup = null;
let session = null;

const ROUTES = [
  [/^\/?$/, "overview", renderOverview],
  [/^\/workflows\/?$/, "workflows", renderWorkflows],
  [/^\/executions\/([^/]+)\/?$/, "workflows", renderExecution],
  [/^\/jobs\/?$/, "jobs", renderJobs],
  [/^\/jobs\/([^/]+)\/?$/, "jobs", renderJob],
  [/^\/queues\/?$/, "queues", renderQueues],
  [/^\/schedules\/?$/, "schedules", renderSchedules],
  [/^\/webhooks\/?$/, "webhooks", renderWebhooks],
];

/** Who is signed in: {key, projectId, projectName, admin, projects, view}. Only an admin key
 * (as /core/whoami says) reads /admin/projects, so no other key meets a 403. */
async function startSession(key) {
  const me = await api("/core/whoami", { key });
  const projects = [];
  if (me.admin) {
    let cursor = null;
    do {
      const answer = await api("/admin/projects", { key, params: { limit: 100, cursor } });
      projects.push(...answer.projects);
      cursor = answer.next_cursor;
    } while (cursor && projects.length < 1000);
  }
  const projectId = me.project_id;
  const stored = store.project();
  const view = me.admin && (stored === "*" || projects.some((p) => p.id === stored)) ? stored : projectId;
  return { projectId, projectName: me.project_name || projectId, admin: me.admin, projects, view };
}

/** A project's name (its id only if the name is unknown, e.g. a project made after sign-in). */
function projectName(id) {
  if (session.projectId === id) return session.projectName;
  const project = session.projects.find((p) => p.id === id);
  return project && project.name ? project.name : id;
}

function showSessionBar() {
  const signedIn = session !== null;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("session").hidden = !signedIn;
  if (!signedIn) return;
  const pick = document.getElementById("project-pick");
  const select = document.getElementById("project-select");
  const name = document.getElementById("project-name");
  pick.hidden = !session.admin;
  if (session.admin) {
    fill(select,
      h("option", { value: "*", selected: session.view === "*" }, "All projects (read-only)"),
      session.projects.map((p) => h("option", { value: p.id, selected: p.id === session.view, title: p.id },
        p.id === session.projectId ? `${projectName(p.id)} · this key` : projectName(p.id))));
    name.textContent = "";
  } else {
    name.textContent = `Project ${session.projectName}`;
    name.title = session.projectId;
  }
}

/** What every view gets: the session, where it is, and how to go elsewhere. */
function context(params) {
  const foreign = session.view !== session.projectId;
  return {
    session,
    params,
    query: new URLSearchParams(location.search),
    // Viewing another project (admins): lists come from the read-only /admin routes.
    foreign,
    viewProject: session.view === "*" ? null : session.view,
    viewLabel: session.view === "*" ? "all projects" : projectName(session.view),
    projectName,
    /** Name the page in the tab and history: "Executions · Flowyard". */
    setTitle(text) {
      document.title = `${text} · Flowyard`;
    },
    navigate,
    setQuery(params) {
      const search = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v) search.set(k, v);
      const text = search.toString();
      history.replaceState(null, "", location.pathname + (text ? `?${text}` : ""));
    },
  };
}

async function render(problem) {
  if (cleanup) cleanup();
  cleanup = null;
  if (session === null) {
    showSessionBar();
    document.title = "Sign in · Flowyard";
    renderSignIn(main, { onKey: signIn, problem });
    return;
  }
  showSessionBar();
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "/";
  for (const [pattern, section, view] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = `${section[0].toUpperCase()}${section.slice(1)} · Flowyard`;
    cleanup = view(main, context(match.slice(1).map(decodeURIComponent))) || null;
    return;
  }
  document.title = "Not found · Flowyard";
  fill(main, h("section", { class: "card" }, h("h1", {}, "Not found"),
    h("p", {}, "No dashboard page at this address. "), h("a", { href: BASE, "data-nav": true }, "Go to the overview")));
}

/** Go to a dashboard path (pushes history) and move focus to the new page. */
export function navigate(path) {
  history.pushState(null, "", path);
  render();
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

async function signIn(key) {
  session = await startSession(key);
  store.setKey(key);
  render();
  main.focus({ preventScroll: true });
}

function signOut() {
  store.clear();
  session = null;
  render();
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-nav]");
  if (!a || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", () => render());
document.getElementById("sign-out").addEventListener("click", signOut);
document.getElementById("project-select").addEventListener("change", (event) => {
  session.view = event.target.value;
  store.setProject(session.view);
  // One execution's or job's page belongs to one project: go back to the lists.
  if (/^\/dashboard\/(executions|jobs)\/./.test(location.pathname)) navigate(BASE);
  else render();
});
whenUnauthorized(() => {
  if (session !== null) signOut();
});

async function boot() {
  const key = store.key();
  let problem = null;
  if (key) {
    try {
      session = await startSession(key);
    } catch (error) {
      session = null;
      problem = error;
      if (error.status === 401) store.clear(); // revoked: the key is no use any more
    }
  }
  render(problem);
}

boot();
