// Topics: the messages of a topic and the receipts of each (how each subscriber's
// delivery ended).

import { api, items, query } from "../api.js";
import { h, fill, table, time, badge, runLink, json, throttle } from "../dom.js";

export function render(main, { query: q, navigate }) {
  const topic = q.get("topic") || "";
  const known = h("nav", { class: "topic-list", "aria-label": "Topics seen" });
  const input = h("input", { id: "topic", name: "topic", value: topic, placeholder: "orders.created", required: true });
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Choose a topic" },
    h("div", { class: "field" }, h("label", { for: "topic" }, "Topic"), input),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Show")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    navigate(`/topics${query({ topic: input.value.trim() })}`);
  });
  const body = h("div", {});
  fill(main, h("h1", {}, "Topics"), known, form, body);

  const load = async () => {
    try {
      const receipts = items(await api("/receipts?limit=1000"));
      const topics = [...new Set(receipts.map((r) => r.topic))].sort();
      if (topic && !topics.includes(topic)) topics.push(topic);
      fill(
        known,
        topics.length ? h("ul", { class: "chips" }, topics.map((t) => h("li", {}, h("a", { href: `/topics?topic=${encodeURIComponent(t)}`, "aria-current": t === topic ? "page" : null }, t)))) : null,
      );
      if (!topic) {
        fill(body, h("p", { class: "muted" }, topics.length ? "Pick a topic." : "No receipts yet: enter a topic to see its messages."));
        return;
      }
      const messages = items(await api(`/topics/${encodeURIComponent(topic)}/messages?since=0&limit=1000`));
      const byEvent = new Map();
      for (const r of receipts) {
        if (!byEvent.has(r.event_id)) byEvent.set(r.event_id, []);
        byEvent.get(r.event_id).push(r);
      }
      fill(
        body,
        h("h2", {}, "Messages of ", h("code", {}, topic)),
        table(
          [
            ["#", (m) => String(m.sequence ?? "")],
            ["Published", (m) => time(m.published_at)],
            ["Event id", (m) => h("code", { class: "small" }, m.event_id)],
            ["Payload", (m) => json(m.payload)],
            ["By run", (m) => runLink(m.causation_id)],
            [
              "Receipts",
              (m) => {
                const rs = byEvent.get(m.event_id) || [];
                if (!rs.length) return h("span", { class: "muted" }, "none yet");
                return h("ul", { class: "plain" }, rs.map((r) => h("li", {}, badge(r.status), ` ${r.subscriber} `, runLink(r.run_id), ` attempt ${r.attempt}`)));
              },
            ],
          ],
          messages,
          { empty: "No messages on this topic.", rowAttrs: (m) => ({ "data-event-id": m.event_id }) },
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
      if (e.type === "message.published" || e.type === "receipt.recorded") again();
    },
  };
}
