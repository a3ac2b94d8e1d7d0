// The devserver page: polls /ui/devices every second and drives pins through /ui/devices/{id}/rpc.
"use strict";

const POLL_MS = 1000;
const ONLINE_MS = 60000; // a device that sent telemetry within this time shows as online
const cards = new Map(); // device id -> {root, pinsKey}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function formatValue(value) {
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(2) : String(value);
}

async function sendPin(device, pin, button, reply) {
  const value = button.getAttribute("aria-checked") === "true" ? 0 : 1;
  button.disabled = true;
  reply.className = "reply";
  reply.textContent = "sending…";
  try {
    const res = await fetch(`/ui/devices/${encodeURIComponent(device.id)}/rpc`, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({method: "setGpio", params: {pin, value}}),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.message || `HTTP ${res.status}`);
    reply.textContent = "→ " + JSON.stringify(body.reply);
    if (body.reply && body.reply.error) {
      reply.className = "reply error";
    } else {
      button.setAttribute("aria-checked", String(body.reply.value === 1 || body.reply.value === true));
    }
  } catch (err) {
    reply.className = "reply error";
    reply.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

function renderPins(card, device) {
  const key = device.gpio_pins.join("\u0000");
  if (card.pinsKey === key) return;
  card.pinsKey = key;
  const list = card.root.querySelector(".pins ul");
  list.replaceChildren(...device.gpio_pins.map((pin) => {
    const item = document.createElement("li");
    item.dataset.pin = pin;
    const name = document.createElement("span");
    name.className = "pin-name";
    name.textContent = pin;
    const button = document.createElement("button");
    button.className = "switch";
    button.setAttribute("role", "switch");
    button.setAttribute("aria-checked", "false");
    button.setAttribute("aria-label", `pin ${pin}`);
    const reply = document.createElement("span");
    reply.className = "reply";
    button.addEventListener("click", () => sendPin(device, pin, button, reply));
    item.append(name, button, reply);
    return item;
  }));
  card.root.querySelector(".no-pins").hidden = device.gpio_pins.length > 0;
}

function renderTelemetry(card, device, nowMs) {
  const body = card.root.querySelector(".telemetry tbody");
  const keys = Object.keys(device.telemetry).sort();
  body.replaceChildren(...keys.map((key) => {
    const {ts, value} = device.telemetry[key];
    const row = document.createElement("tr");
    row.dataset.key = key;
    row.classList.toggle("fresh", ts === device.last_ts);
    const name = document.createElement("td");
    name.textContent = key;
    const cell = document.createElement("td");
    cell.className = "value";
    cell.textContent = formatValue(value);
    cell.title = new Date(ts).toLocaleString();
    row.append(name, cell);
    return row;
  }));
  card.root.querySelector(".no-telemetry").hidden = keys.length > 0;
  const seen = device.last_ts === null ? "never seen" : ago(nowMs - device.last_ts);
  card.root.querySelector(".seen").textContent = seen;
  card.root.classList.toggle("online", device.last_ts !== null && nowMs - device.last_ts < ONLINE_MS);
}

function render(data) {
  const container = document.getElementById("devices");
  const seen = new Set();
  for (const device of data.devices) {
    seen.add(device.id);
    let card = cards.get(device.id);
    if (!card) {
      const root = document.getElementById("device-card").content.firstElementChild.cloneNode(true);
      root.dataset.device = device.name;
      root.querySelector(".name").textContent = device.name;
      card = {root, pinsKey: null};
      cards.set(device.id, card);
      container.append(root);
    }
    renderTelemetry(card, device, data.now_ms);
    renderPins(card, device);
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      card.root.remove();
      cards.delete(id);
    }
  }
  document.getElementById("empty").hidden = data.devices.length > 0;
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("/ui/devices", {cache: "no-store"});
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
    status.className = "status";
    status.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    status.className = "status error";
    status.textContent = `server unreachable (${err.message})`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
