// Where lists come from: the key's own project through /infra, or (admins looking at another
// project, or at all of them) the read-only /admin routes.

import { allPages, api } from "./api.js";
import { EXECUTION_STATUSES, JOB_STATUSES } from "./dom.js";

/** One page of executions: {executions, next_cursor}. */
export function listExecutions(ctx, params) {
  if (ctx.foreign) return api("/admin/executions", { params: { ...params, project_id: ctx.viewProject } });
  return api("/infra/workflows/executions", { params });
}

/** One page of jobs: {jobs, next_cursor}. */
export function listJobs(ctx, params) {
  if (ctx.foreign) return api("/admin/jobs", { params: { ...params, project_id: ctx.viewProject } });
  return api("/infra/jobs", { params });
}

/** Every page of jobs (bounded): {items, more}. */
export function allJobs(ctx, params, maxPages) {
  if (ctx.foreign) return allPages("/admin/jobs", "jobs", { ...params, project_id: ctx.viewProject }, maxPages);
  return allPages("/infra/jobs", "jobs", params, maxPages);
}

const COUNT_PAGES = 10;

async function countBy(path, field, statuses) {
  const pages = await Promise.all(statuses.map((status) => allPages(path, field, { status }, COUNT_PAGES)));
  const counts = {};
  statuses.forEach((status, i) => {
    counts[status] = pages[i].items.length;
  });
  return { counts, exact: !pages.some((page) => page.more) };
}

/**
 * Counts by status of "executions" or "jobs": {counts: {status: n}, exact}. Admins read
 * /admin/stats (one query); other keys count their lists, up to 1,000 per status.
 */
export async function statusCounts(ctx, kind) {
  if (ctx.session.admin) {
    const answer = await api("/admin/stats", { params: { project_id: ctx.viewProject } });
    const counts = {};
    for (const project of answer.projects) {
      for (const [status, n] of Object.entries(project[kind])) counts[status] = (counts[status] || 0) + n;
    }
    return { counts, exact: true };
  }
  if (kind === "executions") return countBy("/infra/workflows/executions", "executions", EXECUTION_STATUSES);
  return countBy("/infra/jobs", "jobs", JOB_STATUSES);
}
