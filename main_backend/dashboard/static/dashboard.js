// The hub dashboard: reads /api/events (server-sent events over fetch, so the API key can go in
// an Authorization header), renders one card per backend, and posts admin actions.
"use strict";

const KEY_STORE = "hub_api_key";
const HEADLINE = /(fatigue_score|level|top_emotion|emotion|score|label|drowsiness|perclos|blinks|blink_rate_per_min)$/;
const $ = (sel, root = document) => root.querySelector(sel);

// ------------------------------------------------------------------ API key
function takeKeyFromUrl() {
  const url = new URL(location.href);
  const key = url.searchParams.get("api_key");
  if (key) {
    sessionStorage.setItem(KEY_STORE, key);
    url.searchParams.delete("api_key");
    history.replaceState(null, "", url.pathname + url.search + url.hash); // keep the key out of the address bar
  }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey(message) {
  const bar = $("#keybar");
  $("#key-label").textContent = message;
  bar.hidden = false;
  $("#key-input").focus();
  return new Promise((resolve) => {
    bar.onsubmit = (event) => {
      event.preventDefault();
      const key = $("#key-input").value.trim();
      if (key) sessionStorage.setItem(KEY_STORE, key);
      $("#key-input").value = "";
      bar.hidden = true;
      loadChatModels();
      resolve();
    };
  });
}

// ------------------------------------------------------------------ formatting
const dash = "—";
const num = (v, digits = 0) => (v === null || v === undefined ? dash : Number(v).toFixed(digits));
const mb = (bytes) => (bytes === null || bytes === undefined ? dash : `${(bytes / 1e6).toFixed(0)} MB`);
const ms = (v) => (v === null || v === undefined ? dash : v >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`);

function duration(seconds) {
  if (seconds === null || seconds === undefined) return dash;
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

function queuedText(b) {
  const parts = Object.entries(b.queued_by_priority || {}).filter(([, n]) => n > 0).map(([p, n]) => `p${p}:${n}`);
  return parts.length ? `${b.queued} (${parts.join(" ")})` : String(b.queued);
}

// ------------------------------------------------------------------ rendering
const cards = new Map();
const ALARMS = {
  down: "DOWN: the backend's connection dropped; requests to it fail until it is back.",
  failed: "FAILED: it crashed repeatedly and is no longer restarted. See the last error; Restart to try again.",
  unhealthy: "UNHEALTHY: it stopped answering pings.",
  degraded: "DEGRADED: it answers slowly or with errors.",
};

function cardFor(name) {
  let card = cards.get(name);
  if (!card) {
    card = $("#card-template").content.firstElementChild.cloneNode(true);
    card.dataset.backend = name;
    for (const button of card.querySelectorAll("button[data-action]")) {
      button.addEventListener("click", () => act(name, button.dataset.action, button));
    }
    cards.set(name, card);
    $("#backends").append(card);
  }
  return card;
}

function set(card, field, text, cls) {
  const el = card.querySelector(`[data-f="${field}"]`);
  if (el.textContent !== text) el.textContent = text;
  if (cls !== undefined) el.className = cls;
  return el;
}

function renderBackend(b, charts, result, now) {
  const card = cardFor(b.name);
  const enabled = b.enabled !== false;
  card.dataset.state = b.state;
  card.dataset.enabled = String(enabled);
  card.dataset.pid = b.pid ?? "";
  card.dataset.modelLoaded = String(b.model_loaded);
  card.dataset.errors = String(b.errors);
  set(card, "name", b.name);
  set(card, "state", enabled ? b.state : `disabled · ${b.state}`);
  set(card, "description", b.description || "");
  const alarm = set(card, "alarm", enabled ? ALARMS[b.state] || "" : "Disabled in the config (enabled: false): the hub does not start or route to it.");
  alarm.hidden = !alarm.textContent;
  set(card, "pid", b.pid ? String(b.pid) : dash);
  set(card, "endpoint", b.endpoint || dash, "mono");
  set(card, "ping", ms(b.ping_rtt_ms));
  set(card, "since", duration(b.state_since_s));
  set(card, "in_flight", String(b.in_flight));
  set(card, "queued", queuedText(b));
  set(card, "requests", String(b.requests));
  set(card, "errors", String(b.errors), b.errors ? "bad" : "");
  set(card, "superseded", String(b.superseded_total || 0));
  set(card, "restarts", String(b.restarts), b.restarts ? "bad" : "");
  set(card, "model", b.model_loaded ? "loaded" : "not loaded", b.model_loaded ? "yes" : "no");
  card.querySelector('[data-f="model"]').title = b.model || "";
  set(card, "rss", mb(b.memory.rss_bytes));
  set(card, "gpu", mb(b.memory.gpu_bytes));
  const measured = b.memory.measured_mb ? `, ${num(b.memory.measured_mb)} seen` : "";
  set(card, "declared", `${b.memory.declared_mb} MB${measured}`);
  set(card, "uptime", duration(b.backend_uptime_s));
  set(card, "loads", `${b.loads} / ${b.unloads}`);
  set(card, "p50", ms(b.latency.p50_ms));
  set(card, "p99", ms(b.latency.p99_ms));
  const chart = charts || { p50: [], p99: [], rps: [] };
  set(card, "rps", `${num(chart.rps.length ? chart.rps[chart.rps.length - 1] : 0, 1)} /s`);
  const xLabels = ["−60 s", "now"];
  lineChart(card.querySelector('[data-chart="latency"]'), {
    series: [{ values: chart.p99, cls: "s-p99", span: 60 }, { values: chart.p50, cls: "s-p50", span: 60 }],
    unit: "ms", xLabels,
  });
  lineChart(card.querySelector('[data-chart="rps"]'), {
    series: [{ values: chart.rps, cls: "s-rps", span: 60 }], unit: "/s", xLabels, area: true,
  });
  const error = set(card, "last_error", b.last_error ? `last error: ${b.last_error}` : "");
  error.hidden = !b.last_error || b.state === "ready";
  for (const button of card.querySelectorAll("button[data-action]")) {
    button.disabled = !enabled;
    button.title = enabled ? "" : "disabled in the config";
  }
  renderReplicas(card, b);
  renderResult(card, result, now);
}

// A backend placed on Ray: how many of its replicas are ready, and one row per replica. A local
// backend has no `replicas` in its snapshot, and its card keeps the section hidden.
function renderReplicas(card, b) {
  const box = card.querySelector('[data-f="replicas"]');
  const replicas = b.placement === "ray" ? b.replicas : null;
  box.hidden = !replicas;
  if (!replicas) {
    delete card.dataset.replicasReady;
    return;
  }
  const items = replicas.items || [];
  card.dataset.replicasReady = String(replicas.ready);
  set(card, "replicas-count", `${replicas.ready} / ${items.length} ready`, replicas.ready < replicas.desired ? "bad" : "");
  const replaced = replicas.replaced ? ` · ${replicas.replaced} replaced` : "";
  set(card, "replicas-note", `(want ${replicas.desired}, ${replicas.min}–${replicas.max}${replaced})`);
  card.querySelector('[data-f="replica-rows"]').replaceChildren(...items.map((r) => {
    const li = document.createElement("li");
    li.className = "replica";
    li.dataset.replica = r.replica;
    li.dataset.state = r.state;
    li.dataset.connected = String(r.connected);
    li.title = [
      r.endpoint || "no endpoint yet",
      r.pid ? `pid ${r.pid}` : "",
      r.model_loaded === null ? "" : r.model_loaded ? "model loaded" : "model not loaded",
      `${r.ok} ok, ${r.failed} failed`,
      r.last_error ? `last error: ${r.last_error}` : "",
    ].filter(Boolean).join(" · ");
    const badge = document.createElement("span");
    badge.className = "rstate";
    badge.textContent = r.state;
    const name = document.createElement("span");
    name.className = "rname mono";
    name.textContent = r.replica;
    const figure = (label, value, field) => {
      const el = document.createElement("span");
      el.className = "rfig";
      el.dataset.rf = field;
      const b = document.createElement("b");
      b.textContent = value;
      el.append(`${label} `, b);
      return el;
    };
    li.append(
      badge, name,
      figure("in flight", String(r.in_flight), "in_flight"),
      figure("p50", ms(r.latency ? r.latency.p50_ms : null), "p50"),
      figure("streams", String(r.streams), "streams"),
    );
    return li;
  }));
}

function renderResult(card, result, now) {
  const box = card.querySelector('[data-f="result"]');
  box.hidden = !result;
  if (!result) return;
  set(card, "result-age", `${result.count} answers · ${duration(Math.max(0, now - result.at))} ago`);
  const entries = Object.entries(result.fields);
  entries.sort(([a], [b]) => Number(HEADLINE.test(b)) - Number(HEADLINE.test(a)));
  const chips = card.querySelector('[data-f="result-fields"]');
  chips.replaceChildren(...entries.map(([key, value]) => {
    const chip = document.createElement("span");
    chip.className = HEADLINE.test(key) ? "chip head" : "chip";
    chip.dataset.key = key;
    const k = document.createElement("span");
    k.className = "ck";
    k.textContent = key;
    const v = document.createElement("span");
    v.className = "cv";
    v.textContent = typeof value === "number" && !Number.isInteger(value) ? value.toFixed(3) : JSON.stringify(value);
    chip.append(k, v);
    return chip;
  }));
}

function renderEvents(events) {
  const list = $("#events");
  if (!events.length) return;
  list.replaceChildren(...events.slice().reverse().map((e) => {
    const li = document.createElement("li");
    li.dataset.backend = e.backend;
    li.dataset.to = e.to;
    const time = document.createElement("time");
    time.textContent = clock(e.at);
    const to = document.createElement("span");
    to.className = "to";
    to.style.color = `var(--${e.to})`;
    to.textContent = e.to;
    li.append(time, `${e.backend}: ${e.from} → `, to, e.pid ? ` (pid ${e.pid})` : "");
    return li;
  }));
}

function render(state) {
  const hub = state.hub;
  $("#hub-uptime").textContent = duration(hub.uptime_s);
  $("#hub-clients").textContent = String(hub.clients);
  $("#hub-pending").textContent = String(hub.pending);
  $("#hub-viewers").textContent = String(hub.viewers ?? dash);
  const enabled = state.backends.filter((b) => b.enabled !== false);
  const ready = enabled.filter((b) => b.state === "ready").length;
  const disabled = state.backends.length - enabled.length;
  const readyEl = $("#hub-ready");
  readyEl.textContent = `${ready} / ${enabled.length}` + (disabled ? ` (${disabled} disabled)` : "");
  readyEl.className = ready < enabled.length ? "bad" : "";
  const seen = new Set();
  for (const b of state.backends) {
    seen.add(b.name);
    renderBackend(b, state.charts[b.name], state.results[b.name], state.sent_at);
  }
  for (const [name, card] of cards) {
    if (!seen.has(name)) {
      card.remove();
      cards.delete(name);
    }
  }
  renderEvents(state.events);
  updateStreams(state.streams || []);
  lastState = { at: Date.now() };
  $("#link-text").textContent = `live · ${clock(state.sent_at)}`;
}

// ------------------------------------------------------------------ admin actions
function toast(text, bad = false) {
  const el = $("#toast");
  el.textContent = text;
  el.className = bad ? "toast bad" : "toast";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

async function act(name, action, button, retried = false) {
  button.disabled = true;
  try {
    const res = await fetch(`/api/backends/${encodeURIComponent(name)}/${action}`, { method: "POST", headers: authHeaders() });
    const body = await res.json().catch(() => ({}));
    if (res.status === 401 && !retried) {
      await askForKey(`"${action}" needs the admin key:`);
      return act(name, action, button, true);
    }
    if (!res.ok) throw new Error(body.error ? body.error.message : `HTTP ${res.status}`);
    toast(`${name}: ${action} done`);
  } catch (err) {
    toast(`${name}: ${action} failed: ${err.message}`, true);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ the live feed
let lastState = null;

function setLink(state, text) {
  $("#link").dataset.link = state;
  document.body.dataset.link = state;
  $("#link-text").textContent = text;
  const banner = $("#stale-banner");
  banner.hidden = state !== "reconnecting";
  if (state === "reconnecting") {
    const since = lastState ? `last update ${clock(lastState.at / 1000)}` : "no update yet";
    $("#stale-text").textContent = `Everything below is stale (${since}); reconnecting…`;
  }
}

async function follow() {
  const res = await fetch("/api/events", { headers: authHeaders(), cache: "no-store" });
  if (res.status === 401) {
    await askForKey(sessionStorage.getItem(KEY_STORE) ? "That key was refused; API key:" : "This hub needs an API key:");
    return;
  }
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  setLink("live", "live");
  await readSse(res, (name, data) => { if (name === "state") render(JSON.parse(data)); });
}

async function main() {
  takeKeyFromUrl();
  initLive();
  initChat();
  for (;;) {
    try {
      await follow();
    } catch (err) {
      console.warn("dashboard feed:", err);
    }
    setLink("reconnecting", "reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

main();
