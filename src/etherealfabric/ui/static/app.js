/* EtherealFabric UI: the pages' behaviour, plain JavaScript (no build step, no CDN).
 *
 * Every page reads the JSON API under /api/ and renders with DOM calls (textContent, never
 * innerHTML with data). Pages poll while something runs: the run page every 500 ms with the
 * run's version stamp (the server answers "unchanged" cheaply), the runs list every second. */
"use strict";

const STATUSES_LIVE = new Set(["running", "retrying", "pending"]);
const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "text") node.textContent = String(v); // (false and 0 are text too: "false", "0")
    else if (v === false) continue; // an attribute left out
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw Object.assign(new Error(data.error || `HTTP ${response.status}`), { status: response.status });
  return data;
}

/* What went wrong reading the journal since the page was drawn (a damaged journal: the 503's
 * message), over the page's content, until a later read succeeds (``null``: clears it). */
function pageError(message) {
  const box = $("#page-error");
  box.textContent = message || "";
  box.hidden = !message;
}

/* A date or time typed without a zone (2026-11-25, 2026-11-25T14:30) means the browser's
 * local time, the zone every time on the page is shown in: it is sent to the server (which
 * would read it in its own zone) with the browser's offset then. Anything else as typed. */
function zoned(text) {
  const m = /^\s*(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?\s*$/.exec(text || "");
  if (!m) return text;
  const local = new Date(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0));
  if (Number.isNaN(local.getTime())) return text;
  const off = -local.getTimezoneOffset(), a = Math.abs(off), pad = (n) => String(n).padStart(2, "0");
  return `${m[1]}-${m[2]}-${m[3]}T${m[4] || "00"}:${m[5] || "00"}:${m[6] || "00"}${m[7] || ""}${off < 0 ? "-" : "+"}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

function when(ts) {
  if (!ts) return "-";
  const d = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function secs(s) {
  if (s === null || s === undefined || s === "") return "-";
  s = Number(s);
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 120) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function bytes(n) {
  n = Number(n || 0);
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function badge(status) {
  return el("span", { class: `badge st-${status}`, text: status });
}

function setLive(on) {
  const dot = $("#live");
  if (dot) dot.classList.toggle("on", Boolean(on));
}

function nodeHref(runId, node) {
  return `/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(node)}`;
}

/* -- the runs page ------------------------------------------------------------------------ */
function runsPage() {
  const form = $("#filters");
  const params = new URLSearchParams(location.search);
  for (const name of ["status", "since"]) {
    const value = params.get(name), field = form.elements[name];
    if (!value) continue;
    // a status the list does not offer (a mistyped link) is still asked for: the answer says
    // what is wrong, rather than a list of every run that looks filtered
    if (field.tagName === "SELECT" && ![...field.options].some((o) => o.value === value)) {
      field.append(el("option", { value, text: value }));
    }
    field.value = value;
  }
  const select = $("#f-workflow");
  const workflowOptions = (names, chosen) => { // the asked-for workflow stays, even unknown
    const all = chosen && !names.includes(chosen) ? [...names, chosen] : names;
    select.replaceChildren(el("option", { value: "", text: "all" }), ...all.map((w) => el("option", { value: w, text: w })));
    select.value = chosen;
  };
  // the address's workflow filters the first fetch too (the options come with its answer)
  if (params.get("workflow")) workflowOptions([], params.get("workflow"));
  let timer = null;
  // paging: `before` (the cursor of the last run shown) and `limit` come from the address only
  let before = params.get("before");
  const limit = params.get("limit");
  const filters = () => {
    const query = new URLSearchParams(new FormData(form));
    for (const [k, v] of [...query.entries()]) if (!v) query.delete(k);
    if (limit) query.set("limit", limit);
    return query;
  };

  async function refresh() {
    clearTimeout(timer);
    const query = filters();
    if (before) query.set("before", before);
    let data;
    try {
      if (query.get("since")) query.set("since", zoned(query.get("since")));
      data = await api(`/api/runs?${query}`);
      $("#runs-note").textContent = data.journal ? "" : "no journal yet: start a run";
    } catch (err) {
      if (err.status === 400) { // a filter the server refuses: said next to the filters
        $("#runs-note").textContent = err.message;
        pageError(null);
      } else { // the journal cannot be read (damaged): one banner over a list no longer current
        $("#runs-note").textContent = "";
        pageError(`cannot list the runs now: ${err.message}`);
      }
      timer = setTimeout(refresh, 3000);
      return;
    }
    pageError(null);
    workflowOptions(data.workflows, select.value);
    const body = $("#runs tbody");
    body.replaceChildren(...data.runs.map((r) => el("tr", { "data-run": r.id, "data-status": r.status },
      el("td", {}, el("a", { href: `/runs/${encodeURIComponent(r.id)}`, class: "mono", text: r.id })),
      el("td", { text: r.workflow }),
      el("td", {}, badge(r.status)),
      el("td", { text: when(r.started_at) }),
      el("td", { text: secs(r.duration) }),
      el("td", { class: "num", text: r.executed ?? "" }),
      el("td", { class: "num", text: r.cached ?? "" }),
      el("td", { class: "num", text: r.failed ?? "" }),
      el("td", { class: "num", text: r.nodes ?? "" }))));
    if (!data.runs.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "note", text: "no runs match" })));
    const more = [];
    if (before) more.push(el("a", { class: "newest", href: `/?${filters()}`, text: "← newest runs" }));
    if (data.more && data.runs.length) {
      const older = filters();
      // the server's cursor (started_at,id): runs started at the same time come once each
      older.set("before", data.next ?? String(data.runs[data.runs.length - 1].started_at));
      more.push(el("a", { class: "older", href: `/?${older}`, text: `older runs than these ${data.runs.length} →` }));
    }
    $("#runs-more").replaceChildren(...more.flatMap((a, i) => (i ? [" · ", a] : [a])));
    setLive(data.running > 0);
    timer = setTimeout(refresh, data.running > 0 ? 1000 : 2000);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    before = null; // new filters: from the newest run
    const query = filters();
    history.replaceState(null, "", query.toString() ? `/?${query}` : "/");
    refresh();
  });
  form.addEventListener("change", () => form.requestSubmit());
  refresh();
}

/* -- the run page: graph (pan, zoom, live colours), timeline, nodes ------------------------- */
function panZoom(box) {
  // moved: the user has zoomed, panned or gone to a node since the last fit; a graph drawn
  // again (a live run's new node) then keeps their view rather than fitting itself anew
  const state = { svg: null, view: null, full: null, moved: false };
  function attach() {
    state.svg = $("svg", box);
    if (!state.svg) return;
    const [x, y, w, h] = state.svg.getAttribute("viewBox").split(/\s+/).map(Number);
    state.full = { x, y, w, h };
    if (state.moved && state.view) { apply(); return; }
    if (w <= box.clientWidth) box.style.height = `${Math.min(window.innerHeight * 0.6, Math.max(160, h + 20))}px`;
    fit();
  }
  function apply() {
    const v = state.view;
    state.svg.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
  }
  function fit() {
    if (!state.svg) return;
    const f = state.full;
    const aspect = box.clientWidth / Math.max(1, box.clientHeight);
    // large graphs open on their top rows at a readable size; small ones fit whole
    const w = Math.max(f.w, f.h * aspect, box.clientWidth);
    const readable = Math.min(w, Math.max(box.clientWidth * 1.6, 900));
    state.view = { x: f.x + (f.w - readable) / 2, y: f.y, w: readable, h: readable / aspect };
    state.moved = false;
    apply();
  }
  let drag = null;
  box.addEventListener("mousedown", (e) => {
    if (!state.svg) return;
    drag = { x: e.clientX, y: e.clientY, view: { ...state.view }, moved: false };
    box.classList.add("dragging");
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const scale = state.view.w / box.clientWidth;
    const dx = (e.clientX - drag.x) * scale, dy = (e.clientY - drag.y) * scale;
    if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = state.moved = true;
    state.view = { ...drag.view, x: drag.view.x - dx, y: drag.view.y - dy };
    apply();
  });
  window.addEventListener("mouseup", () => { box.classList.remove("dragging"); setTimeout(() => { drag = null; }, 0); });
  box.addEventListener("click", (e) => { if (drag && drag.moved) e.preventDefault(); }, true);
  box.addEventListener("wheel", (e) => {
    if (!state.svg) return;
    e.preventDefault();
    const rect = box.getBoundingClientRect();
    const factor = Math.exp(e.deltaY * 0.0015);
    const px = state.view.x + ((e.clientX - rect.left) / rect.width) * state.view.w;
    const py = state.view.y + ((e.clientY - rect.top) / rect.height) * state.view.h;
    const w = Math.min(Math.max(state.view.w * factor, 100), Math.max(state.full.w, state.full.h) * 4);
    const h = w * (state.view.h / state.view.w);
    state.view = { x: px - ((px - state.view.x) * w) / state.view.w, y: py - ((py - state.view.y) * h) / state.view.h, w, h };
    state.moved = true;
    apply();
  }, { passive: false });
  function show(x, y) {
    if (!state.svg) return;
    const w = box.clientWidth, h = box.clientHeight;
    state.view = { x: x - w / 2, y: y - h / 2, w, h };
    state.moved = true;
    apply();
  }
  attach();
  return { attach, fit, show };
}

/* The graph of a small run: the server's SVG (one rect per node), recoloured in place. A big
 * run's is drawn on a canvas (graph.js); both answer fit, find, recolour and reload. */
function svgGraph(box, runId) {
  const view = panZoom(box);
  box.addEventListener("focusin", (e) => { // a node reached with Tab: bring it into view
    const rect = e.target.querySelector && e.target.querySelector("rect.n");
    if (rect && e.target.matches(":focus-visible")) {
      view.show(Number(rect.getAttribute("x")) + Number(rect.getAttribute("width")) / 2,
        Number(rect.getAttribute("y")) + Number(rect.getAttribute("height")) / 2);
    }
  });
  box.addEventListener("click", (e) => {
    const node = e.target.closest && e.target.closest(".n[data-href]");
    if (node && !e.defaultPrevented) location.href = node.getAttribute("data-href");
  });
  let selected = null; // the node "find" went to: still marked once the graph is drawn again
  const mark = () => {
    for (const r of box.querySelectorAll("svg rect.n[data-selected]")) r.removeAttribute("data-selected");
    const hit = selected === null ? null : [...box.querySelectorAll("svg rect.n")].find((r) => r.getAttribute("data-node") === selected);
    if (hit) hit.setAttribute("data-selected", "");
    return hit;
  };
  return {
    fit: () => view.fit(),
    recolour: (statuses) => colourGraph(box, statuses),
    detach: () => view.attach(), // (its SVG replaced by a canvas: pan and zoom let go of it)
    async reload() {
      const response = await fetch(`/api/runs/${encodeURIComponent(runId)}/graph.svg`, { cache: "no-store" });
      if (!response.ok) return;
      box.innerHTML = await response.text(); // the server's SVG: names escaped there
      view.attach(); // (keeping the user's zoom and pan, if any)
      mark();
    },
    find(text) {
      const wanted = text.trim().toLowerCase();
      if (!wanted) return null;
      const rects = [...box.querySelectorAll("svg rect.n")];
      const hit = rects.find((r) => r.getAttribute("data-node") === text.trim())
        || rects.find((r) => r.getAttribute("data-node").toLowerCase() === wanted)
        || rects.find((r) => r.getAttribute("data-node").toLowerCase().includes(wanted));
      selected = hit ? hit.getAttribute("data-node") : null;
      mark();
      if (!hit) return null;
      view.show(Number(hit.getAttribute("x")) + Number(hit.getAttribute("width")) / 2,
        Number(hit.getAttribute("y")) + Number(hit.getAttribute("height")) / 2);
      return hit.getAttribute("data-node");
    },
  };
}

function canvasGraph(box, runId, statuses, data = JSON.parse($("#graph-data").textContent)) {
  const graph = new window.CanvasGraph(box, data, statuses, (name) => nodeHref(runId, name));
  box.graph = graph; // for scripts and tests: locate(name), pixel(name), nodeAt(x, y)
  return {
    fit: () => graph.fit(),
    recolour: (next) => graph.recolour(next),
    find: (text) => graph.find(text),
    async reload() {
      const fresh = await api(`/api/runs/${encodeURIComponent(runId)}/graph?compact=1`);
      graph.load(fresh, fresh.statuses);
    },
  };
}

function colourGraph(box, statuses) {
  let unknown = false;
  const seen = new Set();
  const svg = box.querySelector("svg"), marks = JSON.parse((svg && svg.getAttribute("data-marks")) || "{}");
  for (const g of box.querySelectorAll("svg rect.n")) {
    const name = g.getAttribute("data-node");
    seen.add(name);
    const status = statuses[name] || "pending";
    const cls = `n st-${status}`;
    if (g.getAttribute("class") !== cls) {
      g.setAttribute("class", cls);
      const title = g.querySelector("title");
      if (title) title.textContent = `${name} (${status})`;
      const node = g.parentNode, mark = node.querySelector("text.st");
      if (mark) mark.textContent = marks[status] || "?";
      node.setAttribute("aria-label", `${name}: ${status}`);
    }
  }
  for (const name of Object.keys(statuses)) if (!seen.has(name)) unknown = true;
  return unknown;
}

function drawGantt(box, attempts, run) {
  // a canvas the size of the visible box, redrawn on scroll: thousands of rows cost what the
  // few on screen cost (an SVG element, or a canvas row, per attempt would not)
  const rows = new Map();
  let cached = 0;
  for (const a of attempts) { // (a cache hit's row has a start and an end, the same: not drawn)
    if (a.status === "cached") { cached += 1; continue; }
    if (!a.started_at) continue;
    if (!rows.has(a.node)) rows.set(a.node, []);
    rows.get(a.node).push(a);
  }
  if (!rows.size) {
    box.replaceChildren(el("p", { class: "note", text: cached ? `all ${cached} nodes came from the cache` : "no node has started yet" }));
    box.gantt = null;
    return;
  }
  // an attempt without an end is running while the run is: its bar grows with the clock; once
  // the run is over (an interrupted run's attempts never end) it stops where the run did: its
  // end, or (a run shown interrupted, not marked) the last time the journal knows of
  const now = run.status === "running" ? Date.now() / 1000 : (run.finished_at || lastKnown(run, attempts));
  let start = run.started_at, end = run.finished_at || now, bars = 0;
  for (const list of rows.values()) {
    for (const a of list) { start = Math.min(start, a.started_at); end = Math.max(end, a.finished_at || now); bars += 1; }
  }
  if (!box.gantt) {
    const canvas = el("canvas", { "aria-label": "timeline of node attempts" });
    const space = el("div", { class: "gantt-space" }, canvas);
    box.replaceChildren(space, el("p", { class: "note gantt-note" }));
    const rowAt = (e) => box.gantt.names[Math.floor((e.offsetY - 2) / GANTT_ROW) + box.gantt.first];
    canvas.addEventListener("mousemove", (e) => { const n = rowAt(e); canvas.title = n ? ganttTitle(box.gantt, n) : ""; });
    canvas.addEventListener("click", (e) => { const n = rowAt(e); if (n) location.href = nodeHref(run.id, n); });
    box.addEventListener("scroll", () => paintGantt(box));
  }
  box.gantt = { rows, names: [...rows.keys()], start, span: Math.max(end - start, 1e-3), now, first: 0, live: run.status === "running" };
  const canvas = $("canvas", box);
  canvas.dataset.rows = rows.size;
  canvas.dataset.bars = bars;
  $(".gantt-space", box).style.height = `${rows.size * GANTT_ROW + 28}px`;
  $(".gantt-note", box).textContent = cached ? `${cached} cached nodes not shown` : "";
  paintGantt(box);
}

const GANTT_ROW = 16;

/* The last time a run's rows tell of: its start, its attempts' starts and ends. */
function lastKnown(run, attempts) {
  let last = run.started_at || 0;
  for (const a of attempts) last = Math.max(last, a.started_at || 0, a.finished_at || 0);
  return last;
}

function ganttTitle(g, node) { // made on hover: thousands of rows need no title each
  return `${node}: ${g.rows.get(node).map((a) => `attempt ${a.attempt}: ${a.status}, ${secs((a.finished_at || g.now) - a.started_at)}`).join("; ")}`;
}
const ganttColours = {};

function ganttColour(status) {
  if (!ganttColours[status]) {
    const probe = el("span", { class: `badge st-${status}` });
    document.body.append(probe);
    const style = getComputedStyle(probe);
    ganttColours[status] = [style.backgroundColor, style.borderTopColor];
    probe.remove();
  }
  return ganttColours[status];
}

function paintGantt(box) {
  const g = box.gantt;
  if (!g) return;
  const canvas = $("canvas", box);
  const label = 170, width = Math.max(box.clientWidth - 20, 600), plot = width - label - 70;
  const visible = Math.min(g.names.length, Math.ceil((box.clientHeight || 480) / GANTT_ROW));
  const height = visible * GANTT_ROW + 24;
  g.first = Math.max(0, Math.min(Math.floor(box.scrollTop / GANTT_ROW), g.names.length - visible));
  const ratio = window.devicePixelRatio || 1;
  canvas.width = width * ratio; canvas.height = height * ratio;
  canvas.style.width = `${width}px`; canvas.style.height = `${height}px`;
  canvas.style.top = `${g.first * GANTT_ROW}px`;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  g.labels = []; // the names as drawn (for tests); the full name is the row's tooltip
  ctx.strokeStyle = "#e3e6eb"; ctx.fillStyle = "#444"; ctx.textAlign = "center";
  for (let i = 0; i <= 4; i += 1) {
    const x = label + (plot * i) / 4;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, height - 18); ctx.stroke();
    ctx.fillText(`+${secs((g.span * i) / 4)}`, x, height - 8);
  }
  let y = 2;
  g.drawn = []; // each row's bars and duration labels as drawn, [x, width] (for tests)
  for (const node of g.names.slice(g.first, g.first + visible)) {
    ctx.fillStyle = "#333"; ctx.textAlign = "left";
    const text = fitText(ctx, node, label - 10);
    ctx.fillText(text, 4, y + GANTT_ROW / 2);
    g.labels.push(text);
    // the bars first, then their durations: a label is never painted over by the next bar
    const bars = g.rows.get(node).map((a) => {
      const took = (a.finished_at || g.now) - a.started_at;
      return { a, took, x: label + ((a.started_at - g.start) / g.span) * plot, w: Math.max((took / g.span) * plot, 1.5) };
    }).sort((p, q) => p.x - q.x);
    for (const { a, x, w } of bars) {
      const [fill, stroke] = ganttColour(ganttStatus(a, g));
      ctx.fillStyle = fill; ctx.strokeStyle = stroke;
      ctx.fillRect(x, y + 1, w, GANTT_ROW - 4); ctx.strokeRect(x, y + 1, w, GANTT_ROW - 4);
    }
    const row = { node, bars: bars.map((b) => [b.x, b.w]), labels: [] };
    bars.forEach(({ took, x, w }, i) => {
      // inside its bar when it fits there, else just after it when that is free up to the next
      // bar; else not drawn (the row's tooltip has every attempt's duration)
      const words = secs(took), tw = ctx.measureText(words).width;
      const room = (i + 1 < bars.length ? bars[i + 1].x : width) - (x + w) - 6;
      const at = w >= tw + 6 ? x + (w - tw) / 2 : tw <= room ? x + w + 4 : null;
      if (at === null) return;
      ctx.fillStyle = at < x + w ? "#222" : "#555"; ctx.textAlign = "left";
      ctx.fillText(words, at, y + GANTT_ROW / 2);
      row.labels.push([at, tw, words]);
    });
    g.drawn.push(row);
    y += GANTT_ROW;
  }
}

/* The colour an attempt is drawn in: a retried one (it failed, another followed) as failed,
 * as the legend has it; one without an end is running only while the run is. */
function ganttStatus(a, g) {
  if (a.status === "retrying" && (a.finished_at || !g.live)) return "failed";
  return a.status;
}

/* ``text`` cut at its end, with an ellipsis, to fit ``width`` pixels (measured, not counted). */
function fitText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let low = 0, high = text.length;
  while (low < high) { // the longest prefix that fits with its ellipsis
    const mid = Math.ceil((low + high) / 2);
    if (ctx.measureText(`${text.slice(0, mid)}…`).width <= width) low = mid; else high = mid - 1;
  }
  return `${text.slice(0, low)}…`;
}

const NODES_PAGE = 100;
const TABLE_ERROR = 300; // characters of an error in the node table (a row, not a page of it)
const STATUS_NAMES = new Set(["pending", "running", "retrying", "succeeded", "cached", "failed", "fallback",
  "skipped", "upstream_failed", "cancelled", "interrupted", "drifted"]);

function cut(text, length) {
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

/* A page's state (a table's filter and page) kept in its address's query, replacing the
 * current history entry: Back to the page, or a reload, finds it as it was left. */
function remember(values) {
  const query = new URLSearchParams(location.search);
  for (const [name, value] of Object.entries(values)) {
    if (value === null || value === undefined || value === "") query.delete(name); else query.set(name, value);
  }
  const text = query.toString();
  history.replaceState(history.state, "", `${location.pathname}${text ? `?${text}` : ""}${location.hash}`);
}

function asked(name) { // a whole number of at least 0 from the address (0 when absent or odd)
  const n = Number.parseInt(new URLSearchParams(location.search).get(name) || "", 10);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/* The node table: a page of attempts at a time (a run of thousands lists 100 rows, not
 * thousands), filtered by node name or status; refilled as the run goes on, keeping its page. */
function nodesTable(runId) {
  const table = $("#nodes tbody"), filter = $("#nodes-filter");
  const prev = $("#nodes-prev"), next = $("#nodes-next");
  // the filter and page come from the address (`?filter=failed&page=2`), and go back to it
  filter.value = new URLSearchParams(location.search).get("filter") || "";
  let attempts = [], page = Math.max(0, asked("page") - 1);
  const keep = () => remember({ filter: filter.value, page: page > 0 ? page + 1 : null });
  function show() {
    const wanted = filter.value.trim().toLowerCase();
    // a status by its name, or the start of one (`upstream`: upstream_failed); a node by any part
    const status = (s) => s === wanted || (!STATUS_NAMES.has(wanted) && s.startsWith(wanted));
    const rows = wanted ? attempts.filter((a) => status(a.status) || a.node.toLowerCase().includes(wanted)) : attempts;
    const pages = Math.max(1, Math.ceil(rows.length / NODES_PAGE));
    page = Math.max(0, Math.min(page, pages - 1));
    const shown = rows.slice(page * NODES_PAGE, (page + 1) * NODES_PAGE);
    table.replaceChildren(...shown.map((a) => el("tr", { "data-node": a.node },
      el("td", {}, el("a", { href: nodeHref(runId, a.node), text: a.node, title: a.node })),
      el("td", { text: a.attempt }),
      el("td", {}, badge(a.status)),
      el("td", { text: when(a.started_at) }),
      el("td", { text: secs(a.duration) }),
      // a long error cut, as "Failed" cuts it (the node's page has it whole)
      el("td", { class: "error", text: cut(a.error || "", TABLE_ERROR), title: a.error ? cut(a.error, ERROR_CUT) : null }))));
    if (!rows.length && attempts.length) table.append(el("tr", {}, el("td", { colspan: 6, class: "note", text: "no attempt matches" })));
    $("#nodes-pager").hidden = rows.length <= NODES_PAGE;
    $("#nodes-range").textContent = rows.length ? `${page * NODES_PAGE + 1}-${page * NODES_PAGE + shown.length} of ${rows.length}` : "0 of 0";
    $("#nodes-count").textContent = `${attempts.length} attempt${attempts.length === 1 ? "" : "s"}`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }
  filter.addEventListener("input", () => { page = 0; show(); keep(); });
  prev.addEventListener("click", () => { page -= 1; show(); keep(); });
  next.addEventListener("click", () => { page += 1; show(); keep(); });
  return (list) => { attempts = list; show(); };
}

function fillCounts(counts) {
  const box = $("#counts");
  box.replaceChildren(...Object.keys(counts).sort().flatMap((s) => [el("span", { class: `badge st-${s}`, text: `${counts[s]} ${s}` }), " "]));
}

/* A failed attempt in "Failed", as run.html draws it: a long error cut, with its whole text
 * a click away ("show all"); a long traceback closed (a 30 KB message is in both). */
const ERROR_CUT = 1000, TRACEBACK_OPEN = 4000;
function failureBlock(runId, f) {
  const error = f.error || "", tb = f.traceback || "";
  const message = error.length > ERROR_CUT
    ? [el("span", { class: "error", text: `${error.slice(0, ERROR_CUT)}…` }),
      el("details", { class: "more" }, el("summary", { text: `show all (${error.length} characters)` }), el("pre", { class: "error", text: error }))]
    : [el("span", { class: "error", text: error })];
  return el("div", { class: "failure" },
    el("a", { href: nodeHref(runId, f.node) }, el("b", { text: f.node })), ` (attempt ${f.attempt}): `, ...message,
    tb ? el("details", { open: tb.length <= TRACEBACK_OPEN ? "" : null },
      el("summary", { text: tb.length <= TRACEBACK_OPEN ? "traceback" : `traceback (${tb.length} characters)` }), el("pre", { class: "tb", text: tb })) : "");
}

function runPage() {
  const body = document.body;
  const runId = body.dataset.run;
  const box = $("#graph-box");
  const initial = $("#initial-state");
  let first = initial ? JSON.parse(initial.textContent) : null; // the server's first answer
  let graph = box.dataset.mode === "canvas" ? canvasGraph(box, runId, first ? first.statuses : {}) : svgGraph(box, runId);
  // a live run's graph that grows past this many nodes is drawn on a canvas from then on, as
  // a reload would draw it (the SVG of thousands of nodes is the slow path)
  const canvasFrom = Number(box.dataset.canvasFrom || 1000);
  async function toCanvas() {
    const data = await api(`/api/runs/${encodeURIComponent(runId)}/graph?compact=1`);
    if (box.dataset.mode === "canvas") return;
    box.style.height = ""; // (the SVG's box may have been sized to a small graph)
    box.dataset.mode = "canvas";
    const svg = graph;
    graph = canvasGraph(box, runId, data.statuses, data);
    svg.detach();
  }
  const fillNodes = nodesTable(runId);
  $("#fit").addEventListener("click", () => graph.fit());
  $("#graph-find").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const found = graph.find(e.target.value);
    const note = $("#graph-found");
    if (found === null) note.replaceChildren("no node matches");
    else note.replaceChildren(`${found}: `, el("a", { id: "graph-open", href: nodeHref(runId, found), text: "open it" }));
  });
  for (const span of document.querySelectorAll(".ts")) span.textContent = when(Number(span.dataset.ts));
  let version = "", status = body.dataset.status, last = null, shape = null, failed = null;

  async function reloadSummary() {
    const data = await api(`/api/runs/${encodeURIComponent(runId)}`);
    $("#resume").textContent = data.resume;
    const section = $("#failures");
    section.hidden = !data.failures.length;
    section.replaceChildren(el("h2", { text: "Failed" }), ...data.failures.map((f) => failureBlock(runId, f)));
    if (data.failures_total > data.failures.length) {
      section.append(el("p", { class: "note failures-more" }, `${data.failures.length} of ${data.failures_total} failed attempts shown (the nodes' own failures first, then failed map items); the others: the node table below, filtered by `, el("code", { text: "failed" })));
    }
  }

  async function poll() {
    let data;
    try {
      if (first) { data = first; first = null; } else data = await api(`/api/runs/${encodeURIComponent(runId)}/status?version=${encodeURIComponent(version)}`);
    } catch (err) {
      pageError(`cannot follow the run now: ${err.message}`); // shown: what is drawn is stale
      setTimeout(poll, 2000);
      return;
    }
    pageError(null);
    const run = data.run;
    $("#run-duration").textContent = `duration ${secs(run.duration)}`;
    if (data.unchanged && run.status !== status) { // (a server whose stamp missed the change)
      version = "";
      setTimeout(poll, 0);
      return;
    }
    if (!data.unchanged) {
      version = data.version;
      last = data;
      const badgeEl = $("#run-status");
      badgeEl.textContent = run.status;
      badgeEl.className = `badge st-${run.status}`;
      body.dataset.status = run.status;
      fillCounts(data.counts);
      // new nodes, or new edges (a node's inputs are known once it ran): draw the graph again
      const moved = shape !== null && data.graph && data.graph !== shape;
      if (data.graph) shape = data.graph;
      if (box.dataset.mode === "svg" && data.size > canvasFrom) await toCanvas().then(() => graph.recolour(data.statuses)).catch(() => {});
      else if (graph.recolour(data.statuses) || moved) await graph.reload().then(() => graph.recolour(data.statuses)).catch(() => {});
      fillNodes(data.attempts);
      // failed attempts, not failed nodes: a map counts once (its node stays running) while
      // its items fail one by one, and "Failed" lists those items too
      const failures = data.attempts.reduce((n, a) => n + (a.status === "failed"), 0);
      if (run.status !== status || (failed !== null && failures !== failed)) { // failures as they happen
        status = run.status;
        reloadSummary().catch(() => {});
      }
      failed = failures;
    }
    if (last) drawGantt($("#gantt"), last.attempts, run);
    if (!performance.getEntriesByName("ef-run-drawn").length) {
      performance.mark("ef-run-drawn"); // its script is done; and once the frame is on screen:
      requestAnimationFrame(() => setTimeout(() => performance.mark("ef-run-painted"), 0));
    }
    const running = run.status === "running";
    setLive(running);
    if (running) setTimeout(poll, 500);
  }
  poll();

  $("#plan").addEventListener("toggle", async (e) => {
    if (!e.target.open || e.target.dataset.loaded) return;
    e.target.dataset.loaded = "1";
    const out = $("#plan-body");
    try {
      const plan = await api(`/api/runs/${encodeURIComponent(runId)}/plan`);
      // what the keys do not cover, after the table, as `etherealfabric plan` prints it
      const uncovered = Object.entries(plan.uncovered || {}).flatMap(([node, items]) => items.map((item) => el("li", {},
        `${node}: not covered by the key: `, el("span", { class: "mono", text: item }))));
      out.replaceChildren(el("p", { text: `${plan.to_run.length} will run, ${plan.cached.length} cached` }),
        el("div", { class: "table-scroll" }, el("table", { class: "grid" }, el("tbody", {}, ...plan.nodes.map((n) => el("tr", {},
          el("td", { text: n.node }), el("td", {}, n.action === "cached" ? badge("cached") : el("span", { class: "badge st-pending", text: "will run" })),
          el("td", { text: n.reason || "" }), el("td", { text: n.estimate == null ? "" : secs(n.estimate) })))))),
        uncovered.length ? el("ul", { class: "uncovered" }, ...uncovered) : "");
    } catch (err) {
      out.textContent = err.message;
    }
  });
}

/* -- the node page -------------------------------------------------------------------------- */
function kvTable(rows) {
  return el("table", { class: "grid kv" }, el("tbody", {}, ...rows.map(([k, v]) => el("tr", {},
    el("td", { text: k }), el("td", {}, v instanceof Node ? v : el("span", { class: "mono", text: v ?? "" }))))));
}

/* The `explain` of a node, line for line as `etherealfabric explain` prints it
 * (observe/_explain.py: Explanation.__str__): what happened, how a node that ran was stopped
 * (if it was), what changed since its previous run or why not, its error, and what its key
 * does not cover. */
function renderExplain(box, ex) {
  if (!ex) { box.textContent = "no explanation recorded"; return; }
  const verdict = { executed: "ran", cached: "cached", not_run: "did not run" }[ex.verdict] || ex.verdict;
  const parts = [el("p", { class: "verdict" }, el("b", { text: verdict }), ex.verdict === "executed" ? ` (${ex.status})` : "")];
  if (ex.stopped) parts.push(el("p", { class: "stopped", text: ex.stopped }));
  if (ex.reason === "changed") {
    parts.push(el("p", {}, "compared with run ", el("a", { href: `/runs/${encodeURIComponent(ex.previous_run)}`, text: ex.previous_run }), ":"));
    parts.push(el("ul", { class: "change-list" }, ...ex.changes.map((c) => el("li", { "data-part": c.part }, el("span", { class: "mono", text: c.text })))));
  } else {
    parts.push(el("p", { class: "detail", text: ex.detail }));
  }
  if (ex.error && ex.verdict === "executed") { // (whole in the attempts below)
    const error = ex.error.length > ERROR_CUT ? `${ex.error.slice(0, ERROR_CUT)}…` : ex.error;
    parts.push(el("p", { class: "error", text: `error: ${error}` }));
  }
  if (ex.uncovered && ex.uncovered.length) {
    parts.push(el("ul", { class: "uncovered" }, ...ex.uncovered.map((u) => el("li", {}, "not covered by the key: ", el("span", { class: "mono", text: u })))));
  }
  box.replaceChildren(...parts);
}

function renderAttempts(box, runId, data) {
  box.replaceChildren(...data.attempts.map((a) => el("div", { class: "attempt", "data-attempt": a.attempt },
    el("div", {}, el("b", { text: `attempt ${a.attempt} ` }), badge(a.status), ` ${attemptFacts(a)}`),
    a.error ? el("p", { class: "error", text: a.error }) : "",
    el("pre", { class: "logs", text: plain(a.output) || noOutput(a) }),
    a.traceback ? el("details", {}, el("summary", { text: "traceback" }), el("pre", { class: "tb", text: plain(a.traceback) })) : "")));
}

/* When an attempt started, how long it took and where, each said only when known (an attempt
 * cut off by its run's death has no duration: "started 2026-12-08 00:00:16 · vm", not "· - ·"). */
function attemptFacts(a) {
  const facts = [a.started_at ? `started ${when(a.started_at)}` : "not started"];
  if (a.duration !== null && a.duration !== undefined) facts.push(secs(a.duration));
  const where = [a.host, a.pid ? `pid ${a.pid}` : ""].filter(Boolean).join(" ");
  if (where) facts.push(where);
  return facts.join(" · ");
}

/* Why an attempt shows no output, in the words of `etherealfabric logs`: what a node prints is
 * kept when its attempt ends, so one still running, or cut off by its run's death, has none yet. */
function noOutput(a) {
  if (a.status === "cached") return "no output captured (cached: it did not run in this run)";
  if (a.status === "interrupted") {
    return "no output captured: the run's process died while this attempt ran (what a node prints is kept when its attempt ends; it was shown live as it was printed)";
  }
  if (a.status === "running" || (a.status === "retrying" && !a.finished_at)) {
    return "no output yet: what a node prints is kept when its attempt ends (until then it is shown live where the run was started)";
  }
  return "no output captured";
}

/* Text without terminal escape sequences (colours, cursor moves): a log shows them as boxes. */
const ANSI = /\x1b(?:\[[0-?]*[ -\/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;
function plain(text) {
  return text ? String(text).replace(ANSI, "") : text;
}

function renderPreview(box, p) {
  if (p.kind === "table") {
    // the first columns are the index (one per level of a MultiIndex, each headed by its
    // name, or blank), shown as row headers
    const names = p.index_names || (p.index !== undefined ? [p.index] : []);
    box.replaceChildren(el("p", { class: "note", text: `shape ${p.shape.join(" × ")}; first ${p.rows.length} rows` }),
      el("div", { class: "scroll" }, el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, ...names.map((n) => el("th", { text: n ?? "" })), ...p.columns.map((c) => el("th", { text: c })))),
        el("tbody", {}, ...p.rows.map((r) => el("tr", {}, ...r.map((v, i) => frameCell(i < names.length ? "th" : "td", v))))))));
  } else {
    box.replaceChildren(el("pre", { class: "value", text: p.text }));
  }
}

/* A frame's cell as `etherealfabric cat` prints it: a boolean as Python's True or False, a
 * missing value (None) as None, marked (greyed) so that it never reads like a value; a float at
 * a display precision (6 decimals, as pandas shows them; very small or large ones in e-notation),
 * its exact value in the cell's tooltip when that differs. */
function frameCell(tag, v) {
  if (v === null || v === undefined) return el(tag, { class: "na", text: "None", title: "missing value (None)" });
  if (typeof v === "boolean") return el(tag, { text: v ? "True" : "False" });
  if (typeof v === "number" && Number.isFinite(v) && !Number.isInteger(v)) {
    const shown = shortFloat(v), exact = String(v);
    return el(tag, { class: "num", text: shown, title: shown === exact ? null : exact, "data-value": exact });
  }
  return el(tag, { class: typeof v === "number" ? "num" : null, text: v });
}

function shortFloat(v) {
  const a = Math.abs(v);
  if (a < 1e-4 || a >= 1e15) return v.toExponential(6).replace(/\.?0+e/, "e");
  return String(Number(v.toFixed(6)));
}

function renderOutputs(box, runId, node, outputs) {
  if (!outputs.length) { box.replaceChildren(el("p", { class: "note", text: "no stored outputs in this run" })); return; }
  box.replaceChildren(el("div", { class: "table-scroll" }, el("table", { class: "grid", id: "outputs-table" },
    el("thead", {}, el("tr", {}, ...["output", "serializer", "type", "size", "digest", "preview"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...outputs.map((o) => {
      const cell = el("td", { class: "preview" });
      const load = () => api(`/api/runs/${encodeURIComponent(runId)}/preview/${encodeURIComponent(o.name)}/${encodeURIComponent(node)}`)
        .then((p) => renderPreview(cell, p)).catch((err) => { cell.textContent = err.message; });
      if ((o.size || 0) <= 100000) { cell.textContent = "loading…"; load(); } else cell.append(el("button", { type: "button", text: "load preview" }));
      cell.addEventListener("click", (e) => { if (e.target.tagName === "BUTTON") { cell.textContent = "loading…"; load(); } });
      return el("tr", { "data-output": o.name }, el("td", { text: o.name }), el("td", { text: o.serializer }), el("td", { class: "mono", text: o.type }),
        el("td", { text: `${bytes(o.size)}${o.inline ? " (inline)" : ""}` }), el("td", { class: "mono", text: (o.digest || "").slice(0, 12) }), cell);
    })))));
}

function renderComponents(box, runId, data) {
  const c = data.components;
  if (!c) { box.replaceChildren(el("p", { class: "note", text: "no key components recorded" })); return; }
  const inputs = el("ul", {}, ...data.inputs.map((i) => el("li", {}, `${i.input} ← `,
    el("a", { href: nodeHref(runId, i.node), text: `${i.node}.${i.output}` }), el("span", { class: "mono note", text: ` @${i.digest.slice(0, 12)}` }))));
  const params = Object.keys(c.params || {}).filter((k) => !(k in (c.inputs || {})));
  box.replaceChildren(kvTable([
    ["cache key", data.attempts.at(-1).cache_key || "-"],
    ["kind", c.kind],
    ["code", `${c.code || ""} (${c.code_source || "?"})`],
    ["version", c.version == null ? "none" : String(c.version)],
    ["code parts", el("ul", {}, ...Object.entries(c.code_parts || {}).map(([k, v]) => el("li", { class: "mono", text: `${k}  ${String(v).slice(0, 12)}` })))],
    ["parameters", el("ul", {}, ...params.map((k) => el("li", { class: "mono", text: `${k} = ${(c.params_repr || {})[k] ?? "?"}  [${String(c.params[k]).slice(0, 12)}]` })))],
    ["inputs", inputs],
  ]));
}

/* A map's items, a page at a time from /api/runs/ID/items/NODE (a map of thousands of items
 * lists 100 rows, not thousands), filtered by status; each item links to its own page. */
function itemsTable(runId, node) {
  const table = $("#items tbody"), pick = $("#items-status"), prev = $("#items-prev"), next = $("#items-next");
  // the status and first item shown come from the address (`?items_status=failed&items_from=101`)
  const wanted = new URLSearchParams(location.search).get("items_status") || "";
  if (wanted && ![...pick.options].some((o) => o.value === wanted)) pick.append(el("option", { value: wanted, text: wanted }));
  pick.value = wanted;
  let offset = Math.max(0, asked("items_from") - 1), shown = null, latest = 0;
  let ignored = ""; // why the address's status was not applied (said with the items)
  const keep = () => remember({ items_status: pick.value, items_from: offset > 0 ? offset + 1 : null });
  function failed(err) {
    if (err.status === 400 && pick.value) { // a status no item can have (an address edited by
      // hand): every item, saying why, rather than no Items section at all
      const bad = pick.value;
      ignored = `not filtered by status: ${err.message}`;
      for (const o of [...pick.options]) if (o.value === bad) o.remove();
      pick.value = "";
      offset = 0;
      keep();
      load().catch(failed);
      return;
    }
    $("#items-section").hidden = false; // (the section says what went wrong, never vanishes)
    $("#items-cached").textContent = err.message;
  }
  function fill(data) {
    if (offset > 0 && offset >= data.total) { // past its end (a kept address, a map of fewer
      // items now): its last page, as the node table does with a `page` past its end
      offset = data.total ? Math.floor((data.total - 1) / data.limit) * data.limit : 0;
      keep();
      load().catch(failed);
      return;
    }
    shown = data;
    $("#items-section").hidden = false;
    // all its items, as its start recorded them: those not started yet (or never, the run
    // having ended first) are counted too, though they have no row to list
    const counts = data.counts, unstarted = data.unstarted || 0;
    const total = data.size ?? Object.values(counts).reduce((a, b) => a + b, 0);
    const parts = Object.keys(counts).sort().map((s) => `${counts[s]} ${s}`);
    if (unstarted) parts.push(`${unstarted} ${data.unstarted_as}`);
    $("#items-counts").textContent = `${total} item${total === 1 ? "" : "s"}: ${parts.join(", ")}`;
    // cached items are rows too (listed from the map's stored index); a note when they cannot be
    const notes = ignored ? [ignored] : [];
    if (data.note) notes.push(`${data.cached} came from the cache: ${data.note}`);
    if (unstarted) {
      notes.push(data.unstarted_as === "pending" ? `${unstarted} not started yet: listed once they start`
        : `${unstarted} never started: the run ended before they did`);
    }
    $("#items-cached").textContent = notes.join("; ");
    const known = new Set([...pick.options].map((o) => o.value));
    for (const s of Object.keys(counts).sort()) if (!known.has(s)) pick.append(el("option", { value: s, text: s }));
    table.replaceChildren(...data.items.map((i) => el("tr", { "data-item": i.item },
      el("td", { text: i.index }),
      // an item taken from the cache did not run in this run: it has no page of its own here
      el("td", {}, i.attempts ? el("a", { href: nodeHref(runId, i.node), text: i.item }) : el("span", { text: i.item, title: "taken from the cache: it did not run in this run" })),
      el("td", {}, badge(i.status), i.attempts > 1 ? ` ${i.attempts} attempts` : ""),
      el("td", { text: secs(i.duration) }),
      el("td", { class: "mono", text: (i.cache_key || "").slice(0, 12) }),
      el("td", { class: "error", text: i.error || "" }))));
    if (!data.items.length) table.append(el("tr", {}, el("td", { colspan: 6, class: "note", text: "no item matches" })));
    $("#items-range").textContent = data.total ? `${offset + 1}-${offset + data.items.length} of ${data.total}` : "0 of 0";
    prev.disabled = offset === 0;
    next.disabled = offset + data.items.length >= data.total;
  }
  async function load() {
    const n = ++latest, status = pick.value;
    const data = await api(`/api/runs/${encodeURIComponent(runId)}/items/${encodeURIComponent(node)}?offset=${offset}${status ? `&status=${encodeURIComponent(status)}` : ""}`);
    if (n === latest) fill(data); // a later request (a click meanwhile) wins
  }
  pick.addEventListener("change", () => { offset = 0; ignored = ""; keep(); load().catch(failed); });
  prev.addEventListener("click", () => { offset = Math.max(0, offset - (shown ? shown.limit : 100)); keep(); load().catch(failed); });
  next.addEventListener("click", () => { offset += shown ? shown.limit : 100; keep(); load().catch(failed); });
  // the node's own answer has the first page: shown unless the user (or the address) has
  // asked for another, which is fetched then
  let started = false;
  return {
    first: (data) => {
      if (offset === 0 && !pick.value) fill(data);
      else if (!started) load().catch(failed);
      started = true;
    },
    reload: load,
  };
}

function nodePage() {
  const runId = document.body.dataset.run, node = document.body.dataset.node;
  const items = itemsTable(runId, node);
  async function load() {
    let data;
    try {
      data = await api(`/api/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(node)}`);
    } catch (err) {
      $("#explain").textContent = err.message;
      return;
    }
    const b = $("#node-status");
    b.textContent = data.status;
    b.className = `badge st-${data.status}`;
    $("#run-link").textContent = `run ${data.run.id} (${data.run.workflow})`;
    renderExplain($("#explain"), data.explain);
    renderAttempts($("#attempts"), runId, data);
    if (!$("#outputs-table") || !data.outputs.length) renderOutputs($("#outputs"), runId, node, data.outputs);
    renderComponents($("#components"), runId, data);
    if (data.items) items.first(data.items);
    const live = STATUSES_LIVE.has(data.status) && data.run.status === "running";
    setLive(live);
    if (live) setTimeout(load, 1000);
  }
  load();
}

/* -- the cache page ------------------------------------------------------------------------- */
function hitChart(box, runs) {
  if (!runs.length) { box.replaceChildren(el("p", { class: "note", text: "no finished runs yet" })); return; }
  const width = Math.max(box.clientWidth - 10, 500), height = 200, left = 40, bottom = 24;
  const svg = svgEl("svg", { width, height, id: "hit-svg" });
  // runs in the order they started, evenly spaced: runs a second apart and runs a week apart
  // are each a dot of their own (a time axis piles bursts up and stretches the gaps)
  const last = Math.max(runs.length - 1, 1);
  const px = (i) => left + (runs.length === 1 ? 0.5 : i / last) * (width - left - 20), py = (r) => 10 + (1 - r) * (height - bottom - 10);
  for (const r of [0, 0.5, 1]) {
    svg.append(svgEl("line", { x1: left, x2: width - 10, y1: py(r), y2: py(r), stroke: "#e3e6eb" }));
    const t = svgEl("text", { x: left - 4, y: py(r) + 4, "text-anchor": "end" });
    t.textContent = `${r * 100}%`;
    svg.append(t);
  }
  const points = runs.map((r, i) => ({ r, i })).filter(({ r }) => r.hit_rate !== null);
  svg.append(svgEl("polyline", { points: points.map(({ r, i }) => `${px(i)},${py(r.hit_rate)}`).join(" "), fill: "none", stroke: "#5c8ed8", "stroke-width": 1.5 }));
  for (const { r, i } of points) {
    const dot = svgEl("circle", { cx: px(i), cy: py(r.hit_rate), r: 3, fill: r.status === "succeeded" ? "#2e7d32" : "#c62828", class: "run-dot" });
    const title = svgEl("title");
    title.textContent = `${r.id} (${r.workflow}), started ${when(r.started_at)}: ${Math.round(r.hit_rate * 100)}% cached, ${r.executed} executed, ${r.cached} cached`;
    dot.append(title);
    svg.append(dot);
  }
  for (const [i, anchor] of runs.length === 1 ? [[0, "middle"]] : [[0, "start"], [runs.length - 1, "end"]]) {
    const label = svgEl("text", { x: px(i), y: height - 6, "text-anchor": anchor });
    label.textContent = when(runs[i].started_at);
    svg.append(label);
  }
  const axis = svgEl("text", { x: (left + width - 20) / 2, y: height - 6, "text-anchor": "middle" });
  axis.textContent = `${runs.length} run${runs.length === 1 ? "" : "s"}, in the order they started`;
  svg.append(axis);
  box.replaceChildren(svg);
}

const SIZE_ROWS = 100;

/* The largest rows (100), their ``labels`` first; ``note`` says when there are more. */
function sizeRows(table, rows, labels, note, what) {
  const top = rows.slice(0, SIZE_ROWS);
  const most = Math.max(1, ...top.map((r) => r.bytes));
  table.replaceChildren(...top.map((r) => el("tr", {}, ...labels.map((l) => el("td", { text: r[l] ?? "-", title: r[l] ?? null })), el("td", { class: "num", text: bytes(r.bytes) }),
    el("td", { class: "num", text: r.records }), el("td", { class: "bar-cell" }, meter((100 * r.bytes) / most)))));
  if (note) note.textContent = rows.length > top.length ? `showing the ${top.length} largest of ${rows.length} ${what}` : "";
}

function meter(percent) { // its width through CSSOM: the page's CSP allows no style attribute
  const bar = el("div", { class: "meter" });
  bar.style.width = `${percent}%`;
  return bar;
}

async function cachePage() {
  let data;
  try {
    data = await api("/api/cache");
  } catch (err) {
    pageError(err.message);
    return;
  }
  $("#cache-total").textContent = `${data.records} cache records, ${bytes(data.bytes)} (${bytes(data.stored_bytes)} in the store, ${bytes(data.inline_bytes)} inline in the journal)`;
  hitChart($("#hit-chart"), data.runs);
  sizeRows($("#by-workflow tbody"), data.by_workflow, ["workflow"], $("#by-workflow-note"), "workflows");
  sizeRows($("#by-node tbody"), data.by_node, ["node", "workflow"], $("#by-node-note"), "nodes");
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  const start = { runs: runsPage, run: runPage, node: nodePage, cache: cachePage }[page];
  if (start) start();
});
