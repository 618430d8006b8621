// The designer's review inbox ($, api, el and session come from common.js). Plain JavaScript;
// all user text goes through textContent.
"use strict";
const state = { job: null, timer: null };
const SCORES = [
  ["macro_f1", "macro-F1"], ["weighted_f1", "weighted-F1"], ["accuracy", "accuracy"],
  ["in_scope_fallback_rate", "in-scope fallback rate"], ["oos_precision", "out-of-scope precision"],
  ["oos_recall", "out-of-scope recall"], ["faq_end_to_end_accuracy", "FAQ accuracy"],
];

function isoDay(d) { return d.toISOString().slice(0, 10); }

async function loadGroups() {
  const from = new Date($("from").value + "T00:00:00Z");
  const to = new Date($("to").value + "T00:00:00Z");
  to.setUTCDate(to.getUTCDate() + 1);
  $("summary").textContent = "loading…";
  const q = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
  const data = await api("GET", `/desk/api/review/groups?${q}`);
  $("summary").textContent = `${data.turns} turn(s) in ${data.groups.length} group(s)`;
  const list = $("groups");
  list.replaceChildren();
  for (const g of data.groups) list.append(renderGroup(g));
  if (!data.groups.length) list.append(el("li", "Nothing to review in this period.", "meta"));
}

function renderGroup(g) {
  const li = el("li", undefined, "group");
  li.dataset.group = g.id;
  const head = el("div");
  head.append(el("span", String(g.count), "count"), el("span", g.label, "label"));
  li.append(head);
  const why = Object.entries(g.reasons).map(([k, n]) => `${k.replace(/_/g, " ")} ${n}`).join(", ");
  const ch = Object.keys(g.channels).join(", ");
  li.append(el("div", `predicted: ${g.intent || "—"} · ${why} · ${ch}`, "meta"));
  const ex = el("ul", undefined, "examples");
  for (const t of g.examples) ex.append(el("li", t));
  li.append(ex);

  const row = el("div", undefined, "decide");
  const intent = el("input"); intent.setAttribute("list", "intents"); intent.size = 18;
  intent.placeholder = "intent"; intent.setAttribute("aria-label", `intent for “${g.label}”`);
  if (g.intent && g.intent !== "nlu_fallback") intent.value = g.intent;
  const assign = el("button", "Add to intent"); assign.type = "button";
  const fresh = el("button", "New intent"); fresh.type = "button";
  const oos = el("button", "Out of scope"); oos.type = "button";
  const ignore = el("button", "Ignore"); ignore.type = "button";
  const note = el("span", "", "meta"); note.setAttribute("role", "status");
  const send = async (action) => {
    const body = { turn_ids: g.turn_ids, action };
    if (action === "assign" || action === "new_intent") {
      if (!intent.value.trim()) { note.textContent = "type an intent first"; return; }
      body.intent = intent.value.trim();
    }
    try {
      const res = await api("POST", "/desk/api/review/decisions", body);
      const r = res.result;
      let msg = `${res.decided} turn(s) decided`;
      if (r) {
        msg += `: ${r.added.length} example(s) added to ${r.intent} in ${r.file}`;
        if (r.duplicates.length) msg += `, ${r.duplicates.length} already there`;
        const c = Object.entries(r.conflicts);
        if (c.length) msg += `, ${c.length} left out (another intent has them: ${c.map(([t, i]) => `“${t}” → ${i}`).join("; ")})`;
      }
      $("decided").textContent = msg + (res.retrain_needed ? ". Retrain to use them." : ".");
      li.remove();
    } catch (e) { note.textContent = e.message; note.className = "meta bad"; }
  };
  assign.addEventListener("click", () => send("assign"));
  fresh.addEventListener("click", () => send("new_intent"));
  oos.addEventListener("click", () => send("out_of_scope"));
  ignore.addEventListener("click", () => send("ignore"));
  row.append(intent, assign, fresh, oos, ignore, note);
  li.append(row);
  return li;
}

function fmt(v) { return typeof v === "number" ? v.toFixed(3) : "—"; }

function renderJob(job) {
  state.job = job;
  const done = job.state !== "running";
  $("job-state").textContent = done ? `${job.state}${job.error ? ": " + job.error : ""}` : `running: ${job.step}…`;
  $("job-state").className = job.state === "failed" ? "meta bad" : job.state === "succeeded" ? "meta ok" : "meta";
  $("retrain").disabled = !done;
  const log = $("log");
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = job.lines.join("\n");
  if (atEnd) log.scrollTop = log.scrollHeight;
  const table = $("scores");
  if (job.before || job.after) {
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const [k, name] of SCORES) {
      const tr = el("tr");
      const b = job.before ? job.before[k] : undefined, a = job.after ? job.after[k] : undefined;
      const d = job.delta ? job.delta[k] : undefined;
      const dc = el("td", d === undefined ? "—" : (d > 0 ? "+" : "") + d.toFixed(3));
      const better = k === "in_scope_fallback_rate" ? d < 0 : d > 0;
      if (d) dc.className = better ? "ok" : "bad";
      tr.append(el("td", name), el("td", fmt(b)), el("td", fmt(a)), dc);
      body.append(tr);
    }
    table.hidden = false;
  }
  clearTimeout(state.timer);
  if (!done) state.timer = setTimeout(() => pollJob(job.id), 2000);
}

async function pollJob(id) {
  try { renderJob((await api("GET", `/desk/api/review/jobs/${id}`)).job); }
  catch (e) { $("job-state").textContent = e.message; state.timer = setTimeout(() => pollJob(id), 5000); }
}

async function start() {
  const me = await api("GET", "/desk/api/review/me");
  session.csrf = me.csrf_token;
  $("me").textContent = `${me.user.name} (${me.user.role})`;
  $("desk-link").hidden = me.user.role !== "admin";
  const today = new Date();
  const weekAgo = new Date(today.getTime() - 6 * 86400e3);
  $("from").value = isoDay(weekAgo); $("to").value = isoDay(today);
  $("period").addEventListener("submit", (ev) => { ev.preventDefault(); loadGroups().catch((e) => { $("summary").textContent = e.message; }); });
  $("retrain").addEventListener("click", async () => {
    try { renderJob((await api("POST", "/desk/api/review/retrain", {})).job); }
    catch (e) { $("job-state").textContent = e.message; }
  });
  $("logout").addEventListener("click", async () => {
    await api("POST", "/desk/api/logout").catch(() => {});
    location.href = "/desk/login";
  });
  const dl = $("intents");
  for (const i of (await api("GET", "/desk/api/review/intents")).intents) { const o = el("option"); o.value = i; dl.append(o); }
  try { renderJob((await api("GET", "/desk/api/review/jobs/latest")).job); } catch (e) { /* no job yet */ }
  await loadGroups();
}

start().catch((e) => { $("summary").textContent = e.message; });
