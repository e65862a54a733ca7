// The review console's pages: no inline script (the CSP forbids it); all text goes in by textContent.
"use strict";

const page = document.body.dataset.page;

function toLogin() {
  location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
}

async function api(method, path, params, body, contentType) {
  const url = path + "?" + new URLSearchParams(params).toString();
  const init = { method: method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.body = body;
    init.headers["Content-Type"] = contentType || "application/json";
  }
  const r = await fetch(url, init);
  if (r.status === 401) {  // the session expired: log in again, then come back here
    toLogin();
    throw new Error("your session has expired: logging in again");
  }
  if (!r.ok) {
    const data = await r.json().catch(() => ({}));
    const detail = typeof data.detail === "string" ? data.detail : ("error " + r.status);
    const e = new Error(detail);
    e.status = r.status;
    throw e;
  }
  if ((r.headers.get("content-type") || "").startsWith("application/json")) return r.json();
  return r.blob();
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Ids are shown as text, never as markup; invisible and direction-changing characters are shown as
// their code points (an id "\u202etxt.exe" must not read as "exe.txt"), and long ids are shortened.
const HIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g;
function visible(text) {
  return text.replace(HIDDEN_CHARS, (c) => "⟨U+" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0") + "⟩");
}
function shortId(id, max) {
  const v = visible(id);
  return v.length > max ? v.slice(0, max) + "… (" + id.length + " characters)" : v;
}
function idElement(id, max) {
  const e = el("bdi", { class: "id", dir: "ltr", title: shortId(id, 1000) }, shortId(id, max));
  return e;
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " days";
}
function progressText(s) {
  const parts = [s.pending + " pending" + (s.listed < s.pending ? " (" + s.listed + " listed, the rest still in the queue)" : ""),
                 s.done_today + " done today", Math.round(s.rate_per_hour) + "/h"];
  parts.push(s.pending === 0 ? "empty" : (s.empty_in === null ? "no recent rate" : "empty in ~" + duration(s.empty_in)));
  return parts.join(" · ");
}

// The shortcuts overlay, on every page: `?` opens it, Escape closes it.
function toggleHelp(show) {
  const help = document.getElementById("help");
  if (help) help.hidden = show === undefined ? !help.hidden : !show;
}
for (const b of document.querySelectorAll("[data-help]")) b.addEventListener("click", () => toggleHelp());

if (page === "index") {
  const source = new EventSource("/console/api/events");
  source.addEventListener("change", (ev) => {
    for (const s of JSON.parse(ev.data)) {
      for (const row of document.querySelectorAll("tr[data-stage]")) {
        if (row.dataset.stage !== s.stage) continue;
        row.querySelector(".pending").textContent = s.pending;
        if (!s.human) continue;
        row.querySelector(".taken").textContent = s.taken;
        row.querySelector(".done").textContent = s.done_today;
        row.querySelector(".rate").textContent = Math.round(s.rate_per_hour);
        row.querySelector(".eta").textContent = s.pending === 0 ? "empty" : duration(s.empty_in);
      }
    }
  });
  source.addEventListener("error", () => { fetch("/console/api/stages").then((r) => { if (r.status === 401) toLogin(); }); });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "?") toggleHelp();
    else if (ev.key === "Escape") toggleHelp(false);
  });
}

if (page === "stage") {
  const STAGE = document.body.dataset.stage;
  const ME = document.body.dataset.reviewer || "anonymous";
  const UNDO = parseFloat(document.body.dataset.undo);
  const REASONS = JSON.parse(document.body.dataset.reasons || "[]");
  const PAGE = 50;
  let offset = 0, total = 0, current = null, lastDecision = null, lockedUntil = 0, busy = false;
  let widgets = {}, previewTimer = null, previewUrl = null, picking = false;
  const $ = (id) => document.getElementById(id);

  function status(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = kind || "";
  }
  function fail(e) { if (e && e.status !== 401) status(String(e.message || e), "error"); }

  function filters() {
    const p = { stage: STAGE };
    const match = $("search").value.trim();
    if (match) p.match = match;
    const age = $("age").value;
    if (age) p.older_than = age;
    return p;
  }

  async function loadList() {
    const data = await api("GET", "/console/api/tasks", Object.assign(filters(), { offset: offset, limit: PAGE }));
    total = data.total;
    if (offset > 0 && offset >= total) { offset = Math.max(0, Math.floor((total - 1) / PAGE) * PAGE); return loadList(); }
    const list = $("list");
    list.replaceChildren();
    for (const item of data.items) {
      const li = el("li", { "data-id": item.id });
      const a = el("a", { href: "#" });
      a.appendChild(idElement(item.id, 60));
      a.addEventListener("click", (ev) => { ev.preventDefault(); openTask(item.id); });
      li.appendChild(a);
      if (item.holder) {
        const what = item.decided ? "decided by " + item.holder : item.holder + " until " + clock(item.until);
        const who = item.holder === ME ? "you" : item.holder;
        li.appendChild(el("span", { class: "badge" + (item.decided ? " decided" : ""), title: what },
                          item.decided ? "decided by " + who : who));
      }
      if (current && item.id === current.id) li.className = "current";
      list.appendChild(li);
    }
    list.start = offset + 1;
    $("range").textContent = total ? (offset + 1) + "–" + Math.min(offset + PAGE, total) + " of " + total : "none";
    $("prev").disabled = offset === 0;
    $("next-page").disabled = offset + PAGE >= total;
  }

  async function loadProgress() {
    const stages = await api("GET", "/console/api/stages", {});
    const s = stages.find((x) => x.stage === STAGE);
    if (!s) return;
    $("total").textContent = s.pending;
    document.title = STAGE + ": " + s.pending + " pending";
    $("progress").textContent = progressText(s);
  }

  async function loadRecent() {
    const data = await api("GET", "/console/api/recent", { stage: STAGE });
    const list = $("recent");
    list.replaceChildren();
    for (const item of data.items) {
      const li = el("li");
      li.appendChild(el("span", { class: "decision " + item.decision }, item.decision));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(idElement(item.id, 40));
      if (item.reason) li.appendChild(el("span", { class: "reason" }, " — " + visible(item.reason)));
      li.appendChild(el("span", { class: "when" }, " " + clock(item.at)));
      if (item.undo) {
        const b = el("button", { type: "button", class: "quiet small" }, "Undo");
        b.addEventListener("click", () => undo(item.id));
        li.appendChild(b);
      }
      list.appendChild(li);
    }
    $("recent-none").hidden = data.items.length > 0;
  }

  function refresh() {
    return Promise.all([loadList(), loadProgress(), loadRecent()]).catch(fail);
  }

  function fieldUrl(id, name) {
    return "/console/api/field?" + new URLSearchParams({ stage: STAGE, id: id, name: name }).toString();
  }

  function clearTask() {
    for (const w of Object.values(widgets)) w.destroy();
    widgets = {};
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    closeReasons();
  }

  function showTask(task) {
    clearTask();
    current = task;
    lockedUntil = Date.now() + 500;  // a click or key meant for the previous task must not act on this one
    $("empty").hidden = task !== null;
    $("task").classList.toggle("none", task === null);
    $("task").classList.remove("gone");
    $("fields").replaceChildren();
    $("action").replaceChildren();
    $("task-id").replaceChildren();
    $("holder").textContent = "";
    if (!task) return;
    $("task-id").appendChild(idElement(task.id, 120));
    $("holder").textContent = task.holder === ME || !task.holder ? "yours" + (task.until ? " until " + clock(task.until) : "")
                                                                : "held by " + task.holder;
    const drawn = new Set((task.actions.inputs || []).filter((i) => ["points", "polygon", "boxes"].includes(i.kind))
                            .map((i) => i.on || firstImage(task)));
    const images = el("div", { class: "images" }), texts = el("dl");
    for (const f of task.fields) {
      const label = f.label || f.name;
      if (f.kind === "image") {
        if (drawn.has(f.name)) continue;  // drawn on by a widget below, which shows it
        const fig = el("figure");
        fig.appendChild(el("img", { src: fieldUrl(task.id, f.name), alt: label + " of " + shortId(task.id, 60) }));
        fig.appendChild(el("figcaption", {}, label));
        images.appendChild(fig);
      } else {
        texts.appendChild(el("dt", {}, label));
        texts.appendChild(el("dd", {}, f.kind === "bytes" ? f.size + " bytes" : visible(f.text)));
      }
    }
    $("fields").append(images, texts);
    buildAction(task);
    for (const li of document.querySelectorAll("#list li")) li.classList.toggle("current", li.dataset.id === task.id);
  }

  function firstImage(task) {
    const f = task.fields.find((x) => x.kind === "image");
    return f ? f.name : "value";
  }

  function buildAction(task) {
    const actions = task.actions, form = $("action");
    if (actions.kind === "decide") {
      const ok = el("button", { type: "button", class: "approve", id: "approve" });
      ok.append("Approve ", el("kbd", {}, "a"));
      const no = el("button", { type: "button", class: "reject", id: "reject" });
      no.append("Reject ", el("kbd", {}, "r"));
      ok.addEventListener("click", () => decide(true));
      no.addEventListener("click", () => reject());
      form.append(ok, no);
      return;
    }
    if (actions.kind === "upload") {
      form.appendChild(el("label", { for: "upload" }, "File (" + actions.type_name + ")"));
      form.appendChild(el("input", { type: "file", id: "upload", required: "" }));
    } else {
      for (const input of actions.inputs) {
        const id = "in-" + input.name;
        const wrap = el("div", { class: "input " + input.kind });
        wrap.appendChild(el("label", { for: id }, (input.label || input.name) + (input.optional ? " (optional)" : "")));
        if (input.help) wrap.appendChild(el("div", { class: "help" }, input.help));
        if (["points", "polygon", "boxes"].includes(input.kind) && window.PipeteerAnnotate) {
          const box = el("div", { id: id, class: "drawing" });
          wrap.appendChild(box);
          form.appendChild(wrap);
          widgets[input.name] = window.PipeteerAnnotate.widget(box, input, fieldUrl(task.id, input.on || firstImage(task)),
                                                               () => schedulePreview(task));
          continue;
        }
        let e;
        if (input.kind === "checkbox") e = el("input", { type: "checkbox", id: id });
        else if (input.kind === "select") {
          e = el("select", { id: id });
          for (const c of input.choices) e.appendChild(el("option", { value: c }, c));
        } else if (input.kind === "json" || input.kind === "textarea") {
          e = el("textarea", { id: id, rows: "3", placeholder: input.kind === "json" ? "JSON" : "" });
          if (input.max_length) e.setAttribute("maxlength", String(input.max_length));
        } else if (input.kind === "file") e = el("input", { type: "file", id: id });
        else {
          e = el("input", { type: input.kind === "text" ? "text" : "number", id: id,
                            step: input.step !== null && input.step !== undefined ? String(input.step)
                                                                                   : (input.kind === "integer" ? "1" : "any") });
          if (input.minimum !== null && input.minimum !== undefined) e.setAttribute("min", String(input.minimum));
          if (input.maximum !== null && input.maximum !== undefined) e.setAttribute("max", String(input.maximum));
          if (input.max_length) e.setAttribute("maxlength", String(input.max_length));
        }
        e.dataset.kind = input.kind;
        e.dataset.name = input.name;
        e.dataset.optional = input.optional ? "1" : "";
        wrap.appendChild(e);
        form.appendChild(wrap);
      }
    }
    if (document.body.dataset.preview === "1" && Object.keys(widgets).length) {
      const fig = el("figure", { class: "preview", id: "preview" });
      fig.appendChild(el("img", { id: "preview-img", alt: "preview of the result" }));
      fig.appendChild(el("figcaption", { id: "preview-caption" }, "The result appears here once the drawing is complete."));
      form.appendChild(fig);
    }
    const submit = el("button", { type: "submit", class: "approve", id: "submit" });
    submit.append("Submit ", el("kbd", {}, "Enter"));
    form.appendChild(submit);
  }

  function schedulePreview(task) {
    if (document.body.dataset.preview !== "1") return;
    clearTimeout(previewTimer);
    previewTimer = setTimeout(async () => {
      let value;
      try { value = await formValue(task.actions); } catch (e) { $("preview-caption").textContent = e.message; return; }
      try {
        const blob = await api("POST", "/console/api/preview", { stage: STAGE, id: task.id }, JSON.stringify({ value: value }));
        if (current !== task) return;
        if (previewUrl) URL.revokeObjectURL(previewUrl);
        previewUrl = URL.createObjectURL(blob);
        $("preview-img").src = previewUrl;
        $("preview-caption").textContent = "Preview: what goes on if you submit (Enter)";
        $("preview").classList.remove("bad");
      } catch (e) {
        if (current !== task) return;
        $("preview-caption").textContent = e.message;
        $("preview").classList.add("bad");
      }
    }, 150);
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
    const out = {};
    for (const [name, w] of Object.entries(widgets)) out[name] = w.value();
    for (const e of $("action").querySelectorAll("[data-kind]")) {
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

  // Reject: with the reasons the app declares (keys 1-9) and a free text, or at once if it declares none.
  function reject() {
    if (!current || busy || Date.now() < lockedUntil) return;
    if (!REASONS.length) { decide(false); return; }
    picking = true;
    const box = $("reasons");
    box.replaceChildren(el("div", { class: "reasons-head" }, "Why reject? (a number, or write it, then Enter; Esc cancels)"));
    REASONS.forEach((r, i) => {
      const b = el("button", { type: "button", class: "quiet" });
      b.append(el("kbd", {}, String(i + 1)), " " + r);
      b.addEventListener("click", () => { closeReasons(); decide(false, r); });
      box.appendChild(b);
    });
    const other = el("input", { type: "text", id: "comment", maxlength: "500", placeholder: "another reason…" });
    other.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); const c = other.value.trim(); closeReasons(); decide(false, null, c || null); }
      else if (ev.key === "Escape") { ev.preventDefault(); closeReasons(); }
    });
    box.appendChild(other);
    box.hidden = false;
  }
  function closeReasons() { picking = false; $("reasons").hidden = true; $("reasons").replaceChildren(); }

  async function decide(value, reason, comment) {
    if (!current || busy || Date.now() < lockedUntil || $("task").classList.contains("gone")) return;
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
        const body = { value: v };
        if (reason) body.reason = reason;
        if (comment) body.comment = comment;
        result = await api("POST", "/console/api/decide", { stage: STAGE, id: task.id }, JSON.stringify(body));
      }
      remember(task, result);
      await nextTask();
    } catch (e) {
      fail(e);
    } finally {
      busy = false;
    }
  }

  function remember(task, result) {
    if (lastDecision && lastDecision.timer) clearInterval(lastDecision.timer);
    const label = result.label.charAt(0).toUpperCase() + result.label.slice(1);
    const name = shortId(task.id, 60);
    if (result.state !== "waiting") {
      lastDecision = null;
      $("undo").hidden = true;
      status(label + " " + name, "ok");
      loadRecent().catch(fail);
      return;
    }
    let left = Math.round(UNDO);
    lastDecision = { id: task.id, label: label };
    $("undo").hidden = false;
    const tick = () => {
      if (left <= 0) {
        clearInterval(lastDecision.timer);
        status(label + " " + name + " (done)", "ok");
        $("undo").hidden = true;
        lastDecision = null;
        loadRecent().catch(fail);
        return;
      }
      status(label + " " + name + " — undo within " + left + " s", "ok");
      left -= 1;
    };
    lastDecision.timer = setInterval(tick, 1000);
    tick();
  }

  async function undo(id) {
    if (busy) return;
    const target = id || (lastDecision && lastDecision.id);
    if (!target) return;
    busy = true;
    if (lastDecision && lastDecision.id === target) {
      clearInterval(lastDecision.timer);
      lastDecision = null;
      $("undo").hidden = true;
    }
    try {
      await api("POST", "/console/api/undo", { stage: STAGE, id: target });
      status("Undone: " + shortId(target, 60) + " is yours again", "ok");
      busy = false;
      await openTask(target, true);
      loadRecent().catch(fail);
    } catch (e) {
      fail(e);
    } finally {
      busy = false;
    }
  }

  async function openTask(id, quiet) {
    try {
      showTask(await api("POST", "/console/api/open", { stage: STAGE, id: id }));
      if (!quiet) status("");
    } catch (e) {
      fail(e);
    }
  }

  async function nextTask(skip) {
    const params = { stage: STAGE };
    if (skip) params.skip = skip;
    const data = await api("POST", "/console/api/next", params);
    showTask(data.task);
    await refresh();
  }

  // A task completed or taken elsewhere while on screen: said, its buttons disabled, the next one offered.
  async function checkCurrent() {
    if (!current || busy) return;
    const task = current;
    try {
      const now = await api("GET", "/console/api/task", { stage: STAGE, id: task.id });
      if (current === task && now.holder && now.holder !== ME) gone(task, "is now held by " + now.holder);
    } catch (e) {
      if (e.status === 404 && current === task) gone(task, "was completed elsewhere");
    }
  }
  function gone(task, why) {
    $("task").classList.add("gone");
    for (const b of $("action").querySelectorAll("button, input, select, textarea")) b.disabled = true;
    status("Task " + shortId(task.id, 60) + " " + why + ". Press n for the next one.", "error");
  }

  window.addEventListener("pagehide", () => {  // closing the tab releases the task for the others
    if (current && !$("task").classList.contains("gone")) {
      navigator.sendBeacon("/console/api/release?" + new URLSearchParams({ stage: STAGE, id: current.id }).toString());
    }
  });

  let searchTimer = null;
  $("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => { offset = 0; loadList().catch(fail); }, 200); });
  $("search").addEventListener("keydown", async (ev) => {
    if (ev.key === "Enter") {  // an id typed whole: open it
      ev.preventDefault();
      const id = $("search").value.trim();
      if (id) await openTask(id);
    } else if (ev.key === "Escape") { $("search").blur(); }
  });
  $("age").addEventListener("change", () => { offset = 0; loadList().catch(fail); });
  $("action").addEventListener("submit", (ev) => { ev.preventDefault(); decide(null); });
  $("skip").addEventListener("click", () => { if (Date.now() >= lockedUntil) nextTask(current ? current.id : null).catch(fail); });
  $("undo").addEventListener("click", () => undo());
  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadList().catch(fail); });
  $("next-page").addEventListener("click", () => { offset += PAGE; loadList().catch(fail); });
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "Escape") { toggleHelp(false); closeReasons(); return; }
    const typing = ev.target.closest && ev.target.closest("input, textarea, select");
    if (typing) return;
    if (picking) {
      const n = parseInt(ev.key, 10);
      if (n >= 1 && n <= REASONS.length) { ev.preventDefault(); const r = REASONS[n - 1]; closeReasons(); decide(false, r); }
      return;
    }
    const decides = current && current.actions.kind === "decide";
    if (ev.key === "?") { ev.preventDefault(); toggleHelp(); }
    else if (ev.key === "/") { ev.preventDefault(); $("search").focus(); }
    else if (ev.key === "a" && decides) { ev.preventDefault(); decide(true); }
    else if (ev.key === "r" && decides) { ev.preventDefault(); reject(); }
    else if (ev.key === "n") {
      ev.preventDefault();
      if (Date.now() >= lockedUntil && !busy) nextTask(current ? current.id : null).catch(fail);
    } else if (ev.key === "u") { ev.preventDefault(); undo(); }
    else if (ev.key === "Enter" && current && !decides && ev.target === document.body) { ev.preventDefault(); decide(null); }
  });

  const source = new EventSource("/console/api/events?" + new URLSearchParams({ stage: STAGE }).toString());
  source.addEventListener("change", async () => {
    await refresh();
    if (!current && !busy) await nextTask().catch(fail);
    else await checkCurrent();
  });
  source.addEventListener("error", () => { fetch("/console/api/stages").then((r) => { if (r.status === 401) toLogin(); }); });
  nextTask().catch(fail);
}
