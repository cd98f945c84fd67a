// Small inline SVG charts: a bar chart of counts and a line chart of latencies per bucket.

const NS = "http://www.w3.org/2000/svg";
const W = 420;
const H = 150;
const PAD = { l: 44, r: 8, t: 10, b: 22 };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

function frame(label, max, buckets, format) {
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart",
    role: "img",
    "aria-label": label,
  });
  const title = svg("title");
  title.textContent = label;
  root.append(title);
  const ih = H - PAD.t - PAD.b;
  for (const f of [0, 0.5, 1]) {
    const y = PAD.t + ih * (1 - f);
    root.append(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "grid" }));
    const t = svg("text", { x: PAD.l - 4, y: y + 4, "text-anchor": "end", class: "axis" });
    t.textContent = format(max * f);
    root.append(t);
  }
  const n = buckets.length;
  const iw = W - PAD.l - PAD.r;
  for (const i of [0, Math.floor(n / 2), n - 1]) {
    if (i < 0 || !buckets[i]) continue;
    const t = svg("text", {
      x: PAD.l + (iw * (i + 0.5)) / n,
      y: H - 6,
      "text-anchor": "middle",
      class: "axis",
    });
    t.textContent = buckets[i].label;
    root.append(t);
  }
  return { root, ih, iw, n };
}

/** Stacked bars: buckets [{label, values: {series: n}}], series [[key, cssClass]]. */
export function barChart(label, buckets, series) {
  const totals = buckets.map((b) => series.reduce((s, [k]) => s + (b.values[k] || 0), 0));
  const max = Math.max(1, ...totals);
  const { root, ih, iw, n } = frame(label, niceMax(max), buckets, (v) => String(Math.round(v)));
  const top = niceMax(max);
  const bw = iw / n;
  buckets.forEach((b, i) => {
    let y = PAD.t + ih;
    for (const [k, cls] of series) {
      const v = b.values[k] || 0;
      if (!v) continue;
      const hgt = (ih * v) / top;
      y -= hgt;
      const r = svg("rect", { x: PAD.l + i * bw + 1, y, width: Math.max(1, bw - 2), height: hgt, class: cls });
      const t = svg("title");
      t.textContent = `${b.label}: ${v} ${k}`;
      r.append(t);
      root.append(r);
    }
  });
  return root;
}

/** Lines: buckets [{label, values: {series: seconds | null}}], series [[key, cssClass]]. */
export function lineChart(label, buckets, series, format) {
  const all = buckets.flatMap((b) => series.map(([k]) => b.values[k])).filter((v) => v != null);
  const top = niceMax(Math.max(0.001, ...all));
  const { root, ih, iw, n } = frame(label, top, buckets, format);
  const bw = iw / n;
  for (const [k, cls] of series) {
    let d = "";
    buckets.forEach((b, i) => {
      const v = b.values[k];
      if (v == null) return;
      const x = PAD.l + bw * (i + 0.5);
      const y = PAD.t + ih * (1 - v / top);
      d += `${d ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
      const c = svg("circle", { cx: x, cy: y, r: 2.5, class: cls });
      const t = svg("title");
      t.textContent = `${b.label}: ${k} ${format(v)}`;
      c.append(t);
      root.append(c);
    });
    if (d) root.append(svg("path", { d, class: `line ${cls}` }));
  }
  return root;
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
