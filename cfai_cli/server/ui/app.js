// cfai's browser page: the model catalogue, and for admin keys the usage view (usage.js) and the Keys view
// (keys.js). No framework, no CDN, no inline script. The key lives in sessionStorage (this tab only) and is sent
// as a Bearer header to this proxy alone.

import { $, ADMIN_NEEDED, api, cell, key, say } from "./common.js";
import { forgetKeys, loadKeys, setUpKeys } from "./keys.js";
import { loadUsage, setUpUsage } from "./usage.js";

const state = { models: [], view: "models", admin: null };
const VIEWS = ["models", "usage", "keys"];

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
    row.tabIndex = 0;  // the keyboard reaches a model's snippet too (Enter or Space)
    row.addEventListener("click", () => showSnippet(model));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); showSnippet(model); }
    });
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

// Whether the key may administer (list keys): Usage and Keys are shown only then.
async function probeAdmin() {
  try {
    await api("/v1/admin/keys?limit=1");
    state.admin = true;
  } catch (error) {
    if (error.status !== 403) throw error;
    state.admin = false;
  }
  $("tab-usage").hidden = $("tab-keys").hidden = !state.admin;
}

function show(view) {
  state.view = view;
  for (const name of VIEWS) {
    $(name + "-view").hidden = name !== view;
    $("tab-" + name).classList.toggle("active", name === view);
    $("tab-" + name).setAttribute("aria-pressed", String(name === view));
  }
  return refresh();
}

async function refresh() {
  if (!key()) { say("Enter a key made by cfai keygen; it stays in this tab only."); return; }
  try {
    if (state.admin === null) await probeAdmin();
    if (!state.admin && state.view !== "models") { show("models"); say(ADMIN_NEEDED); return; }
    if (state.view === "models") {
      await loadModels();
      if (!state.admin) say($("status").textContent + " " + ADMIN_NEEDED);
    } else if (state.view === "usage") await loadUsage();
    else await loadKeys();
  } catch (error) {
    say(error.status === 401 ? "That key was refused: check it, or make one with cfai keygen." : error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("cfai-key", $("key").value.trim());
    $("key").value = "";
    state.admin = null;
    refresh();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem("cfai-key");
    state.models = [];
    state.admin = null;
    renderModels();
    forgetKeys();
    show("models");
    say("Key forgotten.");
  });
  for (const id of ["search", "task", "f-tools", "f-vision", "f-reasoning", "f-context"]) {
    $(id).addEventListener("input", renderModels);
    $(id).addEventListener("change", renderModels);
  }
  for (const view of VIEWS) $("tab-" + view).addEventListener("click", () => show(view));
  $("copy-curl").addEventListener("click", () => navigator.clipboard.writeText($("snippet-curl").textContent));
  $("copy-python").addEventListener("click", () => navigator.clipboard.writeText($("snippet-python").textContent));
  setUpUsage();
  setUpKeys();
  refresh();
});
