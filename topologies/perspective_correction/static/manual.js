// The manual-correction page's script (no inline script: the service's CSP forbids it).
// Click 4 corners (drag one to move it), check the preview of the corrected page, submit.
"use strict";
const BASE = document.body.dataset.base;
const TASK = document.body.dataset.task === undefined ? null : document.body.dataset.task;
const NAMES = ["top-left", "top-right", "bottom-right", "bottom-left"];
const GRAB = 14;  // screen pixels: pressing this close to a corner drags it instead of adding one
let corners = [];
let dragging = -1;
let previewOk = false;  // the preview shown is of the corners placed now, and the server accepted them
let asked = 0;          // the latest preview asked for: answers to older requests are dropped
let busy = false;       // submitting

function $(id) { return document.getElementById(id); }

function say(text, error) {
  $("msg").className = error ? "error" : "";
  $("msg").textContent = text;
}

function updateSubmit() { $("submit").disabled = !(previewOk && !busy); }

function draw() {
  const img = $("photo"), stage = $("stage");
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
  $("outline").setAttribute("points", corners.map((c) => (c[0] * sx) + "," + (c[1] * sy)).join(" "));
  updateSubmit();
  if (corners.length < 4) {
    say("Click corner " + (corners.length + 1) + " of 4 (any order, e.g. the " + NAMES[corners.length] + ")");
  } else if (dragging >= 0) {
    say("Let go to see the corrected page");
  } else if (previewOk) {
    say("Check the corrected page, then submit (Enter); drag a corner to move it");
  }  // else: the preview is on its way, or its error is shown
}

// The corners changed: the preview shown no longer matches them, ask for a new one (once the
// person lets go of a corner, not at every move of a drag).
function changed() {
  previewOk = false;
  asked += 1;
  $("preview-box").classList.add("stale");
  if (corners.length === 4 && dragging < 0) showPreview(asked);
  if (corners.length < 4) {
    $("preview").hidden = true;
    $("preview-msg").className = "";
    $("preview-msg").textContent = "The corrected page appears here once 4 corners are placed.";
  }
  draw();
}

async function showPreview(n) {
  const caption = $("preview-msg");
  caption.className = "";
  caption.textContent = "Making the preview...";
  say("Making the preview of the corrected page...");
  let r;
  try {
    r = await fetch(BASE + "preview", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: TASK, corners: corners }),
    });
  } catch (e) {
    r = null;
  }
  if (n !== asked) return;  // the corners moved again meanwhile
  if (r === null || !r.ok) {
    caption.className = "error";
    caption.textContent = r === null ? "The service cannot be reached: try again." : await errorText(r);
    $("preview").hidden = true;
    say("These corners cannot be submitted: move or undo one", true);
    return;
  }
  const img = $("preview");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(await r.blob());
  img.hidden = false;
  caption.textContent = "The corrected page, as it will be sent on.";
  $("preview-box").classList.remove("stale");
  previewOk = true;
  draw();
}

async function errorText(r) {
  const body = await r.json().catch(() => ({}));
  return typeof body.detail === "string" ? body.detail : "error " + r.status + ": " + JSON.stringify(body.detail);
}

function imagePoint(ev) {
  const img = $("photo"), box = img.getBoundingClientRect();
  const x = (ev.clientX - box.left) * img.naturalWidth / box.width;
  const y = (ev.clientY - box.top) * img.naturalHeight / box.height;
  return [Math.max(0, Math.min(img.naturalWidth, x)), Math.max(0, Math.min(img.naturalHeight, y))];
}

function nearest(ev) {
  const img = $("photo"), box = img.getBoundingClientRect();
  const sx = box.width / img.naturalWidth, sy = box.height / img.naturalHeight;
  let best = -1, bestD = GRAB;
  corners.forEach((c, i) => {
    const d = Math.hypot(box.left + c[0] * sx - ev.clientX, box.top + c[1] * sy - ev.clientY);
    if (d <= bestD) { best = i; bestD = d; }
  });
  return best;
}

function onDown(ev) {
  if (busy) return;
  dragging = nearest(ev);
  if (dragging < 0) {
    if (corners.length >= 4) return;
    corners.push(imagePoint(ev));
    dragging = corners.length - 1;  // a new corner can be adjusted before the button is released
  }
  $("stage").setPointerCapture(ev.pointerId);
  $("stage").classList.add("dragging");
  changed();
}

function onMove(ev) {
  if (dragging < 0) return;
  corners[dragging] = imagePoint(ev);
  draw();
}

function onUp(ev) {
  if (dragging < 0) return;
  dragging = -1;
  const stage = $("stage");
  stage.classList.remove("dragging");
  if (stage.hasPointerCapture(ev.pointerId)) stage.releasePointerCapture(ev.pointerId);
  changed();
}

function undo() { if (!busy && corners.length > 0) { corners.pop(); changed(); } }
function clear() { if (!busy) { corners = []; changed(); } }

async function submit() {
  if (!previewOk || busy) return;
  busy = true;
  updateSubmit();
  say("Submitting...");
  const r = await fetch(BASE + "correct", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id: TASK, corners: corners }),
  }).catch(() => null);
  if (r !== null && r.ok) {
    say("Done: " + TASK + ". Loading the next task...");
    setTimeout(() => { location.href = BASE; }, 600);
    return;
  }
  busy = false;
  updateSubmit();
  // 409 names who holds the task (e.g. a reviewer in the console): `detail` says so
  say(r === null ? "The service cannot be reached: try again." : await errorText(r), true);
}

// The task after this one in the list (the first one after the last), or the oldest pending one.
function next() {
  const links = Array.from(document.querySelectorAll("nav a"));
  const here = links.findIndex((a) => a.classList.contains("current"));
  const after = links[here + 1] || links.find((a) => !a.classList.contains("current"));
  location.href = after ? after.href : BASE;
}

function toggleKeys() {
  $("keys").hidden = !$("keys").hidden;
  $("keys-hint").hidden = !$("keys").hidden;
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement ||
      (t instanceof HTMLElement && t.isContentEditable)) return;
  if (ev.key === "Enter" && (t instanceof HTMLButtonElement || t instanceof HTMLAnchorElement)) return;  // its own click
  const actions = { "z": undo, "Backspace": undo, "Enter": submit, "n": next,
                    "?": toggleKeys };
  const action = actions[ev.key];
  if (action === undefined) return;
  ev.preventDefault();
  action();
}

$("refresh").addEventListener("click", () => { location.href = BASE; });
if (TASK !== null && $("photo")) {
  const img = $("photo"), stage = $("stage");
  stage.addEventListener("pointerdown", onDown);
  stage.addEventListener("pointermove", onMove);
  stage.addEventListener("pointerup", onUp);
  stage.addEventListener("pointercancel", onUp);
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clear);
  $("submit").addEventListener("click", submit);
  // a button clicked with the mouse does not keep the focus, so Enter still submits afterwards
  document.querySelectorAll(".controls button").forEach((b) => b.addEventListener("mousedown", (e) => e.preventDefault()));
  document.addEventListener("keydown", onKey);
  if (img.complete) draw(); else img.addEventListener("load", draw);
  window.addEventListener("resize", draw);
}
