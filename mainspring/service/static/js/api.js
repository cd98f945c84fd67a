// The REST API and the live log stream, with the Bearer token kept in localStorage.

const BASE = "/api/v1";
const TOKEN_KEY = "mainspring.token";

/** An error answer of the API: `{"error": {"code", "message"}}` and its HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

let asking = null; // one token prompt at a time, however many requests got a 401

/** Show the token dialog; resolves once a token was entered and saved. */
export function askToken(message) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  let note = form.querySelector(".note");
  if (!note) {
    note = document.createElement("p");
    note.className = "note error";
    form.insertBefore(note, form.querySelector("label"));
  }
  note.textContent = message || "";
  asking = new Promise((resolve) => {
    form.addEventListener(
      "submit",
      () => {
        localStorage.setItem(TOKEN_KEY, input.value.trim());
        input.value = "";
        asking = null;
        resolve();
      },
      { once: true },
    );
  });
  if (!dialog.open) dialog.showModal();
  return asking;
}

/** Call the API; on a 401 ask for a token and try again. Returns the decoded JSON. */
export async function api(path, { method = "GET", body } = {}) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
      await askToken(token ? "That token was refused." : "");
      continue;
    }
    const doc = await res.json().catch(() => null);
    if (!res.ok) {
      const err = (doc && doc.error) || {};
      throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText);
    }
    return doc;
  }
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** The items of a list answer, whether the API gives `{"items": [...]}` or a bare array. */
export function items(doc) {
  if (Array.isArray(doc)) return doc;
  return (doc && doc.items) || [];
}

/**
 * Follow the log: calls onEvent(event) for each event and onStatus("live" | "reconnecting"
 * | "token"). EventSource reconnects by itself after a dropped connection, sending
 * Last-Event-ID; a refused one (401) is closed for good, so that one is reopened here,
 * from the last seq seen, once a token was given.
 */
export function follow(onEvent, onStatus) {
  let source = null;
  let last = null;
  let stopped = false;
  const open = () => {
    const params = {};
    const token = getToken();
    if (token) params.token = token;
    if (last !== null) params.since = last;
    source = new EventSource(`${BASE}/log/stream${query(params)}`);
    source.onopen = () => onStatus("live");
    source.onmessage = (msg) => {
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (typeof event.seq === "number") last = event.seq;
      onEvent(event);
    };
    source.onerror = async () => {
      if (stopped) return;
      if (source.readyState !== EventSource.CLOSED) {
        onStatus("reconnecting");
        return;
      }
      onStatus("reconnecting");
      source = null;
      // closed for good: find out whether the token is the reason before reopening
      try {
        await api("/stats");
      } catch {
        /* reported by the page that asked */
      }
      setTimeout(() => stopped || open(), 1000);
    };
  };
  open();
  return () => {
    stopped = true;
    if (source) source.close();
  };
}
