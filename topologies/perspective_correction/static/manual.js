// The manual-correction page's script (no inline script: the service's CSP forbids it).
"use strict";
const BASE = document.body.dataset.base;
const TASK = document.body.dataset.task === undefined ? null : document.body.dataset.task;
const NAMES = ["top-left", "top-right", "bottom-right", "bottom-left"];
const GRAB = 14;  // screen pixels: pressing this close to a corner drags it instead of adding one
let corners = [];
let dragging = -1;

function imgEl() { return document.getElementById("photo"); }

function draw() {
  const img = imgEl(), stage = document.getElementById("stage");
  stage.querySelectorAll(".marker").forEach((m) => m.remove());
  const sx = img.clientWidth / img.naturalWidth, sy = img.clientHeight / img.naturalHeight;
  corners.forEach((c, i) => {
    const m = document.createElement("div");
    m.className = "marker";
    m.style.left = (c[0] * sx) + "px";
    m.style.top = (c[1] * sy) + "px";
    const label = document.createElement("span");
    label.textContent = String(i + 1);
    m.appendChild(label);
    stage.appendChild(m);
  });
  const poly = document.getElementById("outline");
  poly.setAttribute("points", corners.map((c) => (c[0] * sx) + "," + (c[1] * sy)).join(" "));
  document.getElementById("submit").disabled = corners.length !== 4;
  const msg = document.getElementById("msg");
  msg.className = "";
  msg.textContent = corners.length < 4
    ? "Click corner " + (corners.length + 1) + " of 4 (any order, e.g. the " + NAMES[corners.length] + ")"
    : "Ready: submit, or drag a corner to move it";
}

function imagePoint(ev) {
  const img = imgEl(), box = img.getBoundingClientRect();
  const x = (ev.clientX - box.left) * img.naturalWidth / box.width;
  const y = (ev.clientY - box.top) * img.naturalHeight / box.height;
  return [Math.max(0, Math.min(img.naturalWidth, x)), Math.max(0, Math.min(img.naturalHeight, y))];
}

function nearest(ev) {
  const img = imgEl(), box = img.getBoundingClientRect();
  const sx = box.width / img.naturalWidth, sy = box.height / img.naturalHeight;
  let best = -1, bestD = GRAB;
  corners.forEach((c, i) => {
    const d = Math.hypot(box.left + c[0] * sx - ev.clientX, box.top + c[1] * sy - ev.clientY);
    if (d <= bestD) { best = i; bestD = d; }
  });
  return best;
}

function onDown(ev) {
  const stage = document.getElementById("stage");
  dragging = nearest(ev);
  if (dragging < 0) {
    if (corners.length >= 4) return;
    corners.push(imagePoint(ev));
    dragging = corners.length - 1;  // a new corner can be adjusted before the button is released
  }
  stage.setPointerCapture(ev.pointerId);
  stage.classList.add("dragging");
  draw();
}

function onMove(ev) {
  if (dragging < 0) return;
  corners[dragging] = imagePoint(ev);
  draw();
}

function onUp(ev) {
  if (dragging < 0) return;
  dragging = -1;
  const stage = document.getElementById("stage");
  stage.classList.remove("dragging");
  if (stage.hasPointerCapture(ev.pointerId)) stage.releasePointerCapture(ev.pointerId);
}

function undo() { corners.pop(); draw(); }
function reset() { corners = []; draw(); }

async function submit() {
  const msg = document.getElementById("msg");
  document.getElementById("submit").disabled = true;
  const r = await fetch(BASE + "correct", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id: TASK, corners: corners }),
  });
  const body = await r.json().catch(() => ({}));
  if (r.ok) {
    msg.className = "";
    msg.textContent = "Done: " + body.width + "x" + body.height + " page. Loading the next task...";
    setTimeout(() => { location.href = BASE; }, 400);
  } else {
    msg.className = "error";
    const detail = body.detail;
    msg.textContent = typeof detail === "string" ? detail : ("error " + r.status + ": " + JSON.stringify(detail));
    document.getElementById("submit").disabled = corners.length !== 4;
  }
}

document.getElementById("refresh").addEventListener("click", () => { location.href = BASE; });
if (TASK !== null && imgEl()) {
  const img = imgEl(), stage = document.getElementById("stage");
  stage.addEventListener("pointerdown", onDown);
  stage.addEventListener("pointermove", onMove);
  stage.addEventListener("pointerup", onUp);
  stage.addEventListener("pointercancel", onUp);
  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("reset").addEventListener("click", reset);
  document.getElementById("submit").addEventListener("click", submit);
  if (img.complete) draw(); else img.addEventListener("load", draw);
  window.addEventListener("resize", draw);
}
