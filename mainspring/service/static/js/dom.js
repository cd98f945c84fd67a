// Small DOM helpers: elements are built with text nodes only, so data from the store is
// never parsed as HTML.

/** h("a", {href: "/"}, "text", child, ...): an element with attributes and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: columns are [heading, (row) => cell content]; an empty list says `empty`. */
export function table(columns, rows, { caption, empty = "none", rowAttrs } = {}) {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([head]) => h("th", { scope: "col" }, head)))),
      h(
        "tbody",
        {},
        rows.map((r) =>
          h(
            "tr",
            rowAttrs ? rowAttrs(r) : {},
            columns.map(([head, cell]) => h("td", { "data-label": head }, cell(r))),
          ),
        ),
      ),
    ),
  );
}

export function badge(state) {
  return h("span", { class: `badge s-${state}` }, state ?? "");
}

export function runLink(runId, short = true) {
  if (!runId) return "";
  return h("a", { href: `/runs/${runId}`, class: "mono" }, short ? shortId(runId) : runId);
}

export function shortId(id) {
  return id && id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

/** "2024-05-01 09:00:00" in the browser's time zone, the full ISO time as a tooltip. */
export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return h("time", { datetime: iso, title: iso }, text);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  const s = Math.abs(seconds);
  if (s < 1) return `${Math.round(seconds * 1000)} ms`;
  if (s < 60) return `${seconds.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

export function json(value) {
  if (value === undefined) return "";
  const text = JSON.stringify(value);
  return h("code", { class: "json" }, text.length > 200 ? `${text.slice(0, 200)}…` : text);
}

/** A short message at the top of the page (role=alert), gone after a while. */
export function flash(text, kind = "error") {
  const el = document.getElementById("flash");
  fill(el, h("p", { class: `flash ${kind}` }, text));
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => el.replaceChildren(), 8000);
}

/** Call fn at most once per `ms`, after the first of a burst of calls (live events can
 * arrive without pause, so waiting for a quiet moment could wait forever). */
export function throttle(fn, ms = 400) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}

export const STATES = [
  "scheduled",
  "ready",
  "leased",
  "running",
  "retry_wait",
  "suspended",
  "completed",
  "failed",
  "canceled",
];
