"""``/api/docs``: a small, self-contained page that renders the OpenAPI document (no
script or style from a CDN: the service must work with no network)."""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mainspring API</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
.op{border:1px solid #ddd;border-radius:6px;margin:.5em 0;padding:.2em .8em}
.op summary{cursor:pointer;padding:.3em 0}
.m{display:inline-block;min-width:4.5em;font-weight:600;font-family:monospace}
.GET{color:#0a6}.POST{color:#06c}.path{font-family:monospace}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:12px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}
#auth{margin:.5em 0}input{font:inherit;padding:.2em}
</style></head><body>
<h1>mainspring HTTP API</h1>
<p>The document itself: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).
With tokens, requests need <code>Authorization: Bearer &lt;token&gt;</code>.</p>
<div id="auth"><label>Token <input id="token" type="password" size="30"></label>
<button id="load">Load</button> <span id="status"></span></div>
<div id="ops"></div>
<h2>Schemas</h2><div id="schemas"></div>
<script>
"use strict";
const KEY = "mainspring.token";
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function show(doc) {
  const ops = $("ops"); ops.textContent = "";
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const d = el("details"); d.className = "op";
      const s = el("summary");
      s.append(el("span", method.toUpperCase(), "m " + method.toUpperCase()), el("span", path, "path"),
               el("span", "  " + (op.summary || "")));
      d.append(s);
      if (op.description) d.append(el("p", op.description));
      if (op.parameters && op.parameters.length) {
        const t = el("table"); const h = el("tr");
        ["name", "in", "required", "schema"].forEach((x) => h.append(el("th", x)));
        t.append(h);
        for (const p of op.parameters) {
          const r = el("tr");
          [p.name, p.in, String(!!p.required), JSON.stringify(p.schema || {})].forEach((x) => r.append(el("td", x)));
          t.append(r);
        }
        d.append(t);
      }
      if (op.requestBody) { d.append(el("p", "Body:")); d.append(el("pre", JSON.stringify(op.requestBody.content, null, 1))); }
      d.append(el("p", "Responses:"));
      d.append(el("pre", Object.entries(op.responses || {}).map(([c, r]) =>
        c + " " + (r.description || "") + (r.content ? " " + JSON.stringify(Object.values(r.content)[0].schema) : "")).join("\\n")));
      ops.append(d);
    }
  }
  const sc = $("schemas"); sc.textContent = "";
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    const d = el("details"); d.className = "op";
    d.append(el("summary", name)); d.append(el("pre", JSON.stringify(schema, null, 1)));
    sc.append(d);
  }
}
async function load() {
  const token = $("token").value.trim();
  if (token) localStorage.setItem(KEY, token);
  const headers = token ? {Authorization: "Bearer " + token} : {};
  $("status").textContent = "loading...";
  try {
    const r = await fetch("/api/v1/openapi.json", {headers});
    if (!r.ok) { $("status").textContent = "HTTP " + r.status + (r.status === 401 ? ": a token is needed" : ""); return; }
    const doc = await r.json();
    $("status").textContent = doc.info.title + " " + doc.info.version + " (OpenAPI " + doc.openapi + ")";
    show(doc);
  } catch (e) { $("status").textContent = String(e); }
}
$("token").value = localStorage.getItem(KEY) || "";
$("load").onclick = load;
load();
</script></body></html>
"""
