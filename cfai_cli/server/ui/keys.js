// The Keys view (admin keys): list, create, edit the policy of, rotate and revoke the proxy's API keys through
// the admin API (/v1/admin/keys, docs/admin.md). A new secret is shown once, with a copy button; the API's
// errors are shown beside the form or the list.

import { $, ADMIN_NEEDED, api, cell, el, integer, key, refuse, say, utc } from "./common.js";

let keys = [];
let editing = null;  // the key whose policy the form edits; null: the form creates a key

function showError(id, error) {
  const box = $(id);
  box.textContent = error ? error.message + (error.param ? ` (${error.param})` : "") : "";
  box.hidden = !error;
}

// Whether `k` is the key this page signs in with: its hint is the secret's first and last characters.
function own(k) {
  const [head, tail] = k.hint.split("…");
  return Boolean(head && tail) && key().startsWith(head) && key().endsWith(tail);
}

function limits(k) {
  const parts = [[k.rpm, "rpm"], [k.rpd, "rpd"], [k.tpm, "tpm"]].filter(([v]) => v).map(([v, u]) => `${integer(v)} ${u}`);
  return parts.join(" · ") || "none";
}

function budgets(k) {
  const parts = [];
  if (k.budget_neurons_per_day) parts.push(`${integer(k.budget_neurons_per_day)} neurons/day`);
  if (k.budget_usd_per_month) parts.push(`$${k.budget_usd_per_month}/month`);
  return parts.join(" · ") || "none";
}

function actionButton(row, label, name, handler, className) {
  const button = el("button", { type: "button", class: className, "aria-label": `${label} ${name}` }, label);
  button.addEventListener("click", handler);
  row.appendChild(button);
}

function renderKeys() {
  const body = $("keys").querySelector("tbody");
  body.replaceChildren();
  const showRevoked = $("show-revoked").checked;
  for (const k of keys) {
    if (!k.active && !showRevoked) continue;
    const row = el("tr", { "data-id": k.id, class: k.active ? "key" : "key revoked" });
    const name = cell(row, k.name, "name", "Name");
    if (k.active && own(k)) name.appendChild(el("span", { class: "hint" }, " (this page's key)"));
    const id = cell(row, "", undefined, "Id");
    id.appendChild(el("code", { title: k.id }, k.id.slice(0, 12) + "…"));
    id.appendChild(el("span", { class: "hint" }, " " + k.hint));
    cell(row, k.scopes.join(", "), undefined, "Scopes");
    cell(row, k.models.length ? k.models.join(", ") : "any", undefined, "Models");
    cell(row, limits(k), undefined, "Limits");
    cell(row, budgets(k), undefined, "Budgets");
    cell(row, utc(k.created_at), undefined, "Created");
    cell(row, k.last_used_at ? utc(k.last_used_at) : "not in the log", undefined, "Last used");
    cell(row, k.revoked_at ? "revoked " + utc(k.revoked_at) : k.expires_at ? utc(k.expires_at) : "never", undefined,
      "Expires");
    const actions = cell(row, "", "row-actions", "Actions");
    if (k.active) {
      actionButton(actions, "Edit", k.name, () => openEditor(k));
      actionButton(actions, "Rotate", k.name, () => rotate(k));
      actionButton(actions, "Revoke", k.name, () => revoke(k), "danger");
    } else {
      actions.textContent = "inactive";
    }
    body.appendChild(row);
  }
}

export async function loadKeys() {
  const section = $("keys-view");
  say("Loading keys…");
  const found = [];
  let after = null;
  try {
    for (let page = 0; page < 20; page++) {  // 20,000 keys at most: the page stays responsive
      const answer = await api("/v1/admin/keys?limit=1000" + (after ? "&after=" + encodeURIComponent(after) : ""));
      found.push(...answer.data);
      if (!answer.has_more) break;
      after = answer.last_id;
    }
  } catch (error) {
    if (error.status === 403) { refuse(section, ADMIN_NEEDED); say(ADMIN_NEEDED); return; }
    throw error;
  }
  refuse(section, "");
  keys = found;
  renderKeys();
  showError("keys-error", null);
  const active = keys.filter((k) => k.active).length;
  say(`${active} active keys (${keys.length - active} revoked or expired).`);
}

function field(name) { return $("key-editor").elements[name]; }

function openEditor(k) {
  editing = k || null;
  const form = $("key-editor");
  form.reset();
  showError("editor-error", null);
  $("editor-title").textContent = k ? `Edit the policy of “${k.name}”` : "New key";
  $("editor-save").textContent = k ? "Save" : "Create key";
  $("no-expiry-label").hidden = !k;
  field("expires_in").placeholder = k ? (k.expires_at ? "unchanged: " + utc(k.expires_at) : "unchanged: never") :
    "never (e.g. 30d, 12h, 2w)";
  if (k) {
    field("name").value = k.name;
    field("models").value = k.models.join(", ");
    for (const name of ["rpm", "rpd", "tpm", "budget_neurons_per_day", "budget_usd_per_month"]) field(name).value = k[name] ?? "";
    for (const box of form.querySelectorAll("input[name=scope]")) box.checked = k.scopes.includes(box.value);
  }
  form.hidden = false;
  field("name").focus();
}

function closeEditor() {
  $("key-editor").hidden = true;
  editing = null;
}

function number(name, parse) {
  const text = field(name).value.trim();
  return text === "" ? null : parse(text);
}

// The form as a create or PATCH body: empty limits and budgets are none (null resets them in a PATCH).
function body() {
  const out = {
    name: field("name").value.trim(),
    scopes: [...$("key-editor").querySelectorAll("input[name=scope]:checked")].map((box) => box.value),
    models: field("models").value.split(/[\s,]+/).filter(Boolean),
  };
  for (const name of ["rpm", "rpd", "tpm"]) out[name] = number(name, (t) => Number.parseInt(t, 10));
  for (const name of ["budget_neurons_per_day", "budget_usd_per_month"]) out[name] = number(name, Number);
  const expires = field("expires_in").value.trim();
  if (editing && field("no_expiry").checked) out.expires_at = null;
  else if (expires) out.expires_in = expires;
  if (!editing) for (const name of Object.keys(out)) if (out[name] === null) delete out[name];
  return out;
}

function showSecret(title, secret) {
  $("secret-title").textContent = title;
  $("secret-value").value = secret;
  $("secret").hidden = false;
  $("secret-value").focus();
  $("secret-value").select();
}

async function save(event) {
  event.preventDefault();
  showError("editor-error", null);
  try {
    if (editing) {
      const changed = await api(`/v1/admin/keys/${encodeURIComponent(editing.id)}`, { method: "PATCH", body: body() });
      say(`Saved the policy of “${changed.name}”.`);
    } else {
      const made = await api("/v1/admin/keys", { method: "POST", body: body() });
      showSecret(`Key “${made.name}” created (${made.id}). Copy its secret now:`, made.key);
      say(`Created “${made.name}”.`);
    }
  } catch (error) {
    showError("editor-error", error);
    return;
  }
  closeEditor();
  await loadKeys();
}

function confirmAction(text, verb) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = verb;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true }));
}

async function rotate(k) {
  const mine = own(k);
  if (!await confirmAction(`Rotate “${k.name}”? Its current secret stops working at once; the new one is shown once.` +
    (mine ? " This page signs in with it, and will use the new secret." : ""), "Rotate")) return;
  try {
    const rotated = await api(`/v1/admin/keys/${encodeURIComponent(k.id)}/rotate`, { method: "POST" });
    if (mine) sessionStorage.setItem("cfai-key", rotated.key);  // the old secret no longer works, here either
    showSecret(`“${rotated.name}” rotated: its new id is ${rotated.id}. Copy its new secret now:`, rotated.key);
    say(`Rotated “${rotated.name}”.`);
  } catch (error) {
    showError("keys-error", error);
    return;
  }
  await loadKeys();
}

async function revoke(k) {
  if (!await confirmAction(`Revoke “${k.name}” (${k.id})? Its requests are refused at once; this cannot be undone.` +
    (own(k) ? " This page signs in with it: it will need another admin key." : ""), "Revoke")) return;
  try {
    await api(`/v1/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
    say(`Revoked “${k.name}”.`);
  } catch (error) {
    showError("keys-error", error);
    return;
  }
  await loadKeys();
}

async function copySecret() {
  const input = $("secret-value");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand("copy");  // a page served over plain http (not loopback) has no async clipboard
  }
  say("Secret copied.");
}

export function setUpKeys() {
  $("new-key").addEventListener("click", () => openEditor(null));
  $("editor-cancel").addEventListener("click", closeEditor);
  $("key-editor").addEventListener("submit", save);
  $("show-revoked").addEventListener("change", renderKeys);
  $("copy-secret").addEventListener("click", copySecret);
  $("secret-done").addEventListener("click", () => { $("secret-value").value = ""; $("secret").hidden = true; });
}

export function forgetKeys() {
  keys = [];
  renderKeys();
  $("secret-value").value = "";
  $("secret").hidden = true;
}
