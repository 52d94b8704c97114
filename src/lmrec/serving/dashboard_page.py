"""The web dashboard: one self-contained HTML page (no external assets: it works without internet), kept in
code so it ships with the package.

Views (tabs; the URL's ``#view`` opens one, ``?user=ID`` opens that user's timeline):

* **Service**: model, catalogue, live request stats (``/v1/dashboard/stats`` every two seconds).
* **Experiments**: each experiment's arms with users, answers, click-through, add-to-cart, conversion and
  revenue per user, each drawn as its interval, and the tests against the control
  (``/v1/dashboard/experiments``).
* **Model versions**: the registry over time, each version's offline figures (its folder) and the online
  figures of the experiment arms that served it (``/v1/dashboard/versions``).
* **User**: a user's events (titles, types, times) beside their current recommendations and why
  (``/v1/dashboard/users/{id}/timeline``, an admin key).
* **Activity**: events by type over the newest days, and the service's write and admin calls per hour
  (``/v1/dashboard/activity``).

An API key typed into the page is kept in the browser's local storage.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lmrec dashboard</title>
<style>
  :root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ec; --accent:#2f6fec; --bad:#c0392b; --good:#1e8449;
          --ctrl:#8a94a8; }
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0;
         background:#f7f8fa; }
  header { background:#fff; border-bottom:1px solid var(--line); padding:14px 24px; display:flex; gap:24px;
           align-items:baseline; flex-wrap:wrap; }
  header h1 { font-size:18px; margin:0; }
  nav { display:flex; gap:4px; }
  nav a { padding:4px 12px; border-radius:5px; color:var(--fg); text-decoration:none; }
  nav a.on { background:var(--accent); color:#fff; }
  .keybox { margin-left:auto; }
  main { max-width: 1180px; margin: 0 auto; padding: 20px 24px; display:grid; gap:20px; }
  .view { display:none; gap:20px; }
  .view.on { display:grid; }
  section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px; }
  h2 { font-size:15px; margin:0 0 12px; }
  h3 { font-size:14px; margin:14px 0 6px; }
  .cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap:12px; }
  .card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; }
  .card b { display:block; font-size:20px; }
  .card span { color: var(--muted); font-size:13px; }
  table { border-collapse: collapse; width:100%; font-size:14px; }
  th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
  th { color: var(--muted); font-weight:600; }
  td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
  form { display:flex; flex-wrap:wrap; gap:10px; align-items:end; margin-bottom:12px; }
  label { display:flex; flex-direction:column; font-size:13px; color:var(--muted); gap:4px; }
  input { font: inherit; padding:6px 8px; border:1px solid var(--line); border-radius:5px; }
  button { font: inherit; padding:7px 14px; border:0; border-radius:5px; background:var(--accent); color:#fff;
           cursor:pointer; }
  ol { margin:0; padding-left: 22px; }
  li { margin: 8px 0; }
  .why { color: var(--muted); font-size:13px; }
  .err { color: var(--bad); }
  .muted { color: var(--muted); }
  .tag { display:inline-block; font-size:12px; padding:1px 7px; border-radius:9px; background:#eef1f6; }
  .tag.running { background:#e3f4e8; color:var(--good); }
  .tag.sig { background:#e3f4e8; color:var(--good); font-weight:600; }
  .tag.ns { background:#f1f1f1; color:var(--muted); }
  .ci { display:inline-block; position:relative; width:150px; height:14px; vertical-align:middle;
        background:#f3f5f9; border-radius:3px; margin-left:6px; }
  .ci i { position:absolute; top:6px; height:2px; background:var(--accent); }
  .ci b { position:absolute; top:2px; width:2px; height:10px; background:var(--fg); }
  .split { display:grid; grid-template-columns: 1fr 1fr; gap:20px; }
  @media (max-width: 900px) { .split { grid-template-columns: 1fr; } }
  .bars { display:flex; align-items:flex-end; gap:2px; height:90px; border-bottom:1px solid var(--line); }
  .bars div { background:var(--accent); min-width:6px; flex:1; max-width:60px; }
  .type-view { color:#2f6fec; } .type-click { color:#2f6fec; } .type-cart { color:#b9770e; }
  .type-purchase { color:var(--good); font-weight:600; }
</style>
</head>
<body>
<header>
  <h1>lmrec</h1><span id="model" class="muted">loading…</span>
  <nav id="nav">
    <a href="#service" data-view="service">Service</a>
    <a href="#experiments" data-view="experiments">Experiments</a>
    <a href="#versions" data-view="versions">Model versions</a>
    <a href="#user" data-view="user">User</a>
    <a href="#activity" data-view="activity">Activity</a>
  </nav>
  <label class="keybox">API key <input id="key" type="password" placeholder="not needed in dev mode"></label>
</header>
<main>
<div class="view" id="view-service">
  <section>
    <h2>Service</h2>
    <div class="cards">
      <div class="card"><b id="version">–</b><span>model version</span></div>
      <div class="card"><b id="catalogue">–</b><span>items in the catalogue</span></div>
      <div class="card"><b id="rps">–</b><span>requests / s (recent)</span></div>
      <div class="card"><b id="total">–</b><span>requests since start</span></div>
      <div class="card"><b id="users">–</b><span>users in memory</span></div>
    </div>
  </section>
  <section>
    <h2>Latency by route (recent requests)</h2>
    <table><thead><tr><th>route</th><th class="num">count</th><th class="num">5xx</th>
      <th class="num">p50 ms</th>
      <th class="num">p95 ms</th><th class="num">p99 ms</th></tr></thead><tbody id="routes"></tbody></table>
  </section>
</div>
<div class="view" id="view-experiments">
  <section>
    <h2>Experiments</h2>
    <p class="muted">Per arm: exposed users, answers served, and the share of users who clicked, carted or
      bought a recommended item within the window after an answer, with the mean revenue per user; each bar
      is the interval, the tick the estimate. Tests: each arm against the control (the first arm).</p>
    <div id="experiments">loading…</div>
  </section>
</div>
<div class="view" id="view-versions">
  <section>
    <h2>Model versions over time</h2>
    <p class="muted">Offline figures from each version's folder (validation metrics of its training run);
      online figures from the experiment arms that served it.</p>
    <table><thead><tr><th>saved</th><th>version</th><th>model</th><th>offline</th><th>online (arm · users ·
      click-through · conversion · revenue / user)</th></tr></thead><tbody id="versions"></tbody></table>
  </section>
</div>
<div class="view" id="view-user">
  <section>
    <h2>A user: timeline and recommendations</h2>
    <form id="form">
      <label>user id <input id="user" required></label>
      <label>k <input id="k" type="number" value="10" min="1" max="100" style="width:70px"></label>
      <button>Show</button>
    </form>
    <div id="user-note" class="muted">Enter a user id (needs an admin key unless in dev mode).</div>
    <div class="split">
      <div><h3>Timeline (newest first)</h3>
        <table><thead><tr><th>time (UTC)</th><th>type</th><th>item</th><th class="num">value</th></tr></thead>
        <tbody id="timeline"></tbody></table></div>
      <div><h3>Recommendations now</h3><div id="out"></div></div>
    </div>
  </section>
</div>
<div class="view" id="view-activity">
  <section>
    <h2>Events by type (newest days of event time)</h2>
    <div id="event-bars"></div>
    <table><thead><tr><th>from</th><th>type</th><th class="num">events</th></tr></thead>
      <tbody id="event-rows"></tbody></table>
  </section>
  <section>
    <h2>Ingestion and updates (write and admin calls per hour)</h2>
    <table><thead><tr><th>hour</th><th>call</th><th class="num">calls</th><th class="num">records</th>
      <th class="num">failed</th></tr></thead><tbody id="calls"></tbody></table>
    <h3>Answers served in experiments per hour</h3>
    <table><thead><tr><th>hour (UTC)</th><th class="num">answers</th></tr></thead>
      <tbody id="answers"></tbody></table>
  </section>
</div>
</main>
<script>
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = localStorage.getItem("lmrec-key") || "";
function headers() {
  const k = keyInput.value.trim();
  if (k) localStorage.setItem("lmrec-key", k);
  return k ? {"X-API-Key": k} : {};
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const [val, cls] = Array.isArray(c) ? c : [c, ""];
    const td = el("td", null, cls);
    if (val instanceof Node) td.appendChild(val); else td.textContent = val;
    tr.appendChild(td);
  }
  return tr;
}
const pct = (x) => x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%";
const num = (x, d = 2) => x === null || x === undefined ? "–" : Number(x).toFixed(d);
async function getJSON(path) {
  const r = await fetch(path, {headers: headers()});
  const data = await r.json();
  if (!r.ok) throw new Error((typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) +
                             " (" + r.status + ")");
  return data;
}
// an interval drawn on a 0..scale axis: a bar from low to high, a tick at the estimate
function ci(m, scale, fmt) {
  const span = el("span");
  span.append(el("span", fmt(m.value) + "  [" + fmt(m.low) + ", " + fmt(m.high) + "]"));
  if (m.value === null || !(scale > 0)) return span;
  const box = el("span", null, "ci");
  const x = (v) => Math.max(0, Math.min(100, 100 * v / scale));
  const bar = el("i"); bar.style.left = x(m.low) + "%"; bar.style.width = (x(m.high) - x(m.low)) + "%";
  const tick = el("b"); tick.style.left = "calc(" + x(m.value) + "% - 1px)";
  box.append(bar, tick); span.append(box);
  return span;
}

// ---------------------------------------------------------------- service
async function refresh() {
  try {
    const s = await getJSON("/v1/dashboard/stats");
    $("model").textContent = s.model + " · started " + new Date(s.started_at * 1000).toLocaleString();
    $("version").textContent = s.model_version;
    $("catalogue").textContent = s.catalogue_size.toLocaleString();
    $("rps").textContent = s.requests.requests_per_s.toFixed(1);
    $("total").textContent = s.requests.total_requests.toLocaleString();
    $("users").textContent = s.users_in_memory.toLocaleString();
    const body = $("routes");
    body.replaceChildren();
    for (const [route, v] of Object.entries(s.requests.routes)) {
      body.appendChild(row([route, [v.count, "num"], [v.errors, "num"], [v.p50_ms.toFixed(1), "num"],
                            [v.p95_ms.toFixed(1), "num"], [v.p99_ms.toFixed(1), "num"]]));
    }
  } catch (e) { $("model").textContent = "stats: " + e.message; }
}

// ---------------------------------------------------------------- experiments
const METRICS = [["click_through", "click-through", pct], ["add_to_cart", "add-to-cart", pct],
                 ["conversion", "conversion", pct], ["revenue_per_user", "revenue / user", (x) => num(x)]];
async function loadExperiments() {
  const box = $("experiments");
  try {
    const list = await getJSON("/v1/dashboard/experiments");
    box.replaceChildren();
    if (!list.length) { box.textContent = "No experiments yet (lmrec experiments create, or POST " +
                                          "/v1/admin/experiments)."; return; }
    for (const x of list) {
      const sec = el("div"); sec.className = "experiment"; sec.dataset.name = x.name;
      const h = el("h3", x.name + " ");
      h.append(el("span", x.status, "tag " + x.status));
      const meta = el("p", "started " + x.created + (x.stopped ? " · stopped " + x.stopped : "") +
                      " · window " + (x.window_s / 3600).toFixed(0) + " h · alpha " + x.alpha + " · " +
                      "correction " + x.correction + (x.description ? " · " + x.description : ""), "muted");
      const t = el("table");
      const head = row(["arm", "version", ["share", "num"], ["users", "num"], ["answers", "num"],
                        ...METRICS.map((m) => m[1])]);
      head.querySelectorAll("td").forEach((td) => { td.outerHTML = "<th>" + td.textContent + "</th>"; });
      const thead = el("thead"); thead.appendChild(head); t.appendChild(thead);
      const tb = el("tbody");
      const scale = {};
      for (const [m] of METRICS) scale[m] = Math.max(1e-9, ...x.arms.map((a) => a.metrics[m].high || 0));
      x.arms.forEach((a, i) => {
        const r = row([a.arm + (i === 0 ? " (control)" : ""), a.version, [pct(a.share), "num"],
                       [a.users, "num"], [a.answers, "num"],
                       ...METRICS.map(([m, , fmt]) => ci(a.metrics[m], scale[m], fmt))]);
        r.className = "arm"; r.dataset.arm = a.arm;
        tb.appendChild(r);
      });
      t.appendChild(tb);
      const tests = el("table"); tests.className = "tests";
      tests.appendChild(row(["metric", "arm vs control", "test", ["difference", "num"], "interval",
                             ["p", "num"], ["p (adjusted)", "num"], "result"]));
      for (const s of x.tests) {
        const fmt = s.metric === "revenue_per_user" ? (v) => num(v)
                                                    : (v) => num(v === null ? null : 100 * v, 2) + " pt";
        const verdict = el("span", s.significant ? "significant" : "not significant",
                           "tag " + (s.significant ? "sig" : "ns"));
        tests.appendChild(row([s.metric, s.arm + " vs " + s.control, s.test, [fmt(s.difference), "num"],
                               "[" + fmt(s.low) + ", " + fmt(s.high) + "]", [num(s.p_value, 4), "num"],
                               [num(s.p_adjusted, 4), "num"], verdict]));
      }
      sec.append(h, meta, t, el("h3", "Tests"), tests);
      box.appendChild(sec);
    }
  } catch (e) { box.className = "err"; box.textContent = e.message; }
}

// ---------------------------------------------------------------- versions
async function loadVersions() {
  const body = $("versions");
  try {
    const v = await getJSON("/v1/dashboard/versions");
    body.replaceChildren();
    for (const x of v.versions) {
      const off = Object.entries(x.offline)
        .map(([k, val]) => k + " " + (typeof val === "number" ? num(val, 4) : val)).join(" · ");
      const on = el("div");
      for (const o of x.online) {
        on.appendChild(el("div", o.experiment + "/" + o.arm + " · " + o.users + " users · " +
                                 pct(o.click_through.value) + " · " + pct(o.conversion.value) + " · " +
                                 num(o.revenue_per_user.value)));
      }
      if (!x.online.length) on.textContent = "–";
      const name = el("span", x.version + " ");
      if (x.active) name.append(el("span", "active", "tag running"));
      body.appendChild(row([(x.saved || "–").replace("T", " ").slice(0, 16), name, x.model || "–", off || "–",
                            on]));
    }
  } catch (e) { body.replaceChildren(row([e.message])); }
}

// ---------------------------------------------------------------- a user
async function loadUser(user) {
  const note = $("user-note"), out = $("out"), tl = $("timeline");
  note.className = "muted"; note.textContent = "loading…";
  try {
    const d = await getJSON("/v1/dashboard/users/" + encodeURIComponent(user) + "/timeline?k=" +
                            $("k").value);
    tl.replaceChildren();
    for (const e of d.events) {
      const item = el("span");
      item.append(el("b", e.title || e.item_id), el("span", "  " + e.item_id, "muted"));
      tl.appendChild(row([e.time, [e.event_type, "type-" + e.event_type], item,
                          [e.value === null ? "" : num(e.value), "num"]]));
    }
    out.replaceChildren();
    const r = d.recommendations;
    note.textContent = d.events.length + " events · " + (r ? "model " + r.model_version + " · " + r.strategy +
                       (r.experiment ? " · experiment " + r.experiment + ", arm " + r.arm : "") : d.note);
    if (!r) return;
    const ol = el("ol"); ol.id = "recs";
    for (const it of r.items) {
      const li = el("li");
      li.append(el("b", it.title || it.item_id),
                el("span", "  " + it.item_id + " · score " + it.score.toFixed(3) +
                           (it.categories.length ? " · " + it.categories.join(", ") : ""), "muted"),
                el("div", it.explanation ? it.explanation.text : "", "why"));
      ol.appendChild(li);
    }
    out.appendChild(ol);
  } catch (e) { note.className = "err"; note.textContent = e.message; }
}
$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const u = $("user").value.trim();
  history.replaceState(null, "", "?user=" + encodeURIComponent(u) + "#user");
  loadUser(u);
});

// ---------------------------------------------------------------- activity
async function loadActivity() {
  try {
    const a = await getJSON("/v1/dashboard/activity");
    const rows = $("event-rows"); rows.replaceChildren();
    for (const r of a.events.rows) {
      rows.appendChild(row([r.t, [r.event_type, "type-" + r.event_type], [r.count.toLocaleString(), "num"]]));
    }
    const bars = el("div"); bars.className = "bars";
    const most = Math.max(1, ...a.events.totals.map((b) => b.count));
    for (const b of a.events.totals) {  // one bar per day (or hour), empty ones too
      const d = el("div");
      d.style.height = (100 * b.count / most) + "%"; d.title = b.t + ": " + b.count + " events";
      bars.appendChild(d);
    }
    const span = el("p", a.events.totals.length ? "from " + a.events.totals[0].t + " · one bar per " +
                    (a.events.bucket_s === 86400 ? "day" : "hour") : "no events yet", "muted");
    $("event-bars").replaceChildren(bars, span);
    const calls = $("calls"); calls.replaceChildren();
    for (const c of a.calls) {
      calls.appendChild(row([c.hour, c.method + " " + c.route, [c.calls, "num"], [c.records, "num"],
                             [c.failed, "num"]]));
    }
    const ans = $("answers"); ans.replaceChildren();
    for (const r of a.answers) ans.appendChild(row([r.hour, [r.answers, "num"]]));
  } catch (e) { $("event-rows").replaceChildren(row([e.message])); }
}

// ---------------------------------------------------------------- navigation
const LOADERS = {service: refresh, experiments: loadExperiments, versions: loadVersions,
                 activity: loadActivity,
                 user: () => { const u = $("user").value.trim(); if (u) loadUser(u); }};
function show() {
  const view = (location.hash || "#service").slice(1);
  const name = LOADERS[view] ? view : "service";
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("on", v.id === "view-" + name));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("on", a.dataset.view === name));
  LOADERS[name]();
}
window.addEventListener("hashchange", show);
keyInput.addEventListener("input", () => { refresh(); show(); });
const preset = new URLSearchParams(location.search).get("user");  // /dashboard?user=42 opens that user
if (preset) { $("user").value = preset; if (!location.hash) location.hash = "#user"; }
refresh();
show();
setInterval(() => {  // the open view's figures, every 15 s (each read joins answers to events)
  const view = (location.hash || "#service").slice(1);
  if (view === "experiments") loadExperiments();
  else if (view === "activity") loadActivity();
}, 15000);
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
