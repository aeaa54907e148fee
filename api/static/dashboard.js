// The leaders' cockpit: polls /api/dashboard/summary and redraws in place.
// No library and no asset from the internet: plain DOM and SVG.
"use strict";
const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const yuan = (fen) => (fen / 100).toLocaleString("zh-CN",
  { minimumFractionDigits: 2, maximumFractionDigits: 2 });

function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("cityunion-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("cityunion-token");
}

function el(tag, attrs = {}, text = "") {
  const node = ["svg", "rect", "text", "line", "g"].includes(tag)
    ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== "") node.textContent = text;
  return node;
}

function table(id, head, rows) {
  const t = $(id);
  t.replaceChildren();
  const tr = el("tr");
  head.forEach((h) => tr.append(el("th", {}, h)));
  t.append(tr);
  if (!rows.length) {
    const r = el("tr");
    r.append(el("td", { colspan: head.length, class: "note" }, "no data yet"));
    t.append(r);
  }
  rows.forEach((cells) => {
    const r = el("tr");
    cells.forEach((c) => {
      const td = el("td", c.cls ? { class: c.cls } : {}, c.text ?? c);
      r.append(td);
    });
    t.append(r);
  });
}

function bars(id, items, { signed = false } = {}) {
  // items: [{label, value, title}] drawn as vertical bars (or +/- around 0).
  const svg = $(id);
  svg.replaceChildren();
  const w = svg.clientWidth || 600, h = svg.clientHeight || 220, pad = 28;
  if (!items.length) {
    svg.append(el("text", { x: 10, y: 24, fill: "#8ea3bb" }, "no data yet"));
    return;
  }
  const max = Math.max(1, ...items.map((i) => Math.abs(i.value)));
  const slot = (w - 2 * pad) / items.length, bw = Math.max(4, slot * 0.6);
  const zero = signed ? h / 2 : h - pad;
  const scale = signed ? (h / 2 - pad) / max : (h - 2 * pad) / max;
  svg.append(el("line", { x1: pad, x2: w - pad, y1: zero, y2: zero,
    stroke: "#243b55" }));
  items.forEach((it, i) => {
    const x = pad + i * slot + (slot - bw) / 2, bh = Math.abs(it.value) * scale;
    const y = it.value >= 0 ? zero - bh : zero;
    const fill = signed ? (it.value >= 0 ? "#3ecf8e" : "#ff6b6b") : "#4ea8de";
    const r = el("rect", { x, y, width: bw, height: Math.max(1, bh), fill,
      "data-value": it.value });
    r.append(el("title", {}, it.title));
    svg.append(r);
    svg.append(el("text", { x: x + bw / 2, y: h - 8, fill: "#8ea3bb",
      "font-size": 11, "text-anchor": "middle" }, it.label));
  });
}

function render(s) {
  const vol = [...s.volume_per_day].reverse();
  bars("volume", vol.map((d) => ({ label: d.business_day.slice(5),
    value: d.amount_fen,
    title: `${d.business_day}: ${d.record_count} records, ${yuan(d.amount_fen)} yuan` })));
  const cities = [...new Set(s.city_pair_flows.flatMap(
    (f) => [f.acquirer_city, f.issuer_city]))].sort();
  const flow = Object.fromEntries(s.city_pair_flows.map(
    (f) => [`${f.acquirer_city}>${f.issuer_city}`, f]));
  table("flows", ["acquirer \\ issuer", ...cities], cities.map((a) => [a,
    ...cities.map((i) => { const f = flow[`${a}>${i}`];
      return f ? `${yuan(f.amount_fen)} (${f.record_count})` : "–"; })]));
  const latest = s.latest_clearing;
  const positions = latest ? latest.positions : [];
  bars("positions", positions.map((p) => ({ label: p.city, value: p.net_fen,
    title: `${p.city}: ${yuan(p.net_fen)} yuan` })), { signed: true });
  $("clearing-note").textContent = latest
    ? `${latest.business_day}: ${latest.record_count} records cleared, ` +
      `${latest.excluded_disputed} disputed excluded, gross ${yuan(latest.gross_fen)} yuan`
    : "no clearing run yet";
  table("schemes", ["status", "schemes"],
    s.code_schemes_by_status.map((c) => [c.status, String(c.count)]));
  table("identifiers", ["kind", "status", "count"],
    s.identifiers_by_kind.map((c) => [c.kind, c.status, String(c.count)]));
  table("blocks", ["block", "hash", "txs", "committed", "verified"],
    s.latest_blocks.map((b) => [String(b.number),
      { text: b.hash.slice(0, 16) + "…", cls: "mono" }, String(b.tx_count),
      new Date(b.committed_at).toLocaleString("zh-CN"),
      b.verified === null ? { text: "–" }
        : b.verified ? { text: "✓ verified", cls: "ok" }
          : { text: "✗ " + (b.verify_error || "failed"), cls: "fail" }]));
  const p = s.projection;
  const lag = p.last_lag_ms === null ? "–" : `${Math.round(p.last_lag_ms)} ms`;
  const st = $("status");
  st.textContent = `ledger height ${p.ledger_height} · projected block ` +
    `${p.projected_block} · behind ${p.behind_blocks} · lag ${lag} · ` +
    `updated ${new Date().toLocaleTimeString("zh-CN")}`;
  st.className = p.error || !p.running ? "bad" : "";
  document.body.dataset.height = String(p.ledger_height);
}

async function poll() {
  const t = token();
  if (!t) { $("login").hidden = false; return; }
  try {
    const r = await fetch("/api/dashboard/summary",
      { headers: { Authorization: `Bearer ${t}` } });
    if (r.status === 401 || r.status === 403) {
      const body = await r.json().catch(() => ({}));
      sessionStorage.removeItem("cityunion-token");
      $("login-error").textContent = body.detail || "token not accepted";
      $("login").hidden = false; $("board").hidden = true;
      return;
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    $("login").hidden = true; $("board").hidden = false;
    render(await r.json());
  } catch (e) {
    $("status").textContent = `cannot reach the API: ${e.message}`;
    $("status").className = "bad";
  }
  setTimeout(poll, POLL_MS);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("cityunion-token", $("token").value.trim());
  $("login").hidden = true;
  poll();
});
poll();
