"""The web dashboard: one self-contained HTML page (no external assets), kept in code so it ships with the
package. It reads ``/v1/dashboard/stats`` every two seconds and asks ``/v1/users/{id}/recommendations`` from a
form; an API key typed into the page is kept in the browser's local storage.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lmrec dashboard</title>
<style>
  :root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ec; --accent:#2f6fec; --bad:#c0392b; }
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0;
         background:#f7f8fa; }
  header { background:#fff; border-bottom:1px solid var(--line); padding:14px 24px; display:flex; gap:24px;
           align-items:baseline; }
  header h1 { font-size:18px; margin:0; }
  main { max-width: 1100px; margin: 0 auto; padding: 20px 24px; display:grid; gap:20px; }
  section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px; }
  h2 { font-size:15px; margin:0 0 12px; }
  .cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap:12px; }
  .card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; }
  .card b { display:block; font-size:20px; }
  .card span { color: var(--muted); font-size:13px; }
  table { border-collapse: collapse; width:100%; font-size:14px; }
  th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); }
  th { color: var(--muted); font-weight:600; }
  td.num { text-align:right; font-variant-numeric: tabular-nums; }
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
</style>
</head>
<body>
<header><h1>lmrec</h1><span id="model" class="muted">loading…</span></header>
<main>
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
  <section>
    <h2>Recommendations for a user</h2>
    <form id="form">
      <label>user id <input id="user" required></label>
      <label>k <input id="k" type="number" value="10" min="1" max="100" style="width:70px"></label>
      <label>category <input id="category" placeholder="optional"></label>
      <label>API key <input id="key" type="password" placeholder="not needed in dev mode"></label>
      <button>Recommend</button>
    </form>
    <div id="out" class="muted">Enter a user id.</div>
  </section>
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
function text(el, s) { el.textContent = s; }
async function refresh() {
  try {
    const r = await fetch("/v1/dashboard/stats", {headers: headers()});
    if (!r.ok) { text($("model"), "stats need a read key (" + r.status + ")"); return; }
    const s = await r.json();
    text($("model"), s.model + " · started " + new Date(s.started_at * 1000).toLocaleString());
    text($("version"), s.model_version);
    text($("catalogue"), s.catalogue_size.toLocaleString());
    text($("rps"), s.requests.requests_per_s.toFixed(1));
    text($("total"), s.requests.total_requests.toLocaleString());
    text($("users"), s.users_in_memory.toLocaleString());
    const body = $("routes");
    body.replaceChildren();
    for (const [route, v] of Object.entries(s.requests.routes)) {
      const tr = document.createElement("tr");
      for (const [val, cls] of [[route, ""], [v.count, "num"], [v.errors, "num"],
                                [v.p50_ms.toFixed(1), "num"],
                                [v.p95_ms.toFixed(1), "num"], [v.p99_ms.toFixed(1), "num"]]) {
        const td = document.createElement("td"); td.className = cls; td.textContent = val; tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  } catch (e) { text($("model"), "cannot reach the service"); }
}
$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("out");
  const params = new URLSearchParams({k: $("k").value, explain: "true"});
  if ($("category").value.trim()) params.append("category", $("category").value.trim());
  const user = encodeURIComponent($("user").value.trim());
  const r = await fetch("/v1/users/" + user + "/recommendations?" + params,
                        {headers: headers()});
  const data = await r.json();
  out.replaceChildren();
  if (!r.ok) {
    out.className = "err";
    out.textContent = (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) +
                      " (request " + data.request_id + ")";
    return;
  }
  out.className = "";
  const info = document.createElement("p");
  info.className = "muted";
  info.textContent = "model " + data.model_version + " · " + data.strategy;
  const ol = document.createElement("ol");
  for (const it of data.items) {
    const li = document.createElement("li");
    const title = document.createElement("b"); title.textContent = it.title || it.item_id;
    const meta = document.createElement("span"); meta.className = "muted";
    meta.textContent = "  " + it.item_id + " · score " + it.score.toFixed(3) +
                       (it.categories.length ? " · " + it.categories.join(", ") : "");
    const why = document.createElement("div"); why.className = "why";
    why.textContent = it.explanation ? it.explanation.text : "";
    li.append(title, meta, why); ol.appendChild(li);
  }
  out.append(info, ol);
});
refresh();
setInterval(refresh, 2000);
const preset = new URLSearchParams(location.search).get("user");  // /dashboard?user=42 opens that user
if (preset) { $("user").value = preset; $("form").requestSubmit(); }
</script>
</body>
</html>
"""
