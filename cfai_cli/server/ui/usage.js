// The usage view (admin keys): the free allocation per Cloudflare account, and neurons or cost per hour or day
// stacked per model or per key, from GET /v1/admin/usage/series (aggregated in SQL by the proxy). The chart is a
// hand-drawn SVG; the table under it carries the same figures as text.

import { $, ADMIN_NEEDED, api, cell, el, integer, neurons, refuse, say, svg, usd } from "./common.js";

const COLOURS = ["#f38020", "#2f6fde", "#2e9e5b", "#b54bd6", "#d9434f", "#16a0b5", "#a97b17", "#e05fa1",
  "#5b6acf", "#6f9c2c"];
const OTHER_COLOUR = "#9a9a9a";
const PERIODS = { "24h": "the last 24 hours", "7d": "the last 7 days", "30d": "the last 30 days" };
const LEFT = 64, RIGHT = 8, TOP = 12, BOTTOM = 30;

let last = null;  // the last answer: the measure toggle redraws it without asking again

const chosen = (name) => document.querySelector(`input[name=${name}]:checked`).value;

function colour(series, index) { return series.other ? OTHER_COLOUR : COLOURS[index % COLOURS.length]; }

function amount(value, measure) { return measure === "cost_usd" ? usd(value) : neurons(value); }

// A round top for the y axis: 1, 2 or 5 times a power of ten, at least `value`.
function niceTop(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function bucketLabel(start, bucket) {
  const iso = new Date(start * 1000).toISOString();
  return bucket === "hour" ? iso.slice(11, 16) : iso.slice(5, 10);
}

function drawGauges(accounts) {
  const box = $("gauges");
  box.replaceChildren();
  if (!accounts.length) {
    box.appendChild(el("p", { class: "gauge-line" }, "No Workers AI neurons spent today (each Cloudflare account " +
      "has 10,000 free a day, reset at 00:00 UTC)."));
    return;
  }
  for (const account of accounts) {
    const gauge = el("div", { class: "gauge" });
    const bar = el("div", { class: "bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": account.free,
      "aria-valuenow": Math.round(account.neurons), "aria-label": account.account + " free neurons used today" });
    const fill = el("div", { class: "fill" + (account.percent >= 100 ? " over" : account.percent >= 80 ? " high" : "") });
    fill.style.width = Math.min(100, account.percent) + "%";
    bar.appendChild(fill);
    gauge.appendChild(bar);
    // The line `cfai usage` prints for the account, word for word.
    gauge.appendChild(el("p", { class: "gauge-line" }, account.account + ": " + account.line));
    box.appendChild(gauge);
  }
}

function drawChart(body, measure) {
  const chart = $("chart");
  chart.replaceChildren();
  // Drawn at the size it is shown (text stays readable on a phone); redrawn when the window is resized.
  const W = Math.max(300, Math.round(chart.clientWidth || 760)), H = W < 600 ? 200 : 260;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const n = body.buckets.length;
  const totals = body.buckets.map((_, i) => body.series.reduce((sum, s) => sum + s.points[measure][i], 0));
  const top = niceTop(Math.max(0, ...totals));
  const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
  const slot = plotW / n, barW = Math.max(1, slot * 0.8);
  const y = (value) => TOP + plotH - (value / top) * plotH;
  for (const fraction of [0, 0.5, 1]) {
    const at = y(top * fraction);
    chart.appendChild(svg("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: at, y2: at }));
    chart.appendChild(svg("text", { class: "axis", x: LEFT - 6, y: at + 4, "text-anchor": "end" },
      amount(top * fraction, measure)));
  }
  const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor((W - LEFT) / 80))));
  body.buckets.forEach((start, i) => {
    const x = LEFT + i * slot + (slot - barW) / 2;
    let base = 0;
    body.series.forEach((series, s) => {
      const value = series.points[measure][i];
      if (!value) return;
      const rect = svg("rect", { class: "bar", x, y: y(base + value), width: barW, height: Math.max(0.5, y(base) - y(base + value)),
        fill: colour(series, s), "data-series": series.group });
      rect.appendChild(svg("title", {}, `${series.label}, ${bucketLabel(start, body.bucket)}: ${amount(value, measure)} ` +
        `(${series.points.requests[i]} requests)`));
      chart.appendChild(rect);
      base += value;
    });
    if (i % every === 0) {
      chart.appendChild(svg("text", { class: "axis", x: LEFT + i * slot + slot / 2, y: H - 10, "text-anchor": "middle" },
        bucketLabel(start, body.bucket)));
    }
  });
  if (!body.series.length) {
    chart.appendChild(svg("text", { class: "empty", x: LEFT + plotW / 2, y: TOP + plotH / 2, "text-anchor": "middle" },
      "No requests in this period"));
  }
  const what = measure === "cost_usd" ? "Cost in US$ (list price)" : "Neurons";
  $("chart-caption").textContent = `${what} per ${body.bucket} (UTC), stacked by ${body.by}, ${PERIODS[body.since] || body.since}.`;
}

function fillLegendAndTable(body, measure) {
  const legend = $("legend");
  legend.replaceChildren();
  const rows = $("series").querySelector("tbody");
  rows.replaceChildren();
  body.series.forEach((series, s) => {
    const item = el("li");
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour(series, s);
    item.append(swatch, series.label);
    legend.appendChild(item);
    const row = el("tr", { "data-group": series.group });
    const name = cell(row, "");
    name.appendChild(swatch.cloneNode());
    name.append(series.label);
    if (series.label !== series.group && !series.other) name.title = series.group;
    cell(row, integer(series.requests), "num");
    cell(row, integer(series.errors), "num");
    cell(row, integer(series.prompt_tokens + series.completion_tokens), "num");
    cell(row, (series.estimated_neurons ? "~" : "") + neurons(series.neurons), "num");
    cell(row, usd(series.cost_usd), "num");
    rows.appendChild(row);
  });
  const total = body.total;
  const foot = $("series").querySelector("tfoot");
  foot.replaceChildren();
  const row = el("tr");
  cell(row, "Total");
  for (const value of [integer(total.requests), integer(total.errors), integer(total.prompt_tokens + total.completion_tokens),
    (total.estimated_neurons ? "~" : "") + neurons(total.neurons), usd(total.cost_usd)]) cell(row, value, "num");
  foot.appendChild(row);
  $("totals").textContent = `${integer(total.requests)} requests (${integer(total.errors)} errors), ` +
    `${neurons(total.neurons)} neurons, ${usd(total.cost_usd)} at list price in ${PERIODS[body.since] || body.since}` +
    (body.has_more ? `; the ${body.series.find((s) => s.other).merged} smallest ${body.by}s are merged into "other".` : ".");
}

function render() {
  if (!last) return;
  const measure = chosen("measure");
  drawGauges(last.accounts);
  drawChart(last, measure);
  fillLegendAndTable(last, measure);
}

export async function loadUsage() {
  const section = $("usage-view");
  say("Loading usage…");
  try {
    last = await api(`/v1/admin/usage/series?since=${encodeURIComponent(chosen("period"))}&by=${chosen("by")}`);
  } catch (error) {
    if (error.status === 403) { refuse(section, ADMIN_NEEDED); say(ADMIN_NEEDED); return; }
    throw error;
  }
  refuse(section, "");
  render();
  section.dataset.loaded = `${last.since} ${last.by}`;  // tests wait for this after a filter changes
  say("Usage of this proxy, from its usage log.");
}

export function setUpUsage() {
  for (const input of document.querySelectorAll("input[name=period], input[name=by]")) {
    input.addEventListener("change", () => loadUsage().catch((error) => say(error.message)));
  }
  for (const input of document.querySelectorAll("input[name=measure]")) input.addEventListener("change", render);
  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => { if (last && !$("usage-view").hidden) drawChart(last, chosen("measure")); });
  });
  $("refresh").addEventListener("click", () => loadUsage().catch((error) => say(error.message)));
}
