// Supervisor dashboard: live tiles and today's charts from /desk/dashboard/ws, history from
// /desk/api/kpis and /desk/api/kpis/timeseries. Charts: Chart.js (bot/static/vendor); $ and el
// come from common.js.
"use strict";
const charts = {};
window.__dashboard = {snapshots: 0};  // for tests: how many live snapshots arrived

const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`);
const secs = (v) => (v === null || v === undefined ? "–" : v < 90 ? `${v.toFixed(1)} s` : `${(v / 60).toFixed(1)} min`);
const num = (v) => (v === null || v === undefined ? "–" : String(v));

function tiles(target, k) {
  const b = k.bot, q = k.queue, a = k.agents;
  const sl = q.service_level;
  const list = [
    ["Conversations", num(b.conversations), "bot.conversations"],
    ["Containment", pct(b.containment_rate), "bot.containment_rate"],
    ["Handoff rate", pct(b.handoff_rate), "bot.handoff_rate"],
    ["Fallback rate", pct(b.fallback_rate), "bot.fallback_rate"],
    ["Waiting now", num(q.waiting), "queue.waiting"],
    ["Longest wait", secs(q.longest_wait_s), "queue.longest_wait_s"],
    ["ASA", secs(q.asa_s), "queue.asa_s"],
    [`Service level (${k.service_level_s} s)`, pct(sl), "queue.service_level",
      sl === null ? "" : sl >= k.service_level_target ? "good" : "bad"],
    ["Abandonment", pct(q.abandonment_rate), "queue.abandonment_rate"],
    ["AHT", secs(q.aht_s), "queue.aht_s"],
    ["Occupancy", pct(a.occupancy), "agents.occupancy"],
    ["Bookings", num(b.bookings), "bot.bookings"],
  ];
  target.replaceChildren(...list.map(([label, value, key, cls]) => {
    const d = el("div", undefined, `tile ${cls || ""}`);
    d.dataset.kpi = key;
    d.append(el("div", label, "label"), el("div", value, "value"));
    return d;
  }));
}

function hourLabel(iso) { return iso.slice(11, 16); }

function draw(id, config) {
  if (charts[id]) {
    charts[id].data = config.data;
    charts[id].update("none");
  } else {
    charts[id] = new Chart($(id), {...config, options: {maintainAspectRatio: false, animation: false, ...config.options}});
  }
}

function todayCharts(snap) {
  const pts = snap.series.points;
  const labels = pts.map((p) => hourLabel(p.start));
  draw("c-conv", {type: "bar", data: {labels, datasets: [
    {label: "contained by the bot", data: pts.map((p) => p.contained), backgroundColor: "#2e7d32"},
    {label: "handed off", data: pts.map((p) => p.handoffs), backgroundColor: "#f9a825"},
  ]}, options: {scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}}}});
  draw("c-queue", {type: "bar", data: {labels, datasets: [
    {label: "answered", data: pts.map((p) => p.answered), backgroundColor: "#1565c0"},
    {label: "abandoned", data: pts.map((p) => p.abandoned), backgroundColor: "#c62828"},
  ]}, options: {scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}}}});
  draw("c-sl", {type: "line", data: {labels, datasets: [
    {label: "service level %", data: pts.map((p) => (p.service_level === null ? null : p.service_level * 100)), borderColor: "#1565c0", yAxisID: "y", spanGaps: true},
    {label: "target %", data: pts.map(() => snap.kpis.service_level_target * 100), borderColor: "#999", borderDash: [4, 4], pointRadius: 0, yAxisID: "y"},
    {label: "ASA (s)", data: pts.map((p) => p.asa_s), borderColor: "#6a1b9a", yAxisID: "y1", spanGaps: true},
  ]}, options: {scales: {y: {min: 0, max: 100}, y1: {position: "right", beginAtZero: true, grid: {drawOnChartArea: false}}}}});
  const reasons = snap.kpis.bot.handoff_reasons || [];
  draw("c-reasons", {type: "bar", data: {labels: reasons.map((r) => r.name), datasets: [
    {label: "handoffs", data: reasons.map((r) => r.count), backgroundColor: "#ef6c00"},
  ]}, options: {indexAxis: "y", plugins: {legend: {display: false}}, scales: {x: {beginAtZero: true}}}});
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/desk/dashboard/ws`);
  ws.onopen = () => { $("live").textContent = "live"; };
  ws.onmessage = (msg) => {
    const snap = JSON.parse(msg.data);
    if (snap.type !== "kpis") return;
    tiles($("tiles"), snap.kpis);
    todayCharts(snap);
    window.__dashboard.snapshots += 1;
    window.__dashboard.last = snap.kpis;
    $("live").textContent = `live · updated ${new Date(snap.kpis.as_of).toLocaleTimeString()}`;
  };
  ws.onclose = (ev) => {
    if (ev.code === 4401 || ev.code === 1008) { location.href = "/desk/login"; return; }
    $("live").textContent = "reconnecting…";
    setTimeout(connect, 2000);
  };
}

async function history(ev) {
  if (ev) ev.preventDefault();
  const params = new URLSearchParams({from: $("from").value, to: $("to").value});
  if ($("channel").value) params.set("channel", $("channel").value);
  const [k, s] = await Promise.all([
    fetch(`/desk/api/kpis?${params}`).then((r) => r.json()),
    fetch(`/desk/api/kpis/timeseries?${params}&bucket=day`).then((r) => r.json()),
  ]);
  if (k.error || s.error) { $("hist-tiles").textContent = (k.error || s.error).message; return; }
  tiles($("hist-tiles"), k);
  const pts = s.points;
  draw("c-hist", {type: "bar", data: {labels: pts.map((p) => p.start.slice(0, 10)), datasets: [
    {label: "conversations", data: pts.map((p) => p.conversations), backgroundColor: "#90a4ae", yAxisID: "y"},
    {type: "line", label: "containment %", data: pts.map((p) => (p.containment_rate === null ? null : p.containment_rate * 100)), borderColor: "#2e7d32", yAxisID: "y1", spanGaps: true},
  ]}, options: {scales: {y: {beginAtZero: true}, y1: {position: "right", min: 0, max: 100, grid: {drawOnChartArea: false}}}}});
}

const today = new Date().toISOString().slice(0, 10);
$("to").value = today;
$("from").value = new Date(Date.now() - 6 * 86400e3).toISOString().slice(0, 10);
$("range").addEventListener("submit", history);
connect();
history();
