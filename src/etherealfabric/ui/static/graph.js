/* EtherealFabric UI: the run page's graph on a canvas, for runs of more than a thousand nodes.
 *
 * An SVG of 5,000 boxes and 10,000 curves costs a browser most of a second to parse, style and
 * lay out before anything shows; a canvas costs what is on screen. The server sends the layout
 * as flat arrays (Layout.compact: names, xy, edges as pairs of indices, and via: the routes of
 * edges that skip rows, drawn around the rows between as the SVG draws them) and this file draws
 * what is in view: edges first, then the boxes grouped by status (one path per colour; as the
 * SVG's, dashed when the node did not run, thick-edged when it ended badly), then each node's
 * status mark (✓ ✗ ⊘ …: not by colour alone) and label once they are large enough to read.
 * It redraws at most once per frame, on pan (drag), zoom (wheel), resize and status changes.
 * Colours are the page's status colours (the same CSS rules as the legend's badges, from
 * observe/_export.STATUS_COLOURS).
 *
 * It answers the same calls as the SVG graph in app.js: fit(), find(text), recolour(statuses)
 * (true when a node is unknown: the graph grew, load it again) and load(data, statuses). For
 * tests and scripts it also answers locate(name) (centres the node at full size and returns
 * its centre in the window's coordinates, where a click opens it) and pixel(name) (the colour
 * drawn inside the node's box, read back from the canvas); the canvas carries data-nodes,
 * data-edges and data-selected.
 *
 * From the keyboard (a canvas has no elements to Tab to): the canvas is one stop in the Tab
 * order; on it, the arrow keys select a node (Left and Right: the previous and next node of
 * its row; Up and Down: the nearest node of the row above or below; Home and End: the first
 * and last), the view follows, and a live region says the node's name and status; Enter
 * opens it. The node table below the graph lists every node as links too (the page links to
 * it from the graph's heading). */
"use strict";

/* The shapes of statuses beside their colours, as app.css gives the SVG's boxes. */
const NOT_RUN = new Set(["pending", "not_run", "skipped", "cancelled"]); // dashed
const ENDED_BADLY = new Set(["failed", "upstream_failed", "interrupted"]); // thick
const BUSY = new Set(["running", "retrying"]); // thicker
/* A label is centred LABEL_AT units into its box, at most LABEL_WIDTH wide: between the status
 * mark and the box's right edge (as the SVG's: _layout.LABEL_AT, LABEL_WIDTH). */
const LABEL_AT = 83, LABEL_WIDTH = 124;

/* A path through ``points``: straight lines with corners rounded by up to 10 units, the same
 * as the SVG's (_routes.path). */
function corners(ctx, points) {
  const p = [points[0]];
  for (const q of points.slice(1)) if (q[0] !== p[p.length - 1][0] || q[1] !== p[p.length - 1][1]) p.push(q);
  ctx.moveTo(p[0][0], p[0][1]);
  for (let i = 1; i < p.length - 1; i += 1) {
    const [ax, ay] = p[i - 1], [bx, by] = p[i], [cx, cy] = p[i + 1];
    const into = Math.hypot(bx - ax, by - ay), out = Math.hypot(cx - bx, cy - by);
    const r = Math.min(10, into / 2, out / 2);
    ctx.lineTo(bx - (bx - ax) * r / into, by - (by - ay) * r / into);
    ctx.quadraticCurveTo(bx, by, bx + (cx - bx) * r / out, by + (cy - by) * r / out);
  }
  ctx.lineTo(p[p.length - 1][0], p[p.length - 1][1]);
}

class CanvasGraph {
  constructor(box, data, statuses, hrefOf) {
    this.box = box;
    this.hrefOf = hrefOf;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "graph graph-canvas";
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "application");
    this.canvas.setAttribute("aria-roledescription", "graph");
    this.said = document.createElement("span");
    this.said.className = "graph-said visually-hidden";
    this.said.setAttribute("aria-live", "polite");
    box.replaceChildren(this.canvas, this.said);
    this.colours = new Map();
    this.labels = new Map();
    this.marks = JSON.parse(box.dataset.marks || "{}"); // status -> its mark (_layout.STATUS_MARKS)
    this.selected = -1;
    this.frame = 0;
    this.load(data, statuses);
    this.listen();
    this.fit();
    this.draw(); // now, not on the next frame: the page is drawn when its script is done
  }

  load(data, statuses) {
    // the node selected (found, or reached by keys) stays selected by name: a graph loaded
    // again (a live run's) may list its nodes in another order
    const was = this.selected >= 0 && this.names ? this.names[this.selected] : null;
    this.names = data.names;
    this.xy = data.xy;
    this.edges = data.edges;
    // edges that skip a row go around the rows between (routes from the server, as the SVG's:
    // _routes.py): route[k] is where edge k's [y_above, lane, y_below] start in via, or -1
    this.via = data.via || [];
    this.route = new Int32Array(this.edges.length / 2).fill(-1);
    for (let j = 0; j < this.via.length; j += 4) this.route[this.via[j]] = j + 1;
    [this.w, this.h] = data.box;
    this.full = { x: -10, y: -10, w: data.width + 20, h: data.height + 20 };
    this.index = new Map(this.names.map((name, i) => [name, i]));
    this.status = new Array(this.names.length).fill("pending");
    this.canvas.dataset.nodes = this.names.length;
    this.canvas.dataset.edges = this.edges.length / 2;
    this.canvas.setAttribute("aria-label", `the run's graph, ${this.names.length} nodes: arrow keys select a node, Enter opens it (the node table below lists them too); drag to pan, wheel to zoom, click a node`);
    // reading order (rows top to bottom, each left to right): what the arrow keys walk
    this.order = this.names.map((_, i) => i).sort((a, b) => this.xy[2 * a + 1] - this.xy[2 * b + 1] || this.xy[2 * a] - this.xy[2 * b]);
    this.place = new Int32Array(this.names.length);
    this.order.forEach((i, k) => { this.place[i] = k; });
    this.selected = was !== null && this.index.has(was) ? this.index.get(was) : -1;
    if (this.selected >= 0) this.canvas.dataset.selected = was; else delete this.canvas.dataset.selected;
    if (statuses) this.recolour(statuses);
  }

  recolour(statuses) {
    const before = this.status.join();
    this.status.fill("pending");
    let unknown = false;
    for (const [name, status] of Object.entries(statuses)) {
      const i = this.index.get(name);
      if (i === undefined) unknown = true;
      else this.status[i] = status;
    }
    if (this.status.join() !== before) this.redraw();
    return unknown;
  }

  colour(status) {
    if (!this.colours.has(status)) {
      const probe = document.createElement("span");
      probe.className = `badge st-${status}`;
      document.body.append(probe);
      const style = getComputedStyle(probe);
      this.colours.set(status, [style.backgroundColor, style.borderTopColor]);
      probe.remove();
    }
    return this.colours.get(status);
  }

  /* -- the view: world coordinates of the top-left corner, and screen pixels per unit ---- */
  size() {
    const ratio = window.devicePixelRatio || 1;
    const cw = this.box.clientWidth, ch = this.box.clientHeight;
    if (this.canvas.width !== Math.round(cw * ratio) || this.canvas.height !== Math.round(ch * ratio)) {
      this.canvas.width = Math.round(cw * ratio);
      this.canvas.height = Math.round(ch * ratio);
      this.canvas.style.width = `${cw}px`;
      this.canvas.style.height = `${ch}px`;
    }
    return { cw, ch, ratio };
  }

  fit() {
    // as the SVG graph: a big graph opens on its top rows at a readable size
    const { cw, ch } = this.size();
    const f = this.full, aspect = cw / Math.max(1, ch);
    const w = Math.max(f.w, f.h * aspect, cw);
    const readable = Math.min(w, Math.max(cw * 1.6, 900));
    this.view = { x: f.x + (f.w - readable) / 2, y: f.y, s: cw / readable };
    this.redraw();
  }

  zoomLimits() {
    const cw = Math.max(1, this.box.clientWidth);
    return [cw / (Math.max(this.full.w, this.full.h) * 4), cw / 100];
  }

  redraw() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  draw() {
    if (this.frame) { cancelAnimationFrame(this.frame); this.frame = 0; }
    const { cw, ch, ratio } = this.size();
    const ctx = this.canvas.getContext("2d");
    const { x: vx, y: vy, s } = this.view;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(ratio * s, 0, 0, ratio * s, -vx * s * ratio, -vy * s * ratio);
    const x1v = vx + cw / s, y1v = vy + ch / s, xy = this.xy, w = this.w, h = this.h, half = w / 2;
    ctx.beginPath();
    const edges = this.edges;
    for (let k = 0; k < edges.length; k += 2) {
      const a = edges[k] * 2, b = edges[k + 1] * 2;
      const ax = xy[a] + half, ay = xy[a + 1] + h, bx = xy[b] + half, by = xy[b + 1];
      const r = this.route[k / 2], lane = r < 0 ? ax : this.via[r + 1];
      if (Math.max(ax, bx, lane) < vx || Math.min(ax, bx, lane) > x1v || Math.max(ay, by) < vy || Math.min(ay, by) > y1v) continue;
      if (r >= 0) {
        const above = this.via[r], below = this.via[r + 2];
        corners(ctx, [[ax, ay], [ax, above], [lane, above], [lane, below], [bx, below], [bx, by]]);
        continue;
      }
      const mid = (ay + by) / 2;
      ctx.moveTo(ax, ay);
      ctx.bezierCurveTo(ax, mid, bx, mid, bx, by);
    }
    ctx.strokeStyle = "#9aa3b2";
    ctx.lineWidth = 1.2 / s;
    ctx.stroke();
    const groups = new Map(), shown = [];
    for (let i = 0; i < this.names.length; i += 1) {
      const x = xy[2 * i], y = xy[2 * i + 1];
      if (x + w < vx || x > x1v || y + h < vy || y > y1v) continue;
      const status = this.status[i];
      if (!groups.has(status)) groups.set(status, []);
      groups.get(status).push(i);
      shown.push(i);
    }
    const round = s * 6 >= 1.5 && ctx.roundRect;
    for (const [status, members] of groups) {
      const [fill, stroke] = this.colour(status);
      ctx.beginPath();
      for (const i of members) {
        if (round) ctx.roundRect(xy[2 * i], xy[2 * i + 1], w, h, 6);
        else ctx.rect(xy[2 * i], xy[2 * i + 1], w, h);
      }
      ctx.fillStyle = fill;
      ctx.fill();
      // the same shapes as the SVG's (app.css): not by colour alone
      ctx.strokeStyle = stroke;
      ctx.lineWidth = (BUSY.has(status) ? 3.2 : ENDED_BADLY.has(status) ? 3 : 1.6) / s;
      ctx.setLineDash(NOT_RUN.has(status) ? [5 / s, 3 / s] : []);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (s >= 0.45) {
      ctx.textAlign = "center";
      ctx.fillStyle = "#111";
      ctx.font = "bold 12px system-ui, -apple-system, sans-serif";
      for (const i of shown) ctx.fillText(this.marks[this.status[i]] || "?", xy[2 * i] + 11, xy[2 * i + 1] + h / 2 + 4);
      ctx.font = "12px system-ui, -apple-system, sans-serif";
      for (const i of shown) ctx.fillText(this.label(ctx, this.names[i]), xy[2 * i] + LABEL_AT, xy[2 * i + 1] + h / 2 + 4);
    }
    if (this.selected >= 0) {
      ctx.strokeStyle = "#1559b7";
      ctx.lineWidth = 3 / s;
      ctx.strokeRect(xy[2 * this.selected] - 4, xy[2 * this.selected + 1] - 4, w + 8, h + 8);
    }
    this.canvas.dataset.drawn = (Number(this.canvas.dataset.drawn) || 0) + 1;
  }

  /* A node's label: its name, or its longest beginning that fits beside the mark with an
   * ellipsis, by its measured width (as the SVG's, _layout._label; kept per name). */
  label(ctx, name) {
    let text = this.labels.get(name);
    if (text === undefined) {
      text = name;
      if (ctx.measureText(name).width > LABEL_WIDTH) {
        let low = 0, high = name.length;
        while (low < high) { // the longest prefix that fits with its ellipsis
          const mid = Math.ceil((low + high) / 2);
          if (ctx.measureText(`${name.slice(0, mid)}…`).width <= LABEL_WIDTH) low = mid; else high = mid - 1;
        }
        text = `${name.slice(0, low)}…`;
      }
      this.labels.set(name, text);
    }
    return text;
  }

  /* -- finding nodes ------------------------------------------------------------------- */
  nodeAt(clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    const wx = this.view.x + (clientX - rect.left) / this.view.s;
    const wy = this.view.y + (clientY - rect.top) / this.view.s;
    const xy = this.xy;
    for (let i = 0; i < this.names.length; i += 1) {
      const x = xy[2 * i], y = xy[2 * i + 1];
      if (wx >= x && wx <= x + this.w && wy >= y && wy <= y + this.h) return i;
    }
    return -1;
  }

  locate(name) {
    const i = this.index.get(name);
    if (i === undefined) return null;
    this.box.scrollIntoView({ block: "nearest" });
    const { cw, ch } = this.size();
    const cx = this.xy[2 * i] + this.w / 2, cy = this.xy[2 * i + 1] + this.h / 2;
    this.view = { x: cx - cw / 2, y: cy - ch / 2, s: 1 };
    this.selected = i;
    this.canvas.dataset.selected = name;
    this.draw();
    const rect = this.canvas.getBoundingClientRect();
    return { x: rect.left + cw / 2, y: rect.top + ch / 2 };
  }

  pixel(name) {
    const at = this.locate(name);
    if (!at) return null;
    const rect = this.canvas.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
    // inside the box, above its label and clear of its border
    const px = Math.round((at.x - rect.left) * ratio), py = Math.round((at.y - rect.top - this.h / 2 + 7) * ratio);
    const [r, g, b] = this.canvas.getContext("2d").getImageData(px, py, 1, 1).data;
    return `rgb(${r}, ${g}, ${b})`;
  }

  find(text) {
    const wanted = text.trim().toLowerCase();
    if (!wanted) return null;
    let found = this.index.has(text.trim()) ? text.trim() : null;
    if (found === null) found = this.names.find((n) => n.toLowerCase() === wanted) ?? this.names.find((n) => n.toLowerCase().includes(wanted)) ?? null;
    if (found !== null) this.locate(found);
    return found;
  }

  /* -- the keyboard -------------------------------------------------------------------- */
  /* The node a key moves to from node ``i`` (-1: none selected yet: the first). */
  step(i, key) {
    const order = this.order, last = order.length - 1;
    if (i < 0 || key === "Home") return order[0];
    if (key === "End") return order[last];
    const k = this.place[i];
    if (key === "ArrowRight") return order[Math.min(k + 1, last)];
    if (key === "ArrowLeft") return order[Math.max(k - 1, 0)];
    const xy = this.xy, y = xy[2 * i + 1], x = xy[2 * i], down = key === "ArrowDown";
    let row = null, best = i, gap = Infinity;
    for (let m = down ? k + 1 : k - 1; m >= 0 && m <= last; m += down ? 1 : -1) {
      const j = order[m], yj = xy[2 * j + 1];
      if (yj === y) continue;
      if (row === null) row = yj;
      if (yj !== row) break; // past the next row
      const d = Math.abs(xy[2 * j] - x);
      if (d < gap) { gap = d; best = j; }
    }
    return best;
  }

  /* Select node ``i``, bring it into view (at a readable size) and say it. */
  select(i) {
    this.selected = i;
    const name = this.names[i];
    this.canvas.dataset.selected = name;
    const { cw, ch } = this.size();
    const s = Math.max(this.view.s, 0.8);
    const x = this.xy[2 * i], y = this.xy[2 * i + 1], v = this.view;
    const inside = s === v.s && x >= v.x && y >= v.y && x + this.w <= v.x + cw / s && y + this.h <= v.y + ch / s;
    if (!inside) this.view = { x: x + this.w / 2 - cw / (2 * s), y: y + this.h / 2 - ch / (2 * s), s };
    this.said.textContent = `${name}: ${this.status[i]} (${this.place[i] + 1} of ${this.names.length})`;
    this.redraw();
  }

  /* -- pan, zoom, click, hover --------------------------------------------------------- */
  listen() {
    const canvas = this.canvas;
    canvas.addEventListener("keydown", (e) => {
      if (!this.names.length || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "Enter" && this.selected >= 0) {
        e.preventDefault();
        location.href = this.hrefOf(this.names[this.selected]);
      } else if (["ArrowRight", "ArrowLeft", "ArrowUp", "ArrowDown", "Home", "End"].includes(e.key)) {
        e.preventDefault(); // (not the page's scroll)
        this.select(this.step(this.selected, e.key));
      }
    });
    canvas.addEventListener("focus", () => { // reached with Tab: a node is selected at once
      if (this.names.length && canvas.matches(":focus-visible")) this.select(this.selected >= 0 ? this.selected : this.order[0]);
    });
    let drag = null;
    canvas.addEventListener("mousedown", (e) => {
      drag = { x: e.clientX, y: e.clientY, view: { ...this.view }, moved: false };
      this.box.classList.add("dragging");
    });
    window.addEventListener("mousemove", (e) => {
      if (!drag) {
        if (e.target !== canvas) return;
        const i = this.nodeAt(e.clientX, e.clientY);
        canvas.title = i < 0 ? "" : `${this.names[i]} (${this.status[i]})`;
        canvas.style.cursor = i < 0 ? "" : "pointer";
        return;
      }
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
      this.view = { ...drag.view, x: drag.view.x - dx / drag.view.s, y: drag.view.y - dy / drag.view.s };
      this.redraw();
    });
    window.addEventListener("mouseup", () => {
      this.box.classList.remove("dragging");
      setTimeout(() => { drag = null; }, 0);
    });
    canvas.addEventListener("click", (e) => {
      if (drag && drag.moved) return;
      const i = this.nodeAt(e.clientX, e.clientY);
      if (i >= 0) location.href = this.hrefOf(this.names[i]);
    });
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const rect = canvas.getBoundingClientRect();
      const [low, high] = this.zoomLimits();
      const s = Math.min(Math.max(this.view.s / Math.exp(e.deltaY * 0.0015), low), high);
      const px = e.clientX - rect.left, py = e.clientY - rect.top;
      const wx = this.view.x + px / this.view.s, wy = this.view.y + py / this.view.s;
      this.view = { x: wx - px / s, y: wy - py / s, s };
      this.redraw();
    }, { passive: false });
    window.addEventListener("resize", () => this.redraw());
  }
}

window.CanvasGraph = CanvasGraph;
