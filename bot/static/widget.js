/* receptionist webchat widget: <script src="https://YOUR-SERVER/webchat/widget.js" async></script>
 * Optional, before the script: window.ReceptionistConfig = {server, language, title, greeting,
 * colors: {primary, text}, identity, voiceUrl}. voiceUrl (ws://…/media/browser) enables the
 * microphone button; without it the widget is text only. Licensed GPL-3.0-or-later.
 * All visitor, bot and agent text is rendered with DOM nodes (textContent), never innerHTML. */
(function () {
  "use strict";
  if (window.__receptionistWidget) return;
  window.__receptionistWidget = true;

  const script = document.currentScript;
  const cfg = Object.assign({}, window.ReceptionistConfig || {});
  const server = (cfg.server || (script ? new URL(script.src).origin : location.origin)).replace(/\/$/, "");
  const wsUrl = server.replace(/^http/, "ws") + "/webchat/ws";
  const lang = (cfg.language || document.documentElement.lang || navigator.language || "en").slice(0, 2).toLowerCase();

  const STRINGS = {
    en: { open: "Chat with us", title: "Reception", close: "Close chat", send: "Send", placeholder: "Type your message…",
          human: "Talk to a person", end: "End chat", typing: "typing…", connecting: "Connecting…",
          offline: "Connection lost. Reconnecting…", waiting: "Connecting you to a person.",
          position: "You are number {n} in line", wait: "about {m} min", withAgent: "You're chatting with {agent}.",
          callbackOffer: "The wait is long. Shall we call you back instead?", callbackNumber: "Your phone number",
          callbackSend: "Call me back", callbackDone: "We'll call you back.", ended: "The chat has ended.",
          you: "You", bot: "Assistant", sending: "sending…", log: "Conversation",
          micStart: "Talk to the assistant", micStop: "Stop talking", listening: "Listening…",
          micDenied: "The microphone is not available." },
    fr: { open: "Discuter avec nous", title: "Accueil", close: "Fermer", send: "Envoyer", placeholder: "Votre message…",
          human: "Parler à une personne", end: "Terminer", typing: "écrit…", connecting: "Connexion…",
          offline: "Connexion perdue. Reconnexion…", waiting: "Nous vous mettons en relation avec une personne.",
          position: "Vous êtes numéro {n} dans la file", wait: "environ {m} min", withAgent: "Vous discutez avec {agent}.",
          callbackOffer: "L'attente est longue. Voulez-vous être rappelé ?", callbackNumber: "Votre numéro",
          callbackSend: "Me rappeler", callbackDone: "Nous vous rappellerons.", ended: "La discussion est terminée.",
          you: "Vous", bot: "Assistant", sending: "envoi…", log: "Conversation",
          micStart: "Parler à l'assistant", micStop: "Arrêter", listening: "À l'écoute…",
          micDenied: "Le micro n'est pas disponible." },
    fa: { open: "گفتگو با ما", title: "پذیرش", close: "بستن", send: "ارسال", placeholder: "پیام خود را بنویسید…",
          human: "صحبت با یک نفر", end: "پایان گفتگو", typing: "در حال نوشتن…", connecting: "در حال اتصال…",
          offline: "اتصال قطع شد. اتصال دوباره…", waiting: "در حال وصل کردن شما به یک همکار.",
          position: "نفر {n} در صف هستید", wait: "حدود {m} دقیقه", withAgent: "شما با {agent} گفتگو می‌کنید.",
          callbackOffer: "انتظار طولانی است. با شما تماس بگیریم؟", callbackNumber: "شماره تلفن شما",
          callbackSend: "با من تماس بگیرید", callbackDone: "با شما تماس می‌گیریم.", ended: "گفتگو به پایان رسید.",
          you: "شما", bot: "دستیار", sending: "در حال ارسال…", log: "گفتگو",
          micStart: "با دستیار صحبت کنید", micStop: "پایان صحبت", listening: "در حال گوش دادن…",
          micDenied: "میکروفون در دسترس نیست." },
  };
  const RTL = ["ar", "fa", "he", "ur"];
  const T = Object.assign({}, STRINGS.en, STRINGS[lang] || {}, cfg.strings || {});
  const t = (key, vars) => String(T[key]).replace(/\{(\w+)\}/g, (_, k) => (vars && k in vars ? vars[k] : ""));

  const storeKey = "receptionist:" + server;
  const load = () => { try { return JSON.parse(localStorage.getItem(storeKey)) || {}; } catch (e) { return {}; } };
  const saved = load();
  const state = { cid: saved.cid || null, token: saved.token || null, outbox: saved.outbox || [],
                  seen: new Set(), titles: new Map(), ws: null, open: false, backoff: 500, pingTimer: null, ended: false };
  const persist = () => localStorage.setItem(storeKey, JSON.stringify({ cid: state.cid, token: state.token, outbox: state.outbox }));
  const newId = () => (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2));

  // -- DOM ---------------------------------------------------------------------------------
  const host = document.createElement("div");
  host.id = "receptionist-webchat";
  document.body.appendChild(host);
  const root = host.attachShadow({ mode: "open" });
  const primary = (cfg.colors && cfg.colors.primary) || "#12355b";
  const onPrimary = (cfg.colors && cfg.colors.text) || "#ffffff";
  const style = document.createElement("style");
  style.textContent = `
    :host { all: initial; font: 15px/1.45 system-ui, sans-serif; color: #1b1b1b; }
    .launcher { position: fixed; bottom: 20px; inset-inline-end: 20px; background: ${primary}; color: ${onPrimary};
      border: 0; border-radius: 24px; padding: 12px 18px; font: inherit; cursor: pointer; box-shadow: 0 2px 8px #0004; z-index: 2147483000; }
    .panel { position: fixed; bottom: 20px; inset-inline-end: 20px; width: 360px; height: 540px; max-height: calc(100vh - 40px);
      display: flex; flex-direction: column; background: #fff; border-radius: 10px; box-shadow: 0 4px 20px #0005; z-index: 2147483001; overflow: hidden; }
    .panel[hidden], .launcher[hidden], [hidden] { display: none !important; }
    header { background: ${primary}; color: ${onPrimary}; display: flex; align-items: center; gap: 6px; padding: 10px 12px; }
    header h2 { font-size: 16px; margin: 0; flex: 1; }
    header button { background: transparent; color: ${onPrimary}; border: 1px solid ${onPrimary}88; border-radius: 6px; font: inherit; font-size: 13px; padding: 3px 8px; cursor: pointer; }
    .log { flex: 1; overflow-y: auto; padding: 10px; background: #f7f7f8; }
    .msg { max-width: 85%; margin: 6px 0; padding: 7px 10px; border-radius: 10px; white-space: pre-wrap; overflow-wrap: anywhere; }
    .msg.user { margin-inline-start: auto; background: ${primary}; color: ${onPrimary}; }
    .msg.bot, .msg.agent { margin-inline-end: auto; background: #fff; border: 1px solid #dcdce0; }
    .msg.system { margin: 6px auto; background: none; color: #555; font-style: italic; text-align: center; }
    .msg .who { display: block; font-size: 12px; font-weight: 600; margin-bottom: 2px; }
    .msg time, .msg .state { display: block; font-size: 11px; opacity: .75; margin-top: 2px; }
    .msg a { color: inherit; }
    .replies { display: flex; flex-wrap: wrap; gap: 6px; padding: 0 10px 6px; background: #f7f7f8; }
    .replies button { border: 1px solid ${primary}; color: ${primary}; background: #fff; border-radius: 14px; padding: 4px 10px; font: inherit; font-size: 14px; cursor: pointer; }
    .status { font-size: 13px; padding: 4px 10px; background: #eef2f7; color: #12355b; min-height: 0; }
    .status:empty { display: none; }
    .typing { font-size: 12px; color: #555; padding: 0 12px 4px; background: #f7f7f8; }
    form.send { display: flex; gap: 6px; padding: 8px; border-top: 1px solid #e4e4e4; }
    textarea { flex: 1; resize: none; font: inherit; padding: 6px; border: 1px solid #bbb; border-radius: 6px; }
    form.send button.mic { background: #fff; color: ${primary}; border: 1px solid ${primary}; padding: 0 10px; }
    form.send button.mic[aria-pressed="true"] { background: #b00020; color: #fff; border-color: #b00020; }
    form.send button, form.callback button { background: ${primary}; color: ${onPrimary}; border: 0; border-radius: 6px; padding: 0 14px; font: inherit; cursor: pointer; }
    form.callback { display: flex; flex-wrap: wrap; gap: 6px; padding: 6px 10px; background: #fff8e6; }
    form.callback p { margin: 0; width: 100%; }
    form.callback input { flex: 1; font: inherit; padding: 4px; }
    :focus-visible { outline: 3px solid #f0a500; outline-offset: 1px; }
    @media (max-width: 480px) { .panel { inset: 0; width: auto; height: auto; max-height: none; border-radius: 0; } }
  `;
  root.appendChild(style);

  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const launcher = el("button", { class: "launcher", type: "button", "aria-expanded": "false", "aria-controls": "rcp-panel" }, t("open"));
  const panel = el("section", { class: "panel", id: "rcp-panel", role: "dialog", "aria-label": cfg.title || t("title"), hidden: "" });
  panel.dir = RTL.includes(lang) ? "rtl" : "ltr";
  panel.lang = lang;
  const header = el("header");
  const title = el("h2", {}, cfg.title || t("title"));
  const humanBtn = el("button", { type: "button" }, t("human"));
  const endBtn = el("button", { type: "button" }, t("end"));
  const closeBtn = el("button", { type: "button", "aria-label": t("close") }, "✕");
  header.append(title, humanBtn, endBtn, closeBtn);
  const status = el("div", { class: "status", role: "status", "aria-live": "polite" });
  const log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": t("log"), tabindex: "0" });
  const typing = el("div", { class: "typing", "aria-live": "polite", hidden: "" }, t("typing"));
  const replies = el("div", { class: "replies", role: "group", "aria-label": "Quick replies" });
  const callback = el("form", { class: "callback", hidden: "" });
  const cbText = el("p", {}, t("callbackOffer"));
  const cbInput = el("input", { type: "tel", autocomplete: "tel", "aria-label": t("callbackNumber"), placeholder: t("callbackNumber"), required: "" });
  callback.append(cbText, cbInput, el("button", { type: "submit" }, t("callbackSend")));
  const form = el("form", { class: "send" });
  const input = el("textarea", { rows: "2", "aria-label": t("placeholder"), placeholder: t("placeholder"), maxlength: "5000" });
  const micBtn = el("button", { type: "button", class: "mic", "aria-pressed": "false", "aria-label": t("micStart"), title: t("micStart") }, "🎤");
  form.append(input, el("button", { type: "submit" }, t("send")));
  if (cfg.voiceUrl && navigator.mediaDevices && window.AudioContext) form.insertBefore(micBtn, input);
  panel.append(header, status, log, typing, replies, callback, form);
  root.append(launcher, panel);

  // -- rendering ---------------------------------------------------------------------------
  const LINK = /\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)|(https?:\/\/[^\s<]+)|\*\*([^*]+)\*\*|\*([^*]+)\*/g;
  function richText(text) {
    const frag = document.createDocumentFragment();
    let last = 0, m;
    LINK.lastIndex = 0;
    while ((m = LINK.exec(text))) {
      frag.append(text.slice(last, m.index));
      if (m[1] || m[3]) {
        const a = el("a", { href: m[2] || m[3], target: "_blank", rel: "noopener noreferrer" }, m[1] || m[3]);
        frag.append(a);
      } else if (m[4]) frag.append(el("strong", {}, m[4]));
      else frag.append(el("em", {}, m[5]));
      last = LINK.lastIndex;
    }
    frag.append(text.slice(last));
    return frag;
  }
  function timeOf(iso) {
    const d = iso ? new Date(iso) : new Date();
    return el("time", { datetime: d.toISOString() }, d.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" }));
  }
  function bubble(role, text, who, iso) {
    const div = el("div", { class: "msg " + role, dir: "auto" });
    if (who) div.append(el("span", { class: "who" }, who));
    const body = el("span");
    body.append(richText(text || ""));
    div.append(body, timeOf(iso));
    return div;
  }
  function scroll() { log.scrollTop = log.scrollHeight; }
  function showReplies(buttons) {
    replies.replaceChildren();
    for (const b of buttons || []) {
      const btn = el("button", { type: "button" }, b.title);
      btn.addEventListener("click", () => { replies.replaceChildren(); sendText(b.payload, b.title); });
      replies.append(btn);
    }
  }
  function renderTurn(turn) {
    if (state.seen.has(turn.seq)) return;
    state.seen.add(turn.seq);
    if (turn.client_message_id) {
      const pending = log.querySelector(`[data-client-id="${CSS.escape(turn.client_message_id)}"]`);
      if (pending) { pending.dataset.seq = turn.seq; const s = pending.querySelector(".state"); if (s) s.remove(); return; }
    }
    if (!turn.text && !(turn.buttons && turn.buttons.length)) return;
    for (const b of turn.buttons || []) state.titles.set(b.payload, b.title);
    const who = turn.role === "agent" ? (turn.agent || "") : turn.role === "bot" ? t("bot") : "";
    // a quick reply is stored as its payload ("/opening_hours"); show the button's title
    const shown = turn.role === "user" && state.titles.has(turn.text) ? state.titles.get(turn.text) : turn.text;
    const div = bubble(turn.role, shown || "", who, turn.created_at);
    div.dataset.seq = turn.seq;
    const later = [...log.children].find((c) => c.dataset.seq && Number(c.dataset.seq) > turn.seq);
    log.insertBefore(div, later || null);
    if (turn.role !== "user") showReplies(turn.buttons);
    scroll();
  }
  function renderPending(item) {
    const div = bubble("user", item.display || item.text, "", null);
    div.dataset.clientId = item.id;
    div.append(el("span", { class: "state" }, t("sending")));
    log.append(div);
    scroll();
  }
  function setQueue(q) {
    callback.hidden = !(q.callback_offered && (q.status === "queued" || q.status === "offered"));
    if (q.status === "assigned") status.textContent = t("withAgent", { agent: q.agent || "" });
    else if (q.status === "callback_scheduled") status.textContent = t("callbackDone");
    else {
      const parts = [t("waiting")];
      if (q.position) parts.push(t("position", { n: q.position }));
      if (q.estimated_wait_s) parts.push(t("wait", { m: Math.max(1, Math.round(q.estimated_wait_s / 60)) }));
      status.textContent = parts.join(" · ");
    }
  }

  // -- connection --------------------------------------------------------------------------
  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) { state.ws.send(JSON.stringify(frame)); return true; }
    return false;
  }
  function flushOutbox() { for (const item of state.outbox) send({ type: "message", id: item.id, text: item.text }); }
  function sendText(text, display) {
    if (!text.trim() || state.ended) return;
    const item = { id: newId(), text, display };
    state.outbox.push(item);
    persist();
    renderPending(item);
    send({ type: "message", id: item.id, text });
  }
  function connect() {
    const ws = new WebSocket(wsUrl);
    state.ws = ws;
    if (!state.cid) status.textContent = t("connecting");
    ws.addEventListener("open", () => {
      state.backoff = 500;
      const hello = { type: "hello", v: 1, language: lang };
      if (state.cid && state.token) { hello.conversation_id = state.cid; hello.resume_token = state.token; }
      if (cfg.identity) hello.identity = cfg.identity;
      ws.send(JSON.stringify(hello));
      clearInterval(state.pingTimer);
      state.pingTimer = setInterval(() => send({ type: "ping" }), 20000);
    });
    ws.addEventListener("message", (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "welcome") {
        if (f.conversation_id !== state.cid) { log.replaceChildren(); state.seen.clear(); }
        state.cid = f.conversation_id; state.token = f.resume_token; persist();
        if (status.textContent === t("connecting") || status.textContent === t("offline")) status.textContent = "";
        for (const turn of f.history) renderTurn(turn);
        if (!f.history.length && cfg.greeting && !log.children.length) log.append(bubble("bot", cfg.greeting, t("bot")));
        for (const item of state.outbox) {
          if (!log.querySelector(`[data-client-id="${CSS.escape(item.id)}"]`)) renderPending(item);
        }
        flushOutbox();
      } else if (f.type === "turn") renderTurn(f.turn);
      else if (f.type === "ack") {
        state.outbox = state.outbox.filter((i) => i.id !== f.id); persist();
        const pending = log.querySelector(`[data-client-id="${CSS.escape(f.id)}"] .state`);
        if (pending) pending.remove();
      } else if (f.type === "typing") typing.hidden = !f.on;
      else if (f.type === "queue") setQueue(f);
      else if (f.type === "agent_joined") { status.textContent = t("withAgent", { agent: f.agent }); callback.hidden = true; }
      else if (f.type === "closed") endChat();
      else if (f.type === "error") {
        if (f.id) { state.outbox = state.outbox.filter((i) => i.id !== f.id); persist(); }
        status.textContent = f.message;
      }
    });
    ws.addEventListener("close", (ev) => {
      clearInterval(state.pingTimer);
      typing.hidden = true;
      if (state.ended || ev.code === 4401) return;
      status.textContent = t("offline");
      setTimeout(connect, state.backoff);
      state.backoff = Math.min(5000, state.backoff * 2);
    });
  }
  function endChat() {
    state.ended = true;
    status.textContent = t("ended");
    callback.hidden = true; replies.replaceChildren();
    state.cid = null; state.token = null; state.outbox = []; persist();
    if (state.ws) state.ws.close();
    setTimeout(() => { state.ended = false; state.seen.clear(); connect(); }, 1500);
  }

  // -- events ------------------------------------------------------------------------------
  function openPanel() {
    state.open = true; panel.hidden = false; launcher.hidden = true; launcher.setAttribute("aria-expanded", "true");
    if (!state.ws) connect();
    input.focus();
  }
  function closePanel() {
    state.open = false; panel.hidden = true; launcher.hidden = false; launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }
  launcher.addEventListener("click", openPanel);
  closeBtn.addEventListener("click", closePanel);
  panel.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closePanel(); });
  humanBtn.addEventListener("click", () => send({ type: "handoff" }));
  endBtn.addEventListener("click", () => send({ type: "close" }));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); const v = input.value; input.value = ""; sendText(v); input.focus(); });
  input.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); } });
  callback.addEventListener("submit", (ev) => { ev.preventDefault(); send({ type: "callback", number: cbInput.value.trim() }); });

  // -- voice (optional): microphone → media server, the bot's speech played back -----------
  const voice = { ws: null, ctx: null, stream: null, node: null, sources: [], playAt: 0, bytesIn: 0, bytesOut: 0 };
  window.__receptionistVoice = voice; // read by the browser tests
  function stopPlayback() { for (const s of voice.sources) { try { s.stop(); } catch (e) { /* already ended */ } } voice.sources = []; voice.playAt = 0; }
  function playPcm(buf) {
    const pcm = new Int16Array(buf);
    if (!pcm.length || !voice.ctx) return;
    voice.bytesIn += buf.byteLength;
    const audio = voice.ctx.createBuffer(1, pcm.length, 16000);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = voice.ctx.createBufferSource();
    src.buffer = audio; src.connect(voice.ctx.destination);
    voice.playAt = Math.max(voice.playAt, voice.ctx.currentTime + 0.05);
    src.start(voice.playAt); voice.playAt += audio.duration;
    voice.sources.push(src);
    src.onended = () => { voice.sources = voice.sources.filter((x) => x !== src); };
  }
  function stopVoice() {
    micBtn.setAttribute("aria-pressed", "false"); micBtn.setAttribute("aria-label", t("micStart"));
    if (voice.node) { voice.node.disconnect(); voice.node = null; }
    if (voice.stream) { voice.stream.getTracks().forEach((tr) => tr.stop()); voice.stream = null; }
    if (voice.ws) { try { voice.ws.send(JSON.stringify({ type: "stop" })); } catch (e) { /* closed */ } voice.ws.close(); voice.ws = null; }
    if (status.textContent === t("listening")) status.textContent = "";
  }
  async function startVoice() {
    try {
      voice.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    } catch (e) { status.textContent = t("micDenied"); return; }
    voice.ctx = voice.ctx || new AudioContext({ sampleRate: 16000 });
    await voice.ctx.resume();
    const ws = new WebSocket(cfg.voiceUrl);
    ws.binaryType = "arraybuffer";
    voice.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "start", version: 1, sample_rate: voice.ctx.sampleRate, encoding: "s16le", language: lang, conversation_id: state.cid || undefined }));
      const src = voice.ctx.createMediaStreamSource(voice.stream);
      const node = voice.ctx.createScriptProcessor(2048, 1, 1);
      node.onaudioprocess = (ev) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        const f = ev.inputBuffer.getChannelData(0);
        const out = new Int16Array(f.length);
        for (let i = 0; i < f.length; i++) out[i] = Math.max(-32768, Math.min(32767, f[i] * 32768));
        ws.send(out.buffer); voice.bytesOut += out.byteLength;
      };
      src.connect(node); node.connect(voice.ctx.destination);
      voice.node = node;
      micBtn.setAttribute("aria-pressed", "true"); micBtn.setAttribute("aria-label", t("micStop"));
      status.textContent = t("listening");
    });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") { playPcm(ev.data); return; }
      let f; try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "clear") stopPlayback();
      else if (f.type === "transcript" && !f.final) status.textContent = "… " + f.text;
      else if (f.type === "transcript" && f.final) status.textContent = t("listening");
      else if (f.type === "error") status.textContent = f.message;
      else if (f.type === "end") stopVoice();
    });
    ws.addEventListener("close", () => { if (voice.ws === ws) stopVoice(); });
  }
  micBtn.addEventListener("click", () => { if (voice.ws) stopVoice(); else startVoice(); });
  if (state.cid || cfg.open) openPanel();
})();
