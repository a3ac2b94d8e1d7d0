// The devserver page: ThingsBoard's own REST API only, as any REST client would use it.
// It logs in (first with the devserver's default tenant, else through the form), polls the
// devices, their latest telemetry and their `gpio_pins` client attribute every second, and
// switches a pin with a two-way RPC (`setGpio`), showing the device's reply.
"use strict";

const POLL_MS = 1000;
const ONLINE_MS = 60000; // a device that sent telemetry within this time shows as online
const RPC_TIMEOUT_MS = 10000; // ThingsBoard's default for a two-way RPC
const DEFAULT_LOGIN = {username: "tenant@thingsboard.org", password: "tenant"};
const cards = new Map(); // device id -> {root, pinsKey}
let tokens = JSON.parse(sessionStorage.getItem("tokens") || "null"); // {token, refreshToken}

class LoginNeeded extends Error {}

function keep(pair) {
  tokens = pair;
  sessionStorage.setItem("tokens", JSON.stringify(pair));
}

async function login(credentials) {
  const res = await fetch("/api/auth/login", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(credentials),
  });
  if (!res.ok) return false;
  keep(await res.json());
  return true;
}

async function refresh() {
  if (!tokens) return false;
  const res = await fetch("/api/auth/token", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({refreshToken: tokens.refreshToken}),
  });
  if (!res.ok) return false;
  keep(await res.json());
  return true;
}

// One REST call with the access token; a token that expired is refreshed once.
async function api(path, options = {}, retried = false) {
  if (!tokens && !(await login(DEFAULT_LOGIN))) throw new LoginNeeded();
  const headers = {...(options.headers || {}), "X-Authorization": `Bearer ${tokens.token}`};
  const res = await fetch(path, {...options, headers, cache: "no-store"});
  if (res.status === 401 && !retried) {
    if (await refresh()) return api(path, options, true);
    tokens = null;
    sessionStorage.removeItem("tokens");
    throw new LoginNeeded();
  }
  return res;
}

async function apiJson(path) {
  const res = await api(path);
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

async function allDevices() {
  const devices = [];
  for (let page = 0; ; page++) {
    const reply = await apiJson(`/api/tenant/devices?pageSize=100&page=${page}&sortProperty=name&sortOrder=ASC`);
    devices.push(...reply.data);
    if (!reply.hasNext) return devices;
  }
}

// What a card shows of a device: latest value per telemetry key, and the pins it allows.
async function summary(device) {
  const id = device.id.id;
  const base = `/api/plugins/telemetry/DEVICE/${encodeURIComponent(id)}`;
  const [latest, attributes] = await Promise.all([
    apiJson(`${base}/values/timeseries?useStrictDataTypes=true`),
    apiJson(`${base}/values/attributes/CLIENT_SCOPE?keys=gpio_pins`),
  ]);
  const telemetry = {};
  for (const [key, points] of Object.entries(latest)) {
    if (points.length && points[0].value !== null) telemetry[key] = points[0];
  }
  const stamps = Object.values(telemetry).map((point) => point.ts);
  const pins = attributes.length && Array.isArray(attributes[0].value) ? attributes[0].value.map(String) : [];
  return {id, name: device.name, telemetry, last_ts: stamps.length ? Math.max(...stamps) : null, gpio_pins: pins};
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function formatValue(value) {
  return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(2) : String(value);
}

async function rpcError(res) {
  if (res.status === 504) return `the device did not answer within ${RPC_TIMEOUT_MS / 1000} s`;
  try {
    return (await res.json()).message || `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

async function sendPin(device, pin, button, reply) {
  const value = button.getAttribute("aria-checked") === "true" ? 0 : 1;
  button.disabled = true;
  reply.className = "reply";
  reply.textContent = "sending…";
  try {
    const res = await api(`/api/rpc/twoway/${encodeURIComponent(device.id)}`, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({method: "setGpio", params: {pin, value}, timeout: RPC_TIMEOUT_MS}),
    });
    if (!res.ok) throw new Error(await rpcError(res));
    const answer = await res.json();
    reply.textContent = "→ " + JSON.stringify(answer);
    if (answer && answer.error) {
      reply.className = "reply error";
    } else {
      button.setAttribute("aria-checked", String(answer.value === 1 || answer.value === true));
    }
  } catch (err) {
    reply.className = "reply error";
    reply.textContent = err instanceof LoginNeeded ? "log in first" : err.message;
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

function render(devices) {
  const container = document.getElementById("devices");
  const seen = new Set();
  const nowMs = Date.now();
  for (const device of devices) {
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
    renderTelemetry(card, device, nowMs);
    renderPins(card, device);
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      card.root.remove();
      cards.delete(id);
    }
  }
  document.getElementById("empty").hidden = devices.length > 0;
}

async function poll() {
  const status = document.getElementById("status");
  const form = document.getElementById("login");
  try {
    render(await Promise.all((await allDevices()).map(summary)));
    form.hidden = true;
    status.className = "status";
    status.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (err instanceof LoginNeeded) {
      form.hidden = false;
      status.className = "status";
      status.textContent = "log in with the server's tenant account";
      return; // the form starts polling again
    }
    status.className = "status error";
    status.textContent = `server unreachable (${err.message})`;
  }
  setTimeout(poll, POLL_MS);
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const ok = await login({username: form.username.value, password: form.password.value});
  form.querySelector(".login-error").hidden = ok;
  if (ok) poll();
});

poll();
