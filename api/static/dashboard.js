// The leaders' cockpit: polls /api/dashboard/summary and redraws in place.
// No library and no asset from the internet: plain DOM and SVG.
"use strict";
const POLL_MS = 2000;
const TOKEN_KEY = "cityunion-token";
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const yuan = (fen) => (fen / 100).toLocaleString("zh-CN",
  { minimumFractionDigits: 2, maximumFractionDigits: 2 });
// Chart labels stay short (446.30, 6.5K, 1.2M); the tooltips are exact.
const short = new Intl.NumberFormat("en", { notation: "compact",
  maximumFractionDigits: 1 });
const shortYuan = (fen) => (Math.abs(fen) < 100_000 ? yuan(fen)
  : short.format(fen / 100));
const when = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN") : "–");
const recent = (iso) => new Date(iso).toLocaleString("zh-CN", { month: "2-digit",
  day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  hour12: false });
let timer = null;
let last = null;  // the latest summary, redrawn when the window resizes

function token() {
  // A token in the address (#token=...) is kept for this tab only and taken
  // out of the address, so it is not left in the history or a bookmark.
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

// rows: arrays of cells; a cell is a string, a number or {text, sub, cls,
// title}, sub being a second, smaller line.
function table(id, head, rows) {
  const t = $(id);
  const body = [];
  if (head.length) {
    const tr = el("tr");
    head.forEach((h) => tr.append(el("th", {}, h)));
    body.push(tr);
  }
  if (!rows.length) {
    const r = el("tr");
    r.append(el("td", { colspan: Math.max(1, head.length), class: "note" },
      "no data yet"));
    body.push(r);
  }
  rows.forEach((cells) => {
    const r = el("tr");
    cells.forEach((c) => {
      const cell = typeof c === "object" && c !== null ? c : { text: String(c) };
      const attrs = {};
      if (cell.cls) attrs.class = cell.cls;
      if (cell.title) attrs.title = cell.title;
      const td = el("td", attrs, String(cell.text));
      if (cell.sub) td.append(el("span", { class: "sub" }, cell.sub));
      r.append(td);
    });
    body.push(r);
  });
  t.replaceChildren(...body);
}

function noData(svg) {
  svg.style.height = "";
  svg.classList.add("empty");
  svg.append(svgEl("text", { x: 10, y: 24, class: "note start" }, "no data yet"));
}

// items: [{label, value, text, title}] as vertical bars, oldest on the left.
function columns(id, items) {
  const svg = $(id);
  svg.replaceChildren();
  svg.classList.remove("empty");
  if (!items.length) { noData(svg); return; }
  const w = svg.clientWidth || 600, h = svg.clientHeight || 220;
  const padX = 24, top = 22, bottom = 24;
  const max = Math.max(1, ...items.map((i) => i.value));
  const slot = (w - 2 * padX) / items.length;
  const bw = Math.min(56, Math.max(3, slot * 0.6));
  const every = Math.ceil(44 / slot);  // label every n-th day when crowded
  const values = slot >= 36;  // room for a value over each bar
  svg.append(svgEl("line", { x1: padX, x2: w - padX, y1: h - bottom,
    y2: h - bottom, class: "axis" }));
  items.forEach((it, i) => {
    const x = padX + i * slot + (slot - bw) / 2, mid = x + bw / 2;
    const bh = Math.max(1, (it.value / max) * (h - bottom - top));
    const r = svgEl("rect", { x, y: h - bottom - bh, width: bw, height: bh,
      class: "bar", "data-value": it.value });
    r.append(svgEl("title", {}, it.title));
    svg.append(r);
    if (i % every === 0) svg.append(svgEl("text", { x: mid, y: h - 7 }, it.label));
    if (values) {
      svg.append(svgEl("text", { x: mid, y: h - bottom - bh - 5, class: "value" },
        it.text));
    }
  });
}

// items: [{label, value, text, title}] as one horizontal bar per row, to the
// right of a zero line for positive values and to its left for negative ones.
function diverging(id, items) {
  const svg = $(id);
  svg.replaceChildren();
  svg.classList.remove("empty");
  if (!items.length) { noData(svg); return; }
  const row = 30, h = items.length * row + 8;
  svg.style.height = `${h}px`;
  const w = svg.clientWidth || 400, labelW = 84, room = 70;  // room: value text
  const zero = (labelW + room + w - room) / 2, half = (w - room - labelW - room) / 2;
  const max = Math.max(1, ...items.map((i) => Math.abs(i.value)));
  svg.append(svgEl("line", { x1: zero, x2: zero, y1: 2, y2: h - 2, class: "axis" }));
  items.forEach((it, i) => {
    const y = 4 + i * row, len = Math.max(1, (Math.abs(it.value) / max) * half);
    const up = it.value >= 0, base = y + row / 2 + 4;
    const r = svgEl("rect", { x: up ? zero : zero - len, y: y + 5, width: len,
      height: row - 10, class: up ? "bar pos" : "bar neg", "data-value": it.value });
    r.append(svgEl("title", {}, it.title));
    svg.append(r);
    svg.append(svgEl("text", { x: labelW - 8, y: base, class: "end" }, it.label));
    svg.append(svgEl("text", { x: up ? zero + len + 5 : zero - len - 5, y: base,
      class: up ? "value start" : "value end" }, it.text));
  });
}

function render(s) {
  last = s;
  const vol = [...s.volume_per_day].reverse();  // oldest first, left to right
  columns("volume", vol.map((d) => ({ label: d.business_day.slice(5),
    value: d.amount_fen, text: shortYuan(d.amount_fen),
    title: `${d.business_day}: ${d.record_count} records, ` +
      `${yuan(d.amount_fen)} yuan` })));

  const flows = s.city_pair_flows;
  const acquirers = [...new Set(flows.map((f) => f.acquirer_city))].sort();
  const issuers = [...new Set(flows.map((f) => f.issuer_city))].sort();
  const flow = new Map(flows.map((f) => [`${f.acquirer_city}>${f.issuer_city}`, f]));
  table("flows", ["acquirer \\ issuer", ...issuers], acquirers.map((a) => [
    { text: a }, ...issuers.map((i) => {
      const f = flow.get(`${a}>${i}`);
      return f ? { text: yuan(f.amount_fen), sub: `${f.record_count} records` }
        : { text: "–", cls: "note" };
    })]));

  diverging("positions", s.net_positions.map((p) => ({ label: p.city,
    value: p.net_fen, text: shortYuan(p.net_fen),
    title: `${p.city}: ${yuan(p.net_fen)} yuan over ${p.days} cleared ` +
      `day(s), the last ${p.last_business_day}` })));
  const run = s.latest_clearing;
  $("clearing-note").textContent = run
    ? `Summed over every cleared day. Latest run ${run.business_day}: ` +
      `${run.record_count} records in ${run.batch_count} batch(es), ` +
      `${run.excluded_disputed} disputed excluded, gross ${yuan(run.gross_fen)} yuan, ` +
      `fees to the center ${yuan(run.center_fee_fen)} yuan.`
    : "No clearing run yet.";

  table("settlements", ["day", "pending", "confirmed", "paid", "overdue"],
    s.settlements_by_day.map((d) => [d.business_day, d.pending,
    d.confirmed, d.completed, d.overdue > 0
      ? { text: String(d.overdue), cls: "fail",
          title: "statements not confirmed by their confirm-by day" }
      : { text: "0", cls: "note" }]));
  const open = s.disputes_by_status.filter((d) =>
    d.status === "disputed" || d.status === "contested")
    .reduce((n, d) => n + d.count, 0);
  $("settlement-note").textContent = `Open disputes: ${open} · ` +
    `blacklisted cards: ${s.blacklisted_cards}`;

  const kinds = { impossible_travel: "impossible travel 异地瞬移",
    unusual_amount: "unusual amount 金额异常", terminal_repeat: "terminal repeat 重复刷卡" };
  table("risk", ["kind", "alerts", "latest day"], s.risk_by_kind.map((r) => [
    kinds[r.kind] || r.kind, { text: String(r.count), cls: "warn" },
    r.last_business_day]));
  table("ranking", ["#", "city", "records", "yuan"], s.ranking.map((r) => [
    r.rank, r.city, r.record_count, yuan(r.amount_fen)]));
  $("peak-note").textContent = s.peak_days.length
    ? "Peak days: " + s.peak_days.map((d) =>
      `${d.business_day} (${d.record_count} records)`).join(", ")
    : "No card records yet.";

  table("schemes", ["status", "schemes"],
    s.code_schemes_by_status.map((c) => [c.status, c.count]));
  table("identifiers", ["kind", "status", "count"],
    s.identifiers_by_kind.map((c) => [c.kind, c.status, c.count]));
  table("video-alerts", ["kind", "status", "alerts"],
    (s.video_alerts_by_kind || []).map((c) => [c.kind, c.status, c.count]));

  table("blocks", ["block", "hash", "txs", "committed", "verification"],
    s.latest_blocks.map((b) => [b.number, { text: `${b.hash.slice(0, 12)}…`,
      cls: "mono", title: b.hash }, b.tx_count,
    { text: recent(b.committed_at), title: when(b.committed_at) },
    b.verified === null ? { text: "not checked", cls: "note" }
      : b.verified ? { text: "✓ verified", cls: "ok" }
        : { text: `✗ ${b.verify_error || "failed"}`, cls: "fail" }]));

  const p = s.projection;
  const lag = p.last_lag_ms === null ? "–" : `${Math.round(p.last_lag_ms)} ms`;
  table("projection", [], [
    ["follower", p.error ? { text: `error: ${p.error}`, cls: "fail" }
      : p.running ? { text: "running", cls: "ok" } : { text: "stopped", cls: "fail" }],
    ["ledger height", p.ledger_height],
    ["projected block", p.projected_block],
    ["blocks behind", { text: String(p.behind_blocks),
      cls: p.behind_blocks > 0 ? "warn" : "" }],
    ["last lag", lag],
    ["last applied", when(p.last_applied_at)]]);

  showStatus(`ledger height ${p.ledger_height} · lag ${lag} · updated ` +
    new Date().toLocaleTimeString("zh-CN"), p.error || !p.running ? "bad" : "");
  document.body.dataset.height = String(p.ledger_height);
}

// The latest video alerts with their evidence frames, and the cameras' health.
// An <img src> cannot send the token, so each frame is fetched with it and
// shown from a blob: URL (kept while the alert is among the latest).
const THUMBS = 6;
const thumbs = new Map();  // alert id -> {url} or {error}

async function evidence(t, id) {
  const r = await fetch(`/api/video-alerts/${id}/evidence`,
    { headers: { Authorization: `Bearer ${t}` } });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    return { error: r.status === 404 ? "evidence not on this node"
      : body.detail || `HTTP ${r.status}` };
  }
  return { url: URL.createObjectURL(await r.blob()) };
}

async function renderVideo(t) {
  const headers = { Authorization: `Bearer ${t}` };
  const [alerts, health] = await Promise.all([
    fetch(`/api/video-alerts?limit=${THUMBS}`, { headers, cache: "no-store" }),
    fetch("/api/cameras/health", { headers, cache: "no-store" })]);
  if (alerts.ok) {
    const items = (await alerts.json()).items;
    await Promise.all(items.filter((a) => !thumbs.has(a.id)).map(async (a) => {
      thumbs.set(a.id, await evidence(t, a.id).catch((e) => ({ error: e.message })));
    }));
    const shown = new Set(items.map((a) => a.id));
    for (const [id, th] of thumbs) {
      if (!shown.has(id)) {
        if (th.url) URL.revokeObjectURL(th.url);
        thumbs.delete(id);
      }
    }
    $("video-thumbs").replaceChildren(...items.map((a) => {
      const th = thumbs.get(a.id);
      const label = `${a.kind} · ${a.zone} · ${a.status}`;
      const fig = el("figure", { "data-alert": a.id,
        title: `${label}\ncamera ${a.camera_id}\n${when(a.observed_at)}` });
      fig.append(th.url ? el("img", { src: th.url, alt: label })
        : el("div", { class: "missing" }, th.error));
      fig.append(el("figcaption", {}, `${recent(a.observed_at)} ${a.kind}`));
      return fig;
    }));
  }
  if (health.ok) {
    const status = { running: "ok", reconnecting: "warn", stopped: "note",
      stale: "fail" };
    table("camera-health", ["camera", "status", "fps", "lag", "last frame"],
      (await health.json()).map((c) => [
        { text: c.camera_code || `${c.camera_id.slice(0, 8)}…`, title: c.camera_id,
          sub: c.city },
        { text: c.status, cls: status[c.status] || "" },
        c.fps.toFixed(1),
        c.lag_s === null ? "–" : `${c.lag_s.toFixed(1)} s`,
        { text: c.last_frame_at ? recent(c.last_frame_at) : "–",
          title: `updated ${when(c.updated_at)}` }]));
  }
}

// City QR codes (read side of ReportCodeUsage): valid scans per day and city
// over the last two weeks, the batches with most zombie codes, likely copies.
const QR_DAYS = 14, QR_ROWS = 5;

async function renderCodes(t) {
  const headers = { Authorization: `Bearer ${t}` };
  const since = new Date(Date.now() - (QR_DAYS - 1) * 86_400_000)
    .toISOString().slice(0, 10);
  const get = (path) => fetch(path, { headers, cache: "no-store" });
  const [usage, zombies, copies] = await Promise.all([
    get(`/api/code-usage?from=${since}`),
    get(`/api/code-usage/zombies?limit=${QR_ROWS}`),
    get(`/api/code-usage/copies?limit=${QR_ROWS}`)]);
  if (usage.ok) {
    const per = new Map(), cities = new Set(), days = new Set();
    for (const r of (await usage.json()).rows) {
      cities.add(r.city);
      days.add(r.day);
      const key = `${r.day}|${r.city}`;
      const sums = per.get(key) || { valid: 0, refused: 0 };
      sums[r.result] += r.scans;
      per.set(key, sums);
    }
    const cs = [...cities].sort();
    table("qr-daily", ["day", ...cs], [...days].sort().reverse().map((d) => [
      d, ...cs.map((c) => {
        const n = per.get(`${d}|${c}`);
        return n ? { text: String(n.valid), sub: `${n.refused} refused` }
          : { text: "–", cls: "note" };
      })]));
  }
  if (zombies.ok) {
    table("qr-zombies", ["batch", "issued", "scanned", "zombie"],
      (await zombies.json()).items.map((z) => [
        { text: `${z.serial_prefix}…`, cls: "mono", title: z.id,
          sub: `${z.city} ${z.department}` },
        z.code_count, z.scanned, { text: String(z.zombie), cls: "warn" }]));
  }
  if (copies.ok) {
    table("qr-copies", ["code", "scanned in", "day"],
      (await copies.json()).items.map((a) => [
        { text: `${a.subject.slice(0, 12)}…`, cls: "mono", title: a.subject },
        { text: a.records.map((r) => r.city).join(" · "), title: a.detail },
        a.day]));
  }
}

// Outbound call campaigns: the running ones first, each with its progress
// (contacts with a final outcome recorded, of all) and its counts per outcome.
const CAMPAIGNS = 8;

async function renderCalls(t) {
  const r = await fetch(`/api/call-campaigns?limit=${CAMPAIGNS}`,
    { headers: { Authorization: `Bearer ${t}` }, cache: "no-store" });
  if (!r.ok) return;
  const items = (await r.json()).items;
  items.sort((a, b) => (a.status === "started" ? 0 : 1)
    - (b.status === "started" ? 0 : 1));
  const counts = (c) => Object.entries(c).map(([k, v]) => `${k} ${v}`)
    .join(" · ") || "–";
  table("call-campaigns", ["campaign", "status", "progress", "outcomes"],
    items.map((c) => {
      const done = c.status === "completed" ? c.contact_count : c.recorded_total;
      const pct = Math.floor((100 * done) / c.contact_count);
      return [
        { text: c.campaign, sub: `${c.city} · ${c.department}`,
          title: `${c.template_name} v${c.template_version}\nstarted ` +
            when(c.started_at) },
        { text: c.status === "started" ? "running" : "completed",
          cls: c.status === "started" ? "warn" : "ok" },
        { text: `${done} / ${c.contact_count}`, sub: `${pct}%` },
        counts(c.outcomes || c.recorded)];
    }));
}

function showLogin(message) {
  $("board").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  showStatus("signed out", "");
  $("token").focus();
}

function showStatus(text, cls) {
  $("status").textContent = text;
  $("status").className = cls;
}

// The summary, or null when the token is refused (the form is shown then).
async function fetchSummary(t) {
  const r = await fetch("/api/dashboard/summary",
    { headers: { Authorization: `Bearer ${t}` }, cache: "no-store" });
  if (r.status === 401 || r.status === 403) {
    const body = await r.json().catch(() => ({}));
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(body.detail || `token not accepted (HTTP ${r.status})`);
    return null;
  }
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  return r.json();
}

async function poll() {
  timer = null;
  const t = token();
  if (!t) { showLogin(""); return; }
  let summary;
  try {
    summary = await fetchSummary(t);
  } catch (e) {
    showStatus(`cannot reach the API: ${e.message}`, "bad");
  }
  if (summary === null) return;  // signed out until a token is given
  if (summary !== undefined) {
    $("login").hidden = true;
    $("board").hidden = false;  // before render: the charts measure the board
    try {
      render(summary);
    } catch (e) {
      console.error(e);
      showStatus(`cannot draw the summary: ${e.message}`, "bad");
    }
    for (const part of [renderVideo, renderCodes, renderCalls]) {
      try {
        await part(t);
      } catch (e) {
        console.error(e);  // the rest of the board stands without it
      }
    }
  }
  timer = setTimeout(poll, POLL_MS);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  $("login").hidden = true;
  if (timer === null) poll();
});
window.addEventListener("resize", () => { if (last) render(last); });
poll();
