// The single-page app: client-side routing, the live log stream, and the page in view.

import { follow } from "./api.js";
import { h, fill } from "./dom.js";
import * as overview from "./pages/overview.js";
import * as runs from "./pages/runs.js";
import * as run from "./pages/run.js";
import * as tasks from "./pages/tasks.js";
import * as workers from "./pages/workers.js";
import * as topics from "./pages/topics.js";

const ROUTES = [
  [/^\/$/, overview, "overview"],
  [/^\/runs$/, runs, "runs"],
  [/^\/runs\/([^/]+)$/, run, "runs"],
  [/^\/tasks$/, tasks, "tasks"],
  [/^\/workers$/, workers, "workers"],
  [/^\/topics$/, topics, "topics"],
];

const main = document.getElementById("main");
let current = null; // {onEvent?, dispose?} of the page in view

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  show();
}

function show() {
  if (current && current.dispose) current.dispose();
  current = null;
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const query = new URLSearchParams(location.search);
  for (const [pattern, page, nav] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    fill(main);
    current = page.render(main, { params: m.slice(1).map(decodeURIComponent), query, navigate }) || {};
    return;
  }
  fill(main, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, path), "."));
}

// Links inside the app change the page without reloading it.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api") || a.target) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});
window.addEventListener("popstate", show);

const live = document.getElementById("live");
follow(
  (event) => {
    if (current && current.onEvent) current.onEvent(event);
  },
  (status) => {
    live.dataset.state = status;
    live.textContent = status;
  },
);

show();
