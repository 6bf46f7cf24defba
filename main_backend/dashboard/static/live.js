// The live view: one camera stream's latest frame with each backend's findings drawn on it, the
// fatigue gauge, PERCLOS / blinks / EEG band powers over time. Reads /api/live?stream=ID (server-sent
// events, at most 5 a second); the hub holds the stream's frame only while this page watches it.
"use strict";

// Read a server-sent event stream from a fetch response; calls onEvent(name, data) per event.
async function readSse(res, onEvent, signal) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    if (signal && signal.aborted) return;
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

const Live = {
  stream: "",
  controller: null,
  image: new Image(),
  lastView: null,
  chosenByUser: false,
};

function liveEl(id) { return document.getElementById(id); }

// Called with the dashboard state's stream index on every tick.
function updateStreams(streams) {
  const select = liveEl("stream-select");
  const cameras = streams.filter((s) => s.frames > 0);
  const wanted = cameras.map((s) => s.stream_id);
  const have = Array.from(select.options).map((o) => o.value).filter(Boolean);
  if (wanted.join("\n") !== have.join("\n")) {
    const current = select.value;
    select.replaceChildren(...(cameras.length ? cameras : [{ stream_id: "" }]).map((s) => {
      const option = document.createElement("option");
      option.value = s.stream_id;
      option.textContent = s.stream_id ? `${s.stream_id} → ${s.models.join(", ")}` : "no stream yet";
      return option;
    }));
    if (wanted.includes(current)) select.value = current;
  }
  if (!Live.stream || (!Live.chosenByUser && !wanted.includes(Live.stream))) {
    if (wanted.length) watchStream(wanted[0]);
  }
  const meta = cameras.find((s) => s.stream_id === Live.stream);
  liveEl("live-meta").textContent = meta
    ? `${meta.frames} frames · last ${meta.age_s.toFixed(1)} s ago · ${meta.watchers} watching`
    : "";
}

function watchStream(streamId) {
  if (Live.stream === streamId && Live.controller) return;
  stopWatching();
  Live.stream = streamId;
  liveEl("stream-select").value = streamId;
  if (!streamId || document.hidden) return;
  const controller = new AbortController();
  Live.controller = controller;
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const res = await fetch(`/api/live?stream=${encodeURIComponent(streamId)}`, {
          headers: authHeaders(), cache: "no-store", signal: controller.signal,
        });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        await readSse(res, (name, data) => { if (name === "live") renderLive(JSON.parse(data)); }, controller.signal);
      } catch (err) {
        if (controller.signal.aborted) return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
}

function stopWatching() {
  if (Live.controller) Live.controller.abort();
  Live.controller = null;
}

// ------------------------------------------------------------------ drawing
function renderLive(view) {
  Live.lastView = view;
  const results = view.results || {};
  if (view.frame && view.frame.image !== Live.image.src) {
    const img = new Image();
    img.onload = () => { Live.image = img; drawFrame(); };
    img.src = view.frame.image;
  } else {
    drawFrame();
  }
  renderFatigue(results, view.fatigue || []);
  renderEeg(view.eeg || [], view.stream_id);
}

function drawFrame() {
  const view = Live.lastView;
  const canvas = liveEl("live-canvas");
  const img = Live.image;
  if (!view || !img.complete || !img.naturalWidth) return;
  liveEl("live-empty").hidden = true;
  if (canvas.width !== img.naturalWidth || canvas.height !== img.naturalHeight) {
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
  }
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const scale = Math.max(1, canvas.width / 480);
  let boxes = 0;
  for (const [backend, entry] of Object.entries(view.results || {})) {
    for (const finding of findingsOf(backend, entry.data)) {
      drawFinding(ctx, finding, scale);
      if (finding.box) boxes += 1;
    }
  }
  canvas.dataset.boxes = String(boxes);
  canvas.dataset.frameAge = view.frame ? String(view.frame.age_s) : "";
}

// What a backend's answer says about the picture: boxes with labels, and landmark points.
function findingsOf(backend, data) {
  const out = [];
  if (!data || typeof data !== "object") return out;
  if (data.face_box && data.face_box.width) {
    const b = data.face_box;
    const eyes = data.eyes_closed === true ? "eyes CLOSED" : data.eyes_closed === false ? "eyes open" : "";
    const ear = data.ear && data.ear.mean != null ? ` (EAR ${data.ear.mean.toFixed(2)})` : "";
    out.push({ backend, box: [b.x, b.y, b.width, b.height], label: `${backend}: ${eyes}${ear}`, colour: "#f2b134", below: false });
  }
  if (Array.isArray(data.landmarks)) out.push({ backend, points: data.landmarks, colour: "#7dd3fc" });
  if (Array.isArray(data.faces)) {
    for (const face of data.faces) {
      if (!Array.isArray(face.box)) continue;
      const label = face.top_emotion ? `${face.top_emotion} ${Math.round((face.score || 0) * 100)}%` : backend;
      out.push({ backend, box: face.box, label: `${backend}: ${label}`, colour: "#c084fc", below: true });
    }
  }
  return out;
}

function drawFinding(ctx, finding, scale) {
  ctx.save();
  ctx.strokeStyle = finding.colour;
  ctx.fillStyle = finding.colour;
  if (finding.points) {
    for (const p of finding.points) ctx.fillRect(p[0] - scale * 0.6, p[1] - scale * 0.6, scale * 1.2, scale * 1.2);
  }
  if (finding.box) {
    const [x, y, w, h] = finding.box;
    ctx.lineWidth = 2 * scale;
    ctx.strokeRect(x, y, w, h);
    const size = Math.round(13 * scale);
    ctx.font = `600 ${size}px system-ui, sans-serif`;
    const text = finding.label;
    const tw = ctx.measureText(text).width + 8 * scale;
    const ty = finding.below ? Math.min(y + h + 2 * scale, ctx.canvas.height - size - 6 * scale) : Math.max(0, y - size - 6 * scale);
    const tx = Math.max(0, Math.min(x, ctx.canvas.width - tw));
    ctx.fillStyle = "rgba(10, 14, 20, 0.78)";
    ctx.fillRect(tx, ty, tw, size + 6 * scale);
    ctx.fillStyle = finding.colour;
    ctx.fillText(text, tx + 4 * scale, ty + size);
  }
  ctx.restore();
}

// ------------------------------------------------------------------ fatigue and EEG
const LEVEL_TEXT = { alert: "alert", drowsy: "drowsy", very_drowsy: "very drowsy" };

function renderFatigue(results, series) {
  const fatigue = Object.values(results).map((r) => r.data).find((d) => d && d.stream && "perclos" in d.stream);
  const emotion = Object.values(results).map((r) => r.data).find((d) => d && Array.isArray(d.faces));
  const gauge = liveEl("gauge");
  if (fatigue) {
    const s = fatigue.stream;
    const score = Math.max(0, Math.min(1, s.fatigue_score || 0));
    const angle = Math.PI * (1 - score);
    const needle = liveEl("gauge-needle");
    needle.setAttribute("x2", (100 + 64 * Math.cos(angle)).toFixed(1));
    needle.setAttribute("y2", (100 - 64 * Math.sin(angle)).toFixed(1));
    liveEl("gauge-value").textContent = score.toFixed(2);
    gauge.dataset.score = score.toFixed(3);
    const level = liveEl("gauge-level");
    level.dataset.level = s.level || "";
    level.textContent = (LEVEL_TEXT[s.level] || s.level || "") + (s.reasons && s.reasons.length ? `: ${s.reasons[0]}` : "");
    liveEl("ro-perclos").textContent = `${(100 * (s.perclos || 0)).toFixed(0)} %`;
    liveEl("ro-perclos").dataset.value = String(s.perclos || 0);
    liveEl("ro-blinks").textContent = String(s.blinks ?? "—");
    liveEl("ro-blink-rate").textContent = s.blink_rate_per_min != null ? `${s.blink_rate_per_min.toFixed(1)} / min` : "—";
    liveEl("ro-eyes").textContent = !fatigue.face_found ? "no face" : fatigue.eyes_closed ? "closed" : "open";
  }
  if (emotion) {
    const face = emotion.faces[0];
    liveEl("ro-emotion").textContent = face ? `${face.top_emotion} (${Math.round(face.score * 100)} %)` : "no face";
    liveEl("ro-faces").textContent = String(emotion.faces.length);
  }
  const span = chartSpan(series);
  const xLabels = [`−${span} s`, "now"];
  lineChart(liveEl("chart-perclos"), {
    series: [{ values: series.map((p) => 100 * (p.perclos || 0)), cls: "s-perclos", span }],
    unit: "%", yMax: 100, fixedMax: true, area: true, xLabels,
  });
  lineChart(liveEl("chart-blinks"), {
    series: [{ values: series.map((p) => p.blinks), cls: "s-blinks", span }],
    unit: "", yMax: 5, xLabels,
  });
}

const BANDS = ["delta", "theta", "alpha", "beta", "gamma"];

// The hub samples a stream's answers once a second: a chart spans 30 s to 2 min of points.
function chartSpan(series) { return Math.min(120, Math.max(30, series.length)); }

function renderEeg(series, streamId) {
  liveEl("eeg-stream").textContent = series.length ? `stream ${streamId}` : "";
  lineChart(liveEl("chart-eeg"), {
    series: BANDS.map((band) => ({ values: series.map((p) => 100 * (p.relative[band] || 0)), cls: `s-${band}`, span: chartSpan(series) })),
    unit: "%", yMax: 50, xLabels: [`−${chartSpan(series)} s`, "now"],
  });
  const legend = liveEl("eeg-legend");
  if (!legend.childElementCount) {
    const colours = { delta: "#60a5fa", theta: "#a78bfa", alpha: "#2fbf71", beta: "#f2b134", gamma: "#ef5350" };
    legend.replaceChildren(...BANDS.map((band) => {
      const span = document.createElement("span");
      span.style.setProperty("--c", colours[band]);
      span.textContent = band;
      return span;
    }));
  }
}

function initLive() {
  liveEl("stream-select").addEventListener("change", (event) => {
    Live.chosenByUser = true;
    watchStream(event.target.value);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopWatching();
    else if (Live.stream) { const id = Live.stream; Live.stream = ""; watchStream(id); }
  });
  renderFatigue({}, []);
  renderEeg([], "");
}

window.readSse = readSse;
