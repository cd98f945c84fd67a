// A run: its details, the operator's actions, its why, and its timeline built from its log
// events (states, leases, attempts, steps, sleeps, waits, signals, messages, receipts).

import { api, ApiError } from "../api.js";
import { h, fill, table, time, badge, runLink, json, duration, flash, throttle } from "../dom.js";

const TERMINAL = new Set(["completed", "failed", "canceled"]);

export function render(main, { params, navigate }) {
  const runId = params[0];
  const head = h("div", {}, h("h1", {}, "Run ", h("code", {}, runId)));
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  fill(main, head, body);

  const act = async (verb) => {
    try {
      const doc = await api(`/runs/${encodeURIComponent(runId)}/${verb}`, { method: "POST" });
      if (verb === "rerun" && doc && doc.run_id && doc.run_id !== runId) {
        flash(`Rerun submitted as ${doc.run_id}.`, "ok");
        navigate(`/runs/${doc.run_id}`);
        return;
      }
      flash(verb === "cancel" ? "Run canceled." : "Run resumed.", "ok");
      load();
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        flash(`Not allowed: ${err.message || "this token is a viewer's; operators can " + verb + " runs."}`);
      } else {
        flash(`Could not ${verb}: ${err.message}`);
      }
    }
  };

  const load = async () => {
    let run;
    let why = null;
    try {
      [run, why] = await Promise.all([
        api(`/runs/${encodeURIComponent(runId)}`),
        api(`/runs/${encodeURIComponent(runId)}/why`).catch(() => null),
      ]);
    } catch (err) {
      fill(body, h("p", { class: "error" }, err.status === 404 ? `No run has the id ${runId}.` : err.message));
      return;
    }
    fill(
      head,
      h("h1", {}, run.task_name, " ", badge(run.state)),
      h("p", { class: "muted mono" }, run.run_id),
      h(
        "div",
        { class: "actions", role: "group", "aria-label": "Operator actions" },
        h("button", { type: "button", disabled: TERMINAL.has(run.state), onclick: () => act("cancel") }, "Cancel"),
        h("button", { type: "button", disabled: run.state !== "suspended", onclick: () => act("resume") }, "Resume"),
        h("button", { type: "button", onclick: () => act("rerun") }, "Rerun"),
      ),
    );
    const history = run.history || [];
    fill(
      body,
      details(run),
      why && why.reasons && why.reasons.length
        ? h(
            "section",
            { class: "why", "aria-labelledby": "why-h" },
            h("h2", { id: "why-h" }, "Why ", run.state),
            h("ul", {}, why.reasons.map((r) => h("li", {}, h("code", {}, r.code), " ", r.text))),
          )
        : null,
      h(
        "section",
        { "aria-labelledby": "tl-h" },
        h("h2", { id: "tl-h" }, "Timeline"),
        history.length ? lanes(history, run) : null,
        events(history),
      ),
      run.attempts.length
        ? h(
            "section",
            { "aria-labelledby": "att-h" },
            h("h2", { id: "att-h" }, "Attempts"),
            table(
              [
                ["#", (a) => String(a.number)],
                ["Result", (a) => (a.result ? badge(a.result) : badge("running"))],
                ["Started", (a) => time(a.started_at)],
                ["Took", (a) => (a.finished_at ? duration(secs(a.finished_at) - secs(a.started_at)) : "")],
                ["Error", (a) => (a.error ? h("span", { class: "error" }, a.error) : "")],
                ["Class", (a) => [a.failure_class, a.retry_class].filter(Boolean).join(" / ")],
              ],
              run.attempts,
            ),
          )
        : null,
      run.steps && run.steps.length
        ? h(
            "section",
            { "aria-labelledby": "steps-h" },
            h("h2", { id: "steps-h" }, "Steps"),
            table(
              [
                ["#", (s) => String(s.number)],
                ["Name", (s) => s.name],
                ["State", (s) => badge(s.state)],
                ["Tries", (s) => String(s.attempts)],
                ["Took", (s) => duration(secs(s.finished_at) - secs(s.started_at))],
                ["Output", (s) => (s.error ? h("span", { class: "error" }, s.error) : json(s.output))],
              ],
              run.steps,
            ),
          )
        : null,
      run.waits && run.waits.length
        ? h(
            "section",
            { "aria-labelledby": "waits-h" },
            h("h2", { id: "waits-h" }, "Sleeps and waits"),
            table(
              [
                ["#", (w) => String(w.number)],
                ["Kind", (w) => w.kind],
                ["For", (w) => w.name || (w.children || []).map((c) => [runLink(c), " "])],
                ["Until", (w) => time(w.until)],
                ["State", (w) => badge(w.state)],
              ],
              run.waits,
            ),
          )
        : null,
      run.children && run.children.length
        ? h("section", {}, h("h2", {}, "Children"), h("p", {}, run.children.map((c) => [runLink(c), " "])))
        : null,
      run.message ? delivery(run.message, run.receipt) : null,
    );
  };

  load();
  const again = throttle(load, 300);
  return {
    onEvent: (e) => {
      if (e.run_id === runId) again();
    },
  };
}

function details(run) {
  const rows = [
    ["Task", h("span", {}, run.task_name, " ", h("code", { class: "muted" }, run.task_id))],
    ["Queue", run.queue],
    ["Priority", String(run.priority)],
    ["Scheduled", time(run.scheduled_at)],
    ["Execution", run.execution_id && h("code", {}, run.execution_id)],
    ["Correlation", run.correlation_id && h("code", {}, run.correlation_id)],
    ["Idempotency key", run.idempotency_key && h("code", {}, run.idempotency_key)],
    ["Concurrency key", run.concurrency_key && h("code", {}, run.concurrency_key)],
    ["Rerun of", run.rerun_of && runLink(run.rerun_of)],
    ["Parent", run.parent_run_id && runLink(run.parent_run_id)],
    ["Caused by", run.caused_by && runLink(run.caused_by)],
    ["Output", run.state === "completed" ? json(run.output) : null],
    ["Error", run.error && h("span", { class: "error" }, run.error)],
    ["Failure", run.failure_class && `${run.failure_class} / ${run.retry_class}`],
  ].filter(([, v]) => v);
  return h("dl", { class: "details" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function delivery(m, r) {
  return h(
    "section",
    { "aria-labelledby": "msg-h" },
    h("h2", { id: "msg-h" }, "Message"),
    h(
      "p",
      {},
      h("a", { href: `/topics?topic=${encodeURIComponent(m.topic)}` }, m.topic),
      ` #${m.sequence} `,
      h("code", {}, m.event_id),
      " ",
      json(m.payload),
    ),
    r
      ? h("p", {}, "Receipt: ", badge(r.status), ` by ${r.subscriber} on attempt ${r.attempt}, `, time(r.recorded_at))
      : h("p", { class: "muted" }, "No receipt yet."),
  );
}

const secs = (iso) => new Date(iso).getTime() / 1000;

/** What one event says, in a few words. */
function describe(e) {
  const d = e.data || {};
  switch (e.type) {
    case "task.created":
      return `task ${d.name} created`;
    case "run.created":
      return [`created, scheduled for `, time(d.scheduled_at), ` on queue ${d.queue}`];
    case "run.state_changed":
      return [badge(d.from), " → ", badge(d.to), d.reason ? ` (${d.reason})` : "", d.error ? h("span", { class: "error" }, ` ${d.error}`) : ""];
    case "attempt.started":
      return `attempt ${d.number} started${d.worker ? ` on ${d.worker}` : ""}`;
    case "attempt.finished":
      return ["attempt finished: ", badge(d.result), d.error ? h("span", { class: "error" }, ` ${d.error}`) : ""];
    case "lease.acquired":
    case "lease.renewed":
      return [`${e.type.slice(6)} by ${d.owner}, until `, time(d.expires_at)];
    case "lease.released":
    case "lease.expired":
      return `${e.type.slice(6)} (${d.owner})`;
    case "step.started":
      return `step ${d.number} ${d.name} started`;
    case "step.completed":
      return [`step ${d.number} ${d.name} completed: `, json(d.output)];
    case "step.failed":
      return [`step ${d.number} ${d.name} failed${d.will_retry ? " (will retry)" : ""}: `, h("span", { class: "error" }, d.error)];
    case "sleep.started":
      return ["sleeping until ", time(d.until)];
    case "sleep.completed":
      return "woke up";
    case "wait.started":
      return d.for === "signal"
        ? [`waiting for signal ${d.name}`, d.until ? [" until ", time(d.until)] : ""]
        : [`waiting for ${(d.children || []).length} child run(s) `, (d.children || []).map((c) => [runLink(c), " "])];
    case "wait.completed":
      return d.timed_out ? "wait timed out" : "wait over";
    case "signal.sent":
      return [`signal ${d.name} sent `, json(d.payload)];
    case "signal.received":
      return `signal ${d.name} received`;
    case "message.published":
      return [`published ${d.topic} #${d.sequence} `, json(d.payload)];
    case "receipt.recorded":
      return [
        `receipt of ${d.subscriber}: `,
        badge(d.status),
        " for a message of ",
        h("a", { href: `/topics?topic=${encodeURIComponent(d.topic)}` }, d.topic),
      ];
    case "transaction.recorded":
      return `transaction ${d.name} committed`;
    default:
      return json(d);
  }
}

/** The event list, consecutive lease renewals folded into one line. */
function events(history) {
  if (!history.length) return h("p", { class: "muted" }, "No events.");
  const t0 = secs(history[0].at);
  const rows = [];
  for (const e of history) {
    const last = rows.at(-1);
    if (e.type === "lease.renewed" && last && last.e.type === "lease.renewed") {
      last.n += 1;
      last.e = e;
      continue;
    }
    rows.push({ e, n: 1 });
  }
  return h(
    "ol",
    { class: "timeline" },
    rows.map(({ e, n }) =>
      h(
        "li",
        { class: `ev k-${e.type.split(".")[0]}`, "data-type": e.type },
        h("span", { class: "when" }, time(e.at), h("small", {}, ` +${duration(secs(e.at) - t0) || "0 ms"}`)),
        h("span", { class: "type" }, e.type, n > 1 ? ` ×${n}` : ""),
        h("span", { class: "what" }, describe(e)),
      ),
    ),
  );
}

/** Lanes of spans over time: states, leases, attempts, steps, sleeps and waits. */
function lanes(history, run) {
  const start = secs(history[0].at);
  const lastAt = secs(history.at(-1).at);
  const end = TERMINAL.has(run.state) ? lastAt : Math.max(lastAt, Date.now() / 1000);
  const span = Math.max(end - start, 0.001);
  const rows = { state: [], lease: [], attempt: [], step: [], wait: [], mark: [] };
  const open = {};
  let state = null;
  for (const e of history) {
    const t = secs(e.at);
    const d = e.data || {};
    if (e.type === "run.created") state = { s: "scheduled", t };
    if (e.type === "run.state_changed") {
      if (state) rows.state.push({ a: state.t, b: t, cls: `s-${state.s}`, label: state.s });
      state = { s: d.to, t };
    }
    if (e.type === "lease.acquired") open.lease = { t, owner: d.owner };
    if ((e.type === "lease.released" || e.type === "lease.expired") && open.lease) {
      rows.lease.push({ a: open.lease.t, b: t, cls: e.type === "lease.expired" ? "s-failed" : "s-leased", label: `lease of ${open.lease.owner} (${e.type.slice(6)})` });
      open.lease = null;
    }
    if (e.type === "attempt.started") open.attempt = { t, n: d.number };
    if (e.type === "attempt.finished" && open.attempt) {
      rows.attempt.push({ a: open.attempt.t, b: t, cls: `r-${d.result}`, label: `attempt ${open.attempt.n}: ${d.result}` });
      open.attempt = null;
    }
    if (e.type === "step.completed" || e.type === "step.failed") {
      const a = d.started_at ? secs(d.started_at) : t;
      rows.step.push({ a, b: t, cls: e.type === "step.failed" ? "r-terminal" : "r-success", label: `step ${d.number} ${d.name}` });
    }
    if (e.type === "sleep.started" || e.type === "wait.started") open[`w${d.number}${e.type[0]}`] = { t, label: e.type === "sleep.started" ? "sleep" : `wait for ${d.name || "children"}` };
    if (e.type === "sleep.completed" || e.type === "wait.completed") {
      const o = open[`w${d.number}${e.type[0]}`];
      if (o) rows.wait.push({ a: o.t, b: t, cls: "s-suspended", label: o.label });
      delete open[`w${d.number}${e.type[0]}`];
    }
    if (e.type.startsWith("signal.") || e.type === "receipt.recorded" || e.type === "message.published") {
      rows.mark.push({ a: t, b: t, cls: `m-${e.type.split(".")[0]}`, label: e.type });
    }
  }
  if (state) rows.state.push({ a: state.t, b: end, cls: `s-${state.s}`, label: state.s });
  if (open.lease) rows.lease.push({ a: open.lease.t, b: end, cls: "s-leased", label: `lease of ${open.lease.owner}` });
  if (open.attempt) rows.attempt.push({ a: open.attempt.t, b: end, cls: "s-running", label: `attempt ${open.attempt.n}: running` });
  for (const [k, o] of Object.entries(open)) if (k.startsWith("w") && o) rows.wait.push({ a: o.t, b: end, cls: "s-suspended", label: o.label });

  const names = [
    ["state", "State"],
    ["lease", "Leases"],
    ["attempt", "Attempts"],
    ["step", "Steps"],
    ["wait", "Sleeps, waits"],
    ["mark", "Signals, receipts"],
  ].filter(([k]) => rows[k].length);
  // HTML rather than SVG: bars placed in percent stay crisp and legible at any width
  const pct = (t) => `${((100 * (t - start)) / span).toFixed(3)}%`;
  const wide = (a, b) => `max(3px, ${((100 * (b - a)) / span).toFixed(3)}%)`;
  return h(
    "figure",
    { class: "lanes", "aria-label": `Timeline of the run over ${duration(span)}` },
    names.map(([k, label]) =>
      h(
        "div",
        { class: "lane", "data-lane": k },
        h("span", { class: "lane-label" }, label),
        h(
          "span",
          { class: "track" },
          rows[k].map((s) =>
            h("span", {
              class: `${k === "mark" ? "dot" : "bar"} ${s.cls}`,
              style: k === "mark" ? `left:${pct(s.a)}` : `left:${pct(s.a)};width:${wide(s.a, s.b)}`,
              title: k === "mark" ? `${s.label} at ${new Date(s.a * 1000).toISOString()}` : `${s.label}: ${duration(s.b - s.a)}`,
            }),
          ),
        ),
      ),
    ),
    h("div", { class: "lane axis" }, h("span", {}), h("span", { class: "track" }, h("span", {}, "0"), h("span", {}, duration(span)))),
  );
}
