// The agent & supervisor desk ($, api, el and session come from common.js). Plain JavaScript;
// all user text goes through textContent.
"use strict";
const state = { me: null, current: null, tickets: new Map() };

function fmtWait(s) { return s < 60 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`; }

function renderTickets() {
  const offers = $("offers"), mine = $("mine");
  offers.replaceChildren(); mine.replaceChildren();
  for (const t of state.tickets.values()) {
    const li = el("li", undefined, "ticket");
    li.dataset.ticket = t.id;
    li.append(el("div", `#${t.id} · ${t.channel} · ${t.skill} · ${t.reason.replace(/_/g, " ")}`));
    if (t.summary) li.append(el("div", t.summary, "meta"));
    if (t.callback_number) li.append(el("div", `Call back: ${t.callback_number}`));
    if (t.status === "offered" && t.offered_to === state.me.id) {
      const accept = el("button", "Accept"); accept.type = "button";
      accept.addEventListener("click", () => acceptTicket(t.id));
      const decline = el("button", "Decline"); decline.type = "button";
      decline.addEventListener("click", () => api("POST", `/desk/api/tickets/${t.id}/decline`).then(loadTickets));
      li.append(accept, decline);
      offers.append(li);
    } else if (t.status === "assigned" && t.agent_id === state.me.id) {
      const open = el("button", t.id === state.current ? "Open (current)" : "Open"); open.type = "button";
      open.addEventListener("click", () => openTicket(t.id));
      li.append(open);
      mine.append(li);
    }
  }
  if (!offers.children.length) offers.append(el("li", "No offers.", "meta"));
  if (!mine.children.length) mine.append(el("li", "None.", "meta"));
}

async function loadTickets() {
  const data = await api("GET", "/desk/api/tickets");
  state.tickets = new Map(data.tickets.map((t) => [t.id, t]));
  renderTickets();
}

async function acceptTicket(id) {
  try { await api("POST", `/desk/api/tickets/${id}/accept`); }
  catch (e) { alert(e.message); }
  await loadTickets();
  await openTicket(id);
}

function addTurn(turn) {
  const who = turn.role === "agent" ? ((turn.payload && turn.payload.agent) || "agent") : turn.role;
  const div = el("div", undefined, `turn ${turn.role}`);
  div.dataset.seq = turn.seq;
  const handoff = turn.payload && turn.payload.custom && turn.payload.custom.handoff;
  const text = turn.text || (handoff ? `→ handed off (${(handoff.reason || "").replace(/_/g, " ")})` : "");
  if (!text && !(turn.payload && turn.payload.buttons)) return;
  div.append(el("span", who, "who"), el("span", text));
  if (turn.payload && turn.payload.buttons) {
    div.append(el("span", ` [${turn.payload.buttons.map((b) => b.title).join(" | ")}]`, "meta"));
  }
  if (turn.intent) div.append(el("span", ` (${turn.intent} ${Math.round((turn.intent_confidence || 0) * 100)}%)`, "meta"));
  $("transcript").append(div);
  $("transcript").scrollTop = $("transcript").scrollHeight;
}

async function openTicket(id) {
  const data = await api("GET", `/desk/api/tickets/${id}`);
  state.current = id;
  $("summary").textContent = (data.ticket.callback_number ? `Call back ${data.ticket.callback_number}. ` : "") +
                             (data.ticket.summary || "");
  $("transcript").replaceChildren();
  for (const t of data.conversation.transcript) addTurn(t);
  const c = data.conversation.customer, ctx = $("context");
  ctx.replaceChildren(el("div", `Name: ${c.name || "unknown"}`), el("div", `Phone: ${c.phone || "—"}`),
                      el("div", `Email: ${c.email || "—"}`), el("div", `Channel: ${data.conversation.channel}`));
  if (data.ticket.slots) for (const [k, v] of Object.entries(data.ticket.slots)) ctx.append(el("div", `${k}: ${v}`));
  ctx.append(el("div", `Earlier conversations: ${data.history.length}`));
  for (const h of data.history) ctx.append(el("div", `· ${h.created_at.slice(0, 16)} ${h.channel} (${h.status})`));
  if ((data.conversation.events || []).some((e) => e.type === "voice.recording")) {
    const player = document.createElement("audio");
    player.controls = true; player.preload = "none"; player.id = "recording";
    player.src = `/desk/api/recordings/${encodeURIComponent(data.conversation.id)}`;
    player.setAttribute("aria-label", "call recording");
    ctx.append(el("div", "Recording:"), player);
  }
  const own = data.ticket.status === "assigned" && data.ticket.agent_id === state.me.id;
  $("reply").hidden = !own; $("actions").hidden = !own;
  if (callAudio.ticket !== id) hangUpAudio();
  callAudio.grant = data.agent_audio || null; callAudio.grantTicket = id;
  $("call-audio").hidden = !callAudio.grant && !callAudio.ws;
  renderTickets();
}

// -- taking a phone call's audio: caller → speakers, microphone → caller (media server) -----
const callAudio = { ws: null, ctx: null, stream: null, node: null, grant: null, grantTicket: null,
                    ticket: null, playAt: 0, pending: [], received: 0, loud: 0, sent: 0 };
window.__agentAudio = callAudio; // frame counters (received, loud: speech, sent) for the tests
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

function playCaller(buf) {
  const pcm = new Int16Array(buf);
  if (!pcm.length || !callAudio.ctx) return;
  callAudio.received += 1;
  const audio = callAudio.ctx.createBuffer(1, pcm.length, 16000);
  const ch = audio.getChannelData(0);
  let energy = 0;
  for (let i = 0; i < pcm.length; i++) { ch[i] = pcm[i] / 32768; energy += ch[i] * ch[i]; }
  if (Math.sqrt(energy / pcm.length) > 0.02) callAudio.loud += 1;
  const src = callAudio.ctx.createBufferSource();
  src.buffer = audio; src.connect(callAudio.ctx.destination);
  const now = callAudio.ctx.currentTime;
  if (callAudio.playAt < now || callAudio.playAt > now + 1) callAudio.playAt = now + 0.08; // re-sync
  src.start(callAudio.playAt); callAudio.playAt += audio.duration;
}

function sendMic(f) {
  const ws = callAudio.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  for (let i = 0; i < f.length; i++) callAudio.pending.push(Math.max(-32768, Math.min(32767, f[i] * 32768)));
  while (callAudio.pending.length >= FRAME_SAMPLES) {
    ws.send(Int16Array.from(callAudio.pending.splice(0, FRAME_SAMPLES)).buffer);
    callAudio.sent += 1;
  }
}

function hangUpAudio(note) {
  if (callAudio.node) { callAudio.node.disconnect(); callAudio.node = null; }
  if (callAudio.stream) { callAudio.stream.getTracks().forEach((tr) => tr.stop()); callAudio.stream = null; }
  const ws = callAudio.ws; callAudio.ws = null; callAudio.ticket = null; callAudio.pending = [];
  if (ws) { try { ws.send(JSON.stringify({ type: "end" })); } catch (e) { /* closed */ } ws.close(); }
  $("take-call").hidden = false; $("hangup-audio").hidden = true;
  $("caption").textContent = "";
  if (note !== undefined) $("call-status").textContent = note;
  $("call-audio").hidden = !callAudio.grant;
}

async function takeCall() {
  if (!callAudio.grant || callAudio.ws) return;
  const ticket = callAudio.grantTicket;
  const data = await api("GET", `/desk/api/tickets/${ticket}`).catch(() => null); // a fresh token
  const grant = (data && data.agent_audio) || null;
  if (!grant) { $("call-status").textContent = "This call cannot be taken."; return; }
  try {
    callAudio.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
  } catch (e) { $("call-status").textContent = "Microphone not available."; return; }
  callAudio.ctx = callAudio.ctx || new AudioContext({ sampleRate: 16000 });
  await callAudio.ctx.resume();
  const ws = new WebSocket(`${grant.url}?token=${encodeURIComponent(grant.token)}`);
  ws.binaryType = "arraybuffer";
  callAudio.ws = ws; callAudio.ticket = ticket;
  $("take-call").hidden = true; $("hangup-audio").hidden = false;
  $("call-status").textContent = "connecting…";
  ws.addEventListener("open", () => {
    const src = callAudio.ctx.createMediaStreamSource(callAudio.stream);
    const node = callAudio.ctx.createScriptProcessor(1024, 1, 1);
    node.onaudioprocess = (ev) => sendMic(ev.inputBuffer.getChannelData(0));
    src.connect(node); node.connect(callAudio.ctx.destination);
    callAudio.node = node;
  });
  ws.addEventListener("message", (ev) => {
    if (typeof ev.data !== "string") { playCaller(ev.data); return; }
    let f; try { f = JSON.parse(ev.data); } catch (e) { return; }
    if (f.type === "hello") $("call-status").textContent = "On the call.";
    else if (f.type === "caption") $("caption").textContent = f.final ? "" : `… ${f.text}`;
    else if (f.type === "end") hangUpAudio("The caller hung up.");
    else if (f.type === "error") $("call-status").textContent = f.message;
  });
  ws.addEventListener("close", () => { if (callAudio.ws === ws) hangUpAudio("Audio disconnected."); });
}

$("reply").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text || state.current === null) return;
  try { await api("POST", `/desk/api/tickets/${state.current}/messages`, { text }); $("text").value = ""; }
  catch (e) { alert(e.message); }
});
$("take-call").addEventListener("click", () => takeCall().catch((e) => { $("call-status").textContent = e.message; }));
$("hangup-audio").addEventListener("click", () => hangUpAudio("You left the call's audio; you can still type."));
$("canned").addEventListener("change", () => {
  if ($("canned").value) $("text").value = $("canned").value.replace("{agent}", state.me.name);
  $("canned").value = ""; $("text").focus();
});
$("transfer").addEventListener("click", async () => {
  const skill = $("transfer-skill").value.trim();
  if (!skill) return;
  await api("POST", `/desk/api/tickets/${state.current}/transfer`, { skill }).catch((e) => alert(e.message));
  state.current = null; $("reply").hidden = true; $("actions").hidden = true;
  callAudio.grant = null; hangUpAudio(); loadTickets();
});
$("resolve").addEventListener("click", async () => {
  await api("POST", `/desk/api/tickets/${state.current}/resolve`,
            { disposition: $("disposition").value, hand_back: $("hand-back").checked }).catch((e) => alert(e.message));
  state.current = null; $("reply").hidden = true; $("actions").hidden = true;
  callAudio.grant = null; hangUpAudio();
  $("summary").textContent = "Resolved."; loadTickets();
});
$("presence").addEventListener("change", () => api("POST", "/desk/api/presence", { presence: $("presence").value }));
$("logout").addEventListener("click", async () => { await api("POST", "/desk/api/logout"); location.href = "/desk/login"; });

async function loadOverview() {
  const o = await api("GET", "/desk/api/overview");
  $("queues").replaceChildren(...o.queues.map((q) => {
    const tr = el("tr"); tr.append(el("td", q.skill), el("td", String(q.waiting)), el("td", fmtWait(q.longest_wait_s))); return tr; }));
  $("agents").replaceChildren(...o.agents.map((a) => {
    const tr = el("tr"); tr.append(el("td", a.name), el("td", a.presence), el("td", String(a.open))); return tr; }));
  const names = new Map(o.agents.map((a) => [a.id, a.name]));
  $("live-tickets").replaceChildren(...[...o.waiting, ...o.active].map((t) => {
    const owner = t.agent_id || t.offered_to;
    const li = el("li", `#${t.id} ${t.status.replace(/_/g, " ")} · ${t.skill} · priority ${t.priority}` +
                        (owner ? ` · ${names.get(owner) || "agent " + owner}` : ""), "ticket");
    li.dataset.ticket = t.id;
    const view = el("button", "Read"); view.type = "button";
    view.addEventListener("click", () => openTicket(t.id));
    const pick = el("select");
    pick.setAttribute("aria-label", `Reassign ticket ${t.id} to`);
    const none = el("option", "reassign to…"); none.value = ""; pick.append(none);
    for (const a of o.agents) { const opt = el("option", a.name); opt.value = a.id; pick.append(opt); }
    pick.addEventListener("change", async () => {
      if (!pick.value) return;
      await api("POST", `/desk/api/tickets/${t.id}/reassign`, { agent_id: Number(pick.value) })
        .catch((e) => alert(e.message));
      loadOverview();
    });
    li.append(view, pick); return li; }));
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/desk/ws`);
  ws.onopen = () => { $("live").textContent = "live"; loadTickets(); if (isLead()) loadOverview(); };
  ws.onclose = () => { $("live").textContent = "reconnecting…"; setTimeout(connect, 1500); };
  ws.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    if (ev.type === "offer") { state.tickets.set(ev.ticket.id, ev.ticket); renderTickets(); }
    else if (ev.type === "offer_revoked") { state.tickets.delete(ev.ticket_id); renderTickets(); }
    else if (ev.type === "turn") {
      const t = [...state.tickets.values()].find((x) => x.conversation_id === ev.conversation_id);
      if (t && t.id === state.current) addTurn(ev.turn);
    } else if (ev.type === "overview_changed" && isLead()) loadOverview();
    else if (ev.type === "presence") { $("presence").value = ev.presence; $("presence-note").textContent = ""; }
  };
}

function isLead() { return state.me && (state.me.role === "supervisor" || state.me.role === "admin"); }

(async () => {
  const me = await api("GET", "/desk/api/me");
  state.me = me.user; session.csrf = me.csrf_token;
  $("me").textContent = `${me.user.name} (${me.user.role})`;
  $("presence").value = me.presence === "wrap_up" ? "available" : me.presence;
  if (me.presence === "wrap_up") $("presence-note").textContent = "wrap-up";
  $("supervisor").hidden = !isLead();
  const canned = await api("GET", "/desk/api/canned");
  for (const c of canned.responses) { const o = el("option", c.slice(0, 60)); o.value = c; $("canned").append(o); }
  connect();
})();
