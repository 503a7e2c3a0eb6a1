"""The one page ``imgclf serve`` shows (HTML, CSS and script in one string).

Everything the page shows that comes from a file or a model (names, labels,
the card) is set as text (``textContent``), never as HTML. The card and the
server's limits are embedded as JSON, with ``<`` escaped so no value can end
the script element.
"""

from __future__ import annotations

import json

_PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgclf serve</title>
<style>
:root { --ink: #1d2330; --muted: #5d6678; --line: #dde2ea; --accent: #2f6fde; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f6f7f9; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 12px 24px; display: flex; gap: 16px; align-items: baseline; }
header h1 { font-size: 20px; margin: 0; }
header .model { color: var(--muted); }
main { display: grid; grid-template-columns: minmax(0, 1fr) 360px; gap: 24px; padding: 20px 24px; max-width: 1400px; margin: 0 auto; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } }
h2 { font-size: 16px; margin: 0 0 10px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px; }
.drop { border: 2px dashed #b8c2d3; border-radius: 10px; background: #fff; padding: 28px; text-align: center; cursor: pointer; }
.drop.over { border-color: var(--accent); background: #eef4ff; }
.drop p { margin: 4px 0; }
.button { display: inline-block; background: var(--accent); color: #fff; border: 0; border-radius: 6px; padding: 6px 14px; font: inherit; cursor: pointer; }
.hint { color: var(--muted); font-size: 13px; }
#status { margin: 12px 0 4px; color: var(--muted); min-height: 1.4em; }
#errors .error { background: #fdecea; color: var(--bad); border: 1px solid #f4c7c3; border-radius: 6px; padding: 8px 12px; margin: 6px 0; }
#results { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 14px; margin-top: 10px; }
.result { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px; }
.result .name { font-size: 13px; color: var(--muted); overflow-wrap: anywhere; margin-bottom: 6px; }
.result .top { font-size: 18px; margin-bottom: 8px; }
.result .top-label { font-weight: 600; }
.pictures { display: flex; gap: 8px; margin-bottom: 8px; }
.pictures figure { margin: 0; flex: 1; text-align: center; }
.pictures img { width: 100%; height: 150px; object-fit: contain; image-rendering: pixelated; background: #eef0f3; border-radius: 6px; }
.pictures figcaption { font-size: 12px; color: var(--muted); }
.bar-row { display: grid; grid-template-columns: 110px 1fr 58px; gap: 8px; align-items: center; font-size: 13px; margin: 3px 0; }
.bar-row .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { height: 12px; background: #e7ebf2; border-radius: 6px; overflow: hidden; }
.bar > div { height: 100%; background: var(--accent); }
.bar-row .p { text-align: right; font-variant-numeric: tabular-nums; }
#table-section { margin-top: 20px; }
#table-section h2 { display: flex; justify-content: space-between; align-items: center; }
.scroll { overflow: auto; max-height: 420px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
th { position: sticky; top: 0; background: #fff; }
#card dl { display: grid; grid-template-columns: auto 1fr; gap: 4px 10px; margin: 10px 0; font-size: 13px; }
#card dt { color: var(--muted); }
#card dd { margin: 0; overflow-wrap: anywhere; }
#card details { font-size: 13px; margin-top: 8px; }
</style>
</head>
<body>
<header><h1>imgclf</h1><span class="model" id="model-name"></span></header>
<main>
<div>
  <section class="drop" id="drop" tabindex="0" aria-label="Drop images here or choose files">
    <p><strong>Drop images or a .zip of images here</strong></p>
    <p>or <label class="button">choose files<input id="files" type="file" multiple accept="image/*,.zip" hidden></label></p>
    <p class="hint" id="limits"></p>
  </section>
  <div id="status" role="status"></div>
  <div id="errors" role="alert"></div>
  <section id="results"></section>
  <section id="table-section" class="panel" hidden>
    <h2><span id="table-title">All images</span> <button class="button" id="csv" type="button">Download CSV</button></h2>
    <div class="scroll"><table id="table"></table></div>
  </section>
</div>
<aside class="panel" id="card"><h2>Model card</h2></aside>
</main>
<script id="config" type="application/json">__CONFIG__</script>
<script>
"use strict";
const config = JSON.parse(document.getElementById("config").textContent);
const card = config.card, limits = config.limits;
const CARDS = 12;
let lastResults = [];

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}
const mib = (n) => (n / 1048576).toFixed(1) + " MiB";
const pct = (p) => (100 * p).toFixed(1) + "%";

function showError(text) {
  document.getElementById("errors").append(el("div", {className: "error", textContent: text}));
}

function renderCard() {
  document.getElementById("model-name").textContent =
    `${card.estimator} · ${card.classes.length} classes`;
  document.getElementById("limits").textContent =
    `Up to ${limits.max_images} images, ${mib(limits.max_upload)} a file, ` +
    `${mib(limits.max_request)} a request. JPEG, PNG, BMP, GIF, TIFF, WebP.`;
  const box = document.getElementById("card");
  const table = el("table");
  table.append(el("tr", {}, el("th", {textContent: "class"}),
    el("th", {className: "num", textContent: "train"}), el("th", {className: "num", textContent: "hold-out"})));
  card.classes.forEach((c, i) => {
    const n = (list) => (list ? String(list[i]) : "?");
    table.append(el("tr", {}, el("td", {textContent: String(c)}),
      el("td", {className: "num", textContent: n(card.train_per_class)}),
      el("td", {className: "num", textContent: n(card.holdout_per_class)})));
  });
  box.append(el("div", {className: "scroll"}, table));
  const fit = card.fit;
  const metrics = fit ? ["val_loss", "val_accuracy", "loss", "accuracy"]
    .filter((k) => k in fit).map((k) => `${k} ${Number(fit[k]).toPrecision(4)}`).join(", ") : "";
  const rows = [
    ["input", `${card.image_size[0]} × ${card.image_size[1]} px, ${card.n_channels === 1 ? "grey" : "RGB"}`],
    ["kept epoch", fit ? `${fit.epoch_kept} of ${fit.epochs_run} (by ${fit.monitor})` : "not recorded"],
    ["at that epoch", metrics || "not recorded"],
    ["temperature", card.temperature == null ? "not calibrated" : Number(card.temperature).toPrecision(4)],
    ["versions", card.versions ? Object.entries(card.versions).map(([k, v]) => `${k} ${v}`).join(", ") : "unknown"],
    ["data", card.data_fingerprint ? "sha256 " + card.data_fingerprint.slice(0, 16) + "…" : "unknown"],
    ["trained", card.trained_at || "unknown"],
  ];
  const dl = el("dl");
  for (const [k, v] of rows) dl.append(el("dt", {textContent: k}), el("dd", {textContent: v}));
  box.append(dl);
  const params = el("table");
  for (const [k, v] of Object.entries(card.params || {}))
    params.append(el("tr", {}, el("td", {textContent: k}), el("td", {textContent: JSON.stringify(v)})));
  box.append(el("details", {}, el("summary", {textContent: "Parameters"}), params));
}

function bars(probabilities, n) {
  const sorted = Object.entries(probabilities).sort((a, b) => b[1] - a[1]).slice(0, n);
  return sorted.map(([label, p]) => el("div", {className: "bar-row"},
    el("span", {className: "label", textContent: label, title: label}),
    el("div", {className: "bar"}, el("div", {style: `width: ${(100 * p).toFixed(1)}%`})),
    el("span", {className: "p", textContent: pct(p)})));
}

function renderResult(result, file) {
  const box = el("article", {className: "result"});
  box.dataset.name = result.name;
  box.append(el("div", {className: "name", textContent: result.name}));
  const top = result.probabilities[String(result.label)];
  box.append(el("div", {className: "top"}, el("span", {className: "top-label", textContent: String(result.label)}),
    el("span", {textContent: "  " + pct(top)})));
  const pictures = el("div", {className: "pictures"});
  if (file) pictures.append(el("figure", {}, el("img", {src: URL.createObjectURL(file), alt: result.name}),
    el("figcaption", {textContent: "image"})));
  if (result.gradcam) pictures.append(el("figure", {}, el("img", {src: result.gradcam, alt: "Grad-CAM of " + result.name, className: "gradcam"}),
    el("figcaption", {textContent: "Grad-CAM: where the evidence for " + result.label + " lies"})));
  if (pictures.children.length) box.append(pictures);
  for (const row of bars(result.probabilities, 5)) box.append(row);
  return box;
}

function renderTable(results) {
  const ok = results.filter((r) => r.probabilities);
  const section = document.getElementById("table-section");
  section.hidden = ok.length < 2;
  const table = document.getElementById("table");
  table.replaceChildren();
  table.append(el("tr", {}, ...["file", "predicted class", "probability", ...card.classes.map(String)]
    .map((h, i) => el("th", {textContent: h, className: i > 1 ? "num" : ""}))));
  for (const r of ok) {
    table.append(el("tr", {}, el("td", {textContent: r.name}), el("td", {textContent: String(r.label)}),
      el("td", {className: "num", textContent: r.probabilities[String(r.label)].toFixed(4)}),
      ...card.classes.map((c) => el("td", {className: "num", textContent: r.probabilities[String(c)].toFixed(4)}))));
  }
  document.getElementById("table-title").textContent = `All images (${ok.length})`;
}

function csvCell(value) {
  const text = String(value);
  return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

document.getElementById("csv").addEventListener("click", () => {
  const header = ["path", "label", "probability", ...card.classes.map((c) => "proba_" + c)];
  const lines = [header.map(csvCell).join(",")];
  for (const r of lastResults.filter((r) => r.probabilities))
    lines.push([r.name, r.label, r.probabilities[String(r.label)].toFixed(6),
      ...card.classes.map((c) => r.probabilities[String(c)].toFixed(6))].map(csvCell).join(","));
  const link = el("a", {href: URL.createObjectURL(new Blob([lines.join("\n") + "\n"], {type: "text/csv"})), download: "predictions.csv"});
  document.body.append(link); link.click(); link.remove();
});

async function send(files) {
  const status = document.getElementById("status");
  document.getElementById("errors").replaceChildren();
  document.getElementById("results").replaceChildren();
  let total = 0;
  const kept = [];
  for (const f of files) {
    if (f.size > limits.max_upload) showError(`${f.name}: larger than ${mib(limits.max_upload)}; not sent.`);
    else { kept.push(f); total += f.size; }
  }
  if (total > limits.max_request) { showError(`These files hold ${mib(total)}, more than ${mib(limits.max_request)}: send fewer at a time.`); return; }
  if (!kept.length) { status.textContent = ""; return; }
  const form = new FormData();
  for (const f of kept) form.append("files", f, f.name);
  status.textContent = `Predicting ${kept.length} file(s)…`;
  let response, body;
  try {
    response = await fetch("predict?gradcam=" + limits.gradcam, {method: "POST", body: form});
    body = await response.json();
  } catch (err) {
    status.textContent = "";
    showError(response ? `The server answered ${response.status} without results.` : "The server did not answer: is imgclf serve still running?");
    return;
  }
  if (body.error) showError(body.error);
  const results = body.results || [];
  lastResults = results;
  const byName = new Map(kept.map((f) => [f.name, f]));
  let shown = 0;
  for (const r of results) {
    if (r.error) { showError(r.error); continue; }
    if (shown++ < CARDS) document.getElementById("results").append(renderResult(r, byName.get(r.name)));
  }
  renderTable(results);
  const bad = results.filter((r) => r.error).length, good = results.length - bad;
  status.textContent = `${good} image(s) classified` + (bad ? `, ${bad} could not be used` : "") +
    (good > CARDS ? `; the first ${CARDS} are shown, all are in the table.` : ".");
}

const drop = document.getElementById("drop"), input = document.getElementById("files");
input.addEventListener("change", () => { send([...input.files]); input.value = ""; });
drop.addEventListener("click", (e) => { if (e.target === drop) input.click(); });
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); send([...e.dataTransfer.files]); });
renderCard();
</script>
</body>
</html>
"""


def page(card: dict, limits: dict) -> str:
    """The page for a model with this ``card`` (a JSON dict) and server ``limits``."""
    config = json.dumps({"card": card, "limits": limits}).replace("<", "\\u003c")
    return _PAGE.replace("__CONFIG__", config)


__all__ = ["page"]
