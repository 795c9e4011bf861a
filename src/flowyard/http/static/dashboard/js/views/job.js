// One job: its fields, payload, result and runs; trigger now, retry and cancel.

import { allPages, api } from "../api.js";
import {
  actionButton, badge, card, facts, fill, h, inlineJson, jsonBlock, link, outcome, table, when,
} from "../dom.js";
import { queueOf } from "./jobs.js";

const POLL_MS = 1000;
const LIVE = new Set(["pending", "running"]);

export function renderJob(main, ctx) {
  const [jobId] = ctx.params;
  const base = `/infra/jobs/${encodeURIComponent(jobId)}`;
  const title = h("h1", {}, "Job ", h("code", {}, jobId));
  ctx.setTitle(`Job ${jobId}`);
  const details = h("div");
  const runs = h("div");
  const answer = outcome();
  let timer = null;
  let stopped = false;
  let fingerprint = "";

  const act = (method, path) => async () => {
    answer.clear();
    try {
      answer.ok(await api(`${base}${path}`, { method }));
    } catch (error) {
      answer.fail(error);
    }
    fingerprint = "";
    refresh();
  };
  const triggerNow = actionButton("Trigger now", act("POST", "/trigger"));
  const retry = actionButton("Retry", act("POST", "/retry"));
  const cancel = actionButton("Cancel job", act("DELETE", ""), { class: "danger" });

  fill(main,
    h("p", {}, link("/dashboard/jobs", "← Jobs")),
    title,
    h("div", { class: "split exec" },
      h("div", { class: "column" }, card("Details", details), card("Runs", runs)),
      h("div", { class: "column side" }, card("Actions", h("div", { class: "toolbar" }, triggerNow, retry, cancel), answer))));

  async function refresh() {
    clearTimeout(timer);
    if (stopped) return;
    let job;
    try {
      job = await api(base);
    } catch (error) {
      fill(details, h("p", { class: "bad-text" }, error.message));
      return;
    }
    const { items } = await allPages(`${base}/runs`, "runs", {}, 5).catch(() => ({ items: [] }));
    if (stopped) return;
    const next = JSON.stringify([job, items]);
    if (next !== fingerprint) {
      fingerprint = next;
      draw(job, items);
    }
    if (LIVE.has(job.status)) timer = setTimeout(refresh, POLL_MS);
  }

  function draw(job, items) {
    title.dataset.status = job.status;
    fill(details,
      facts([
        ["Status", badge(job.status)],
        ["Name", job.name || "—"],
        ["Trigger", inlineJson(withoutNulls(job.trigger))],
        ["Queue", queueOf(job) || "—"],
        ["Handler", job.handler || "—"],
        ["Attempts", `${job.attempt} of ${job.max_attempts} (${job.backoff} backoff)`],
        ["Priority", String(job.priority)],
        ["Enabled", job.enabled ? "yes" : "no"],
        ["Workflow", job.workflow
          ? [link(`/dashboard/executions/${encodeURIComponent(job.workflow.execution_id)}`, job.workflow.execution_id), ` step ${job.workflow.step_id}`]
          : "—"],
        ["Created", when(job.created_at)],
        ["Next run", when(job.next_run_at || job.run_at)],
        ["Last run", when(job.last_run_at)],
        ["Completed", when(job.completed_at)],
        ["Error", job.error ? h("span", { class: "bad-text" }, job.error) : "—"],
      ]),
      h("h3", {}, "Payload"), jsonBlock(job.payload, "Payload"),
      h("h3", {}, "Result"), jsonBlock(job.result, "Result"));
    triggerNow.hidden = !(job.status === "scheduled" || job.status === "pending");
    retry.hidden = job.status !== "failed";
    cancel.hidden = !["pending", "running", "scheduled"].includes(job.status);
    fill(runs, table(["Run", "Attempt", "Status", "Started", "Completed", "Duration", "Handler status", "Error"],
      items.map((run) => [
        h("code", {}, run.id), String(run.attempt), badge(run.status), when(run.started_at), when(run.completed_at),
        run.duration_ms === null ? "—" : `${run.duration_ms} ms`, run.handler_status === null ? "—" : String(run.handler_status),
        run.error || "—",
      ]), "No runs yet."));
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** A trigger without its unset (null) options. */
function withoutNulls(object) {
  return Object.fromEntries(Object.entries(object || {}).filter(([, value]) => value !== null));
}
