// The review console's pages: no inline script (the CSP forbids it); all text goes in by textContent.
"use strict";

const page = document.body.dataset.page;

async function api(method, path, params, body, contentType) {
  const url = path + "?" + new URLSearchParams(params).toString();
  const init = { method: method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.body = body;
    init.headers["Content-Type"] = contentType || "application/json";
  }
  const r = await fetch(url, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const detail = typeof data.detail === "string" ? data.detail : ("error " + r.status);
    throw new Error(detail);
  }
  return data;
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

if (page === "index") {
  const source = new EventSource("/console/api/events");
  source.addEventListener("change", (ev) => {
    for (const s of JSON.parse(ev.data)) {
      for (const row of document.querySelectorAll("tr[data-stage]")) {
        if (row.dataset.stage !== s.stage) continue;
        row.querySelector(".pending").textContent = s.pending;
        if (s.human) row.querySelector(".taken").textContent = s.taken;
      }
    }
  });
}

if (page === "stage") {
  const STAGE = document.body.dataset.stage;
  const UNDO = parseFloat(document.body.dataset.undo);
  const PAGE = 50;
  let offset = 0, total = 0, current = null, lastDecision = null, lockedUntil = 0, busy = false;
  const $ = (id) => document.getElementById(id);

  function status(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = kind || "";
  }

  async function loadList() {
    const data = await api("GET", "/console/api/tasks", { stage: STAGE, offset: offset, limit: PAGE });
    total = data.total;
    if (offset > 0 && offset >= total) { offset = Math.max(0, Math.floor((total - 1) / PAGE) * PAGE); return loadList(); }
    $("total").textContent = total;
    document.title = STAGE + ": " + total + " pending";
    const list = $("list");
    list.replaceChildren();
    for (const item of data.items) {
      const li = el("li", { "data-id": item.id });
      const a = el("a", { href: "#" }, item.id);
      a.addEventListener("click", (ev) => { ev.preventDefault(); openTask(item.id); });
      li.appendChild(a);
      if (item.holder) li.appendChild(el("span", { class: "badge" }, item.holder));
      if (current && item.id === current.id) li.className = "current";
      list.appendChild(li);
    }
    list.start = offset + 1;
    $("range").textContent = total ? (offset + 1) + "–" + Math.min(offset + PAGE, total) + " of " + total : "none";
    $("prev").disabled = offset === 0;
    $("next-page").disabled = offset + PAGE >= total;
  }

  function fieldUrl(id, name) {
    return "/console/api/field?" + new URLSearchParams({ stage: STAGE, id: id, name: name }).toString();
  }

  function showTask(task) {
    current = task;
    lockedUntil = Date.now() + 500;  // a click meant for the previous task must not act on this one
    $("empty").hidden = task !== null;
    $("task").classList.toggle("none", task === null);
    $("fields").replaceChildren();
    $("action").replaceChildren();
    $("task-id").textContent = task ? task.id : "";
    $("holder").textContent = task && task.holder ? "yours" : "";
    if (!task) return;
    const images = el("div", { class: "images" }), texts = el("dl");
    for (const f of task.fields) {
      if (f.kind === "image") {
        const fig = el("figure");
        fig.appendChild(el("img", { src: fieldUrl(task.id, f.name), alt: f.name + " of " + task.id }));
        fig.appendChild(el("figcaption", {}, f.name));
        images.appendChild(fig);
      } else {
        texts.appendChild(el("dt", {}, f.name));
        texts.appendChild(el("dd", {}, f.kind === "bytes" ? f.size + " bytes" : f.text));
      }
    }
    $("fields").append(images, texts);
    buildAction(task.actions);
    for (const li of document.querySelectorAll("#list li")) li.classList.toggle("current", li.dataset.id === task.id);
  }

  function buildAction(actions) {
    const form = $("action");
    if (actions.kind === "decide") {
      const ok = el("button", { type: "button", class: "approve", id: "approve" });
      ok.append("Approve ", el("kbd", {}, "a"));
      const no = el("button", { type: "button", class: "reject", id: "reject" });
      no.append("Reject ", el("kbd", {}, "r"));
      ok.addEventListener("click", () => decide(true));
      no.addEventListener("click", () => decide(false));
      form.append(ok, no);
      return;
    }
    if (actions.kind === "upload") {
      form.appendChild(el("label", { for: "upload" }, "File (" + actions.type_name + ")"));
      form.appendChild(el("input", { type: "file", id: "upload", required: "" }));
    } else {
      for (const input of actions.inputs) {
        const id = "in-" + input.name;
        form.appendChild(el("label", { for: id }, input.name + (input.optional ? " (optional)" : "")));
        let e;
        if (input.kind === "checkbox") e = el("input", { type: "checkbox", id: id });
        else if (input.kind === "select") {
          e = el("select", { id: id });
          for (const c of input.choices) e.appendChild(el("option", { value: c }, c));
        } else if (input.kind === "json") e = el("textarea", { id: id, rows: "3", placeholder: "JSON" });
        else if (input.kind === "file") e = el("input", { type: "file", id: id });
        else e = el("input", { type: input.kind === "text" ? "text" : "number", id: id,
                               step: input.kind === "integer" ? "1" : "any" });
        e.dataset.kind = input.kind;
        e.dataset.name = input.name;
        e.dataset.optional = input.optional ? "1" : "";
        form.appendChild(e);
      }
    }
    const submit = el("button", { type: "submit", class: "approve", id: "submit" });
    submit.append("Submit ", el("kbd", {}, "Enter"));
    form.appendChild(submit);
  }

  async function readFile(input) {
    const file = input.files && input.files[0];
    if (!file) return null;
    return new Uint8Array(await file.arrayBuffer());
  }

  function b64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  async function formValue(actions) {
    const inputs = [...$("action").querySelectorAll("[data-kind]")];
    const out = {};
    for (const e of inputs) {
      const k = e.dataset.kind;
      let v;
      if (k === "checkbox") v = e.checked;
      else if (k === "file") { const bytes = await readFile(e); v = bytes ? b64(bytes) : null; }
      else if (e.value === "" && e.dataset.optional) v = null;
      else if (k === "integer" || k === "number") v = e.value === "" ? null : Number(e.value);
      else if (k === "json") { try { v = JSON.parse(e.value); } catch (err) { throw new Error(e.dataset.name + ": not valid JSON"); } }
      else v = e.value;
      out[e.dataset.name] = v;
    }
    return actions.single ? out.value : out;
  }

  async function decide(value) {
    if (!current || busy || Date.now() < lockedUntil) return;
    busy = true;
    const task = current;
    try {
      let result;
      if (task.actions.kind === "upload") {
        const bytes = await readFile($("upload"));
        if (!bytes) throw new Error("choose a file first");
        result = await api("POST", "/console/api/decide", { stage: STAGE, id: task.id }, bytes, "application/octet-stream");
      } else {
        const v = task.actions.kind === "decide" ? value : await formValue(task.actions);
        result = await api("POST", "/console/api/decide", { stage: STAGE, id: task.id }, JSON.stringify({ value: v }));
      }
      remember(task, result);
      await nextTask(task.id);
    } catch (e) {
      status(String(e.message || e), "error");
    } finally {
      busy = false;
    }
  }

  function remember(task, result) {
    if (lastDecision && lastDecision.timer) clearInterval(lastDecision.timer);
    const label = result.label.charAt(0).toUpperCase() + result.label.slice(1);
    if (result.state !== "waiting") {
      lastDecision = null;
      $("undo").hidden = true;
      status(label + " " + task.id, "ok");
      return;
    }
    let left = Math.round(UNDO);
    lastDecision = { id: task.id, label: label };
    $("undo").hidden = false;
    const tick = () => {
      if (left <= 0) {
        clearInterval(lastDecision.timer);
        status(label + " " + task.id + " (done)", "ok");
        $("undo").hidden = true;
        lastDecision = null;
        return;
      }
      status(label + " " + task.id + " — undo within " + left + " s", "ok");
      left -= 1;
    };
    lastDecision.timer = setInterval(tick, 1000);
    tick();
  }

  async function undo() {
    if (!lastDecision || busy) return;
    busy = true;
    const d = lastDecision;
    clearInterval(d.timer);
    lastDecision = null;
    $("undo").hidden = true;
    try {
      await api("POST", "/console/api/undo", { stage: STAGE, id: d.id });
      status("Undone: " + d.id + " is yours again", "ok");
      await openTask(d.id, true);
    } catch (e) {
      status(String(e.message || e), "error");
    } finally {
      busy = false;
    }
  }

  async function openTask(id, quiet) {
    try {
      showTask(await api("POST", "/console/api/open", { stage: STAGE, id: id }));
      if (!quiet) status("");
    } catch (e) {
      status(String(e.message || e), "error");
    }
  }

  async function nextTask(after) {
    const params = { stage: STAGE };
    if (after) params.after = after;
    const data = await api("POST", "/console/api/next", params);
    showTask(data.task);
    await loadList();
  }

  $("action").addEventListener("submit", (ev) => { ev.preventDefault(); decide(null); });
  $("skip").addEventListener("click", () => { if (Date.now() >= lockedUntil) nextTask(current ? current.id : null); });
  $("undo").addEventListener("click", undo);
  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadList(); });
  $("next-page").addEventListener("click", () => { offset += PAGE; loadList(); });
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const typing = ev.target.closest && ev.target.closest("input, textarea, select");
    if (typing) return;
    if (ev.key === "a" && current && current.actions.kind === "decide") { ev.preventDefault(); decide(true); }
    else if (ev.key === "r" && current && current.actions.kind === "decide") { ev.preventDefault(); decide(false); }
    else if (ev.key === "n") { ev.preventDefault(); nextTask(current ? current.id : null); }
    else if (ev.key === "u") { ev.preventDefault(); undo(); }
  });

  const source = new EventSource("/console/api/events?" + new URLSearchParams({ stage: STAGE }).toString());
  source.addEventListener("change", async () => {
    await loadList();
    if (!current && !busy) await nextTask(null);
  });
  nextTask(null).catch((e) => status(String(e.message || e), "error"));
}
