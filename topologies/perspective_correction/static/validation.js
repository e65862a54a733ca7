// The validation page's script (no inline script: the service's CSP forbids it).
"use strict";
const BASE = document.body.dataset.base;
let shown = document.querySelectorAll(".card").length;
const total = parseInt(document.getElementById("count").textContent, 10);
let done = 0;

function left() {
  const n = total - done;
  document.getElementById("count").textContent = n;
  document.title = "Validation: " + n + " pending";
}

async function decide(button, ok) {
  const card = button.closest(".card");
  const id = card.dataset.id;
  const msg = card.querySelector(".msg");
  card.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try {
    const r = await fetch(BASE + "validate?id=" + encodeURIComponent(id) + "&ok=" + ok, { method: "POST" });
    const body = await r.json().catch(() => ({}));
    // The card stays where it is (marked done), so nothing slides under the pointer.
    card.classList.add("done");
    if (r.ok) {
      msg.textContent = ok ? "approved" : "rejected";
      done += 1;
    } else {
      msg.className = "msg error";
      msg.textContent = typeof body.detail === "string" ? body.detail : ("error " + r.status);
    }
  } catch (e) {
    msg.className = "msg error";
    msg.textContent = "network error: " + e;
    card.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  }
  left();
}

document.getElementById("refresh").addEventListener("click", () => { location.reload(); });
document.getElementById("tasks").addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-ok]");
  if (button && !button.disabled) decide(button, button.dataset.ok === "true");
});
