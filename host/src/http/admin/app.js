// The operator's page: asks for the admin token once (kept in sessionStorage, this tab
// only), then draws GET /admin/overview every few seconds. Data is written with
// textContent only, never parsed as HTML.
"use strict";

const TOKEN_KEY = "request-access-admin-token";
const REFRESH_MS = 5000;
const HOUR_S = 3600;
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function showLogin(message) {
  clearTimeout(timer);
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function login(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  refresh();
}

async function refresh() {
  clearTimeout(timer);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showLogin();
  let response;
  try {
    response = await fetch("/admin/overview", {
      headers: { Authorization: "Bearer " + token },
      cache: "no-store",
    });
  } catch (e) {
    return failed("the service did not answer (" + e.message + ")");
  }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showLogin(
      "The service refused this token (401 unauthorized): check [server] admin_token and try again.");
  }
  if (response.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showLogin(
      "The admin routes are disabled on this service: it has no [server] admin_token.");
  }
  if (!response.ok) {
    let why = response.status + " " + response.statusText;
    try { why = (await response.json()).message || why; } catch (e) { /* not JSON */ }
    return failed(why);
  }
  render(await response.json());
  timer = setTimeout(refresh, REFRESH_MS);
}

// Keeps the last figures on screen, says why they are old, and tries again.
function failed(why) {
  $("fetch-error").hidden = false;
  $("fetch-error").textContent = "Could not refresh: " + why + ". Showing the last figures.";
  timer = setTimeout(refresh, REFRESH_MS);
}

function percent(fraction) {
  return (fraction * 100).toFixed(fraction > 0 && fraction < 0.1 ? 1 : 0) + "%";
}

function bar(utilisation, free) {
  const level = free === 0 ? " full" : utilisation >= 0.8 ? " high" : "";
  const fill = el("span");
  // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
  fill.style.width = Math.min(100, utilisation * 100).toFixed(1) + "%";
  return el("div", { class: "bar" + level, title: percent(utilisation) }, fill);
}

// Utilisation over the last hour (or since this node first counted the group, at least
// five minutes), left to right; red marks where creates were refused.
function sparkline(points, now) {
  const width = 240, height = 36;
  const span = spanOf(points, now);
  const chart = svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}` });
  const frame = svg("rect", { class: "frame", x: 0, y: 0, width, height });
  const label = svg("title");
  label.textContent = spanLabel(points, now);
  frame.append(label);
  chart.append(frame);
  const x = (at) => ((at - (now + 10 - span)) / span) * width;
  const y = (u) => height - 2 - u * (height - 6);
  // A line through consecutive points; a point alone is a dot.
  let line = [];
  const flush = () => {
    if (line.length > 1) chart.append(svg("polyline", { points: line.map((p) => p.join(",")).join(" ") }));
    if (line.length === 1) chart.append(svg("circle", { cx: line[0][0], cy: line[0][1], r: 1.5 }));
    line = [];
  };
  let previous = null;
  for (const point of points) {
    if (point.utilisation === null || (previous !== null && point.at - previous > 10)) flush();
    if (point.utilisation !== null) {
      line.push([x(point.at + 5).toFixed(1), y(point.utilisation).toFixed(1)]);
    }
    previous = point.at;
  }
  flush();
  for (const point of points.filter((p) => p.exhausted > 0)) {
    const mark = svg("rect", {
      class: "exhausted-mark", x: Math.min(x(point.at), width - 3).toFixed(1), y: 0, width: 3, height,
    });
    const title = svg("title");
    title.textContent = point.exhausted + " refused at " + new Date(point.at * 1000).toLocaleTimeString();
    mark.append(title);
    chart.append(mark);
  }
  return chart;
}

// Seconds the sparkline covers: the hour, or since the first point, at least 5 minutes.
function spanOf(points, now) {
  return Math.min(HOUR_S, Math.max(300, now + 10 - (points.length ? points[0].at : now)));
}

function spanLabel(points, now) {
  return "last " + Math.round(spanOf(points, now) / 60) + " min";
}

function seconds(value) {
  return value === null || value === undefined ? "default" : value + " s";
}

// Erlang B's blocking probability at this node's demand, and the numbers needed for the
// target; a pool that needs more than it has is flagged.
function blocking(sizing, size) {
  if (!sizing) return el("td", { class: "muted sizing" }, "measuring");
  const needed = sizing.numbers_needed;
  const short = needed !== null && needed > size;
  const title = sizing.offered_erlangs.toFixed(2) + " Erlangs: " +
    sizing.offered_per_minute.toFixed(1) + " creates/min x " +
    sizing.holding_seconds.toFixed(0) + " s held";
  return el("td", { class: "sizing" + (short ? " error" : ""), title },
    probability(sizing.blocking), " ",
    el("span", { class: "muted" }, needed === null ? "" :
      "needs " + needed + " for " + probability(sizing.target)));
}

// A small probability with two significant digits (0.018%), a large one as a percentage.
function probability(p) {
  if (p === 0) return "0%";
  return p < 0.1 ? (p * 100).toPrecision(2) + "%" : percent(p);
}

function render(data) {
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
  $("fetch-error").hidden = true;
  $("updated").textContent = "updated " + new Date(data.now * 1000).toLocaleTimeString();

  const groups = $("groups").tBodies[0];
  groups.replaceChildren(...data.groups.map((g) => {
    const name = el("td", {}, g.name);
    if (g.free === 0) name.append(el("span", { class: "badge" }, "full"));
    else if (g.history.some((p) => p.exhausted > 0)) {
      name.append(el("span", { class: "badge warn", title: "exhausted in the last hour" }, "was full"));
    }
    const strategy = g.reservations_per_number > 1
      ? g.strategy + ", " + g.reservations_per_number + " per number" : g.strategy;
    return el("tr", { "data-group": g.name },
      name,
      el("td", {}, strategy),
      el("td", {}, seconds(g.booking_expiration_timeout)),
      el("td", { class: "num size" }, g.size),
      el("td", { class: "num live" }, g.live),
      el("td", { class: "num free" }, g.free),
      el("td", {}, bar(g.utilisation, g.free), " ", percent(g.utilisation)),
      el("td", {}, sparkline(g.history, data.now), el("span", { class: "muted" }, spanLabel(g.history, data.now))),
      blocking(g.sizing, g.size));
  }));

  const p = data.plugin;
  $("plugin").replaceChildren(
    el("dt", {}, "Digest"), el("dd", { title: p.digest }, p.digest.slice(0, 19) + "…"),
    el("dt", {}, "Loaded"), el("dd", {}, new Date(p.loaded_at * 1000).toLocaleString()),
    el("dt", {}, "Reloads"), el("dd", {}, p.reloads),
    el("dt", {}, "Faults"), el("dd", { class: p.faults > 0 ? "error" : "" }, p.faults),
    el("dt", {}, "Warm instances"), el("dd", {}, p.idle_instances + " idle of at most " + p.max_idle_instances),
    el("dt", {}, "Instances created"), el("dd", {}, p.instantiations),
    el("dt", {}, "Peak guest memory"), el("dd", {}, (p.peak_guest_memory_bytes / 1048576).toFixed(1) + " MiB"));

  const s = data.store;
  $("store").replaceChildren(
    el("dt", {}, "Kind"), el("dd", {}, s.kind),
    el("dt", {}, "Health"), el("dd", { class: s.healthy ? "ok" : "error" },
      s.healthy ? "answering" : "not answering: " + s.error),
    el("dt", {}, "Latency"), el("dd", {}, s.latency_ms.toFixed(2) + " ms (one read)"));

  const services = $("services").tBodies[0];
  services.replaceChildren(...data.services.map((svc) => el("tr", { "data-service": svc.id },
    el("td", {}, svc.id),
    el("td", {}, svc.static ? "static (configuration)" : "registered"),
    el("td", {}, svc.ttl_seconds === null ? "no expiry" : svc.ttl_seconds + " s left"))));
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("token").value);
    $("token").value = "";
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
  });
  // For scripts and links: /admin/#token=... logs in and leaves the token out of the
  // address bar.
  if (location.hash.startsWith("#token=")) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice(7)));
    history.replaceState(null, "", location.pathname);
  }
  refresh();
});
