// The devserver page: ThingsBoard's own REST API only, as any REST client would use it.
// It logs in (first with the devserver's default tenant, else through the form) and polls the
// devices: their latest telemetry, their client attributes (`gpio_pins`, `iotlink_version`) and
// shared attributes every few seconds, and a chart per numeric key from the ranged time series
// query. Pin switches show what the board answers to `getGpioStatus` (two-way RPC) and switch
// with `setGpio`. Everything from the server is shown as text, never parsed as HTML.
"use strict";

const POLL_MS = 2000;
const CHART_POLL_MS = 5000; // the charts' history is asked for this often
const RPC_TIMEOUT_MS = 10000; // ThingsBoard's default for a two-way RPC
const STATUS_TIMEOUT_MS = 5000; // the shortest ThingsBoard allows: an offline board shows soon
const OFFLINE_INTERVALS = 3; // no telemetry for this many intervals: the board is offline
const OFFLINE_MIN_MS = 10000; // ...and at least this long (a request may be on its way)
const DEFAULT_INTERVAL_S = 5; // until the page has seen the board's records
const RAW_MAX_MINUTES = 60; // ranges up to this show every point; longer ones show averages
const RAW_LIMIT = 10000; // points per key (an hour of one a second)
const AVERAGED_POINTS = 500;
const CHART_HEIGHT = 170; // px
const SYSTEM_KEYS = ["uptime_s", "mem_free", "dropped"]; // charted after the board's own readings
const MINUTE = 60000;
// Steps between time ticks (uPlot's own have none between 1 and 5 minutes).
const TIME_STEPS = [1, 2, 5, 10, 15, 30].map((s) => s * 1000).concat(
  [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880].map((m) => m * MINUTE));
// Steps between duration ticks: whole seconds, minutes, hours, days.
const DURATION_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 172800, 432000, 864000, 2592000];
const DEFAULT_LOGIN = {username: "tenant@thingsboard.org", password: "tenant"};

const cards = new Map(); // device id -> card (see newCard)
let tokens = JSON.parse(sessionStorage.getItem("tokens") || "null"); // {token, refreshToken}
let rangeMinutes = 60;
let serverOffsetMs = 0; // the server's clock minus this browser's, when they differ
let lastAnswerMs = null; // when the server last answered a poll (this browser's clock)
let serverDownSince = null;

class LoginNeeded extends Error {}

// ---- the REST API ----------------------------------------------------------------------

function keep(pair) {
  tokens = pair;
  sessionStorage.setItem("tokens", JSON.stringify(pair));
}

async function postJson(path, body, headers = {}) {
  return fetch(path, {
    method: "POST", headers: {...headers, "Content-Type": "application/json"}, body: JSON.stringify(body),
  });
}

async function login(credentials) {
  const res = await postJson("/api/auth/login", credentials);
  if (!res.ok) return false;
  keep(await res.json());
  return true;
}

async function refresh() {
  if (!tokens) return false;
  const res = await postJson("/api/auth/token", {refreshToken: tokens.refreshToken});
  if (!res.ok) return false;
  keep(await res.json());
  return true;
}

// Times on the page are the server's (boards stamp their records with it): follow its clock
// when this browser's is off by more than the Date header's one-second resolution can hide.
function followServerClock(res) {
  const date = Date.parse(res.headers.get("Date"));
  if (!Number.isNaN(date)) {
    const offset = date - Date.now();
    serverOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
  }
}

function serverNow() {
  return Date.now() + serverOffsetMs;
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
  followServerClock(res);
  return res;
}

async function failure(res) {
  try {
    return (await res.json()).message || `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

async function apiJson(path) {
  const res = await api(path);
  if (!res.ok) throw new Error(await failure(res));
  return res.json();
}

async function apiSend(path, method, body) {
  const options = {method};
  if (body !== undefined) {
    options.headers = {"Content-Type": "application/json"};
    options.body = JSON.stringify(body);
  }
  const res = await api(path, options);
  if (!res.ok) throw new Error(await failure(res));
  return res;
}

function telemetryPath(deviceId) {
  return `/api/plugins/telemetry/DEVICE/${encodeURIComponent(deviceId)}`;
}

async function rpc(deviceId, method, params, timeout) {
  const res = await api(`/api/rpc/twoway/${encodeURIComponent(deviceId)}`, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({method, params, timeout}),
  });
  if (res.status === 504 || res.status === 408) {
    throw new Error(`the board did not answer within ${timeout / 1000} s`);
  }
  if (!res.ok) throw new Error(`the board did not answer (${await failure(res)})`);
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

// What a card shows of a device besides its charts.
async function summary(device) {
  const id = device.id.id;
  const base = telemetryPath(id);
  const [latest, client, shared] = await Promise.all([
    apiJson(`${base}/values/timeseries?useStrictDataTypes=true`),
    apiJson(`${base}/values/attributes/CLIENT_SCOPE?keys=gpio_pins,iotlink_version`),
    apiJson(`${base}/values/attributes/SHARED_SCOPE`),
  ]);
  const telemetry = {};
  for (const [key, points] of Object.entries(latest)) {
    if (points.length && points[0].value !== null) telemetry[key] = points[0];
  }
  const stamps = Object.values(telemetry).map((point) => point.ts);
  const attribute = (key) => client.find((a) => a.key === key)?.value;
  const pins = attribute("gpio_pins");
  return {
    id, name: device.name, telemetry, shared,
    last_ts: stamps.length ? Math.max(...stamps) : null,
    gpio_pins: Array.isArray(pins) ? pins.map(String) : null, // null: not reported
    version: attribute("iotlink_version") ?? null,
  };
}

// ---- readable values -------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat(undefined, {maximumFractionDigits: 2});

const BYTE_UNITS = [["GB", 1024 ** 3], ["MB", 1024 ** 2], ["KB", 1024], ["B", 1]];

// The decimals a tick step needs (0.25 -> 2, 0.2 -> 1, 3 -> 0), at most two.
function stepDecimals(step) {
  for (let d = 0; d < 2; d++) {
    if (Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) < 1e-6) return d;
  }
  return 2;
}

// step: the chart axis's step between ticks. A small step takes a smaller unit, so that ticks
// stay apart with at most two decimals (1,948.3 KB rather than 1.902 MB twice).
function formatBytes(n, step = null) {
  const fits = ([, size]) => Math.abs(n) >= size && (step === null || step >= size / 100);
  const [unit, size] = BYTE_UNITS.find(fits) || BYTE_UNITS[3];
  if (size === 1) return `${numberFormat.format(n)} B`;
  const decimals = step === null ? 1 : stepDecimals(step / size);
  return `${(n / size).toLocaleString(undefined, {minimumFractionDigits: decimals, maximumFractionDigits: decimals})} ${unit}`;
}

function formatDuration(seconds) {
  if (seconds < 0) return `-${formatDuration(-seconds)}`;
  const s = Math.round(seconds);
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  const i = units.findIndex(([, size]) => s >= size);
  if (i < 0 || i === units.length - 1) return `${s} s`;
  const [[big, bigSize], [small, smallSize]] = [units[i], units[i + 1]];
  const rest = Math.floor((s % bigSize) / smallSize);
  return rest ? `${Math.floor(s / bigSize)} ${big} ${rest} ${small}` : `${Math.floor(s / bigSize)} ${big}`;
}

// Keys say their unit: memory in bytes (mem_free), durations in seconds (uptime_s).
const isBytes = (key) => /^mem_|_bytes$/.test(key);
const isSeconds = (key) => /_s$/.test(key);

function formatNumber(key, n, step = null) {
  if (isBytes(key)) return formatBytes(n, step);
  if (isSeconds(key)) return formatDuration(n);
  return numberFormat.format(n);
}

function formatValue(key, value) {
  if (typeof value === "number") return formatNumber(key, value);
  return typeof value === "string" ? value : JSON.stringify(value);
}

function hoursMinutes(date) {
  return [date.getHours(), date.getMinutes()].map((n) => String(n).padStart(2, "0")).join(":");
}

function hoursMinutesSeconds(date) {
  return `${hoursMinutes(date)}:${String(date.getSeconds()).padStart(2, "0")}`;
}

function shortDate(date) {
  return date.toLocaleDateString(undefined, {day: "numeric", month: "short"});
}

function clockTime(ms) {
  const date = new Date(ms);
  const time = hoursMinutesSeconds(date);
  return date.toDateString() === new Date(serverNow()).toDateString() ? time : `${shortDate(date)} ${time}`;
}

// A time axis tick, as precise as the step between ticks needs.
function timeTick(ms, step) {
  const date = new Date(ms);
  if (step < MINUTE) return hoursMinutesSeconds(date);
  if (step < 1440 * MINUTE && (date.getHours() || date.getMinutes())) return hoursMinutes(date);
  return shortDate(date);
}

function ago(ms) {
  return `${formatDuration(Math.max(0, ms) / 1000)} ago`;
}

// ---- cards -----------------------------------------------------------------------------

function newCard(device) {
  const root = document.getElementById("device-card").content.firstElementChild.cloneNode(true);
  root.dataset.device = device.name;
  root.querySelector(".name").textContent = device.name;
  const card = {
    root, device, pinsKey: null, pinState: null, pinsAsking: false, pinsProblem: null, pinsAskedAt: null,
    sharedKey: null, charts: new Map(), historyAt: 0, intervalS: null, offline: false,
  };
  root.querySelector(".set-attribute").addEventListener("submit", (event) => {
    event.preventDefault();
    setAttribute(card, event.target);
  });
  new ResizeObserver(() => sizeCharts(card)).observe(root.querySelector(".charts"));
  return card;
}

function sharedInterval(card) {
  const value = card.device.shared.find((a) => a.key === "interval_s")?.value;
  return typeof value === "number" && value > 0 ? value : null;
}

function offlineAfterMs(card) {
  const interval = Math.max(card.intervalS || DEFAULT_INTERVAL_S, sharedInterval(card) || 0);
  return Math.max(OFFLINE_INTERVALS * interval * 1000, OFFLINE_MIN_MS);
}

// Online, or offline since when and why: the board stopped reporting, or the server stopped
// answering this page (then nothing is known of the board since).
function renderState(card) {
  const last = card.device.last_ts;
  const nowMs = serverNow();
  const note = card.root.querySelector(".offline-note");
  let seen, why = null;
  if (serverDownSince !== null) {
    seen = `offline since ${clockTime(lastAnswerMs + serverOffsetMs)}`;
    why = "The server does not answer this page: what it shows is from then.";
  } else if (last === null) {
    seen = "no telemetry yet";
  } else if (nowMs - last > offlineAfterMs(card)) {
    seen = `offline since ${clockTime(last)}`;
    why = `No telemetry for ${formatDuration((nowMs - last) / 1000)}: the board is off or cannot reach the server.`;
  } else {
    seen = ago(nowMs - last);
  }
  const offline = serverDownSince !== null || last === null || why !== null;
  const back = card.offline && !offline;
  card.offline = offline;
  card.root.classList.toggle("offline", offline);
  card.root.querySelector(".seen").textContent = seen;
  note.hidden = why === null;
  note.textContent = why || "";
  if (back && card.pinState !== null) askPins(card); // it may have restarted: pins reset
}

// Rows stay while the keys do, only their text changes: what a person selects stays selected.
function renderTelemetry(card) {
  const {telemetry, last_ts: lastTs} = card.device;
  const keys = Object.keys(telemetry).sort();
  const body = card.root.querySelector(".telemetry tbody");
  if (keys.join("\u0000") !== [...body.rows].map((row) => row.dataset.key).join("\u0000")) {
    body.replaceChildren(...keys.map((key) => {
      const row = document.createElement("tr");
      row.dataset.key = key;
      const name = document.createElement("td");
      name.textContent = key;
      const cell = document.createElement("td");
      cell.className = "value";
      row.append(name, cell);
      return row;
    }));
  }
  for (const row of body.rows) {
    const {ts, value} = telemetry[row.dataset.key];
    const cell = row.cells[1];
    row.classList.toggle("fresh", ts === lastTs);
    cell.dataset.value = typeof value === "string" ? value : JSON.stringify(value);
    const text = formatValue(row.dataset.key, value);
    if (cell.textContent !== text) cell.textContent = text;
    cell.title = `${cell.dataset.value} at ${new Date(ts).toLocaleString()}`;
  }
  card.root.querySelector(".no-telemetry").hidden = keys.length > 0;
  const version = card.device.version;
  card.root.querySelector(".version").textContent = version === null ? "" : `iotlink ${version}`;
}

// ---- pins ------------------------------------------------------------------------------

async function askPins(card) {
  if (card.pinsAsking || !card.device.gpio_pins?.length) return;
  card.pinsAsking = true;
  card.pinsAskedAt = card.device.last_ts;
  renderPinStates(card);
  try {
    const answer = await rpc(card.device.id, "getGpioStatus", {}, STATUS_TIMEOUT_MS);
    if (answer === null || typeof answer !== "object" || Array.isArray(answer)) {
      throw new Error(`unexpected answer ${JSON.stringify(answer)}`);
    }
    if (answer.error) throw new Error(`the board answered: ${answer.error}`);
    card.pinState = answer;
    card.pinsProblem = null;
  } catch (err) {
    card.pinsProblem = err instanceof LoginNeeded ? "log in first" : err.message;
  } finally {
    card.pinsAsking = false;
    renderPinStates(card);
  }
}

async function sendPin(card, pin, button, reply) {
  const value = button.getAttribute("aria-checked") === "true" ? 0 : 1;
  button.disabled = true;
  reply.className = "reply";
  reply.textContent = "sending…";
  try {
    const answer = await rpc(card.device.id, "setGpio", {pin, value}, RPC_TIMEOUT_MS);
    reply.textContent = "→ " + JSON.stringify(answer);
    if (answer && answer.error) {
      reply.className = "reply error";
    } else if (card.pinState !== null && [0, 1, true, false].includes(answer?.value)) {
      card.pinState = {...card.pinState, [pin]: answer.value === 1 || answer.value === true};
      renderPinStates(card);
    }
  } catch (err) {
    reply.className = "reply error";
    reply.textContent = err instanceof LoginNeeded ? "log in first" : err.message;
  }
  await askPins(card); // what the board says now, for every pin
}

function renderPins(card) {
  const pins = card.device.gpio_pins || [];
  const key = pins.join("\u0000");
  if (card.pinsKey !== key) {
    card.pinsKey = key;
    card.root.querySelector(".pins ul").replaceChildren(...pins.map((pin) => {
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
      button.addEventListener("click", () => sendPin(card, pin, button, reply));
      item.append(name, button, reply);
      return item;
    }));
    card.pinState = null;
    askPins(card);
  } else if (card.pinsProblem !== null && !card.pinsAsking && card.device.last_ts !== card.pinsAskedAt) {
    askPins(card); // the board reported since it did not answer: ask again
  }
  renderPinStates(card);
}

function pinsNote(card) {
  const pins = card.device.gpio_pins;
  if (pins === null) return "The board has not reported its pins yet.";
  if (!pins.length) return "No pins allowed in the board's config (its \"pins\" list is empty).";
  if (serverDownSince !== null) return "The server does not answer: switches are off.";
  if (card.offline) return "The board is offline: switches are off until it reports again.";
  if (card.pinsProblem !== null) {
    return `${card.pinsProblem[0].toUpperCase()}${card.pinsProblem.slice(1)}: switches are off until it answers.`;
  }
  if (card.pinState === null) return "Asking the board for its pins…";
  return "As the board reports them.";
}

function renderPinStates(card) {
  const usable = card.pinState !== null && card.pinsProblem === null && !card.pinsAsking && !card.offline;
  for (const item of card.root.querySelectorAll(".pins li")) {
    const state = card.pinState?.[item.dataset.pin];
    const button = item.querySelector(".switch");
    if (typeof state === "boolean" || state === 0 || state === 1) {
      button.setAttribute("aria-checked", String(state === true || state === 1));
    }
    button.disabled = !usable || state === undefined;
  }
  const note = card.root.querySelector(".pins-note");
  note.textContent = pinsNote(card);
  note.classList.toggle("error", card.pinsProblem !== null);
}

// ---- shared attributes -----------------------------------------------------------------

// What was typed: a number, true/false, or JSON becomes that; anything else is a string.
function typedValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function attributeReply(card, text, failed = false) {
  const reply = card.root.querySelector(".attribute-reply");
  reply.textContent = text;
  reply.classList.toggle("error", failed);
}

async function setAttribute(card, form) {
  const key = form.key.value.trim();
  const value = typedValue(form.value.value.trim());
  try {
    await apiSend(`${telemetryPath(card.device.id)}/SHARED_SCOPE`, "POST", {[key]: value});
    attributeReply(card, `${key} = ${JSON.stringify(value)} saved; the board reads it within 3 intervals.`);
    form.value.value = "";
  } catch (err) {
    attributeReply(card, `${key} not saved: ${err.message}`, true);
  }
  await refreshShared(card);
}

async function deleteAttribute(card, key) {
  try {
    await apiSend(`${telemetryPath(card.device.id)}/SHARED_SCOPE?keys=${encodeURIComponent(key)}`, "DELETE");
    attributeReply(card, `${key} deleted; the board goes back to its config.json.`);
  } catch (err) {
    attributeReply(card, `${key} not deleted: ${err.message}`, true);
  }
  await refreshShared(card);
}

async function refreshShared(card) {
  try {
    card.device.shared = await apiJson(`${telemetryPath(card.device.id)}/values/attributes/SHARED_SCOPE`);
    renderShared(card);
  } catch {
    // the next poll tries again
  }
}

function renderShared(card) {
  const shared = [...card.device.shared].sort((a, b) => a.key.localeCompare(b.key));
  const key = JSON.stringify(shared.map((a) => [a.key, a.value]));
  if (card.sharedKey === key) return;
  card.sharedKey = key;
  card.root.querySelector(".attributes tbody").replaceChildren(...shared.map((attribute) => {
    const row = document.createElement("tr");
    row.dataset.key = attribute.key;
    const name = document.createElement("td");
    name.textContent = attribute.key;
    const value = document.createElement("td");
    value.className = "value";
    value.textContent = formatValue("", attribute.value);
    value.title = `set at ${new Date(attribute.lastUpdateTs).toLocaleString()}`;
    const actions = document.createElement("td");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "×";
    remove.title = "delete";
    remove.setAttribute("aria-label", `delete ${attribute.key}`);
    remove.addEventListener("click", () => deleteAttribute(card, attribute.key));
    actions.append(remove);
    row.append(name, value, actions);
    return row;
  }));
  card.root.querySelector(".no-shared").hidden = shared.length > 0;
}

// ---- charts ----------------------------------------------------------------------------

function chartsAvailable() {
  return typeof uPlot === "function";
}

function chartWindow() {
  const end = serverNow();
  return [end - rangeMinutes * 60000, end];
}

function chartOrder(a, b) {
  const rank = (key) => SYSTEM_KEYS.indexOf(key);
  return rank(a) - rank(b) || a.localeCompare(b);
}

function caption(chart, index) {
  const {data} = chart.plot;
  const i = index ?? data[0].length - 1;
  const value = chart.figure.querySelector(".chart-value");
  value.textContent = i >= 0 && data[1][i] != null
    ? `${formatNumber(chart.key, data[1][i])} at ${clockTime(data[0][i])}` : "no data in this range";
}

function newChart(card, key) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.key = key;
  const title = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "chart-key";
  name.textContent = key;
  const value = document.createElement("span");
  value.className = "chart-value";
  title.append(name, value);
  const area = document.createElement("div");
  figure.append(title, area);
  const chart = {key, figure, plot: null, zoomed: false};
  const axis = {stroke: "#6b7785", grid: {stroke: "#eef0f3"}, ticks: {stroke: "#e3e6ea"}};
  chart.plot = new uPlot({
    width: 320, height: CHART_HEIGHT, ms: 1,
    legend: {show: false},
    cursor: {
      drag: {x: true, y: false},
      // A double-click goes back to the whole range (uPlot's own would fit the data instead).
      bind: {dblclick: () => () => { chart.zoomed = false; showRange(chart); return null; }},
    },
    scales: {x: {time: true}},
    series: [{}, {label: key, stroke: "#1769aa", width: 1.5, fill: "rgba(23, 105, 170, 0.08)"}],
    axes: [
      {...axis, space: 60, incrs: TIME_STEPS, values: (u, splits, i, space, step) => splits.map((ts) => timeTick(ts, step))},
      {...axis, size: axisWidth, ...(isSeconds(key) ? {incrs: DURATION_STEPS} : {}),
        values: (u, splits, i, space, step) => splits.map((v) => formatNumber(key, v, step))},
    ],
    hooks: {
      setSelect: [(u) => { if (u.select.width > 0) chart.zoomed = true; }],
      setCursor: [(u) => caption(chart, u.cursor.idx)],
    },
  }, [[], []], area);
  figure.uplot = chart.plot; // for tests: the points drawn, as uPlot has them
  return chart;
}

const measure = document.createElement("canvas").getContext("2d");

// A value axis as wide as its longest label.
function axisWidth(u, labels) {
  measure.font = "12px system-ui, sans-serif";
  return labels ? Math.ceil(Math.max(0, ...labels.map((l) => measure.measureText(l).width))) + 20 : 40;
}

function showRange(chart) {
  const [start, end] = chartWindow();
  chart.plot.setScale("x", {min: start, max: end});
}

function showPoints(chart, points) {
  chart.plot.setData([points.map((p) => p.ts), points.map((p) => p.value)], false);
  chart.figure.dataset.points = String(points.length);
  if (chart.zoomed) chart.plot.redraw();
  else showRange(chart);
  caption(chart, null);
}

function sizeCharts(card) {
  for (const chart of card.charts.values()) {
    const width = chart.figure.clientWidth;
    if (width > 0 && width !== chart.plot.width) chart.plot.setSize({width, height: CHART_HEIGHT});
  }
}

function renderCharts(card) {
  if (!chartsAvailable()) return;
  const keys = Object.entries(card.device.telemetry)
    .filter(([, point]) => typeof point.value === "number").map(([key]) => key);
  const added = keys.filter((key) => !card.charts.has(key));
  if (!added.length) return;
  for (const key of added) card.charts.set(key, newChart(card, key));
  const sorted = [...card.charts.keys()].sort(chartOrder);
  card.root.querySelector(".charts").replaceChildren(...sorted.map((key) => card.charts.get(key).figure));
  sizeCharts(card);
  card.historyAt = 0; // the new charts need their points now
}

// The usual gap between the board's records: how long a silence means it is offline.
function typicalInterval(points) {
  const gaps = points.slice(-11).map((p, i, all) => (i ? p.ts - all[i - 1].ts : null)).slice(1).sort((a, b) => a - b);
  return gaps.length ? gaps[Math.floor(gaps.length / 2)] / 1000 : null;
}

// Every point of the range (up to an hour), or averages over AVERAGED_POINTS intervals.
async function refreshHistory(card) {
  card.historyAt = Date.now();
  const keys = [...card.charts.keys()];
  if (!keys.length) return;
  const [start, end] = chartWindow();
  // endTs a minute ahead: a board's clock may run a little ahead of the server's.
  const query = new URLSearchParams({keys: keys.join(","), startTs: start, endTs: end + 60000, useStrictDataTypes: true});
  const raw = rangeMinutes <= RAW_MAX_MINUTES;
  if (raw) {
    query.set("limit", RAW_LIMIT);
  } else {
    query.set("agg", "AVG");
    query.set("interval", Math.ceil((end - start) / AVERAGED_POINTS));
  }
  const asked = rangeMinutes;
  const reply = await apiJson(`${telemetryPath(card.device.id)}/values/timeseries?${query}`);
  if (asked !== rangeMinutes) return; // another range was chosen meanwhile: its answer counts
  let longest = [];
  for (const [key, chart] of card.charts) {
    const points = (reply[key] || []).filter((p) => typeof p.value === "number").sort((a, b) => a.ts - b.ts);
    showPoints(chart, points);
    if (points.length > longest.length) longest = points;
  }
  if (raw) card.intervalS = typicalInterval(longest) ?? card.intervalS;
}

function chooseRange(minutes) {
  rangeMinutes = minutes;
  for (const button of document.querySelectorAll("#ranges button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.minutes) === minutes));
  }
  for (const card of cards.values()) {
    for (const chart of card.charts.values()) chart.zoomed = false;
    refreshHistory(card).catch(() => {}); // a failure shows at the next poll
  }
}

// ---- the page --------------------------------------------------------------------------

function render(devices) {
  const container = document.getElementById("devices");
  const seen = new Set();
  for (const device of devices) {
    seen.add(device.id);
    let card = cards.get(device.id);
    if (!card) {
      card = newCard(device);
      cards.set(device.id, card);
      container.append(card.root);
    }
    card.device = device;
    renderTelemetry(card);
    renderState(card);
    renderPins(card);
    renderShared(card);
    renderCharts(card);
  }
  for (const [id, card] of cards) {
    if (!seen.has(id)) {
      card.root.remove();
      cards.delete(id);
    }
  }
  document.getElementById("empty").hidden = devices.length > 0;
  document.getElementById("toolbar").hidden = devices.length === 0 || !chartsAvailable();
}

function serverDown(err) {
  serverDownSince ??= Date.now();
  const status = document.getElementById("status");
  status.className = "status error";
  const since = lastAnswerMs === null ? "" : ` since ${clockTime(lastAnswerMs + serverOffsetMs)}`;
  status.textContent = `server not answering${since} (${err.message})`;
  for (const card of cards.values()) {
    renderState(card);
    renderPinStates(card);
  }
}

async function poll() {
  const status = document.getElementById("status");
  const form = document.getElementById("login");
  try {
    const devices = await Promise.all((await allDevices()).map(summary));
    lastAnswerMs = Date.now();
    serverDownSince = null;
    render(devices);
    const due = [...cards.values()].filter((card) => Date.now() - card.historyAt >= CHART_POLL_MS);
    await Promise.all(due.map(refreshHistory));
    form.hidden = true;
    status.className = "status";
    status.textContent = `live · updated ${clockTime(serverNow())}`;
  } catch (err) {
    if (err instanceof LoginNeeded) {
      form.hidden = false;
      status.className = "status";
      status.textContent = "log in with the server's tenant account";
      return; // the form starts polling again
    }
    serverDown(err);
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

for (const button of document.querySelectorAll("#ranges button")) {
  button.addEventListener("click", () => chooseRange(Number(button.dataset.minutes)));
}
document.getElementById("no-charts").hidden = chartsAvailable();

poll();
