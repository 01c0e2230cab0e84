"""The HTML report of a scan (``melcnn scan --report scan.html``): one self-contained page.

The page holds the summary, a sortable and filterable table of the files (verdict, score, duration,
format, error, a small chart of the chunk scores) and, on a click, a file's full row with a larger
chunk timeline. Everything is inline (the rows as JSON, the script, the style); a Content Security
Policy forbids every network request, so the page works offline and from an e-mail attachment.
File names reach the page only as text (``textContent``), never as markup.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: rows shown at once in the table (the filter and sort run over all of them)
MAX_TABLE_ROWS = 2000

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>melcnn scan report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .5em; }
#summary { background: #f4f4f4; padding: .8em; white-space: pre-wrap; font-size: 12px; }
#controls { margin: 1em 0 .5em; display: flex; gap: .8em; align-items: center; flex-wrap: wrap; }
#filter { width: 24em; padding: .3em; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .25em .5em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: middle; }
th[data-key] { cursor: pointer; user-select: none; background: #fafafa; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #eef4ff; }
tbody tr.selected { background: #dde8ff; }
td.path { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.FAKE { color: #b00020; font-weight: 600; }
.REAL { color: #0a7a2f; font-weight: 600; }
.error { color: #8a5a00; }
#detail { margin-top: 1.2em; padding: 1em; border: 1px solid #ccc; border-radius: 6px; }
#detail table td:first-child { color: #555; width: 14em; }
#more { color: #666; margin: .5em 0; }
svg .bar-fake { fill: #d33; } svg .bar-real { fill: #4a9; } svg .thr { stroke: #333; stroke-dasharray: 3 2; }
</style>
</head>
<body>
<h1>melcnn scan report</h1>
<pre id="summary"></pre>
<div id="controls">
  <input id="filter" type="search" placeholder="filter: path, format, error code..." aria-label="filter">
  <label>verdict <select id="verdict" aria-label="verdict">
    <option value="">all</option><option value="FAKE">FAKE</option><option value="REAL">REAL</option>
    <option value="error">errors</option></select></label>
  <span id="count"></span>
</div>
<table id="files">
<thead><tr>
  <th data-key="path">File</th><th data-key="prediction">Verdict</th><th data-key="fake_score">Fake score</th>
  <th data-key="duration_s">Duration (s)</th><th data-key="format">Format</th><th data-key="error_code">Error</th>
  <th>Chunk scores</th>
</tr></thead>
<tbody></tbody>
</table>
<div id="more"></div>
<section id="detail" hidden></section>
<script id="scan-data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("scan-data").textContent);
const ROWS = DATA.rows;
const MAX_ROWS = DATA.max_rows;
const SVG = "http://www.w3.org/2000/svg";
let sortKey = "fake_score", sortDir = -1, selected = null;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function verdict(r) { return r.prediction || "error"; }
function timeline(r, w, h) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("class", "timeline");
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  const chunks = r.chunks || [];
  if (!chunks.length) return svg;
  const t0 = chunks[0].start_s, t1 = chunks[chunks.length - 1].end_s, span = Math.max(t1 - t0, 1e-9);
  const thr = r.threshold == null ? 0.5 : r.threshold;
  for (const c of chunks) {
    const rect = document.createElementNS(SVG, "rect");
    const x = (c.start_s - t0) / span * w, cw = Math.max((c.end_s - c.start_s) / span * w, 1);
    const bh = Math.max(c.fake_score * (h - 2), 1);
    rect.setAttribute("x", x.toFixed(1)); rect.setAttribute("width", cw.toFixed(1));
    rect.setAttribute("y", (h - bh).toFixed(1)); rect.setAttribute("height", bh.toFixed(1));
    rect.setAttribute("opacity", chunks.length > 1 ? "0.6" : "1");
    rect.setAttribute("class", c.fake_score >= thr ? "bar-fake" : "bar-real");
    const title = document.createElementNS(SVG, "title");
    title.textContent = c.start_s + "-" + c.end_s + " s: " + c.fake_score;
    rect.appendChild(title);
    svg.appendChild(rect);
  }
  const line = document.createElementNS(SVG, "line");
  const y = (h - thr * (h - 2)).toFixed(1);
  line.setAttribute("x1", 0); line.setAttribute("x2", w); line.setAttribute("y1", y); line.setAttribute("y2", y);
  line.setAttribute("class", "thr");
  svg.appendChild(line);
  return svg;
}
function matches(r, q, v) {
  if (v && verdict(r) !== v) return false;
  if (!q) return true;
  const hay = [r.path, r.format, r.error_code, r.error_message, verdict(r)].join(" ").toLowerCase();
  return q.split(/\\s+/).every(t => hay.includes(t));
}
function compare(a, b) {
  const x = sortKey === "prediction" ? verdict(a) : a[sortKey], y = sortKey === "prediction" ? verdict(b) : b[sortKey];
  if (x == null && y == null) return 0;
  if (x == null) return 1;
  if (y == null) return -1;
  return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
}
function render() {
  const q = document.getElementById("filter").value.trim().toLowerCase();
  const v = document.getElementById("verdict").value;
  const shown = ROWS.filter(r => matches(r, q, v)).sort(compare);
  const tbody = document.querySelector("#files tbody");
  tbody.replaceChildren();
  for (const r of shown.slice(0, MAX_ROWS)) {
    const tr = el("tr", {"data-index": ROWS.indexOf(r)});
    if (r === selected) tr.classList.add("selected");
    tr.appendChild(el("td", {class: "path"}, r.path));
    tr.appendChild(el("td", {class: verdict(r)}, verdict(r)));
    tr.appendChild(el("td", {class: "num"}, r.fake_score == null ? "" : r.fake_score.toFixed(4)));
    tr.appendChild(el("td", {class: "num"}, r.duration_s == null ? "" : r.duration_s.toFixed(1)));
    tr.appendChild(el("td", {}, r.format || ""));
    tr.appendChild(el("td", {class: "error"}, r.error_code || ""));
    const td = el("td", {});
    td.appendChild(timeline(r, 120, 20));
    tr.appendChild(td);
    tr.addEventListener("click", () => showDetail(r));
    tbody.appendChild(tr);
  }
  document.getElementById("count").textContent = shown.length + " of " + ROWS.length + " files";
  document.getElementById("more").textContent =
    shown.length > MAX_ROWS ? "showing the first " + MAX_ROWS + "; narrow the filter to see the rest" : "";
  for (const th of document.querySelectorAll("th[data-key]")) {
    th.setAttribute("aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none");
  }
}
function showDetail(r) {
  selected = r;
  const d = document.getElementById("detail");
  d.replaceChildren();
  d.appendChild(el("h2", {}, r.path));
  d.appendChild(timeline(r, 640, 120));
  const t = el("table", {id: "detail-fields"});
  for (const [k, val] of Object.entries(r)) {
    if (k === "chunks") continue;
    const tr = el("tr", {});
    tr.appendChild(el("td", {}, k));
    tr.appendChild(el("td", {}, Array.isArray(val) ? val.join("; ") : val));
    t.appendChild(tr);
  }
  d.appendChild(t);
  if ((r.chunks || []).length) {
    d.appendChild(el("h3", {}, "Chunks"));
    const ct = el("table", {id: "detail-chunks"});
    const head = el("tr", {});
    for (const h of ["start (s)", "end (s)", "fake score"]) head.appendChild(el("th", {}, h));
    ct.appendChild(head);
    for (const c of r.chunks) {
      const tr = el("tr", {});
      for (const x of [c.start_s, c.end_s, c.fake_score]) tr.appendChild(el("td", {class: "num"}, x));
      ct.appendChild(tr);
    }
    d.appendChild(ct);
  }
  d.hidden = false;
  render();
}
document.getElementById("summary").textContent = DATA.summary;
document.getElementById("filter").addEventListener("input", render);
document.getElementById("verdict").addEventListener("change", render);
for (const th of document.querySelectorAll("th[data-key]")) {
  th.addEventListener("click", () => {
    if (sortKey === th.dataset.key) sortDir = -sortDir; else { sortKey = th.dataset.key; sortDir = 1; }
    render();
  });
}
render();
</script>
</body>
</html>
"""


def render_report(rows: Sequence[dict[str, Any]], *, summary: str = "") -> str:
    """The report page for ``rows`` (scan rows, as :func:`melcnn.scan` yields them)."""
    payload = {"summary": summary, "rows": list(rows), "max_rows": MAX_TABLE_ROWS}
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _PAGE.replace("__DATA__", data)


def write_report(rows: Sequence[dict[str, Any]], path: str | os.PathLike, *, summary: str = "") -> Path:
    """Write :func:`render_report` to ``path`` (atomically: a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(render_report(rows, summary=summary), encoding="utf-8")
    os.replace(tmp, path)
    return path
