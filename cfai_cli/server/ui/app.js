// cfai's browser page: the model catalogue and, for admin keys, usage charts. No framework, no CDN.
// The key lives in sessionStorage (this tab only) and is sent as a Bearer header to this proxy alone.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], view: "models" };

function key() { return sessionStorage.getItem("cfai-key") || ""; }

function say(text) { $("status").textContent = text; }

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + key() } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function capabilities(model) {
  const caps = [];
  if (model.function_calling) caps.push("tools");
  if (model.vision) caps.push("vision");
  if (model.reasoning) caps.push("reasoning");
  if (model.beta) caps.push("beta");
  return caps;
}

function filtered() {
  const text = $("search").value.trim().toLowerCase();
  const task = $("task").value;
  const minContext = Number($("f-context").value) || 0;
  return state.models.filter((m) =>
    (!text || (m.id + " " + m.description + " " + m.aliases.join(" ")).toLowerCase().includes(text)) &&
    (!task || m.task === task) &&
    (!$("f-tools").checked || m.function_calling) &&
    (!$("f-vision").checked || m.vision) &&
    (!$("f-reasoning").checked || m.reasoning) &&
    (!minContext || (m.context_window || 0) >= minContext));
}

function renderModels() {
  const body = $("models").querySelector("tbody");
  body.replaceChildren();
  const shown = filtered();
  for (const model of shown) {
    const row = document.createElement("tr");
    row.className = "model";
    row.dataset.id = model.id;
    cell(row, model.id);
    cell(row, model.task || "");
    cell(row, model.context_window ? model.context_window.toLocaleString("en") : "");
    const caps = cell(row, "");
    for (const cap of capabilities(model)) {
      const span = document.createElement("span");
      span.className = "cap";
      span.textContent = cap;
      caps.appendChild(span);
    }
    cell(row, model.aliases.join(", "));
    row.addEventListener("click", () => showSnippet(model));
    body.appendChild(row);
  }
  $("count").textContent = shown.length + " of " + state.models.length + " models";
}

function showSnippet(model) {
  const base = location.origin + "/v1";
  const name = model.aliases[0] || model.id;
  const isText = model.task === "Text Generation";
  $("snippet-title").textContent = model.id;
  $("snippet-curl").textContent = isText
    ? `curl ${base}/chat/completions -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\\n` +
      `  -d '{"model": "${name}", "messages": [{"role": "user", "content": "Hello"}]}'`
    : `curl ${base}/models/${encodeURI(model.id)} -H "Authorization: Bearer $KEY"`;
  $("snippet-python").textContent = isText
    ? `from openai import OpenAI\nclient = OpenAI(base_url="${base}", api_key=KEY)\n` +
      `reply = client.chat.completions.create(model="${name}", messages=[{"role": "user", "content": "Hello"}])\n` +
      `print(reply.choices[0].message.content)`
    : `from openai import OpenAI\nclient = OpenAI(base_url="${base}", api_key=KEY)\nprint(client.models.retrieve("${model.id}"))`;
  $("snippet").hidden = false;
}

async function loadModels() {
  say("Loading the catalogue…");
  const body = await api("/ui/api/models");
  state.models = body.data;
  const tasks = [...new Set(state.models.map((m) => m.task).filter(Boolean))].sort();
  const select = $("task");
  select.replaceChildren(new Option("All tasks", ""));
  for (const task of tasks) select.appendChild(new Option(task, task));
  renderModels();
  say(state.models.length + " models from Workers AI.");
}

function svg(tag, attributes) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function drawChart(points) {
  const chart = $("chart");
  chart.replaceChildren();
  const width = 720, height = 160, gap = 2;
  const top = Math.max(1, ...points.map((p) => p.requests));
  const barWidth = width / points.length - gap;
  points.forEach((point, i) => {
    const x = i * (barWidth + gap);
    const h = (point.requests / top) * (height - 20);
    const e = (point.errors / top) * (height - 20);
    if (point.requests) {
      const bar = svg("rect", { class: "req", x, y: height - h, width: barWidth, height: h });
      bar.appendChild(svg("title", {})).textContent = point.requests + " requests";
      chart.appendChild(bar);
    }
    if (point.errors) chart.appendChild(svg("rect", { class: "err", x, y: height - e, width: barWidth, height: e }));
  });
  chart.appendChild(svg("text", { x: 0, y: 12 })).textContent = "max " + top;
}

function fillTable(id, rows) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  for (const item of rows) {
    const row = document.createElement("tr");
    for (const value of [item.group, item.requests, item.errors, item.prompt_tokens + item.completion_tokens,
                         Math.round(item.p50_ms), Math.round(item.p95_ms)]) cell(row, String(value));
    body.appendChild(row);
  }
}

async function loadUsage() {
  say("Loading usage…");
  try {
    const body = await api("/ui/api/usage?since=" + encodeURIComponent($("since").value));
    $("totals").textContent = `${body.total.requests} requests, ${body.total.errors} errors, ` +
      `${body.total.tokens} tokens`;
    drawChart(body.timeline);
    fillTable("by-model", body.by_model);
    fillTable("by-key", body.by_key);
    say("Usage of this proxy.");
  } catch (error) {
    say(error.status === 403 ? "Usage needs a key with the admin scope (cfai keygen --scopes all)." : error.message);
  }
}

function show(view) {
  state.view = view;
  $("models-view").hidden = view !== "models";
  $("usage-view").hidden = view !== "usage";
  $("tab-models").classList.toggle("active", view === "models");
  $("tab-usage").classList.toggle("active", view === "usage");
  return refresh();
}

async function refresh() {
  if (!key()) { say("Enter a key made by cfai keygen; it stays in this tab only."); return; }
  try {
    if (state.view === "models") await loadModels(); else await loadUsage();
  } catch (error) {
    say(error.status === 401 ? "That key was refused: check it, or make one with cfai keygen." : error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("cfai-key", $("key").value.trim());
    $("key").value = "";
    refresh();
  });
  $("forget").addEventListener("click", () => { sessionStorage.removeItem("cfai-key"); state.models = []; renderModels(); say("Key forgotten."); });
  for (const id of ["search", "task", "f-tools", "f-vision", "f-reasoning", "f-context"]) {
    $(id).addEventListener("input", renderModels);
    $(id).addEventListener("change", renderModels);
  }
  $("tab-models").addEventListener("click", () => show("models"));
  $("tab-usage").addEventListener("click", () => show("usage"));
  $("since").addEventListener("change", loadUsage);
  $("refresh").addEventListener("click", loadUsage);
  $("copy-curl").addEventListener("click", () => navigator.clipboard.writeText($("snippet-curl").textContent));
  $("copy-python").addEventListener("click", () => navigator.clipboard.writeText($("snippet-python").textContent));
  refresh();
});
