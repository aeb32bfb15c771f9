// Sluice dashboard: reads /status/stream (server-sent events, one /status
// document a second) with fetch(), so it can send the admin token as an
// Authorization header (EventSource cannot). The token lives in this
// closure only: never in a URL, a cookie or storage. Every value from the
// gateway is put in the page with textContent, never as HTML.
"use strict";
(() => {
  const TOP_TENANTS = 15;
  let token = "";
  let prev = null;        // the previous document, for rates
  let events = 0;
  let lastAt = 0;         // when the last event arrived (ms)
  let stale = false;      // the header says "stale": the next event must say "live" again
  let controller = null;  // aborts the current stream
  let generation = 0;     // a new connect (token entered) ends the older loop
  let backoff = 1000;
  let showAllTenants = false;
  const open = {};        // backends <details> open state by model

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const fmt = (n, digits = 0) => (n == null || Number.isNaN(n) ? "–" : Number(n).toFixed(digits));
  const fmtMS = (ms) => (!ms ? "–" : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`);
  const fmtCount = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : String(n));

  function setConn(text, cls) {
    const c = $("conn");
    c.textContent = text;
    c.className = `conn ${cls}`;
  }

  // bar draws value against max; max null: no limit to compare with.
  function bar(value, max, label) {
    const frac = max > 0 ? Math.min(value / max, 1) : value > 0 ? 1 : 0;
    const cls = max == null ? "bar" : value > max ? "bar bad" : frac >= 0.85 ? "bar warn" : "bar";
    const b = el("span", { class: cls });
    const fill = el("span");
    fill.style.width = `${frac * 100}%`;
    b.append(fill);
    return el("span", {}, b, el("span", { class: "barlabel" }, label));
  }

  // backendState folds the gateway's health state, breaker, slow start and
  // draining into the one word an operator needs.
  function backendState(b, draining) {
    if (draining) return "draining";
    if (b.state === "down" || b.state === "ejected") return b.state;
    if (b.breaker === "half-open") return "half-open";
    if (b.state === "open") return "open";
    if (b.state === "busy") return "busy";
    if (b.slow_start < 1) return "slow-start";
    return "healthy";
  }
  const stateLabel = { "slow-start": "slow start", open: "breaker open", "half-open": "breaker half-open", down: "down (probe)" };
  const problemRank = { down: 0, ejected: 0, open: 1, "half-open": 2, busy: 3, draining: 4, "slow-start": 5, healthy: 6 };

  function rate(now, before, seconds) {
    if (before == null || seconds <= 0 || now < before) return null;
    return (now - before) / seconds;
  }

  function fill(tbody, rows, empty) {
    tbody.replaceChildren(...rows);
    if (!rows.length) tbody.append(el("tr", {}, el("td", { colSpan: 9, class: "muted" }, empty)));
  }

  function renderModels(doc, dt) {
    const rows = doc.models.map((m) => {
      const p = prev && prev.models.find((x) => x.model === m.model);
      const errs = Object.values(m.errors || {}).reduce((a, b) => a + b, 0);
      const pErrs = p ? Object.values(p.errors || {}).reduce((a, b) => a + b, 0) : null;
      const d = m.demand;
      const want = d.in_flight + d.queued;
      const up = m.backends.filter((b) => b.state === "healthy" || b.state === "busy").length;
      const slo = m.slo.interactive_ms;
      const p99cls = !m.ttft.samples || !slo ? "" : m.ttft.p99_ms > slo ? "bad" : m.ttft.p99_ms > 0.8 * slo ? "warn" : "ok";
      return el("tr", { "data-model": m.model },
        el("td", {}, m.model),
        el("td", {}, d.unlimited ? bar(want, null, `${want} / ∞`) : bar(want, Math.max(d.capacity, 0), `${want} / ${d.capacity}`)),
        el("td", { class: "num", "data-field": "rps" }, fmt(rate(m.requests_total, p && p.requests_total, dt), 1)),
        el("td", { class: "num" }, fmt(rate(errs, pErrs, dt), 1)),
        el("td", { class: `num ${d.queued ? "warn" : ""}` }, d.queued),
        el("td", { class: "num" }, fmtMS(m.ttft.p50_ms)),
        el("td", { class: `num ${p99cls}` }, fmtMS(m.ttft.p99_ms)),
        el("td", { class: "num muted" }, fmtMS(slo)),
        el("td", { class: `num ${up && up === m.backends.length ? "ok" : up ? "warn" : "bad"}` }, `${up} / ${m.backends.length}`));
    });
    fill($("models").tBodies[0], rows, "no models configured");
    const total = doc.models.reduce((a, m) => a + m.demand.in_flight, 0);
    $("models").dataset.inflight = total;
  }

  function renderRefusals(doc, dt) {
    const rows = [];
    for (const m of doc.models) {
      const p = prev && prev.models.find((x) => x.model === m.model);
      for (const [reason, n] of Object.entries(m.errors || {})) {
        const r = rate(n, p && p.errors ? p.errors[reason] || 0 : null, dt);
        rows.push({ model: m.model, reason, n, r });
      }
    }
    rows.sort((a, b) => (b.r || 0) - (a.r || 0) || b.n - a.n);
    fill($("refusals").tBodies[0], rows.map((x) => el("tr", {},
      el("td", {}, x.model), el("td", {}, x.reason),
      el("td", { class: `num ${x.r > 0 ? "bad" : ""}` }, fmt(x.r, 1)),
      el("td", { class: "num" }, fmtCount(x.n)))), "none since start");
  }

  function renderTenants(doc) {
    const rows = [];
    for (const m of doc.models) {
      for (const [name, t] of Object.entries((m.queue && m.queue.tenants) || {})) {
        const oldest = Math.max(0, ...(t.waiting || []).map((w) => w.oldest_wait_ns / 1e6));
        rows.push({ name, model: m.model, t, oldest });
      }
    }
    rows.sort((a, b) => b.t.queued - a.t.queued || b.oldest - a.oldest || b.t.in_use - a.t.in_use || a.name.localeCompare(b.name));
    const shown = showAllTenants ? rows : rows.slice(0, TOP_TENANTS);
    fill($("tenants").tBodies[0], shown.map((x) => el("tr", {},
      el("td", {}, x.name || "(anonymous)"), el("td", {}, x.model),
      el("td", { class: "num" }, x.t.in_use),
      el("td", { class: `num ${x.t.queued ? "warn" : ""}` }, x.t.queued),
      el("td", {}, (x.t.waiting || []).map((w) => `${w.class} ${w.queued} (${fmtMS(w.oldest_wait_ns / 1e6)})`).join(", ") || "–"))),
    "no tenant has requests queued or in flight");
    $("tenants-hint").textContent = rows.length > TOP_TENANTS ? `top ${shown.length} of ${rows.length}, most queued first` : "most queued first";
    const btn = $("tenants-all");
    btn.hidden = rows.length <= TOP_TENANTS;
    btn.textContent = showAllTenants ? `show top ${TOP_TENANTS}` : `show all ${rows.length}`;
  }

  function backendRow(b, draining) {
    const st = backendState(b, draining);
    const kv = b.scraped ? b.scraped.kv_cache_usage * 100 : null;
    return { st, name: b.name, row: el("tr", { "data-backend": b.name, "data-state": st },
      el("td", {}, b.name),
      // The badge's tooltip is /status's why: what took it out and until when.
      el("td", {}, el("span", { class: `badge s-${st}`, title: b.why || "" }, stateLabel[st] || st)),
      el("td", {}, bar(b.inflight, b.limit > 0 ? b.limit : null, `${b.inflight} / ${b.limit || "∞"}`)),
      el("td", { class: "num" }, fmtMS(b.ttft.p50_ms)),
      el("td", { class: "num" }, fmtMS(b.ttft.p99_ms)),
      el("td", { class: `num ${kv >= 90 ? "bad" : kv >= 75 ? "warn" : ""}` }, kv == null ? "–" : `${fmt(kv)}%`),
      el("td", { class: "num" }, b.scraped ? fmt(b.scraped.waiting) : "–"),
      el("td", { class: "num" }, fmtCount(b.failures))) };
  }

  function renderBackends(doc) {
    const box = $("backends");
    const parts = doc.models.map((m) => {
      const rows = [...m.backends.map((b) => backendRow(b, false)), ...(m.draining_backends || []).map((b) => backendRow(b, true))];
      rows.sort((a, b) => problemRank[a.st] - problemRank[b.st] || a.name.localeCompare(b.name));
      const bad = rows.filter((r) => r.st !== "healthy").length;
      const det = el("details", { "data-model": m.model });
      det.open = open[m.model] !== undefined ? open[m.model] : rows.length <= 20 || bad > 0;
      det.addEventListener("toggle", () => { open[m.model] = det.open; });
      const table = el("table", {},
        el("thead", {}, el("tr", {}, ...["backend", "state", "in flight / limit", "TTFT p50", "TTFT p99", "KV cache", "engine queue", "failures"]
          .map((h, i) => el("th", { class: i >= 3 ? "num" : "" }, h)))),
        el("tbody", {}));
      fill(table.tBodies[0], rows.map((r) => r.row),
        "none: the static list is empty and discovery has found none yet; requests are answered 503 no_healthy_backend");
      // A pool of none is the worst state, not "all healthy".
      const health = !m.backends.length ? el("span", { class: "bad" }, "no backend to route to")
        : el("span", { class: bad ? "warn" : "ok" }, bad ? `${bad} not healthy` : "all healthy");
      const disc = m.discovery && m.discovery.state !== "ok" ? [" · ", el("span", { class: "warn" }, `discovery ${m.discovery.state}`)] : [];
      det.append(el("summary", {}, `${m.model}: ${rows.length} backend${rows.length === 1 ? "" : "s"}, `, health, ` · ${m.policy}`, ...disc),
        el("div", { class: "scroll" }, table));
      return det;
    });
    box.replaceChildren(...parts);
  }

  function kv(dl, pairs) {
    dl.replaceChildren(...pairs.flatMap(([k, v, id]) => [el("dt", {}, k), el("dd", id ? { "data-field": id } : {}, v)]));
  }

  function renderCacheJobs(doc, dt) {
    const c = doc.cache;
    if (!c || !c.enabled) kv($("cache"), [["response cache", "off"]]);
    else {
      const pc = prev && prev.cache;
      kv($("cache"), [
        ["hit ratio", `${fmt(c.hit_ratio * 100, 1)}%`, "hit-ratio"],
        ["hits / misses", `${fmtCount(c.hits)} / ${fmtCount(c.misses)}`],
        ["hits/s", fmt(rate(c.hits, pc && pc.hits, dt), 1)],
        ["coalesced", `${fmtCount(c.coalesced)} (${fmt(rate(c.coalesced, pc && pc.coalesced, dt), 1)}/s)`],
      ]);
    }
    const j = doc.jobs;
    if (!j || !j.enabled) kv($("jobs"), [["job queue", "off"]]);
    else kv($("jobs"), [
      ["running here", j.running],
      ["backlog (queued or running)", j.backlog == null ? "unknown" : j.backlog],
      ["batches in progress", j.active_batches == null ? "unknown" : j.active_batches],
    ]);
  }

  const fmtRate = (v) => (v == null || Number.isNaN(v) ? "–" : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const fmtHorizon = (s) => (s % 3600 === 0 && s ? `${s / 3600}h` : s % 60 === 0 && s ? `${s / 60}m` : `${s}s`);

  // spark draws a model's history as an inline SVG: the actual requests/s
  // per interval (solid), what had been forecast for it (dashed mean) and
  // the band from that mean to its p90. Runs without a forecast are gaps.
  const SVG = "http://www.w3.org/2000/svg";
  function spark(history, intervalS) {
    const W = 240, H = 44, P = 3;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const title = document.createElementNS(SVG, "title");
    const top = Math.max(1e-9, ...history.map((p) => Math.max(p.requests_per_second, p.forecast ? p.forecast.requests.p90 : 0)));
    title.textContent = `requests/s over the last ${history.length} intervals of ${intervalS} s; top of the chart ${fmtRate(top)}/s`;
    svg.append(title);
    const n = Math.max(history.length - 1, 1);
    const x = (i) => (P + (i * (W - 2 * P)) / n).toFixed(1);
    const y = (v) => (H - P - (Math.max(v, 0) / top) * (H - 2 * P)).toFixed(1);
    const shape = (tag, cls, attrs) => {
      const e = document.createElementNS(SVG, tag);
      e.setAttribute("class", cls);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      svg.append(e);
      return e;
    };
    shape("line", "axis", { x1: P, x2: W - P, y1: H - P, y2: H - P });
    // Contiguous runs of intervals that had a forecast.
    let run = [];
    const flush = () => {
      if (run.length) {
        const upper = run.map(({ p, i }) => `${x(i)},${y(p.forecast.requests.p90)}`);
        const mean = run.map(({ p, i }) => `${x(i)},${y(p.forecast.requests.mean)}`);
        shape("polygon", "band", { points: [...upper, ...mean.slice().reverse()].join(" ") });
        shape("polyline", "fmean", { points: mean.join(" ") });
      }
      run = [];
    };
    history.forEach((p, i) => { if (p.forecast) run.push({ p, i }); else flush(); });
    flush();
    shape("polyline", "actual", { points: history.map((p, i) => `${x(i)},${y(p.requests_per_second)}`).join(" ") });
    return svg;
  }

  function renderForecast(doc) {
    const f = doc.forecast;
    const table = $("forecast");
    $("forecast-off").hidden = !!f;
    table.hidden = !f;
    if (!f) return;
    $("forecast-hint").textContent = `last ${Math.max(0, ...f.models.map((m) => m.history.length))} intervals of ${fmtHorizon(f.interval_s)}: ` +
      `actual, and what was forecast ${fmtHorizon(f.lead_s)} ahead (scaling.lead); p90 band`;
    fill(table.tBodies[0], f.models.map((m) => {
      const lead = m.horizons.find((h) => h.lead);
      const a = m.actual;
      const d = m.desired_backends;
      return el("tr", { "data-model": m.model },
        el("td", {}, m.model),
        el("td", {}, m.history.length ? spark(m.history, f.interval_s) : el("span", { class: "muted" }, "no interval closed yet")),
        el("td", { class: "num", "data-field": "actual-rps" }, a ? fmtRate(a.requests_per_second) : "–"),
        el("td", { class: "num", "data-field": "lead" }, lead ? `${fmtRate(lead.requests.mean)} / ${fmtRate(lead.requests.p90)}` : "–"),
        el("td", { class: "num" }, `${a ? fmtRate(a.tokens_per_second) : "–"} / ${lead ? fmtRate(lead.tokens.p90) : "–"}`),
        el("td", {}, m.horizons.filter((h) => !h.lead).map((h) => `${fmtHorizon(h.horizon_s)} ${fmtRate(h.requests.p90)}`).join(" · ") || "no forecast yet"),
        el("td", { class: `num ${d > m.usable_backends ? "warn" : "ok"}`, "data-field": "desired" },
          `${fmt(d, 1)} (${m.usable_backends} / ${m.backends} up)`));
    }), "no models configured");
  }

  const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "–");

  // renderAlerts lists what an operator must act on, worst first, from
  // fields the tables do not show: readiness and what holds it, the
  // issuer's key set, a model no backend can serve, discovery that fails, a refused reload (its
  // file:line message), Redis bypassed, the job queue not answering or its disk refusing writes.
  // Every string (model names, error text) goes in as text.
  function renderAlerts(doc) {
    const items = [];
    const add = (kind, cls, ...kids) => items.push(el("li", { class: cls, "data-kind": kind }, ...kids));
    const detail = (text) => el("div", { class: "detail" }, text);
    const r = doc.readiness;
    if (r && !r.ready) {
      const why = [];
      if (r.waiting_for && r.waiting_for.length) why.push(`waiting for the first backend set of ${r.waiting_for.join(", ")}`);
      if (r.jwks === "unavailable") why.push("the issuer's key set was never fetched");
      if (!why.length) why.push("no model has a backend to route to");
      add("readiness", "bad", `not ready: /readyz answers 503, load balancers send this replica nothing (${why.join("; ")})`);
    }
    if (r && r.jwks === "unavailable") {
      add("jwks", "bad", "JWKS unavailable: the key set of auth.jwt.jwks_url was never fetched; bearer tokens are answered 503 auth_keys_unavailable");
    } else if (r && r.jwks === "degraded") {
      add("jwks", "warn", "JWKS degraded: the last fetch of auth.jwt.jwks_url failed; the keys held still verify");
    }
    const c = doc.config;
    if (c && !c.last_reload_successful && c.last_refusal) {
      add("config", "bad", `config reload refused at ${fmtTime(c.last_refusal.time)}: the config serving (loaded ${fmtTime(c.loaded_at)}) is not the file on disk`,
        detail(c.last_refusal.error));
    }
    for (const m of doc.models) {
      // Every backend down by the probe or behind an open breaker: none is
      // tried, not even last (ejected ones are), so the model's requests
      // get 503 no_healthy_backend or go to its fallbacks. The replica may
      // still be ready (another model serves), so readiness says nothing.
      const out = m.backends.filter((b) => b.state === "down" || b.state === "open").length;
      if (m.backends.length && out === m.backends.length) {
        add("pool-out", "bad", `${m.model}: no backend can serve (${out} down or breaker open): its requests get 503 no_healthy_backend, or go to its fallbacks`);
      }
    }
    for (const m of doc.models) {
      const d = m.discovery;
      if (!d || d.state === "ok") continue;
      add("discovery", m.backends.length ? "warn" : "bad", `${m.model}: discovery ${d.state}: ${d.reason || ""}`, ...(d.errors || []).map(detail));
    }
    const rd = doc.redis || {};
    if (rd.rate_limits === "degraded") add("redis", "warn", "Redis of rate_limits unreachable: bypassed, rate_limits.redis.failure_mode answers (open: a local share of each limit; closed: 503)");
    if (rd.cache === "degraded") add("redis", "warn", "Redis of the response cache unreachable: bypassed, lookups miss it and go upstream");
    if (rd.response_ids === "degraded") add("redis", "warn", "Redis of the Responses API ids unreachable: a previous_response_id this replica does not know is refused 503");
    const j = doc.jobs;
    if (j && j.store_failing) {
      add("jobs-store", "bad", "job store's disk refuses writes: new async jobs, batches and files are answered 503 storage_unavailable; the gateway restarts the store by itself once the data directory takes writes (free space, or remount it read-write)",
        detail(j.store_failing));
    }
    if (j && j.store_damaged) {
      add("jobs-store-damaged", "bad", "job store found damaged on disk at start: some accepted jobs, batches or files are lost (404); the gateway serves what is left; see DEPLOY \"When the store comes back damaged\"",
        detail(j.store_damaged));
    }
    if (j && j.classes_down) {
      add("jobs-classes-down", "bad", "job workers cannot create the queue consumer of a class: its jobs wait, the other classes run; the workers retry (is another consumer filtering that class's subject on SLUICE_JOBS?)",
        detail(j.classes_down));
    }
    if (j && j.enabled && j.backlog == null) {
      const where = doc.queue ? ` (${doc.queue.mode}${doc.queue.nats_url ? ` ${doc.queue.nats_url}` : ""})` : "";
      add("jobs", "warn", `job queue${where} not answering: backlog unknown, async jobs and batches may be refused`);
    }
    $("alerts").hidden = !items.length;
    $("alert-list").replaceChildren(...items);
  }

  function render(doc) {
    const dt = prev ? (Date.parse(doc.time) - Date.parse(prev.time)) / 1000 : 0;
    renderAlerts(doc);
    renderModels(doc, dt);
    renderRefusals(doc, dt);
    renderTenants(doc);
    renderBackends(doc);
    renderCacheJobs(doc, dt);
    renderForecast(doc);
    prev = doc;
    events++;
    lastAt = Date.now();
    $("conn").dataset.events = events;
    if (stale) {
      // Events resumed on the same stream (a gateway paused, a slow
      // /status): the header must not keep saying stale over live numbers.
      stale = false;
      setConn("live", "conn-live");
    }
    $("updated").textContent = `updated ${new Date(doc.time).toLocaleTimeString()}`;
  }

  // handle parses one server-sent event block.
  function handle(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (name === "status" && data.length) render(JSON.parse(data.join("\n")));
  }

  async function stream() {
    controller = new AbortController();
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const resp = await fetch("/status/stream", { headers, cache: "no-store", credentials: "omit", signal: controller.signal });
    if (resp.status === 401) {
      const hadToken = token !== "";
      token = "";
      $("auth").hidden = false;
      $("auth-error").textContent = hadToken ? "that token was refused" : "";
      setConn("needs the admin token", "conn-down");
      $("token").focus();
      return false;
    }
    if (resp.status === 403) {
      // Refused whatever the token: an admin listener without admin.token
      // answers its own host only. Retrying cannot help; say why.
      let msg = "HTTP 403";
      try { msg = (await resp.json()).error.message; } catch (_) { /* not the JSON error */ }
      setConn(msg, "conn-down");
      return false;
    }
    if (!resp.ok || !resp.body) {
      // The gateway's OpenAI-shaped error says why (too_many_watchers:
      // close a tab); a proxy's page does not parse: the status then.
      let msg = `HTTP ${resp.status}`;
      try { msg = `HTTP ${resp.status}: ${(await resp.json()).error.message}`; } catch (_) { /* not the JSON error */ }
      throw new Error(msg);
    }
    $("auth").hidden = true;
    setConn("live", "conn-live");
    backoff = 1000;
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended");
      buf += value.replace(/\r\n/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        handle(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    }
  }

  async function run() {
    const mine = ++generation;
    for (;;) {
      try {
        if ((await stream()) === false) return; // waiting for a token
      } catch (err) {
        if (mine !== generation) return;
        setConn(`reconnecting (${err.message})`, "conn-wait");
      }
      if (mine !== generation) return;
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  // A frozen number is worse than none: mark the page stale when events stop.
  setInterval(() => {
    if (lastAt && Date.now() - lastAt > 5000) {
      stale = true;
      setConn(`stale: no update for ${Math.round((Date.now() - lastAt) / 1000)} s`, "conn-down");
    }
  }, 1000);

  document.addEventListener("DOMContentLoaded", () => {
    $("auth").addEventListener("submit", (e) => {
      e.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      if (controller) controller.abort();
      setConn("connecting…", "conn-wait");
      run();
    });
    $("tenants-all").addEventListener("click", () => {
      showAllTenants = !showAllTenants;
      if (prev) renderTenants(prev);
    });
    run();
  });
})();
