// The review console's drawing widget: points, a polygon or boxes clicked on an image of the task,
// for inputs annotated with pipeteer.annotate (Points, Polygon, Boxes). No inline script (the CSP
// forbids it), no innerHTML: all text goes in by textContent or onto the canvas.
//
//   const w = PipeteerAnnotate.widget(container, input, imageUrl, (value) => { ... });
//   w.value()     // [[x, y], ...] (or [[x0, y0, x1, y1], ...]) in the image's natural pixels, to 0.1;
//                 // throws Error("corners: 2 of 4 points") while incomplete
//   w.undo()      // removes the last point / box; false if there was none
//   w.clear(); w.complete(); w.destroy()
//
// onChange(value | null) is called after every change that ends (a click, the end of a drag, an
// undo, a clear), with what value() returns, or null while incomplete: debounce it before asking
// for a preview. Backspace or z undoes in the widget last pressed in (or the last one made).
"use strict";

(function () {
  const GRAB = { mouse: 12, pen: 16, touch: 26 };  // screen pixels: a press this close to a point drags it
  const MIN_BOX = 4;  // screen pixels: a smaller box is a slip, not a box
  const MAX_SCALE = 3;  // small images are enlarged to fit, up to this
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];
  let active = null;  // the widget the keyboard talks to

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function round(v) { return Math.round(v * 10) / 10; }

  document.addEventListener("keydown", (ev) => {
    if (active === null || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    if (ev.key === "Backspace" || ev.key === "z" || ev.key === "Z") {
      ev.preventDefault();
      active.undo();
    }
  });

  function widget(container, input, imageUrl, onChange) {
    const kind = input.kind;
    if (!["points", "polygon", "boxes"].includes(kind)) throw new Error("not a drawn input: " + kind);
    const boxes = kind === "boxes";
    const n = kind === "polygon" ? null : (input.n === null || input.n === undefined ? null : input.n);
    const least = kind === "polygon" ? (input.min_points || 3) : (n === null ? 0 : n);
    const labels = input.point_labels || [];
    const name = input.label || input.name;
    const unit = boxes ? "box" : "point";
    const units = boxes ? "boxes" : "points";

    let items = [];  // natural pixels: [x, y] or [x0, y0, x1, y1]
    let drag = null;  // {index, corner} of the handle being dragged, or {index, fresh: true} for a new box
    let scale = 1;  // screen pixels per natural pixel
    let loaded = false;
    let broken = false;

    const root = el("div", "pa-widget pa-" + kind);
    const hint = el("div", "pa-hint");
    hint.setAttribute("aria-live", "polite");
    const frame = el("div", "pa-frame");
    const canvas = el("canvas", "pa-canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", name + ": click on the image");
    frame.appendChild(canvas);
    const tools = el("div", "pa-tools");
    const undoButton = el("button", "quiet", "Undo");
    undoButton.type = "button";
    undoButton.title = "Backspace or z";
    const clearButton = el("button", "quiet", "Clear");
    clearButton.type = "button";
    tools.append(undoButton, clearButton);
    root.append(hint, frame, tools);
    container.appendChild(root);
    const ctx = canvas.getContext("2d");
    const img = new Image();

    function labelOf(i) { return labels[i] !== undefined ? labels[i] : String(i + 1); }
    function full() { return n !== null && items.length >= n; }
    function complete() { return loaded && (items.length >= least || (input.optional && items.length === 0)); }

    function value() {
      if (!loaded) throw new Error(input.name + ": the image is not loaded" + (broken ? " (it could not be)" : " yet"));
      if (!complete()) {
        const need = kind === "polygon" ? "at least " + least : String(least);
        throw new Error(input.name + ": " + items.length + " of " + need + " " + units);
      }
      if (input.optional && items.length === 0) return null;
      return items.map((it) => it.map(round));
    }

    function changed() {
      draw();
      let v = null;
      try { v = value(); } catch (e) { v = null; }
      if (onChange) onChange(v);
    }

    function showHint() {
      if (broken) { hint.textContent = "The image could not be loaded."; return; }
      if (!loaded) { hint.textContent = "Loading the image…"; return; }
      const verb = boxes ? "drag" : "click";
      if (full()) {
        hint.textContent = "All " + n + " " + (n === 1 ? unit : units) + " placed: drag a " +
          (boxes ? "corner" : "point") + " to move it; Backspace or z undoes.";
      } else if (n !== null) {
        hint.textContent = verb + ": " + labelOf(items.length) + " (" + (items.length + 1) + " of " + n + ")";
      } else if (kind === "polygon" && items.length < least) {
        hint.textContent = verb + ": " + labelOf(items.length) + " (" + (items.length + 1) + " of at least " + least + ")";
      } else if (kind === "polygon") {
        hint.textContent = "The outline is closed: click to add corner " + (items.length + 1) + ", drag a corner to move it.";
      } else {
        hint.textContent = verb + ": " + labelOf(items.length) + " (as many as needed)";
      }
    }

    function layout() {
      if (!loaded) return;
      const maxW = Math.max(100, frame.clientWidth || container.clientWidth || img.naturalWidth);
      const maxH = Math.max(100, window.innerHeight * 0.6);
      scale = Math.min(maxW / img.naturalWidth, maxH / img.naturalHeight, MAX_SCALE);
      const w = Math.round(img.naturalWidth * scale), h = Math.round(img.naturalHeight * scale);
      const dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      canvas.style.width = w + "px";
      canvas.style.height = h + "px";
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      draw();
    }

    function tag(text, x, y, color) {
      ctx.font = "600 12px system-ui, sans-serif";
      const w = ctx.measureText(text).width + 8;
      const cw = canvas.width / (window.devicePixelRatio || 1), ch = canvas.height / (window.devicePixelRatio || 1);
      const left = Math.min(Math.max(0, x + 9), cw - w), top = Math.min(Math.max(0, y - 22), ch - 18);
      ctx.fillStyle = "rgba(17, 24, 39, .8)";
      ctx.fillRect(left, top, w, 18);
      ctx.fillStyle = "white";
      ctx.textBaseline = "middle";
      ctx.fillText(text, left + 4, top + 9);
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.strokeRect(left, top, w, 18);
    }

    function dot(x, y, color) {
      ctx.beginPath();
      ctx.arc(x, y, 6, 0, 2 * Math.PI);
      ctx.fillStyle = color;
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = "white";
      ctx.stroke();
    }

    function draw() {
      showHint();
      undoButton.disabled = items.length === 0;
      clearButton.disabled = items.length === 0;
      if (!loaded) return;
      const cw = canvas.width / (window.devicePixelRatio || 1), ch = canvas.height / (window.devicePixelRatio || 1);
      ctx.clearRect(0, 0, cw, ch);
      ctx.drawImage(img, 0, 0, cw, ch);
      if (boxes) {
        items.forEach((b, i) => {
          const color = COLORS[i % COLORS.length];
          const [x0, y0, x1, y1] = b.map((v) => v * scale);
          ctx.fillStyle = "rgba(37, 99, 235, .12)";
          ctx.fillRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
          ctx.lineWidth = 2;
          ctx.strokeStyle = color;
          ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
          for (const [x, y] of [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) dot(x, y, color);
          tag(labelOf(i), Math.min(x0, x1), Math.min(y0, y1) + 22, color);
        });
        return;
      }
      if (items.length >= 2) {
        ctx.beginPath();
        items.forEach((p, i) => (i === 0 ? ctx.moveTo(p[0] * scale, p[1] * scale) : ctx.lineTo(p[0] * scale, p[1] * scale)));
        const closed = kind === "polygon" ? items.length >= 3 : (n !== null && n >= 3 && full());
        if (closed) {
          ctx.closePath();
          ctx.fillStyle = "rgba(37, 99, 235, .15)";
          ctx.fill();
        }
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#2563eb";
        if (!closed && kind === "points") ctx.setLineDash([6, 4]);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      items.forEach((p, i) => {
        const color = COLORS[i % COLORS.length];
        dot(p[0] * scale, p[1] * scale, color);
        tag(labelOf(i), p[0] * scale, p[1] * scale, color);
      });
    }

    // Natural pixels of a pointer event, clamped to the image.
    function at(ev) {
      const r = canvas.getBoundingClientRect();
      const x = (ev.clientX - r.left) / r.width * img.naturalWidth;
      const y = (ev.clientY - r.top) / r.height * img.naturalHeight;
      return [Math.max(0, Math.min(img.naturalWidth, x)), Math.max(0, Math.min(img.naturalHeight, y))];
    }

    // The handle under the pointer: {index, corner} (corner: 0 for a point, 0..3 for a box's corners).
    function handle(ev) {
      const r = canvas.getBoundingClientRect();
      const sx = r.width / img.naturalWidth, sy = r.height / img.naturalHeight;
      const px = ev.clientX - r.left, py = ev.clientY - r.top;
      let best = null, bestD = GRAB[ev.pointerType] || GRAB.mouse;
      items.forEach((it, i) => {
        const corners = boxes ? [[it[0], it[1]], [it[2], it[1]], [it[2], it[3]], [it[0], it[3]]] : [it];
        corners.forEach((c, k) => {
          const d = Math.hypot(c[0] * sx - px, c[1] * sy - py);
          if (d <= bestD) { best = { index: i, corner: k }; bestD = d; }
        });
      });
      return best;
    }

    function moveTo(ev) {
      const [x, y] = at(ev);
      const it = items[drag.index];
      if (!boxes) { items[drag.index] = [x, y]; return; }
      if (drag.fresh) { it[2] = x; it[3] = y; return; }
      // a box's corner: 0 top-left, 1 top-right, 2 bottom-right, 3 bottom-left (as drawn)
      if (drag.corner === 0 || drag.corner === 3) it[0] = x; else it[2] = x;
      if (drag.corner === 0 || drag.corner === 1) it[1] = y; else it[3] = y;
    }

    function onDown(ev) {
      if (!loaded || (ev.pointerType === "mouse" && ev.button !== 0)) return;
      active = api;
      ev.preventDefault();
      const h = handle(ev);
      if (h !== null) {
        drag = h;
      } else if (full()) {
        return;  // all placed: only drags
      } else {
        const [x, y] = at(ev);
        items.push(boxes ? [x, y, x, y] : [x, y]);
        drag = { index: items.length - 1, corner: 0, fresh: boxes };
      }
      canvas.setPointerCapture(ev.pointerId);
      root.classList.add("pa-dragging");
      draw();
    }

    function onMove(ev) {
      if (drag === null) {
        if (loaded) root.classList.toggle("pa-over-handle", handle(ev) !== null);
        return;
      }
      moveTo(ev);
      draw();
    }

    function onUp(ev) {
      if (drag === null) return;
      if (ev.type !== "pointercancel") moveTo(ev);
      if (boxes) {
        const b = items[drag.index];
        const [x0, x1] = [Math.min(b[0], b[2]), Math.max(b[0], b[2])];
        const [y0, y1] = [Math.min(b[1], b[3]), Math.max(b[1], b[3])];
        if ((x1 - x0) * scale < MIN_BOX || (y1 - y0) * scale < MIN_BOX) {
          if (drag.fresh) items.splice(drag.index, 1);  // a click, not a drag: no box
        } else {
          items[drag.index] = [x0, y0, x1, y1];
        }
      }
      drag = null;
      root.classList.remove("pa-dragging");
      if (canvas.hasPointerCapture(ev.pointerId)) canvas.releasePointerCapture(ev.pointerId);
      changed();
    }

    function undo() {
      if (items.length === 0 || drag !== null) return false;
      items.pop();
      changed();
      return true;
    }

    function clear() {
      if (drag !== null) return;
      items = [];
      changed();
    }

    function destroy() {
      window.removeEventListener("resize", layout);
      if (active === api) active = null;
      root.remove();
    }

    const api = { value: value, undo: undo, clear: clear, complete: complete, destroy: destroy };

    canvas.addEventListener("pointerdown", onDown);
    canvas.addEventListener("pointermove", onMove);
    canvas.addEventListener("pointerup", onUp);
    canvas.addEventListener("pointercancel", onUp);
    canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
    undoButton.addEventListener("click", () => { active = api; undo(); });
    clearButton.addEventListener("click", () => { active = api; clear(); });
    root.addEventListener("focusin", () => { active = api; });
    window.addEventListener("resize", layout);
    img.addEventListener("load", () => { loaded = true; layout(); changed(); });
    img.addEventListener("error", () => { broken = true; draw(); if (onChange) onChange(null); });
    img.src = imageUrl;
    if (active === null) active = api;
    draw();
    return api;
  }

  window.PipeteerAnnotate = { widget: widget };
})();
