// tidegate console (CONTRACT section 8a). No build step, no outside fetches: every
// number comes from this supervisor's REST API, sent the bearer token when one is set.
// Data is put on the page with textContent only, never parsed as HTML.
"use strict";
(function () {
  const POLL_MS = 1000;
  const KEEP_MS = 5 * 60 * 1000; // history for events/s and the sparkline
  const RATE_MS = 5000; // events/s is averaged over this window
  const TOKEN_KEY = "tidegate.token";
  const $ = (id) => document.getElementById(id);
  const hist = new Map(); // name -> [[t, events_out], ...]
  const errs = new Map(); // name -> {seen: Map(key -> text), list: [{at, text}]}
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let pipes = [];
  let timer = null;
  let authed = false;

  async function api(method, path) {
    const headers = { accept: "application/json" };
    if (token) headers.authorization = "Bearer " + token;
    const r = await fetch(path, { method, headers, cache: "no-store", credentials: "omit" });
    if (r.status === 401) { signedOut(token ? "That token was refused." : ""); throw new Error("unauthorized"); }
    const body = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) throw new Error((body && body.error && body.error.message) || "HTTP " + r.status);
    return body;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmtNum(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); }
  function fmtRate(r) { return r === null ? "—" : r >= 100 ? Math.round(r).toLocaleString("en-US") : r.toFixed(1); }
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
    if (ms < 7200000) return (ms / 60000).toFixed(1) + " min";
    return (ms / 3600000).toFixed(1) + " h";
  }
  function fmtBytes(b) {
    if (b === null || b === undefined) return "—";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i ? b.toFixed(1) : b) + " " + u[i];
  }

  function record(p, now) {
    const h = hist.get(p.name) || [];
    h.push([now, p.ops.events_out || 0]);
    while (h.length && now - h[0][0] > KEEP_MS) h.shift();
    hist.set(p.name, h);
    const e = errs.get(p.name) || { seen: new Map(), list: [] };
    const cur = new Map();
    if (p.ops.last_error) cur.set("pipeline", p.ops.last_error);
    for (const [k, v] of Object.entries(p.ops.sink_errors || {})) if (v) cur.set("sink " + k, v);
    for (const [k, v] of Object.entries((p.ops.source || {}).errors || {})) if (v) cur.set("source " + k, v);
    for (const [k, v] of cur) {
      const text = k + ": " + (typeof v === "string" ? v : JSON.stringify(v));
      if (e.seen.get(k) !== text) e.list.unshift({ at: new Date(now), text });
    }
    e.seen = new Map([...cur].map(([k, v]) => [k, k + ": " + (typeof v === "string" ? v : JSON.stringify(v))]));
    e.list.length = Math.min(e.list.length, 20);
    errs.set(p.name, e);
  }
  function rate(name) {
    const h = hist.get(name) || [];
    if (h.length < 2) return null;
    const last = h[h.length - 1];
    let first = h[0];
    for (const s of h) { if (last[0] - s[0] <= RATE_MS) { first = s; break; } }
    if (first === last) first = h[h.length - 2];
    return Math.max(0, last[1] - first[1]) / ((last[0] - first[0]) / 1000);
  }
  function spark(name) {
    const h = hist.get(name) || [];
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 120 24");
    const rates = [];
    for (let i = 1; i < h.length; i++) {
      const dt = (h[i][0] - h[i - 1][0]) / 1000;
      rates.push(dt > 0 ? Math.max(0, h[i][1] - h[i - 1][1]) / dt : 0);
    }
    if (rates.length < 2) return svg;
    const max = Math.max(...rates, 1) * 1.1;
    const pts = rates.map((r, i) => ((i / (rates.length - 1)) * 120).toFixed(1) + "," + (22 - (r / max) * 20).toFixed(1));
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
    return svg;
  }
  function retained(src) {
    src = src || {};
    const v = src.retained_wal_bytes !== undefined ? src.retained_wal_bytes : src.behind_bytes;
    let text = v === undefined ? "—" : fmtBytes(v);
    if (src.wal_status) text += " (" + src.wal_status + ")";
    return text;
  }
  function errorText(p) {
    const e = errs.get(p.name);
    const n = e ? e.seen.size : 0;
    return n ? [...e.seen.values()].join("; ") : "";
  }
  function statusBadge(s) { const b = el("span", s, "status"); b.dataset.status = s; return b; }

  function renderOverview() {
    const body = $("pipes").tBodies[0];
    body.replaceChildren();
    for (const p of pipes) {
      const tr = el("tr");
      tr.dataset.name = p.name;
      const a = el("a", p.name);
      a.href = "#/p/" + encodeURIComponent(p.name);
      const name = el("td"); name.appendChild(a); tr.appendChild(name);
      const st = el("td"); st.appendChild(statusBadge(p.status)); st.dataset.col = "status"; tr.appendChild(st);
      const cells = [["rate", fmtRate(rate(p.name)), "num"], ["spark", null, ""],
        ["events_out", fmtNum(p.ops.events_out), "num"], ["lag", fmtMs(p.ops.lag_ms), "num"],
        ["retained", retained(p.ops.source), "num"], ["errors", errorText(p), "error"]];
      for (const [col, text, cls] of cells) {
        const td = el("td", text, cls);
        td.dataset.col = col;
        if (col === "spark") td.appendChild(spark(p.name));
        if (col === "errors") td.title = text;
        tr.appendChild(td);
      }
      if (p.ops.dlq) {
        const n = Object.values(p.ops.dlq).reduce((a, b) => a + b, 0);
        if (n) tr.lastChild.textContent = (tr.lastChild.textContent ? tr.lastChild.textContent + "; " : "") + "DLQ " + n;
      }
      body.appendChild(tr);
    }
    $("count").textContent = "(" + pipes.length + ")";
    $("empty").hidden = pipes.length > 0;
  }

  function renderDetail(name) {
    const p = pipes.find((x) => x.name === name);
    $("d-name").textContent = name;
    const st = $("d-status");
    st.textContent = p ? p.status : "not found";
    st.dataset.status = p ? p.status : "failed";
    if (!p) return;
    const o = p.ops;
    const stats = [["events/s", fmtRate(rate(name))], ["events in", fmtNum(o.events_in)], ["events out", fmtNum(o.events_out)],
      ["batches", fmtNum(o.batches)], ["in flight", fmtNum(o.inflight)], ["lag", fmtMs(o.lag_ms)],
      ["retained WAL / binlog", retained(o.source)], ["pid", o.pid === null ? "—" : o.pid], ["uptime", fmtMs((o.uptime_s || 0) * 1000)],
      ["restarts", fmtNum(o.restarts)], ["last error", o.last_error || "—"]];
    if (o.owner) stats.push(["owner", typeof o.owner === "string" ? o.owner : JSON.stringify(o.owner)]);
    if (o.dlq) stats.push(["DLQ", JSON.stringify(o.dlq)]);
    $("d-stats").replaceChildren(...stats.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
    const sinks = new Set([...Object.keys(o.checkpoints || {}), ...Object.keys(o.sink_errors || {}), ...Object.keys(o.sink_gaps || {})]);
    ((p.spec.spec || {}).sinks || []).forEach((s) => s.config && s.config.id && sinks.add(s.config.id));
    const body = $("d-sinks").tBodies[0];
    body.replaceChildren();
    for (const id of sinks) {
      const ck = (o.checkpoints || {})[id];
      const age = ck && ck.updated_at ? Date.now() - Date.parse(ck.updated_at) : null;
      const err = (o.sink_errors || {})[id];
      const gap = (o.sink_gaps || {})[id];
      const tr = el("tr");
      tr.dataset.sink = id;
      const lag = (o.sink_lag || {})[id];
      for (const t of [id, ck ? ck.position : "—", ck ? ck.updated_at : "—", fmtMs(age),
        lag ? fmtNum(lag.events) : "—", lag ? fmtMs(lag.ms) : "—",
        err ? (typeof err === "string" ? err : JSON.stringify(err)) : "", gap ? JSON.stringify(gap) : ""]) tr.appendChild(el("td", t));
      body.appendChild(tr);
    }
    $("d-source").textContent = JSON.stringify(o.source || {}, null, 2);
    const e = errs.get(name);
    $("d-errors").replaceChildren(...(e && e.list.length ? e.list.map((x) => el("li", x.at.toISOString() + "  " + x.text))
      : [el("li", "none seen since this page opened", "muted")]));
    $("d-spec").textContent = JSON.stringify(p.spec, null, 2);
  }

  function route() { const m = location.hash.match(/^#\/p\/(.+)$/); return m ? decodeURIComponent(m[1]) : null; }
  function render() {
    if (!authed) return;
    const name = route();
    $("overview").hidden = name !== null;
    $("detail").hidden = name === null;
    if (name === null) renderOverview(); else renderDetail(name);
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const list = await api("GET", "/pipelines");
      authed = true;
      $("signin").hidden = true;
      $("signout").hidden = !token;
      const now = Date.now();
      pipes = list;
      for (const p of pipes) record(p, now);
      $("conn").dataset.state = "ok";
      $("conn").textContent = "live · updated " + new Date(now).toLocaleTimeString();
      render();
    } catch (err) {
      if (!authed) return; // signed out: no polling until a token is given
      $("conn").dataset.state = "error";
      $("conn").textContent = "cannot reach the API: " + err.message;
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function signedOut(msg) {
    authed = false;
    clearTimeout(timer);
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    pipes = []; hist.clear(); errs.clear();
    for (const id of ["overview", "detail"]) $(id).hidden = true;
    $("pipes").tBodies[0].replaceChildren();
    $("d-sinks").tBodies[0].replaceChildren();
    for (const id of ["d-stats", "d-source", "d-spec", "d-errors", "d-name", "d-status"]) $(id).replaceChildren();
    $("signout").hidden = true;
    $("conn").textContent = "";
    $("signin").hidden = false;
    $("signin-error").textContent = msg || "";
    $("token").focus();
  }

  async function act(op) {
    const name = route();
    if (!name) return;
    const buttons = document.querySelectorAll(".actions button");
    buttons.forEach((b) => (b.disabled = true));
    $("d-result").textContent = op + "…";
    try {
      const p = await api("POST", "/pipelines/" + encodeURIComponent(name) + "/" + op);
      $("d-result").textContent = op + ": " + p.status;
    } catch (err) {
      $("d-result").textContent = op + " failed: " + err.message;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      poll();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      sessionStorage.setItem(TOKEN_KEY, token);
      poll();
    });
    $("signout").addEventListener("click", () => signedOut(""));
    document.querySelectorAll(".actions button").forEach((b) => b.addEventListener("click", () => act(b.dataset.op)));
    window.addEventListener("hashchange", render);
    poll();
  });
})();
