// Overview: runs by state, throughput and latency over the last half hour (from the log),
// and each queue's depth (its ready runs) and oldest ready run's wait.

import { api, items } from "../api.js";
import { h, fill, table, duration, throttle, STATES } from "../dom.js";
import { barChart, lineChart } from "../charts.js";

const BUCKETS = 30; // one-minute buckets
const WINDOW_EVENTS = 5000; // how far back in the log the charts look at most

export function render(main) {
  const counts = h("div", { class: "cards" }, h("p", { class: "muted" }, "Loading…"));
  const charts = h("div", { class: "charts" });
  const queues = h("div", {});
  fill(
    main,
    h("h1", {}, "Overview"),
    h("section", { "aria-labelledby": "c-h" }, h("h2", { id: "c-h" }, "Runs by state"), counts),
    h("section", { "aria-labelledby": "t-h" }, h("h2", { id: "t-h" }, "Throughput and latency"), charts),
    h("section", { "aria-labelledby": "q-h" }, h("h2", { id: "q-h" }, "Queues"), queues),
  );

  const events = []; // recent log events, oldest first
  const drawCharts = () => fill(charts, ...chartsOf(events));

  const loadStats = async () => {
    try {
      const stats = await api("/stats");
      const byState = stats;
      fill(
        counts,
        STATES.map((s) =>
          h(
            "a",
            { class: `card s-${s}`, href: `/runs?state=${s}` },
            h("span", { class: "n" }, String(byState[s] || 0)),
            h("span", { class: "label" }, s.replace("_", " ")),
          ),
        ),
      );
      const qs = items(await api("/queues"));
      fill(
        queues,
        table(
          [
            ["Queue", (q) => h("a", { href: `/runs?queue=${encodeURIComponent(q.name)}` }, q.name)],
            ["Ready", (q) => String(q.counts.ready || 0)],
            ["Running", (q) => String((q.counts.leased || 0) + (q.counts.running || 0))],
            ["Waiting", (q) => String((q.counts.scheduled || 0) + (q.counts.retry_wait || 0) + (q.counts.suspended || 0))],
            ["Oldest ready waited", (q) => (q.oldest_ready_seconds == null ? "" : duration(q.oldest_ready_seconds))],
            ["Paused", (q) => (q.paused ? "paused" : "")],
          ],
          qs,
          { empty: "No queues yet." },
        ),
      );
    } catch (err) {
      fill(counts, h("p", { class: "error" }, err.message));
    }
  };

  const loadEvents = async () => {
    try {
      const last = await latestSeq();
      let since = Math.max(0, last - WINDOW_EVENTS);
      for (;;) {
        const page = items(await api(`/log?since=${since}&limit=1000`));
        events.push(...page);
        if (page.length < 1000) break;
        since = page.at(-1).seq;
      }
    } catch (err) {
      if (err.code !== "log_compacted") fill(charts, h("p", { class: "error" }, err.message));
    }
    drawCharts();
  };

  loadStats();
  loadEvents();
  const again = throttle(loadStats, 1000);
  const redraw = throttle(drawCharts, 1000);
  return {
    onEvent: (e) => {
      if (!events.length || e.seq > events.at(-1).seq) events.push(e);
      if (events.length > WINDOW_EVENTS * 2) events.splice(0, events.length - WINDOW_EVENTS);
      if (e.type.startsWith("run.") || e.type.startsWith("queue.")) again();
      if (e.type === "run.state_changed" || e.type === "attempt.finished") redraw();
    },
  };
}

/** The seq of the newest event, by a binary search of /log (a few small requests). */
async function latestSeq() {
  const has = async (seq) => items(await api(`/log?since=${seq}&limit=1`)).length > 0;
  let lo = 0;
  let hi = 1024;
  while (await has(hi)) {
    lo = hi;
    hi *= 4;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await has(mid)) lo = mid;
    else hi = mid;
  }
  return hi;
}

function chartsOf(events) {
  const now = Date.now() / 1000;
  const first = Math.floor(now / 60) * 60 - (BUCKETS - 1) * 60;
  const buckets = Array.from({ length: BUCKETS }, (_, i) => {
    const d = new Date((first + i * 60) * 1000);
    return {
      label: `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`,
      values: {},
      took: [],
      waited: [],
    };
  });
  const at = (e) => new Date(e.at).getTime() / 1000;
  const slot = (t) => {
    const i = Math.floor((t - first) / 60);
    return i >= 0 && i < BUCKETS ? buckets[i] : null;
  };
  const started = new Map(); // attempt id -> its start
  const readySince = new Map(); // run id -> when it became ready
  for (const e of events) {
    const t = at(e);
    const d = e.data || {};
    if (e.type === "run.state_changed") {
      if (d.to === "ready") readySince.set(e.run_id, t);
      if (d.to === "leased" && readySince.has(e.run_id)) {
        const b = slot(t);
        if (b) b.waited.push(t - readySince.get(e.run_id));
        readySince.delete(e.run_id);
      }
      if (d.to === "completed" || d.to === "failed" || d.to === "canceled") {
        const b = slot(t);
        if (b) b.values[d.to] = (b.values[d.to] || 0) + 1;
      }
    }
    if (e.type === "attempt.started") started.set(e.attempt_id, t);
    if (e.type === "attempt.finished" && started.has(e.attempt_id)) {
      const b = slot(t);
      if (b) b.took.push(t - started.get(e.attempt_id));
      started.delete(e.attempt_id);
    }
  }
  for (const b of buckets) {
    b.values.attempt = median(b.took);
    b.values.dispatch = median(b.waited);
  }
  const seconds = (v) => duration(v);
  return [
    h(
      "figure",
      {},
      barChart("Runs ended per minute, last 30 minutes", buckets, [
        ["completed", "s-completed"],
        ["failed", "s-failed"],
        ["canceled", "s-canceled"],
      ]),
      h("figcaption", {}, "Runs ended per minute: ", legend(["completed", "failed", "canceled"])),
    ),
    h(
      "figure",
      {},
      lineChart(
        "Median attempt duration and dispatch wait per minute, last 30 minutes",
        buckets,
        [
          ["attempt", "l-attempt"],
          ["dispatch", "l-dispatch"],
        ],
        seconds,
      ),
      h("figcaption", {}, "Latency (median per minute): ", legend([["attempt", "attempt duration"], ["dispatch", "ready to leased"]], "l-")),
    ),
  ];
}

function legend(keys, prefix = "s-") {
  return keys.map((k) => {
    const [key, label] = Array.isArray(k) ? k : [k, k];
    return h("span", { class: "key" }, h("span", { class: `swatch ${prefix}${key}`, "aria-hidden": "true" }), label, " ");
  });
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
