// Tasks and schedules: each task's policy, its next occurrences and its runs by state.

import { api, items } from "../api.js";
import { h, fill, table, time, badge, duration, throttle } from "../dom.js";

export function render(main) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const showAll = h("input", { type: "checkbox", id: "t-all" });
  fill(
    main,
    h("h1", {}, "Tasks and schedules"),
    h("div", { class: "filters" }, h("div", { class: "field inline" }, showAll, h("label", { for: "t-all" }, "Show canceled tasks too"))),
    body,
  );
  const load = async () => {
    try {
      const list = items(await api(`/tasks?limit=1000${showAll.checked ? "&active=false" : ""}`));
      const schedules = list.filter((t) => t.policy && t.policy.kind !== "once");
      const once = list.filter((t) => !t.policy || t.policy.kind === "once");
      fill(
        body,
        h(
          "section",
          { "aria-labelledby": "sch-h" },
          h("h2", { id: "sch-h" }, "Schedules"),
          table(
            [
              ["Task", (t) => t.name],
              ["Policy", (t) => policy(t.policy)],
              ["Next occurrences", (t) => nextOf(t)],
              ["State", (t) => badge(t.state)],
              ["Queue", (t) => t.queue],
              ["Runs", (t) => counts(t)],
            ],
            schedules,
            { empty: "No repeating or cron tasks." },
          ),
        ),
        h(
          "section",
          { "aria-labelledby": "once-h" },
          h("h2", { id: "once-h" }, "One-off submissions, by task name"),
          table(
            [
              ["Task", (g) => h("a", { href: `/runs?task=${encodeURIComponent(g.name)}` }, g.name)],
              ["Submissions", (g) => String(g.tasks)],
              ["Last submitted", (g) => time(g.created_at)],
              ["Queue", (g) => [...g.queues].join(", ")],
              ["Runs", (g) => counts(g)],
            ],
            byName(once),
            { empty: "No tasks." },
          ),
        ),
      );
    } catch (err) {
      fill(body, h("p", { class: "error" }, err.message));
    }
  };
  showAll.addEventListener("change", load);
  load();
  const again = throttle(load, 1000);
  return {
    onEvent: (e) => {
      if (e.type.startsWith("task.") || e.type === "run.created") again();
    },
  };
}

function policy(p) {
  if (!p) return "";
  if (p.kind === "cron") return h("span", {}, h("code", {}, p.cron), ` (${p.tz || "UTC"})`);
  if (p.kind === "repeat") return `${p.count} runs, every ${duration(p.every)}`;
  return p.kind;
}

/** The next occurrence the store derived; for a repeat task the ones after it too (they are
 * evenly spaced), up to three. */
function nextOf(t) {
  if (!t.next_at) return h("span", { class: "muted" }, "none");
  const next = [t.next_at];
  if (t.policy.kind === "repeat" && t.policy.every) {
    const left = Math.max(0, (t.policy.count || 0) - Object.values(t.run_counts || {}).reduce((a, b) => a + b, 0));
    for (let i = 1; i <= Math.min(2, left); i++) {
      next.push(new Date(new Date(t.next_at).getTime() + i * t.policy.every * 1000).toISOString());
    }
  }
  return h("ul", { class: "plain" }, next.map((n) => h("li", {}, time(n))));
}

/** One-off tasks (one per submission) folded by name: how many, their runs by state. */
function byName(tasks) {
  const groups = new Map();
  for (const t of tasks) {
    const g = groups.get(t.name) || { name: t.name, tasks: 0, created_at: t.created_at, queues: new Set(), run_counts: {} };
    g.tasks += 1;
    if (t.created_at > g.created_at) g.created_at = t.created_at;
    g.queues.add(t.queue);
    for (const [state, n] of Object.entries(t.run_counts || {})) g.run_counts[state] = (g.run_counts[state] || 0) + n;
    groups.set(t.name, g);
  }
  return [...groups.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function counts(t) {
  const entries = Object.entries(t.run_counts || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return entries.map(([s, n]) =>
    h("a", { href: `/runs?state=${s}&task=${encodeURIComponent(t.name)}`, class: "count" }, badge(s), ` ${n} `),
  );
}
