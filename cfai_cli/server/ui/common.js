// What the page's views share: the key (sessionStorage, this tab only), calls to this proxy's API with it, the
// status line, and small DOM and number helpers. No framework, no CDN.

export const $ = (id) => document.getElementById(id);

export function key() { return sessionStorage.getItem("cfai-key") || ""; }

export function say(text) { $("status").textContent = text; }

// Calls this proxy with the key as a Bearer header; an error answer throws with its OpenAI error message.
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: "Bearer " + key() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((answer.error && answer.error.message) || response.statusText || "HTTP " + response.status);
    error.status = response.status;
    error.param = answer.error && answer.error.param;
    throw error;
  }
  return answer;
}

export const ADMIN_NEEDED = "Usage and Keys need a key with the admin scope (cfai keygen --scopes all); " +
  "this key can browse the models.";

export function el(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

export function cell(row, text, className, label) {
  const td = el("td", { class: className, "data-label": label }, text);
  row.appendChild(td);
  return td;
}

export function svg(tag, attributes = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function integer(n) { return Math.round(n).toLocaleString("en"); }

export function neurons(n) { return n.toLocaleString("en", { maximumFractionDigits: n < 10 ? 2 : 1 }); }

// Dollars: cents from $1 up, else three significant digits (a day of offline calls costs fractions of a cent).
export function usd(n) {
  if (n === 0) return "$0";
  return "$" + (n >= 1 ? n.toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 })
    : n.toLocaleString("en", { maximumSignificantDigits: 3 }));
}

// Unix seconds as "2026-12-01 20:43 UTC" (the free allocation resets at 00:00 UTC, so the page speaks UTC).
export function utc(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

// A view's "needs an admin key" message (and its body hidden), or the view shown.
export function refuse(section, message) {
  const note = section.querySelector(".refused");
  note.textContent = message || "";
  note.hidden = !message;
  section.querySelector(".refused ~ div").hidden = Boolean(message);
}
