"use strict";
// The console's pages. Everything a job or a user typed reaches the page as text nodes
// (textContent, createTextNode), never as markup: job output is hostile.

const page = document.getElementById("page");
let session = null;
let cleanups = [];  // timers and event streams of the page on screen

// DOM ---------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "onclick" || name === "onsubmit" || name === "onchange") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name in node && typeof node[name] !== "function" && name !== "list") {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colSpan: headers.length,
      class: "muted" }, "nothing here"))));
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

function stateName(state) {
  return (state || "JOB_STATE_UNSPECIFIED").replace("JOB_STATE_", "");
}

function stateBadge(state) {
  const name = stateName(state);
  return el("span", { class: `state state-${name}` }, name);
}

function notice(message, isError) {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = isError ? "error" : "";
  box.hidden = !message;
}

function onCleanup(fn) { cleanups.push(fn); }

function every(ms, fn) {
  const timer = setInterval(fn, ms);
  onCleanup(() => clearInterval(timer));
}

// The JSON API --------------------------------------------------------------------------

async function api(path, options) {
  const init = { credentials: "same-origin", headers: {} };
  if (options && options.method === "POST") {
    init.method = "POST";
    init.headers["X-CSRF-Token"] = session.csrf;
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body || {});
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    location.assign("/signin");
    throw new Error("signed out");
  }
  let data = {};
  try { data = await response.json(); } catch (_) { /* an empty answer */ }
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

async function act(label, fn) {
  try {
    const message = await fn();
    notice(message || `${label}: done`, false);
  } catch (error) {
    notice(`${label}: ${error.message}`, true);
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (Array.isArray(value)) value.forEach((v) => v && search.append(name, v));
    else if (value) search.set(name, value);
  }
  return search.toString();
}

// Jobs -----------------------------------------------------------------------------------

const STATES = ["", "queued", "running", "succeeded", "failed", "cancelled", "dead_lettered"];
const jobFilters = { tenant: "", state: "", label: "", after: "", before: "" };

async function jobsPage() {
  const title = el("h1", {}, "Jobs");
  const form = el("form", { class: "filters" });
  const fields = {};
  if (session.admin) {
    fields.tenant = el("select", { name: "tenant", id: "filter-tenant" });
    const tenants = (await api("/api/tenants")).tenants || [];
    for (const tenant of tenants) fields.tenant.append(el("option", { value: tenant.name }, tenant.name));
    if (!jobFilters.tenant && tenants.length) jobFilters.tenant = tenants[0].name;
    fields.tenant.value = jobFilters.tenant;
    form.append(el("label", {}, "Tenant", fields.tenant));
  }
  fields.state = el("select", { name: "state", id: "filter-state" },
    STATES.map((s) => el("option", { value: s }, s || "any")));
  fields.label = el("input", { name: "label", id: "filter-label", placeholder: "key=value" });
  fields.after = el("input", { name: "after", type: "datetime-local", id: "filter-after" });
  fields.before = el("input", { name: "before", type: "datetime-local", id: "filter-before" });
  form.append(el("label", {}, "State", fields.state), el("label", {}, "Label", fields.label),
    el("label", {}, "Created after (UTC)", fields.after),
    el("label", {}, "Created before (UTC)", fields.before),
    el("button", { type: "submit" }, "Apply"));
  for (const name of ["state", "label", "after", "before"]) fields[name].value = jobFilters[name];

  const holder = el("div", { id: "jobs" });
  const pager = el("div", { class: "pager" });
  page.append(title, form, holder, pager);
  const tokens = [""];  // page tokens: tokens[i] reads page i

  async function load() {
    const params = { ...jobFilters, label: jobFilters.label ? [jobFilters.label] : [],
                     page_token: tokens[tokens.length - 1], page_size: "20" };
    let data;
    try {
      data = await api(`/api/jobs?${query(params)}`);
    } catch (error) {
      holder.replaceChildren(el("p", { class: "error" }, error.message));
      return;
    }
    const rows = (data.jobs || []).map((job) => el("tr", { "data-job": job.id },
      el("td", {}, el("a", { href: `#/jobs/${job.id}` }, job.id)),
      el("td", {}, stateBadge(job.state)),
      el("td", {}, job.language || ""),
      el("td", {}, Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")),
      el("td", {}, when(job.create_time)),
      el("td", {}, job.result && job.result.verdict ? job.result.verdict.replace("VERDICT_", "") : "")));
    holder.replaceChildren(table(["Job", "State", "Language", "Labels", "Created", "Verdict"], rows));
    pager.replaceChildren(
      el("button", { disabled: tokens.length === 1, onclick: () => { tokens.pop(); load(); } }, "← Newer"),
      el("span", { class: "muted" }, `page ${tokens.length}`),
      el("button", { disabled: !data.next_page_token,
        onclick: () => { tokens.push(data.next_page_token); load(); } }, "Older →"));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    for (const name of Object.keys(fields)) jobFilters[name] = fields[name].value;
    tokens.splice(1);
    load();
  });
  if (fields.tenant) fields.tenant.addEventListener("change", () => form.requestSubmit());
  await load();
  // The first page follows new jobs as they come.
  every(2000, () => { if (tokens.length === 1) load(); });
}

function dl(pairs) {
  return el("dl", {}, pairs.filter(([, v]) => v !== undefined && v !== "")
    .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

async function jobPage(jobId) {
  const job = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
  const summary = el("div", { class: "card", id: "job-summary" });
  const verdict = el("div", { class: "card", id: "job-verdict" });
  const history = el("ol", { id: "job-history" });
  const output = el("pre", { id: "job-output" });
  const status = el("span", { class: "muted", id: "stream-status" }, "connecting…");
  const cancel = el("button", { class: "danger", id: "cancel-job", onclick: () => act("cancel",
    async () => { await api(`/api/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
                  return "cancel requested"; }) }, "Cancel");

  function showSummary(current) {
    const limits = current.limits || {};
    summary.replaceChildren(el("h2", {}, "Job"), dl([
      ["id", current.id], ["state", stateBadge(current.state)],
      ["why", current.state_reason || ""], ["language", current.language],
      ["attempt", String(current.attempt || 0)],
      ["created", when(current.create_time)], ["started", when(current.start_time)],
      ["ended", when(current.end_time)],
      ["labels", Object.entries(current.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")],
      ["limits", Object.entries(limits).map(([k, v]) => `${k} ${v}`).join(", ")],
    ]));
    const terminal = !["JOB_STATE_QUEUED", "JOB_STATE_RUNNING"].includes(current.state);
    cancel.disabled = terminal;
  }

  function showResult(result) {
    const usage = result.usage || {};
    verdict.replaceChildren(el("h2", {}, "Verdict"), dl([
      ["verdict", (result.verdict || "").replace("VERDICT_", "")],
      ["exit code", String(result.exit_code || 0)], ["signal", String(result.signal || 0)],
      ["cpu", `${usage.cpu_time_ms || 0} ms`], ["wall", `${usage.wall_time_ms || 0} ms`],
      ["peak memory", `${usage.peak_memory_bytes || 0} bytes`],
      ["compile output", result.compile_output || ""],
    ]));
  }

  showSummary(job);
  if (job.result && job.result.verdict) showResult(job.result);
  else verdict.replaceChildren(el("h2", {}, "Verdict"), el("p", { class: "muted" }, "not yet"));
  const files = (job.files || []).map((file) => el("div", {},
    el("h2", {}, file.name), el("pre", { class: "file" }, file.content || "")));
  page.append(el("h1", {}, `Job ${jobId}`), el("div", { class: "toolbar" }, cancel),
    el("div", { class: "grid" }, summary, verdict,
      el("div", { class: "card" }, el("h2", {}, "State history"), history)),
    el("h2", {}, "Output ", status), output, ...files);

  // Live: every event once, in seq order; EventSource resumes with Last-Event-ID itself.
  let lastSeq = 0;
  const stream = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/events`);
  onCleanup(() => stream.close());
  const fresh = (event) => {
    const seq = Number(event.lastEventId);
    if (seq <= lastSeq) return null;
    lastSeq = seq;
    return JSON.parse(event.data);
  };
  stream.addEventListener("open", () => { status.textContent = "live"; });
  stream.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  stream.addEventListener("state_change", (event) => {
    const data = fresh(event);
    if (!data) return;
    const change = data.state_change;
    history.append(el("li", {}, stateBadge(change.state), ` ${when(data.time)}`,
      change.attempt ? ` attempt ${change.attempt}` : "", change.reason ? ` — ${change.reason}` : ""));
    job.state = change.state;
    api(`/api/jobs/${encodeURIComponent(jobId)}`).then(showSummary).catch(() => {});
  });
  stream.addEventListener("output", (event) => {
    const data = fresh(event);
    if (!data) return;
    const chunk = data.output;
    output.append(el("span", { class: chunk.stream === "OUTPUT_STREAM_STDERR" ? "stderr" : "stdout" },
      chunk.data || ""));
  });
  stream.addEventListener("result", (event) => {
    const data = fresh(event);
    if (data) showResult(data.result);
  });
  stream.addEventListener("end", () => { stream.close(); status.textContent = "ended"; });
  stream.addEventListener("failure", (event) => {
    stream.close();
    status.textContent = JSON.parse(event.data).error;
  });
}

// Dead letters ---------------------------------------------------------------------------

async function deadLettersPage() {
  const which = el("select", { id: "dead-which" }, el("option", { value: "" }, "all"),
    el("option", { value: "false" }, "awaiting replay"), el("option", { value: "true" }, "parked"));
  const holder = el("div", { id: "dead-letters" });
  const depths = el("p", { class: "muted", id: "dead-depths" });
  page.append(el("h1", {}, "Dead letters"), el("div", { class: "toolbar" },
    el("label", {}, "Show ", which),
    el("button", { id: "replay-all", onclick: () => act("replay all", async () => {
      const reply = await api("/api/dead-letters/replay", { method: "POST", body: { all: true } });
      await load();
      return `${(reply.replayed_job_ids || []).length} job(s) replayed`;
    }) }, "Replay all"),
    el("button", { class: "danger", id: "purge-parked", onclick: () => act("purge", async () => {
      if (!confirm("Empty the parking lot? Its jobs stay dead-lettered for good.")) return "kept";
      const reply = await api("/api/dead-letters/purge", { method: "POST" });
      await load();
      return `${reply.purged_messages || 0} parked message(s) purged`;
    }) }, "Purge parked")), depths, holder);

  async function load() {
    const data = await api(`/api/dead-letters?${query({ parked: which.value })}`);
    depths.textContent = `broker: ${data.dead_letter_queue_depth || 0} in the dead-letter queue,` +
      ` ${data.parked_queue_depth || 0} parked`;
    holder.replaceChildren(table(["Job", "Tenant", "Replays", "Where", "Reason", ""],
      (data.dead_letters || []).map((letter) => el("tr", { "data-job": letter.job_id },
        el("td", {}, el("a", { href: `#/jobs/${letter.job_id}` }, letter.job_id)),
        el("td", {}, letter.tenant_id), el("td", { class: "num" }, String(letter.replays || 0)),
        el("td", {}, letter.parked ? "parked" : "awaiting replay"),
        el("td", {}, letter.reason || ""),
        el("td", {}, el("button", { class: "replay", onclick: () => act("replay", async () => {
          await api("/api/dead-letters/replay", { method: "POST", body: { job_ids: [letter.job_id] } });
          await load();
          return `job ${letter.job_id} replayed`;
        }) }, "Replay"))))));
  }

  which.addEventListener("change", load);
  await load();
  every(3000, load);
}

// Tenants, keys, quotas --------------------------------------------------------------------

function shownOnce(secret) {
  return el("p", {}, "Shown once — copy it now: ", el("span", { class: "secret" }, secret));
}

async function tenantsPage() {
  const holder = el("div", { id: "tenants" });
  const made = el("div");
  const name = el("input", { name: "name", id: "new-tenant", placeholder: "name", required: true });
  const admin = el("input", { type: "checkbox", id: "new-tenant-admin" });
  const form = el("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    act("create tenant", async () => {
      const reply = await api("/api/tenants", { method: "POST",
        body: { name: name.value, admin: admin.checked } });
      made.replaceChildren(shownOnce(reply.secret));
      name.value = "";
      await load();
      return `tenant ${reply.tenant.name} created`;
    });
  } }, el("label", {}, "New tenant", name), el("label", {}, "admin key", admin),
  el("button", { type: "submit" }, "Create"));
  page.append(el("h1", {}, "Tenants"), form, made, holder);

  async function load() {
    const data = await api("/api/tenants");
    holder.replaceChildren(table(["Tenant", "Id", "Created", "Status", ""],
      (data.tenants || []).map((tenant) => el("tr", { "data-tenant": tenant.name },
        el("td", {}, el("a", { href: `#/tenants/${tenant.id}` }, tenant.name)),
        el("td", { class: "muted" }, tenant.id), el("td", {}, when(tenant.create_time)),
        el("td", {}, tenant.paused
          ? el("span", { class: "badge paused" }, `paused since ${when(tenant.pause_time)}`)
          : el("span", { class: "badge" }, "active")),
        el("td", {}, tenant.paused
          ? el("button", { class: "resume", onclick: () => act("resume", async () => {
            await api(`/api/tenants/${tenant.id}/resume`, { method: "POST" });
            await load();
            return `tenant ${tenant.name} resumed`;
          }) }, "Resume")
          : el("button", { class: "pause danger", onclick: () => act("pause", async () => {
            await api(`/api/tenants/${tenant.id}/pause`, { method: "POST" });
            await load();
            return `tenant ${tenant.name} paused: its jobs wait`;
          }) }, "Pause"))))));
  }
  await load();
}

async function tenantPage(tenantId) {
  const keysHolder = el("div", { id: "keys" });
  const quotaHolder = el("div", { id: "quota" });
  const made = el("div");
  page.append(el("h1", {}, `Tenant ${tenantId}`),
    el("h2", {}, "API keys"), el("div", { class: "toolbar" },
      el("button", { id: "new-key", onclick: () => act("create key", async () => {
        const reply = await api(`/api/tenants/${tenantId}/keys`, { method: "POST", body: {} });
        made.replaceChildren(shownOnce(reply.secret));
        await loadKeys();
        return `key ${reply.api_key.id} created`;
      }) }, "Create key")), made, keysHolder,
    el("h2", {}, "Quota"), quotaHolder);

  async function loadKeys() {
    const data = await api(`/api/tenants/${tenantId}/keys`);
    keysHolder.replaceChildren(table(["Key", "Prefix", "Kind", "Created", "Revoked", ""],
      (data.api_keys || []).map((key) => el("tr", {},
        el("td", {}, key.id), el("td", {}, `${key.prefix}…`),
        el("td", {}, key.admin ? "admin" : "tenant"), el("td", {}, when(key.create_time)),
        el("td", {}, when(key.revoke_time)),
        el("td", {}, key.revoke_time ? "" : el("button", { class: "danger", onclick: () =>
          act("revoke", async () => {
            await api(`/api/keys/${key.id}/revoke`, { method: "POST" });
            await loadKeys();
            return `key ${key.id} revoked`;
          }) }, "Revoke"))))));
  }

  async function loadQuota() {
    const data = await api(`/api/tenants/${tenantId}/quota`);
    const inputs = {};
    const rows = Object.entries(data.quota || {}).map(([field, value]) => {
      inputs[field] = el("input", { name: field, size: 12, placeholder: String(value) });
      const set = field in (data.overrides || {});
      return el("tr", {}, el("td", {}, field), el("td", { class: "num" }, String(value)),
        el("td", {}, set ? "set" : "default"), el("td", {}, inputs[field]));
    });
    const usage = data.usage || {};
    const save = el("button", { type: "submit" }, "Save");
    const form = el("form", { id: "quota-form", onsubmit: (event) => {
      event.preventDefault();
      const quota = {};
      const reset = [];
      for (const [field, input] of Object.entries(inputs)) {
        if (input.value === "default") reset.push(field);
        else if (input.value !== "") quota[field] = Number(input.value);
      }
      act("save quota", async () => {
        await api(`/api/tenants/${tenantId}/quota`, { method: "POST", body: { quota, reset } });
        await loadQuota();
        return "quota saved";
      });
    } }, table(["Field", "Applies", "", "New value (or “default”)"], rows), save);
    quotaHolder.replaceChildren(el("p", { class: "muted" },
      `in use: ${usage.queued_jobs || 0} queued, ${usage.running_jobs || 0} running, ` +
      `${(usage.cpu_seconds_last_day || 0).toFixed(1)} CPU-s in the last day`), form);
  }
  await loadKeys();
  await loadQuota();
}

// Workers and queues -------------------------------------------------------------------------

async function workersPage() {
  const holder = el("div", { id: "workers" });
  const queuesHolder = el("div", { id: "queues" });
  const latency = el("p", { class: "muted" });
  const workerId = el("input", { id: "slots-worker", placeholder: "worker id" });
  const slots = el("input", { id: "slots-count", type: "number", min: "0", placeholder: "slots" });
  const slotsForm = el("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    act("set slots", async () => {
      const body = { slots: slots.value === "" ? null : Number(slots.value) };
      await api(`/api/workers/${encodeURIComponent(workerId.value)}/slots`, { method: "POST", body });
      await load();
      return `worker ${workerId.value}: slots ${slots.value === "" ? "as started" : slots.value}`;
    });
  } }, el("label", {}, "Worker", workerId), el("label", {}, "Slots (empty: as started)", slots),
  el("button", { type: "submit" }, "Set slots"));
  page.append(el("h1", {}, "Workers"), latency, holder, slotsForm,
    el("h1", {}, "Queues"), el("p", { class: "muted" },
      "Read from the broker's management API: its figures are up to its statistics interval old."),
    queuesHolder);

  async function load() {
    const data = await api("/api/workers");
    const now = Date.now();
    latency.textContent = `A control acts at the worker's next report: within ` +
      `${data.report_interval_ms || 0} ms.`;
    holder.replaceChildren(table(["Worker", "Identity", "Languages", "Slots", "Running",
      "Last heartbeat", "Controls", ""],
    (data.workers || []).map((worker) => el("tr", { "data-worker": worker.worker_id },
      el("td", {}, worker.worker_id), el("td", {}, worker.identity),
      el("td", {}, (worker.languages || []).join(", ")),
      el("td", { class: "num" }, `${worker.active_slots || 0} / ${worker.slots || 0}`),
      el("td", { class: "num" }, String(worker.running_jobs || 0)),
      el("td", {}, `${Math.max(0, Math.round((now - Date.parse(worker.last_heartbeat)) / 1000))} s ago`),
      el("td", {}, worker.draining ? el("span", { class: "badge draining" }, "draining")
        : `slots ${worker.desired_slots || 0}`, worker.applied ? "" : " (applying…)"),
      el("td", {}, worker.draining
        ? el("button", { class: "undrain", onclick: () => act("undrain", async () => {
          await api(`/api/workers/${encodeURIComponent(worker.worker_id)}/undrain`, { method: "POST" });
          await load();
          return `worker ${worker.worker_id} takes jobs again`;
        }) }, "Undrain")
        : el("button", { class: "drain danger", onclick: () => act("drain", async () => {
          await api(`/api/workers/${encodeURIComponent(worker.worker_id)}/drain`, { method: "POST" });
          await load();
          return `worker ${worker.worker_id} drains: no new job, running ones finish`;
        }) }, "Drain"))))));
    try {
      const queues = await api("/api/queues");
      queuesHolder.replaceChildren(table(["Queue", "Kind", "Ready", "Unacked", "Consumers"],
        (queues.queues || []).map((queue) => el("tr", { "data-queue": queue.name },
          el("td", {}, queue.name),
          el("td", {}, queue.kind === "work" ? `work (shard ${queue.shard || 0})`
            : queue.kind === "retry" ? `retry (${queue.retry_delay_ms} ms)` : queue.kind),
          el("td", { class: "num" }, String(queue.ready || 0)),
          el("td", { class: "num" }, String(queue.unacked || 0)),
          el("td", { class: "num" }, String(queue.consumers || 0))))));
    } catch (error) {
      queuesHolder.replaceChildren(el("p", { class: "error" }, error.message));
    }
  }
  await load();
  every(2000, load);
}

// The audit trail -----------------------------------------------------------------------------

async function auditPage() {
  const filters = { tenant: el("input", { name: "tenant", placeholder: "tenant id or name" }),
    job: el("input", { name: "job", placeholder: "job id" }),
    action: el("input", { name: "action", placeholder: "e.g. tenant_paused" }) };
  const holder = el("div", { id: "audit" });
  const pager = el("div", { class: "pager" });
  const form = el("form", { class: "filters" }, el("label", {}, "Tenant", filters.tenant),
    el("label", {}, "Job", filters.job), el("label", {}, "Action", filters.action),
    el("button", { type: "submit" }, "Apply"));
  page.append(el("h1", {}, "Audit trail"), el("p", { class: "muted" }, "Oldest first."),
    form, holder, pager);
  const tokens = [""];

  async function load() {
    const params = { tenant: filters.tenant.value, job: filters.job.value,
      action: filters.action.value, page_token: tokens[tokens.length - 1] };
    const data = await api(`/api/audit?${query(params)}`);
    holder.replaceChildren(table(["Seq", "Time", "Tenant", "Actor", "Action", "Job", "Detail"],
      (data.events || []).map((event) => el("tr", {},
        el("td", { class: "num" }, String(event.seq)), el("td", {}, when(event.time)),
        el("td", {}, event.tenant_id || ""), el("td", {}, event.actor),
        el("td", {}, event.action),
        el("td", {}, event.job_id ? el("a", { href: `#/jobs/${event.job_id}` }, event.job_id) : ""),
        el("td", { class: "muted" }, JSON.stringify(event.detail || {}))))));
    pager.replaceChildren(
      el("button", { disabled: tokens.length === 1, onclick: () => { tokens.pop(); load(); } }, "← Earlier"),
      el("button", { disabled: !data.next_page_token,
        onclick: () => { tokens.push(data.next_page_token); load(); } }, "Later →"));
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); tokens.splice(1); load(); });
  await load();
}

// Routing --------------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/jobs\/([0-9a-z]+)$/, jobPage, "jobs"],
  [/^#\/jobs$/, jobsPage, "jobs"],
  [/^#\/dead-letters$/, deadLettersPage, "dead-letters"],
  [/^#\/tenants\/([^/]+)$/, tenantPage, "tenants"],
  [/^#\/tenants$/, tenantsPage, "tenants"],
  [/^#\/workers$/, workersPage, "workers"],
  [/^#\/audit$/, auditPage, "audit"],
];

async function route() {
  for (const cleanup of cleanups.splice(0)) cleanup();
  page.replaceChildren();
  notice("", false);
  const hash = location.hash || "#/jobs";
  for (const [pattern, render, section] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("current", link.dataset.page === section);
    }
    try {
      await render(...match.slice(1).map(decodeURIComponent));
    } catch (error) {
      page.append(el("p", { class: "error" }, error.message));
    }
    return;
  }
  location.hash = "#/jobs";
}

async function start() {
  session = await api("/api/session");
  document.getElementById("who").textContent =
    `${session.admin ? "operator" : "tenant"} key ${session.who}`;
  for (const link of document.querySelectorAll("#nav .operator")) link.hidden = !session.admin;
  // Signing out is a POST like any other: it carries the CSRF token.
  document.getElementById("signout").addEventListener("submit", async (event) => {
    event.preventDefault();
    await fetch("/signout", { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": session.csrf } });
    location.assign("/signin");
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
