// The chat panel: any chat model (or capability) behind the gateway, streamed over
// POST /v1/chat/completions with stream: true; text and, optionally, one image as a data URL.
"use strict";

const Chat = { history: [], image: null, controller: null };

function chatEl(id) { return document.getElementById(id); }

async function loadChatModels() {
  const select = chatEl("chat-model");
  const names = [];
  try {
    const res = await fetch("/v1/models", { headers: authHeaders(), cache: "no-store" });
    if (res.ok) names.push(...(await res.json()).data.map((m) => m.id));
  } catch (err) { /* the gateway may be off; the select says so */ }
  try {
    const res = await fetch("/api/capabilities", { headers: authHeaders(), cache: "no-store" });
    if (res.ok) {
      const body = await res.json();
      renderCapabilities(body);
      // {"capabilities": {"text": {"model": "vlm", ...}, ...}}: only bound capabilities can answer
      const bound = Object.entries(body.capabilities || {}).filter(([, info]) => info && info.model);
      for (const [name] of bound) {
        if (!names.includes(name)) names.push(name);
      }
    }
  } catch (err) { /* no capabilities API on this hub */ }
  const current = select.value;
  select.replaceChildren(...(names.length ? names : [""]).map((name) => {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name || "no chat model";
    return option;
  }));
  if (names.includes(current)) select.value = current;
  chatEl("chat-send").disabled = !names.length;
}

// Capability bindings (GET /api/capabilities, PUT /api/capabilities/{capability}): one select each.
function renderCapabilities(body) {
  const box = chatEl("caps");
  const caps = Object.entries(body.capabilities || {});
  box.hidden = !caps.length;
  const models = (body.models || []).map((m) => m.name);
  const list = chatEl("caps-list");
  list.replaceChildren(...caps.map(([cap, info]) => {
    const label = document.createElement("label");
    label.className = "cap";
    label.dataset.capability = cap;
    const select = document.createElement("select");
    for (const name of new Set([...models, info.model].filter(Boolean))) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name + (info.default === name ? " (default)" : "");
      select.append(option);
    }
    select.value = info.model || "";
    select.addEventListener("change", () => bindCapability(cap, select.value, select));
    const state = document.createElement("span");
    state.className = "muted small";
    state.textContent = info.loaded === true ? "loaded" : info.loaded === false ? "not loaded" : info.kind || "";
    label.append(`${cap} → `, select, state);
    return label;
  }));
}

async function bindCapability(capability, model, select, retried = false) {
  select.disabled = true;
  try {
    const res = await fetch(`/api/capabilities/${encodeURIComponent(capability)}`, {
      method: "PUT",
      headers: { ...authHeaders(), "Content-Type": "application/json" },
      body: JSON.stringify({ model }),
    });
    const body = await res.json().catch(() => ({}));
    if (res.status === 401 && !retried) {
      await askForKey(`binding ${capability} needs the admin key:`);
      return bindCapability(capability, model, select, true);
    }
    if (!res.ok) throw new Error(body.error ? body.error.message : `HTTP ${res.status}`);
    toast(`${capability} → ${model}`);
  } catch (err) {
    toast(`binding ${capability} failed: ${err.message}`, true);
  } finally {
    select.disabled = false;
    loadChatModels();
  }
}

function addMessage(role, text, imageUrl) {
  const log = chatEl("chat-log");
  const box = document.createElement("div");
  box.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "you" : role === "error" ? "error" : chatEl("chat-model").value;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  box.append(who, body);
  if (imageUrl) {
    const img = document.createElement("img");
    img.src = imageUrl;
    img.alt = "attached image";
    box.append(img);
  }
  log.append(box);
  log.scrollTop = log.scrollHeight;
  return body;
}

function setChatStatus(text) { chatEl("chat-status").textContent = text; }

// Whether the backend behind a chat model is loading (a capability or provider name: false).
async function backendLoading(model) {
  try {
    const res = await fetch(`/api/backends/${encodeURIComponent(model)}`, { headers: authHeaders(), cache: "no-store" });
    return res.ok && (await res.json()).state === "loading";
  } catch (err) {
    return false;
  }
}

async function sendChat(event) {
  event.preventDefault();
  const input = chatEl("chat-input");
  const text = input.value.trim();
  const model = chatEl("chat-model").value;
  if (!text || !model || Chat.controller) return;
  const content = [{ type: "text", text }];
  if (Chat.image) content.push({ type: "image_url", image_url: { url: Chat.image } });
  addMessage("user", text, Chat.image);
  Chat.history.push({ role: "user", content: Chat.image ? content : text });
  input.value = "";
  Chat.image = null;
  chatEl("chat-image").value = "";
  chatEl("chat-image-name").textContent = "";
  const answer = addMessage("assistant", "");
  answer.parentElement.dataset.state = "waiting";
  const started = performance.now();
  let loading = false;
  const waiting = setInterval(async () => {
    const s = ((performance.now() - started) / 1000).toFixed(0);
    const why = loading
      ? `${model} is loading its model (the first load of the VLM converts it once: a minute or more)`
      : `waiting for ${model}`;
    setChatStatus(`${why}… ${s} s`);
    loading = await backendLoading(model);
  }, 1000);
  Chat.controller = new AbortController();
  chatEl("chat-send").textContent = "Stop";
  let text_ = "";
  try {
    const res = await fetch("/v1/chat/completions?priority=1", {
      method: "POST",
      headers: { ...authHeaders(), "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: Chat.history, stream: true }),
      signal: Chat.controller.signal,
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : `HTTP ${res.status}`);
    }
    await readSse(res, (name, data) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the model failed");
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        if (!text_) { clearInterval(waiting); setChatStatus(`${model} is answering…`); }
        text_ += delta.content;
        answer.textContent = text_;
        chatEl("chat-log").scrollTop = chatEl("chat-log").scrollHeight;
      }
    });
    Chat.history.push({ role: "assistant", content: text_ });
    answer.parentElement.dataset.state = "done";
    setChatStatus(`answered in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    answer.parentElement.remove();
    if (err.name === "AbortError") setChatStatus("stopped");
    else { addMessage("error", err.message); setChatStatus(""); }
    Chat.history.pop();
  } finally {
    clearInterval(waiting);
    Chat.controller = null;
    chatEl("chat-send").textContent = "Send";
  }
}

function initChat() {
  chatEl("chat-form").addEventListener("submit", (event) => {
    if (Chat.controller) { event.preventDefault(); Chat.controller.abort(); return; }
    sendChat(event);
  });
  chatEl("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      chatEl("chat-form").requestSubmit();
    }
  });
  chatEl("chat-image").addEventListener("change", () => {
    const file = chatEl("chat-image").files[0];
    if (!file) { Chat.image = null; return; }
    const reader = new FileReader();
    reader.onload = () => { Chat.image = reader.result; chatEl("chat-image-name").textContent = file.name; };
    reader.readAsDataURL(file);
  });
  loadChatModels();
}
