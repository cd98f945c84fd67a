// Runs: filtered by state, task and queue, the latest first, a page at a time (keyset: the
// API's next_cursor).

import { api, items, query } from "../api.js";
import { h, fill, table, time, badge, runLink, json, throttle, STATES } from "../dom.js";

const LIMIT = 25;

export function runsTable(list, empty = "No runs.") {
  return table(
    [
      ["Run", (r) => runLink(r.run_id)],
      ["Task", (r) => r.task_name],
      ["State", (r) => badge(r.state)],
      ["Queue", (r) => r.queue],
      ["Scheduled", (r) => time(r.scheduled_at)],
      ["Attempts", (r) => String(r.attempts.length)],
      ["Result", (r) => (r.error ? h("span", { class: "error" }, r.error) : json(r.output))],
    ],
    list,
    { empty, rowAttrs: (r) => ({ "data-run-id": r.run_id }) },
  );
}

export function render(main, { query: q, navigate }) {
  const filters = { state: q.get("state") || "", task: q.get("task") || "", queue: q.get("queue") || "" };
  const cursor = q.get("cursor") || "";
  const prev = q.getAll("prev"); // the cursors of the pages before, to go back

  const field = (name, label, control) =>
    h("div", { class: "field" }, h("label", { for: `f-${name}` }, label), control);
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs" },
    field(
      "state",
      "State",
      h(
        "select",
        { id: "f-state", name: "state" },
        h("option", { value: "" }, "any"),
        STATES.map((s) => h("option", { value: s, selected: s === filters.state }, s)),
      ),
    ),
    field("task", "Task", h("input", { id: "f-task", name: "task", value: filters.task, list: "task-names", placeholder: "any" })),
    field("queue", "Queue", h("input", { id: "f-queue", name: "queue", value: filters.queue, placeholder: "any" })),
    h("datalist", { id: "task-names" }),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Filter")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    navigate(`/runs${query({ state: data.get("state"), task: data.get("task").trim(), queue: data.get("queue").trim() })}`);
  });
  form.querySelector("#f-state").addEventListener("change", () => form.requestSubmit());

  const body = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, h("h1", {}, "Runs"), form, body);

  api("/tasks?limit=1000")
    .then((doc) => {
      const names = [...new Set(items(doc).map((t) => t.name))].sort();
      fill(form.querySelector("#task-names"), names.map((n) => h("option", { value: n })));
    })
    .catch(() => {});

  const load = async () => {
    try {
      const doc = await api(`/runs${query({ ...filters, order: "desc", limit: LIMIT, cursor })}`);
      const list = items(doc);
      const pager = h("nav", { class: "pager", "aria-label": "Pages" });
      if (cursor) {
        const back = prev.slice(0, -1);
        const q2 = new URLSearchParams(query({ ...filters, cursor: prev.at(-1) || "" }).slice(1));
        for (const p of back) q2.append("prev", p);
        pager.append(h("a", { href: `/runs?${q2}`, class: "button", rel: "prev" }, "← Previous"));
        pager.append(h("a", { href: `/runs${query(filters)}`, class: "button" }, "First"));
      }
      if (doc.next_cursor) {
        const q2 = new URLSearchParams(query({ ...filters, cursor: doc.next_cursor }).slice(1));
        for (const p of [...prev, cursor]) q2.append("prev", p);
        pager.append(h("a", { href: `/runs?${q2}`, class: "button", rel: "next" }, "Next →"));
      }
      fill(body, runsTable(list, "No runs match."), pager);
    } catch (err) {
      fill(body, h("p", { class: "error" }, err.message));
    }
  };
  load();
  const again = throttle(load, 500);
  return {
    onEvent: (e) => {
      // only the first page follows live changes: later pages would shift under the reader
      if (!cursor && e.run_id && (e.type === "run.created" || e.type === "run.state_changed")) again();
    },
  };
}
