// Workers: the live workers registered in the store.

import { api, items } from "../api.js";
import { h, fill, table, time, runLink, throttle } from "../dom.js";

export function render(main) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  fill(main, h("h1", {}, "Workers"), body);
  const load = async () => {
    try {
      const list = items(await api("/workers"));
      fill(
        body,
        h("p", { class: "muted" }, `${list.length} live worker${list.length === 1 ? "" : "s"}`),
        table(
          [
            ["Worker", (w) => h("code", {}, w.worker_id)],
            ["Host", (w) => `${w.host} (pid ${w.pid})`],
            ["Queues", (w) => (w.queues ? w.queues.join(", ") : "all")],
            ["Concurrency", (w) => String(w.concurrency)],
            ["Running", (w) => (w.running.length ? w.running.map((r) => [runLink(r), " "]) : "idle")],
            ["Tasks", (w) => w.tasks.join(", ")],
            ["Started", (w) => time(w.started_at)],
            ["Last seen", (w) => time(w.last_seen_at)],
          ],
          list,
          { empty: "No live workers: start one with `mainspring worker module:app`." },
        ),
      );
    } catch (err) {
      fill(body, h("p", { class: "error" }, err.message));
    }
  };
  load();
  const again = throttle(load, 1000);
  return {
    onEvent: (e) => {
      if (e.type.startsWith("worker.") || e.type.startsWith("lease.")) again();
    },
  };
}
