// The selfheal dashboard: plain JavaScript, no dependencies, works offline.
// The API calls carry the token in the Authorization header; only the event stream
// (EventSource cannot send headers) passes it as `?access_token=`.
// Every text from the server goes in with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "selfheal.token";
  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    source: null,
    phases: new Map(), // incident id -> [phase, ...] seen live
    history: new Map(), // incident id -> [step, ...] from its audit records (before the page opened)
    lastId: null, // the last event id seen, to resume from
    refreshTimer: null,
  };

  // ---- helpers ---------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function when(t) {
    if (!t) return "";
    const d = new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  }

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + state.token };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) askToken("The token was refused; enter a valid one.");
    if (!resp.ok) {
      let msg = resp.status + " " + resp.statusText;
      try { const j = await resp.json(); if (j && j.error) msg = j.error; } catch (_) { /* not JSON */ }
      throw new HttpError(resp.status, msg);
    }
    if (resp.status === 204) return null;
    const text = await resp.text();
    return text ? JSON.parse(text) : null;
  }

  function report(message, bad) {
    const out = $("controls-result");
    out.textContent = message;
    out.className = bad ? "bad" : "ok";
  }

  // ---- token -----------------------------------------------------------------
  function askToken(message) {
    $("token-error").textContent = message || "";
    const dialog = $("token-dialog");
    if (!dialog.open) dialog.showModal();
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    state.token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-dialog").close();
    start();
  });
  // Escape does not leave the page without a token: nothing would work.
  $("token-dialog").addEventListener("cancel", (e) => { if (!state.token) e.preventDefault(); });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    if (state.source) state.source.close();
    setConn("not connected", "muted");
    askToken();
  });

  function setConn(text, cls) {
    const c = $("conn-status");
    c.textContent = text;
    c.className = cls || "";
  }

  // ---- sections ----------------------------------------------------------------
  async function loadStatus() {
    const s = await api("GET", "api/status");
    const list = $("status-list");
    clear(list);
    const safety = s.safety || {};
    const rows = [
      ["Observed", s.observed], ["Dropped", s.dropped], ["Failed", s.failed],
      ["Store errors", s.store_errors], ["Open incidents", s.open_incidents],
      ["Pending approvals", s.pending_approvals],
      ["Dry run", s.dry_run ? "on" : "off"],
      ["Breaker", safety.breaker_open ? "OPEN (nothing runs until re-armed)" : "closed"],
      ["Storm", safety.storm_active || safety.storm ? "active" : "no"],
    ];
    for (const [k, v] of rows) {
      const key = k.toLowerCase().replace(/ /g, "-");
      list.append(el("dt", { text: k }), el("dd", { "data-testid": "status-" + key, text: v === undefined ? "?" : v }));
    }
    $("dry-run-all").checked = !!s.dry_run;
  }

  async function loadHealth() {
    const health = await api("GET", "api/health");
    const rows = $("health-rows");
    const targets = $("targets");
    clear(rows);
    clear(targets);
    for (const [target, h] of Object.entries(health || {}).sort()) {
      rows.append(el("tr", { "data-testid": "health-" + target },
        el("th", { scope: "row", text: target }),
        el("td", { "data-testid": "health-score-" + target, text: h.score }),
        el("td", { class: h.passed ? "ok" : "bad", text: h.passed ? "passes" : "fails" }),
        el("td", { class: "muted", text: h.detail })));
      targets.append(el("option", { value: target }));
    }
    if (!rows.firstChild) rows.append(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No target has a verifier yet." })));
  }

  function planView(plan) {
    // Every step; a step that runs a command shows the command exactly (program and
    // arguments as passed, quoted for reading), and its preview when that says more.
    const lines = (plan.steps || []).map((s, i) => {
      if (!s.command) return (i + 1) + ". " + s.preview;
      const cmd = [s.command.program].concat(s.command.args || []).map(quote).join(" ");
      return (i + 1) + ". $ " + cmd + (s.preview && s.preview !== cmd ? "\n   (" + s.preview + ")" : "");
    });
    return el("pre", { "data-testid": "plan-steps" }, lines.join("\n") || "(no steps)");
  }
  function quote(a) { return /^[A-Za-z0-9_\-./=:@%+,]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'"; }

  async function loadApprovals() {
    const approvals = await api("GET", "api/approvals");
    const list = $("approval-list");
    clear(list);
    $("approvals-empty").hidden = approvals.length > 0;
    for (const a of approvals) {
      const plan = a.plan || {};
      const reasonId = "reject-reason-" + a.id;
      const card = el("article", { class: "approval", "data-testid": "approval-" + a.id, "data-approval": a.id, "aria-label": "Approval for " + plan.strategy + " on " + plan.target },
        el("h3", { text: (plan.strategy || "?") + " on " + (plan.target || "?") }),
        el("p", {}, "Pattern: ", el("strong", { text: a.pattern || "none" }),
          " · confidence " + Number(a.confidence || 0).toFixed(2) +
          " · risk " + (plan.risk || "?") + (plan.reversible ? " · reversible" : " · not reversible")),
        el("p", { class: "muted", text: a.reason }),
        el("p", { class: "muted", text: "Incident " + a.incident + " · asked " + when(a.requested_at) }),
        planView(plan));
      const approve = el("button", { type: "button", class: "primary", "data-testid": "approve-" + a.id, text: "Approve" });
      const reason = el("input", { id: reasonId, "data-testid": reasonId, placeholder: "why not" });
      const reject = el("button", { type: "button", class: "danger", "data-testid": "reject-" + a.id, text: "Reject" });
      approve.addEventListener("click", () => decide(a.id, "approve", null, approve));
      reject.addEventListener("click", () => {
        if (!reason.value.trim()) { reason.focus(); report("Give a reason to reject.", true); return; }
        decide(a.id, "reject", reason.value.trim(), reject);
      });
      card.append(el("div", { class: "actions" }, approve,
        el("span", {}, el("label", { for: reasonId, text: "Reason " }), reason), reject));
      list.append(card);
    }
  }

  async function decide(id, verb, reason, button) {
    button.disabled = true;
    try {
      await api("POST", "api/approvals/" + id + "/" + verb, verb === "reject" ? { reason } : undefined);
      report(verb === "approve" ? "Approved; the plan runs." : "Rejected.");
    } catch (e) {
      report("Could not " + verb + ": " + e.message, true);
      button.disabled = false;
    }
    refreshSoon();
  }

  async function loadIncidents() {
    const filter = $("incident-filter").value;
    const page = await api("GET", "api/incidents?limit=50" + (filter ? "&status=" + encodeURIComponent(filter) : ""));
    const items = Array.isArray(page) ? page : (page.items || []);
    const rows = $("incident-rows");
    const missing = [];
    clear(rows);
    for (const i of items) {
      const phases = el("td", { "data-testid": "phases-" + i.id });
      const live = state.phases.get(i.id);
      if (live) {
        for (const p of live) phases.append(el("span", { class: "phase phase-" + p, "data-phase": p, text: p }));
      } else if (state.history.has(i.id)) {
        for (const p of state.history.get(i.id)) phases.append(el("span", { class: "phase phase-" + p, "data-step": p, text: p }));
      } else {
        missing.push(i.id);
      }
      rows.append(el("tr", { "data-testid": "incident-" + i.id, "data-status": i.status },
        el("td", { text: when(i.opened_at) }),
        el("td", { text: i.target }),
        el("td", { text: i.pattern || "—" }),
        el("td", { "data-testid": "incident-status-" + i.id, text: i.status }),
        phases));
    }
    if (!rows.firstChild) rows.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No incident." })));
    loadHistory(missing.slice(0, 20));
  }

  // What happened to incidents opened before the page: the steps of their audit trail.
  async function loadHistory(ids) {
    await Promise.all(ids.map(async (id) => {
      try {
        const d = await api("GET", "api/incidents/" + id);
        const steps = (d.audit || []).map((a) => String(a.event_type).replace(/^self_heal\./, ""));
        state.history.set(id, steps);
        const cell = document.querySelector('[data-testid="phases-' + id + '"]');
        if (cell && !state.phases.has(id)) {
          clear(cell);
          for (const p of steps) cell.append(el("span", { class: "phase phase-" + p, "data-step": p, text: p }));
        }
      } catch (_) { state.history.set(id, []); }
    }));
  }

  async function loadReports() {
    const r = await api("GET", "api/reports?hours=24");
    const box = $("frequency-charts");
    clear(box);
    const byPattern = new Map();
    const now = Date.now();
    for (const o of r.occurrences || []) {
      const slot = 23 - Math.floor((now - new Date(o.hour).getTime()) / 3600000);
      if (slot < 0 || slot > 23) continue;
      if (!byPattern.has(o.pattern)) byPattern.set(o.pattern, new Array(24).fill(0));
      byPattern.get(o.pattern)[slot] += Number(o.count ?? o.occurrences ?? o.incidents ?? 0);
    }
    if (byPattern.size === 0) { box.append(el("p", { class: "muted", text: "Nothing matched in the last 24 hours." })); return; }
    const NS = "http://www.w3.org/2000/svg";
    for (const [pattern, counts] of [...byPattern].sort()) {
      const max = Math.max(1, ...counts);
      const total = counts.reduce((a, b) => a + b, 0);
      const svg = document.createElementNS(NS, "svg");
      svg.setAttribute("viewBox", "0 0 240 28");
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", pattern + ": " + total + " in 24 hours, hourly " + counts.join(", "));
      counts.forEach((c, h) => {
        const height = Math.round((c / max) * 26);
        const rect = document.createElementNS(NS, "rect");
        rect.setAttribute("x", h * 10 + 1);
        rect.setAttribute("y", 28 - height);
        rect.setAttribute("width", 8);
        rect.setAttribute("height", height);
        const title = document.createElementNS(NS, "title");
        title.textContent = c + " (" + (23 - h) + "h ago)";
        rect.append(title);
        svg.append(rect);
      });
      box.append(el("div", { class: "chart", "data-testid": "chart-" + pattern },
        el("span", { class: "name", title: pattern, text: pattern + " (" + total + ")" }), svg));
    }
  }

  async function loadAudit() {
    const [v, records] = await Promise.all([api("GET", "api/audit/verify"), api("GET", "api/audit?limit=50")]);
    const chain = $("audit-chain");
    if (v.ok) {
      chain.textContent = "Chain intact: " + v.records + " records verified.";
      chain.className = "ok";
    } else {
      const b = v.first_broken || {};
      chain.textContent = "Chain BROKEN at seq " + b.seq + ": " + b.reason;
      chain.className = "bad";
    }
    chain.dataset.ok = String(!!v.ok);
    const rows = $("audit-rows");
    clear(rows);
    for (const a of records || []) {
      rows.append(el("tr", { "data-testid": "audit-" + a.seq },
        el("td", { text: a.seq }), el("td", { text: when(a.at) }), el("td", { text: a.event_type }),
        el("td", { text: a.actor }), el("td", { text: a.result })));
    }
  }

  const sections = { status: loadStatus, health: loadHealth, approvals: loadApprovals, incidents: loadIncidents, reports: loadReports, audit: loadAudit };

  async function refresh(which) {
    const names = which || Object.keys(sections);
    await Promise.all(names.map(async (n) => {
      try { await sections[n](); }
      catch (e) { if (!(e instanceof HttpError && e.status === 401)) console.warn("selfheal: " + n + ": " + e.message); }
    }));
  }

  // Events come in bursts: one refresh of what they touch, shortly after.
  function refreshSoon() {
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = null;
      refresh(["status", "health", "approvals", "incidents", "audit"]);
    }, 250);
  }

  // ---- live events -------------------------------------------------------------
  function onEvent(e) {
    let ev;
    try { ev = JSON.parse(e.data); } catch (_) { return; }
    if (e.lastEventId) state.lastId = e.lastEventId;
    const log = $("event-log");
    log.prepend(el("li", { "data-phase": ev.phase, "data-id": e.lastEventId },
      "#" + e.lastEventId + " " + when(ev.at) + " " + ev.phase + " " + ev.target + ": " + (ev.detail || "").split("\n")[0]));
    while (log.children.length > 200) log.removeChild(log.lastChild);
    if (ev.incident) {
      const list = state.phases.get(ev.incident) || [];
      list.push(ev.phase);
      state.phases.set(ev.incident, list);
      const cell = document.querySelector('[data-testid="phases-' + ev.incident + '"]');
      if (cell) cell.append(el("span", { class: "phase phase-" + ev.phase, "data-phase": ev.phase, text: ev.phase }));
    }
    refreshSoon();
  }

  const PHASES = ["detected", "matched", "diagnosed", "decided", "queued", "awaiting_approval", "approved", "rejected",
    "executing", "output", "verifying", "verified", "unverified", "interrupted", "waiting_for_target", "rolled_back",
    "resolved", "escalated", "failed", "closed", "held", "storm_tripped", "storm_cleared", "backed_off",
    "breaker_tripped", "breaker_rearmed", "silenced", "expired", "attributed", "self_caused", "dry_run",
    "mode_changed", "reminded", "quiet", "chain_broken", "released", "skipped", "fenced"];

  function connectEvents() {
    if (state.source) state.source.close();
    // The browser resends the last id it saw (Last-Event-ID) when it reconnects.
    let url = "events?access_token=" + encodeURIComponent(state.token);
    if (state.lastId !== null) url += "&last_event_id=" + encodeURIComponent(state.lastId);
    const src = new EventSource(url);
    state.source = src;
    src.onopen = () => setConn("live", "ok");
    src.onerror = () => setConn(src.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…", "warn");
    src.onmessage = onEvent;
    for (const p of PHASES) src.addEventListener(p, onEvent);
    src.addEventListener("gap", () => refresh()); // some events are gone: reload the state
  }

  // ---- controls ----------------------------------------------------------------
  $("dry-run-all").addEventListener("change", async (e) => {
    const on = e.target.checked;
    try {
      await api("PUT", "api/dry-run", { on });
      report(on ? "Dry run is on for everything." : "Dry run is off.");
    } catch (err) { e.target.checked = !on; report("Dry run unchanged: " + err.message, true); }
    refreshSoon();
  });
  $("silence-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const target = $("silence-target").value.trim();
    const minutes = parseInt($("silence-minutes").value, 10);
    try {
      await api("POST", "api/silences", { target, duration: minutes + "m", reason: $("silence-reason").value.trim() });
      report("Silenced " + target + " for " + minutes + " minutes.");
    } catch (err) { report("Not silenced: " + err.message, true); }
    refreshSoon();
  });
  $("breaker-rearm").addEventListener("click", async () => {
    try { await api("POST", "api/breaker/rearm"); report("Breaker re-armed."); }
    catch (err) { report("Not re-armed: " + err.message, true); }
    refreshSoon();
  });
  $("audit-verify").addEventListener("click", () => refresh(["audit"]));
  $("incident-filter").addEventListener("change", () => refresh(["incidents"]));

  // ---- start -------------------------------------------------------------------
  function start() {
    $("token-forget").hidden = false;
    setConn("connecting…", "muted");
    connectEvents();
    refresh();
  }

  if (state.token) start();
  else askToken();
})();
