// The empfast dashboard: plain ES module, no build step. It reads the hub's REST routes and one
// Server-Sent-Events stream per tab (/api/events with jobs=off: stats, worker changes, pauses and
// limits of job types, and the events of the jobs the page lists, job=ID each), read with fetch so
// that the token goes in a header. A tab never takes every job event of the queue: it would cost
// the hub per job.
// docs/management.md section 5.

const view = document.getElementById("view");
const live = document.getElementById("live");
const HISTORY_MS = 10 * 60 * 1000; // the overview's chart: the last ten minutes
const state = {
  info: null, stats: null, workers: [], typeFilter: "", lastStats: null, rate: 0, history: [], page: 0,
  jobsPage: null, jobRows: new Map(), jobEvents: null, onEvent: null,
};

// ---- talking to the hub ----------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.body = body;
  }
}

// The queue this page shows: ?queue= of the page's address (the hub's default without it); every
// request names it, so one dashboard serves each queue of a hub (docs/protocol.md section 2).
const QUEUE = new URLSearchParams(location.search).get("queue");

function inQueue(path) {
  return QUEUE ? `${path}${path.includes("?") ? "&" : "?"}queue=${encodeURIComponent(QUEUE)}` : path;
}

function headers(extra = {}) {
  const token = sessionStorage.getItem("empfast-token");
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(inQueue(path), { ...options, headers: headers(options.headers) });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (response.status === 401) askForToken(body && body.error);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function post(path, body) {
  return api(path, { method: "POST", body: JSON.stringify(body || {}),
                     headers: { "Content-Type": "application/json" } });
}

// An SSE stream read with fetch: each event's data (a protocol frame) goes to onFrame. `resume`
// keeps the last event id, sent back as Last-Event-ID when the stream is opened again.
async function readEvents(response, onFrame, resume) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("data: ")) data.push(line.slice(6));
        else if (line.startsWith("id: ") && resume) resume.lastId = line.slice(4);
      }
      if (data.length) onFrame(JSON.parse(data.join("\n")));
    }
  }
}

async function follow(path, onFrame, { until, signal } = {}) {
  const resume = { lastId: null };
  let pause = 500;
  for (;;) {
    if (signal && signal.aborted) return;
    const extra = resume.lastId ? { "Last-Event-ID": resume.lastId } : {};
    try {
      const response = await fetch(inQueue(path), { headers: headers(extra), signal });
      if (response.status === 401) { askForToken(); return; }
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      setLive(true);
      pause = 500;
      await readEvents(response, onFrame, resume);
      if (until && until()) return;
    } catch (error) {
      if (signal && signal.aborted) return;
      console.warn("event stream", path, error);
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 10000);
  }
}

function setLive(on) {
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = on ? "live" : "reconnecting";
}

// ---- the one feed of this tab -----------------------------------------------------------------

const feed = { jobs: [], controller: null };

// The feed follows these jobs (the ones a page lists that have not ended): opened again when the
// set changes.
function feedJobs(ids) {
  if (feed.controller && ids.length === feed.jobs.length && ids.every((id, i) => id === feed.jobs[i])) return;
  feed.jobs = ids;
  if (feed.controller) feed.controller.abort();
  const controller = feed.controller = new AbortController();
  const query = new URLSearchParams({ interval_s: "1", jobs: "off" });
  for (const id of ids) query.append("job", id);
  follow(`/api/events?${query}`, onFeed, { signal: controller.signal });
}

function onFeed(frame) {
  if (frame.type === "stats") {
    const done = totalDone(frame);
    if (state.lastStats) {
      const seconds = (Date.now() - state.lastStats.at) / 1000;
      if (seconds > 0) state.rate = Math.max(0, (done - state.lastStats.done) / seconds);
    }
    // per type: jobs finished per second since the stats before
    const byType = {};
    for (const [name, t] of Object.entries(frame.by_type || {})) byType[name] = (t.completed || 0) + (t.failed || 0);
    if (state.lastStats && state.lastStats.byType) {
      const seconds = (Date.now() - state.lastStats.at) / 1000;
      state.typeRates = Object.fromEntries(Object.entries(byType).map(([name, n]) =>
        [name, seconds > 0 ? Math.max(0, (n - (state.lastStats.byType[name] || 0)) / seconds) : 0]));
    }
    state.lastStats = { at: Date.now(), done, byType };
    state.stats = frame;
    const pending = frame.pending || 0;
    state.history.push({ at: Date.now(), rate: state.rate, pending, wait: state.rate > 0 ? pending / state.rate : 0 });
    while (state.history.length && state.history[0].at < Date.now() - HISTORY_MS) state.history.shift();
  } else if (frame.type === "worker_status" || frame.type === "type_paused") {
    refreshWorkers();
    if (frame.type === "type_paused") refreshStats();
  } else if (frame.type === "type_limits" && state.stats) {
    // set or cleared on any hub: the frame holds the type's limits now, no read needed
    const limits = { ...(state.stats.limits || {}) };
    if (frame.concurrency == null && frame.rate == null && frame.group_concurrency == null) delete limits[frame.job_type];
    else limits[frame.job_type] = { concurrency: frame.concurrency, rate: frame.rate, per_s: frame.per_s,
                                    group_concurrency: frame.group_concurrency };
    state.stats = { ...state.stats, limits };
  }
  if (state.onEvent) state.onEvent(frame);
}

function totalDone(stats) {
  return Object.values(stats.by_type || {}).reduce((sum, t) => sum + (t.completed || 0) + (t.failed || 0), 0);
}

async function refreshStats() {
  state.stats = await api("/api/stats");
  if (state.onEvent) state.onEvent({ type: "stats" });
}

async function refreshWorkers() {
  state.workers = (await api("/api/workers")).workers;
  if (state.onEvent) state.onEvent({ type: "workers" });
}

// ---- small helpers ----------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const fmt = new Intl.NumberFormat();
const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "");

function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 60 ? `${s.toFixed(1)} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}

function bar(pct) {
  return el("span", { class: "bar", title: `${pct.toFixed(0)}%` }, el("i", { style: `width:${pct}%` }));
}

function toast(text, bad = false) {
  const note = el("div", { class: bad ? "bad" : "" }, text);
  document.getElementById("toast").append(note);
  setTimeout(() => note.remove(), 6000);
}

// A confirmation; with `word`, the user types it first (destructive actions).
function confirmAction(text, word) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const label = document.getElementById("confirm-typed-label");
  const typed = document.getElementById("confirm-typed");
  const ok = document.getElementById("confirm-ok");
  label.hidden = !word;
  typed.value = "";
  document.getElementById("confirm-word").textContent = word || "";
  ok.disabled = Boolean(word);
  typed.oninput = () => { ok.disabled = typed.value !== word; };
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

function askForToken(message) {
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("empfast-token", document.getElementById("token").value);
  location.reload();
});

// ---- pages ------------------------------------------------------------------------------------

// Whether a page is still the one shown: a page's late answers (a reload that was in flight when
// the user went elsewhere) must not draw over the next page.
const current = (page) => page === state.page;

function overview() {
  const page = state.page;
  feedJobs([]);
  // the form stays as the user types; what is below it is redrawn on each change
  const body = el("div", { id: "overview" });
  view.replaceChildren(submitForm(), body);
  const render = () => {
    const s = state.stats;
    if (!s || !current(page)) return;
    const takers = new Set(state.workers.flatMap((w) => w.job_types || []));
    const paused = new Set(s.paused || []);
    const limits = s.limits || {};
    const card = (key, status, note) => el("a", { class: "card", href: `#/jobs?status=${status}`, "data-count": key },
      el("div", { class: "n" }, fmt.format(s[key] || 0)), el("div", { class: "k" }, note || key));
    // a limited type is listed before its first job too
    const types = [...new Set([...Object.keys(s.by_type || {}), ...Object.keys(limits)])].sort()
      .map((name) => [name, (s.by_type || {})[name] || {}]);
    const wait = state.rate > 0 ? (s.pending || 0) / state.rate : null;
    body.replaceChildren(
      el("div", { class: "cards" },
        card("pending", "pending"), card("scheduled", "scheduled"), card("waiting", "waiting", "waiting (for parents)"),
        card("active", "active"),
        card("completed", "completed", "completed (kept)"), card("failed", "failed", "failed (kept)"),
        card("cancelled", "cancelled", "cancelled (kept)"),
        el("div", { class: "card" }, el("div", { class: "n", id: "rate" }, state.rate.toFixed(1)),
          el("div", { class: "k" }, "jobs finished / s")),
        el("div", { class: "card", title: "pending jobs divided by jobs finished per second" },
          el("div", { class: "n", id: "wait" }, wait === null ? "–" : `${wait.toFixed(1)} s`),
          el("div", { class: "k" }, "est. wait for a new job"))),
      chart(),
      el("h2", {}, "Job types"),
      el("table", { id: "types" },
        el("tr", {}, el("th", {}, "type"), ...["pending", "scheduled", "active", "waiting", "added", "completed", "failed", "retried",
          "cancelled"].map((c) => el("th", { class: "num" }, c)), el("th", { class: "num" }, "finished/s"),
          el("th", { title: "at most N running at once · at most N starts per period, across every worker and hub" }, "limits"),
          el("th", {}, "")),
        types.map(([name, t]) => el("tr", { "data-type": name },
          el("td", {}, el("a", { href: `#/jobs?status=pending&type=${encodeURIComponent(name)}` }, name), " ",
            paused.has(name) ? el("span", { class: "tag paused" }, "paused") : null,
            t.pending > 0 && !takers.has(name) ? el("span", { class: "tag alarm", title: "jobs wait and no registered worker takes this type" }, "no worker") : null),
          ...["pending", "scheduled", "active", "waiting", "added", "completed", "failed", "retried", "cancelled"].map((c) =>
            el("td", { class: "num" }, fmt.format(t[c] || 0))),
          el("td", { class: "num", title: "jobs of this type finished per second, from the last two stats" },
            ((state.typeRates || {})[name] || 0).toFixed(1)),
          el("td", { class: limits[name] ? "limits" : "limits muted", "data-limits": name }, limitText(limits[name])),
          el("td", {}, el("button", { onclick: () => setPaused(name, !paused.has(name)) },
            paused.has(name) ? "Resume" : "Pause"), " ",
            el("button", { class: "edit-limits", onclick: () => editLimits(name) }, "Limits…"))))),
      schedulesTable(),
      el("h2", {}, `Workers (${state.workers.length})`),
      el("table", { id: "workers" },
        el("tr", {}, ...["worker", "status", "jobs", "types", "hub", "last heard"].map((c) => el("th", {}, c))),
        state.workers.map((w) => el("tr", { "data-worker": w.worker_id },
          el("td", {}, w.worker_id), el("td", {}, w.status), el("td", { class: "num" }, `${w.active_jobs}/${w.concurrency}`),
          el("td", {}, (w.job_types || []).join(", ")), el("td", {}, w.hub || ""),
          el("td", { class: "heard", "data-ms": w.last_seen }, ago(w.last_seen))))),
    );
  };
  state.onEvent = (frame) => { if (["stats", "workers", "type_paused", "type_limits"].includes(frame.type)) render(); };
  render();

  Promise.all([refreshStats(), refreshWorkers(), refreshSchedules()]).catch(showError);
}

// The queue's repeating jobs (docs/job-control.md 2), with pause, resume and remove.
async function refreshSchedules() {
  state.schedules = (await api("/api/schedules")).schedules;
  if (state.onEvent) state.onEvent({ type: "stats" });
}

function schedulesTable() {
  const schedules = state.schedules || [];
  if (!schedules.length) return el("p", { class: "muted", id: "schedules" }, "No repeating jobs (empfast schedules set ...).");
  const act = (name, path, method, done) => async () => {
    try {
      await api(`/api/schedules/${encodeURIComponent(name)}${path}`, { method });
      toast(`schedule ${name} ${done}`);
      await refreshSchedules();
    } catch (error) { showError(error); }
  };
  const remove = (name) => async () => {
    if (await confirmAction(`Remove the repeating job ${name}? Runs added already stay.`)) {
      await act(name, "", "DELETE", "removed")();
    }
  };
  return el("div", {},
    el("h2", {}, `Repeating jobs (${schedules.length})`),
    el("table", { id: "schedules" },
      el("tr", {}, ...["name", "type", "when", "next run", ""].map((c) => el("th", {}, c))),
      schedules.map((s) => el("tr", { "data-schedule": s.name },
        el("td", {}, s.name), el("td", {}, s.job_type),
        el("td", {}, s.cron ? `cron ${s.cron} (${s.tz})` : `every ${s.every_s} s`),
        el("td", {}, s.paused ? el("span", { class: "tag paused" }, "paused")
          : new Date(s.next_run_at_ms).toLocaleString()),
        el("td", {},
          el("button", { onclick: act(s.name, s.paused ? "/resume" : "/pause", "POST", s.paused ? "resumed" : "paused") },
            s.paused ? "Resume" : "Pause"), " ",
          el("button", { onclick: remove(s.name) }, "Remove"))))));
}

// Jobs finished per second and jobs pending over the last minutes, from the feed's stats.
function chart() {
  const width = 600, height = 90, points = state.history;
  const box = el("div", { class: "chart", id: "chart" });
  if (points.length < 2) {
    box.append(el("span", { class: "muted" }, "The chart of jobs finished per second and pending fills as the stats change."));
    return box;
  }
  const t0 = Date.now() - HISTORY_MS;
  const line = (key, color) => {
    const top = Math.max(1, ...points.map((p) => p[key]));
    const xy = points.map((p) => `${((p.at - t0) / HISTORY_MS * width).toFixed(1)},${(height - p[key] / top * (height - 4)).toFixed(1)}`);
    return `<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${xy.join(" ")}"/>`;
  };
  box.innerHTML = `<svg viewBox="0 0 ${width} ${height}" width="100%" height="${height}" role="img"
    aria-label="finished per second, pending and the estimated wait over the last ten minutes">${line("rate", "#2f6fed")}${line("pending", "#b76e00")}${line("wait", "#c8372d")}</svg>
    <div class="muted"><span style="color:#2f6fed">— finished / s</span> · <span style="color:#b76e00">— pending</span> · <span style="color:#c8372d">— est. wait (pending ÷ finished/s)</span> (last 10 min, each scaled to its peak)</div>`;
  return box;
}

function submitForm() {
  const form = el("form", { id: "submit", class: "toolbar", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    let payload;
    try { payload = JSON.parse(data.get("payload") || "null"); } catch (error) {
      toast(`the payload is not JSON: ${error.message}`, true); return;
    }
    const body = { job_type: data.get("job_type"), payload, priority: Number(data.get("priority") || 0),
                   delay_s: Number(data.get("delay_s") || 0) };
    try {
      const accepted = await post("/api/jobs", body);
      toast(`job ${accepted.job_id} ${accepted.status}`);
      location.hash = `#/job/${encodeURIComponent(accepted.job_id)}`;
    } catch (error) { showError(error); }
  } },
  el("strong", {}, "Submit a job"),
  el("input", { name: "job_type", placeholder: "type", required: true, size: 12 }),
  el("input", { name: "payload", placeholder: "payload (JSON)", value: "{}", size: 30 }),
  el("label", {}, "priority ", el("input", { name: "priority", type: "number", value: "0", style: "width:4rem" })),
  el("label", {}, "delay s ", el("input", { name: "delay_s", type: "number", value: "0", min: "0", style: "width:5rem" })),
  el("button", { class: "primary", type: "submit" }, "Submit"));
  return form;
}

async function setPaused(jobType, pause) {
  try {
    const reply = await post(`/api/types/${encodeURIComponent(jobType)}/${pause ? "pause" : "resume"}`);
    toast(`${jobType} ${pause ? "paused" : "resumed"}: ${fmt.format(reply.pending)} jobs waiting`);
    await refreshStats();
  } catch (error) { showError(error); }
}

// A job type's limits in short: "≤ 5 active · 10 / 1 s · ≤ 2 per group"; "none" without any.
function limitText(limit) {
  const parts = [];
  if (limit && limit.concurrency != null) parts.push(`≤ ${fmt.format(limit.concurrency)} active`);
  if (limit && limit.rate != null) parts.push(`${fmt.format(limit.rate)} / ${limit.per_s} s`);
  if (limit && limit.group_concurrency != null) parts.push(`≤ ${fmt.format(limit.group_concurrency)} per group`);
  return parts.join(" · ") || "none";
}

// Set or clear a type's limits (PUT /api/types/{type}/limits) from a small form in a dialog: the
// types table is redrawn on every change, which would wipe what is typed into a form inside it.
async function editLimits(jobType) {
  const limit = ((state.stats && state.stats.limits) || {})[jobType] || {};
  const dialog = document.getElementById("limits");
  const field = (name) => document.getElementById(`limits-${name}`);
  document.getElementById("limits-type").textContent = jobType;
  field("concurrency").value = limit.concurrency ?? "";
  field("rate").value = limit.rate ?? "";
  field("per-s").value = limit.per_s ?? 1;
  field("group-concurrency").value = limit.group_concurrency ?? "";
  dialog.returnValue = "";
  dialog.showModal();
  const choice = await new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
  });
  if (choice !== "set" && choice !== "clear") return;
  const number = (name) => (field(name).value.trim() === "" ? null : Number(field(name).value));
  const body = choice === "clear" ? {} : { concurrency: number("concurrency"), rate: number("rate"),
                                           per_s: number("per-s") ?? 1,
                                           group_concurrency: number("group-concurrency") };
  try {
    const reply = await api(`/api/types/${encodeURIComponent(jobType)}/limits`, {
      method: "PUT", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    toast(`${jobType}: ${reply.limits[jobType] ? limitText(reply) : "no limits"}`);
    if (state.stats) state.stats = { ...state.stats, limits: reply.limits };
    if (state.onEvent) state.onEvent({ type: "type_limits" });
  } catch (error) { showError(error); }
}

function jobsPage(params) {
  const myPage = state.page;
  const status = params.get("status") || "failed";
  const jobType = params.get("type") || "";
  const order = params.get("order") || "oldest";
  const cursors = [null];
  let page = null;

  const load = async (cursor) => {
    const query = new URLSearchParams({ status, order, limit: "50" });
    if (jobType) query.set("type", jobType);
    if (cursor) query.set("cursor", cursor);
    const answer = await api(`/api/jobs?${query}`);
    if (!current(myPage)) return;
    page = answer;
    render();
    feedJobs(page.rows.filter((r) => !["completed", "failed", "cancelled"].includes(r.status)).map((r) => r.job_id));
  };

  const go = (changes) => {
    const next = new URLSearchParams({ status, type: jobType, order, ...changes });
    if (!next.get("type")) next.delete("type");
    location.hash = `#/jobs?${next}`;
  };

  const render = () => {
    state.jobRows = new Map();
    const rows = page ? page.rows : [];
    const table = el("table", { id: "jobs" },
      el("tr", {}, ...["job", "type", "status", "attempts", "worker", "progress", "when", "last error"]
        .map((c) => el("th", {}, c))),
      rows.map((r) => {
        const tr = el("tr", { "data-job": r.job_id },
          el("td", {}, el("a", { href: `#/job/${encodeURIComponent(r.job_id)}` }, r.job_id)),
          el("td", {}, r.job_type), el("td", { class: `status status-${r.status}` }, r.status),
          el("td", { class: "num" }, `${r.attempts}/${r.max_attempts}`), el("td", {}, r.worker_id || ""),
          el("td", { class: "progress-cell" }, bar(r.progress || 0)),
          el("td", {}, when(r.finished_at || r.started_at || r.run_at || r.created_at)),
          el("td", { class: "err", title: r.error || "" }, r.error || ""));
        state.jobRows.set(r.job_id, tr);
        return tr;
      }));
    const bulk = [];
    if (status === "failed" || status === "cancelled") {
      bulk.push(el("button", { class: "primary", id: "retry-all", onclick: () => bulkAction("retry", { status, job_type: jobType || undefined }) },
        `Retry all ${status}${jobType ? ` ${jobType}` : ""}…`));
    }
    if (["completed", "failed", "cancelled"].includes(status)) {
      bulk.push(el("button", { class: "danger", id: "purge", onclick: () => bulkAction("remove", { status, job_type: jobType || undefined }) },
        `Remove all ${status}${jobType ? ` ${jobType}` : ""}…`));
    }
    view.replaceChildren(
      el("div", { class: "toolbar" },
        el("label", {}, "status ", el("select", { id: "status", onchange: (e) => go({ status: e.target.value }) },
          ["waiting", "pending", "scheduled", "active", "completed", "failed", "cancelled"].map((s) =>
            el("option", { value: s, selected: s === status }, s)))),
        el("label", {}, "type ", el("input", { id: "type", value: jobType, placeholder: "any",
          onchange: (e) => go({ type: e.target.value.trim() }) })),
        el("label", {}, "order ", el("select", { onchange: (e) => go({ order: e.target.value }) },
          ["oldest", "newest"].map((o) => el("option", { value: o, selected: o === order }, o)))),
        ...bulk),
      el("div", { id: "bulk-progress" }),
      rows.length ? table : el("p", { class: "muted", id: "no-jobs" }, cursors.length > 1
        ? "No more jobs after the previous page."
        : `No ${status} jobs${jobType ? ` of type ${jobType}` : ""}.`),
      el("div", { class: "toolbar" },
        el("button", { disabled: cursors.length <= 1, onclick: () => { cursors.pop(); load(cursors[cursors.length - 1]).catch(showError); } }, "‹ Previous"),
        el("button", { id: "next", disabled: !(page && page.cursor), onclick: () => { cursors.push(page.cursor); load(page.cursor).catch(showError); } }, "Next ›")),
    );
  };

  // live: a listed job's progress and status follow its events
  state.onEvent = (frame) => {
    const tr = frame.job_id && state.jobRows.get(frame.job_id);
    if (!tr) return;
    const pct = frame.type === "job_completed" ? 100 : frame.progress;
    if (pct !== undefined) tr.querySelector(".progress-cell").replaceChildren(bar(pct));
    const next = frame.type === "job_completed" ? "completed" : frame.type === "job_cancelled" ? "cancelled"
      : frame.type === "job_failed" ? (frame.final ? "failed" : frame.status) : frame.status;
    if (next) {
      const cell = tr.querySelector(".status");
      cell.textContent = next;
      cell.className = `status status-${next}`;
    }
  };
  load(null).catch(showError);
}

// A bulk retry or removal: a dry run counts, the user confirms (typing the queue's name to remove),
// then the action runs with a progress bar from its event stream.
async function bulkAction(kind, filter) {
  const path = `/api/bulk/${kind === "retry" ? "retry" : "remove"}`;
  const which = `${filter.status} jobs${filter.job_type ? ` of type ${filter.job_type}` : ""}`;
  try {
    const counted = await runBulk(path, { ...filter, dry_run: true });
    const text = kind === "retry" ? `Retry ${fmt.format(counted.jobs)} ${which}?`
      : `Remove ${fmt.format(counted.jobs)} ${which}? Their records are gone for good.`;
    if (!counted.jobs) { toast(`No ${which} to ${kind === "retry" ? "retry" : "remove"}.`); return; }
    if (!(await confirmAction(text, kind === "remove" ? state.info.queue : null))) return;
    const done = await runBulk(path, filter);
    toast(`${fmt.format(done.jobs)} ${which} ${kind === "retry" ? "retried" : "removed"}`, Boolean(done.code));
    route();
  } catch (error) { showError(error); }
}

async function runBulk(path, body) {
  const box = document.getElementById("bulk-progress");
  const response = await fetch(inQueue(path), { method: "POST", body: JSON.stringify(body),
                                       headers: headers({ "Content-Type": "application/json" }) });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  let outcome = null;
  await readEvents(response, (frame) => {
    if (frame.type === "bulk_done") outcome = frame;
    else if (box && !body.dry_run) {
      const share = frame.total ? frame.looked / frame.total : 0;
      box.replaceChildren(el("div", { class: "progress" }, bar(100 * share),
        ` ${fmt.format(frame.looked || 0)} of ${fmt.format(frame.total)} looked at, ${fmt.format(frame.jobs || 0)} jobs`));
    }
  });
  if (box) box.replaceChildren();
  if (!outcome) throw new Error("the action's stream ended before its end: run it again to go on");
  if (outcome.code) toast(`stopped: ${outcome.error}`, true);
  return outcome;
}

function jobPage(jobId) {
  const myPage = state.page;
  const events = [];
  let job = null;
  let logs = []; // read once with the job, then the live job_log events' lines appended
  const render = () => {
    if (!job || !current(myPage)) return;
    const fields = [["status", job.status], ["type", job.job_type], ["attempts", `${job.attempts} of ${job.max_attempts}`],
      ["priority", job.priority], ["worker", job.worker_id || ""], ["progress", `${(job.progress || 0).toFixed(0)}% ${job.message || ""}`],
      ["created", when(job.created_at)], ["started", when(job.started_at)], ["finished", when(job.finished_at)],
      ["due", when(job.run_at)]];
    if (job.position !== undefined) fields.splice(1, 0, ["position", `${job.position} ahead of it`]);
    if (job.group) fields.splice(2, 0, ["group", job.group]); // its tenant (round-robin by group)
    view.replaceChildren(
      el("h2", {}, "Job ", el("code", {}, jobId)),
      el("div", { class: "toolbar" },
        el("button", { id: "cancel", class: "danger", disabled: ["completed", "failed", "cancelled"].includes(job.status),
          onclick: () => actOnJob("cancel") }, "Cancel…"),
        el("button", { id: "retry", class: "primary", disabled: !["failed", "cancelled"].includes(job.status),
          onclick: () => actOnJob("retry") }, "Retry")),
      el("div", { class: "progress", id: "job-progress", "data-pct": (job.progress || 0).toFixed(0) },
        bar(job.progress || 0), ` ${(job.progress || 0).toFixed(0)}%`),
      el("dl", { class: "fields", id: "job-fields" }, fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)])),
      el("h2", {}, "Errors, by attempt"),
      (job.errors || []).length ? el("ol", {}, job.errors.map((e) => el("li", { class: "error" }, e))) : el("p", { class: "muted" }, "none"),
      el("h2", {}, "Payload"), el("pre", { id: "payload" }, shown(job.payload)),
      el("h2", {}, "Result"), el("pre", { id: "result" }, shown(job.result)),
      el("h2", {}, "Logs (live)"),
      logs.length ? el("pre", { id: "logs" }, logs.join("\n")) : el("p", { class: "muted", id: "logs" }, "none"),
      el("h2", {}, "Events (live)"),
      el("ol", { id: "events" }, events.map((f) => el("li", {}, `${f.type} ${f.status || ""} ${f.progress !== undefined ? `${f.progress}%` : ""} ${f.error || ""}`))),
    );
    const pre = document.getElementById("logs");
    if (pre) pre.scrollTop = pre.scrollHeight; // the newest lines in view
  };
  const actOnJob = async (action) => {
    if (action === "cancel" && !(await confirmAction(`Cancel job ${jobId}?`))) return;
    try {
      job = await post(`/api/jobs/${encodeURIComponent(jobId)}/${action}`);
      toast(`job ${jobId}: ${job.status}`);
      await reload();
      following();
    } catch (error) {
      // 409: nothing changed (the job ended, or is not failed or cancelled, meanwhile)
      if (error.status === 409) { toast(`job ${jobId} is ${error.body.status}: nothing to ${action}`); await reload(); return; }
      showError(error);
    }
  };
  const reload = async (withLogs) => {
    job = await api(`/api/jobs/${encodeURIComponent(jobId)}?payload=true${withLogs ? "&logs=true" : ""}`);
    if (withLogs) logs = job.logs || [];
    render();
  };
  const following = () => {
    follow(`/api/jobs/${encodeURIComponent(jobId)}/events`, (frame) => {
      if (!current(myPage) || !frame.job_id) return;
      if (frame.type === "job_log") { // lines come with the event: no reload per line
        logs.push(...frame.lines);
        logs.splice(0, logs.length - 1000); // the hub keeps the newest 1,000 too
        render();
        return;
      }
      events.push(frame);
      reload().catch(showError);
    }, { until: () => !current(myPage) || ["completed", "failed", "cancelled"].includes(job && job.status) });
  };
  state.onEvent = null;
  feedJobs([]);
  reload(true).then(following).catch(showError);
}

// Big payloads stay out of the page until asked for (a few MB would slow the browser).
function shown(value) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  if (text.length <= 65536) return text;
  return el("span", {}, text.slice(0, 65536), "\n… ", el("button", { onclick: (e) => e.target.parentNode.replaceWith(text) },
    `show all ${fmt.format(text.length)} characters`));
}

function showError(error) {
  console.error(error);
  if (error instanceof ApiError && error.status === 401) return;
  toast(error.message || String(error), true);
}

// ---- routing ----------------------------------------------------------------------------------

function route() {
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  state.page += 1;
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("current", (path.startsWith("/job") ? "jobs" : "overview") === link.dataset.page);
  }
  if (path.startsWith("/jobs")) jobsPage(params);
  else if (path.startsWith("/job/")) jobPage(decodeURIComponent(path.slice(5)));
  else overview();
}

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (error) { showError(error); return; }
  document.getElementById("where").textContent = `queue ${state.info.queue} · ${state.info.hub_id}`;
  document.title = `empfast · ${state.info.queue}`;
  const queues = state.info.queues || [];
  if (queues.length > 1) { // a hub of several queues: each has this page, at ?queue=NAME
    const picker = el("select", { id: "queue", title: "the queue this page shows" },
      ...queues.map((name) => el("option", { value: name }, name)));
    picker.value = state.info.queue;
    picker.addEventListener("change", () => { location.search = `?queue=${encodeURIComponent(picker.value)}`; });
    document.getElementById("where").after(picker);
  }
  window.addEventListener("hashchange", route);
  route();
  feedJobs([]);
  // heartbeat ages tick without a round trip
  setInterval(() => {
    for (const cell of document.querySelectorAll("td.heard")) cell.textContent = ago(Number(cell.dataset.ms));
    const rate = document.getElementById("rate");
    if (rate) rate.textContent = state.rate.toFixed(1);
  }, 1000);
}

start();
