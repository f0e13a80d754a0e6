// The reference dashboard: plain DOM code over the public HTTP API (see /openapi.json) and the dev
// stack's token route. Nothing here reads anything the API does not answer.
"use strict";

const $ = (sel) => document.querySelector(sel);

// Builds an element; strings become text nodes (API data never becomes markup).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const session = {
  get token() { return sessionStorage.getItem("token"); },
  get workspace() { return sessionStorage.getItem("workspace"); },
  get role() { return sessionStorage.getItem("role"); },
  set(token, workspace, role) {
    sessionStorage.setItem("token", token);
    sessionStorage.setItem("workspace", workspace);
    sessionStorage.setItem("role", role);
  },
};

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "http_" + status;
    this.body = body;
  }
}

// One call of the public API as the picked member; resolves to the JSON body (null for 204).
// An answer that arrives after the member signed in to another workspace (or as another role)
// is dropped, never rendered: the call stays pending, so no caller paints the previous
// workspace's data (or clears the new one's) under the new sign-in.
async function api(method, path, body) {
  const token = session.token;
  const answer = await call(token, method, path, body);
  if (session.token !== token) return new Promise(() => {});
  if (answer.error) throw answer.error;
  return answer.json;
}

async function call(token, method, path, body) {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "include",
    cache: "no-store",
  });
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  return resp.ok ? { json } : { error: new ApiError(resp.status, json) };
}

function say(id, text, isError) {
  const el = $(id);
  el.textContent = text || "";
  el.classList.toggle("error", !!isError);
}

function sayError(id, e) {
  say(id, e instanceof ApiError ? `${e.message} (${e.code})` : String(e), true);
}

// ---- formatting -----------------------------------------------------------------------------

function currencyFormat(currency) {
  try {
    return new Intl.NumberFormat("en-US", { style: "currency", currency: String(currency).toUpperCase() });
  } catch (_) {
    return null;
  }
}

function minorDigits(currency) {
  const f = currencyFormat(currency);
  return f ? f.resolvedOptions().maximumFractionDigits : 2;
}

// Money is an integer in the currency's minor unit plus a currency code (docs/api.md).
function money(amount, currency) {
  if (amount === null || amount === undefined) return "—";
  const f = currencyFormat(currency);
  if (!f) return `${amount} ${currency}`;
  return f.format(amount / 10 ** minorDigits(currency));
}

function when(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  if (isNaN(d)) return ts;
  return d.toISOString().replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC");
}

function pill(value) {
  return h("span", { class: "pill " + value }, value);
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.map(([k, v, id]) => [h("dt", {}, k), h("dd", { "data-field": id }, v)]));
}

// ---- who is calling -------------------------------------------------------------------------

async function signIn(workspace, role) {
  const q = new URLSearchParams({ workspace_id: workspace, role });
  const resp = await fetch("/dev/token?" + q, { cache: "no-store" });
  const body = await resp.json().catch(() => null);
  if (!resp.ok || !body || !body.token) throw new ApiError(resp.status, body);
  session.set(body.token, workspace, role);
  localStorage.setItem("workspace", workspace);
  localStorage.setItem("role", role);
}

function showWho() {
  $("#whoami").textContent = session.token ? `signed in to ${session.workspace} as ${session.role}` : "";
}

// ---- connection card ------------------------------------------------------------------------

let cardTimer = null;
let wasBusy = false;

function scheduleCard(ms) {
  clearTimeout(cardTimer);
  cardTimer = setTimeout(loadCard, ms);
}

const BANNER_WORDS = {
  yellow: "Data may be out of date.",
  red: "Stripe access was revoked or is invalid: reconnect Stripe.",
};

function resyncBlockedUntil() {
  const until = Number(localStorage.getItem("resync-blocked:" + session.workspace) || 0);
  return until > Date.now() ? until : 0;
}

function showResyncLimit(until) {
  const btn = $("#resync");
  btn.disabled = true;
  // To the nearest minute: `retry_after` is whole seconds until the quota resets.
  const resets = new Date(Math.round(until / 60000) * 60000).toISOString().slice(11, 16);
  btn.textContent = `Re-sync now (available again at ${resets} UTC)`;
  btn.title = "The Free plan allows 3 manual syncs per UTC day.";
}

async function loadCard() {
  if (!session.token) return;
  let card;
  try {
    card = await api("GET", "/v1/stripe/connection");
  } catch (e) {
    renderNotConnected(e);
    return;
  }
  renderCard(card);
  const backfilling = ["pending", "running"].includes(card.backfill && card.backfill.status);
  const runs = await loadRuns();
  const busy = backfilling || runs.some((r) => r.status === "queued" || r.status === "running");
  // A sync just finished: the lists and figures below have new data.
  if (wasBusy && !busy) {
    loadRules();
    loadMetrics();
  }
  wasBusy = busy;
  scheduleCard(busy ? 700 : 15000);
}

function renderNotConnected(e) {
  $("#banner").hidden = true;
  $("#backfill").hidden = true;
  $("#resync").hidden = true;
  $("#disconnect").hidden = true;
  $("#disconnect-confirm").hidden = true;
  if (e instanceof ApiError && e.code === "not_connected") {
    $("#card-body").replaceChildren(h("p", { id: "not-connected" }, "Stripe is not connected to this workspace."));
    $("#connect").hidden = false;
    say("#connection-msg", "");
  } else {
    $("#card-body").replaceChildren();
    $("#connect").hidden = true;
    sayError("#connection-msg", e);
  }
  $("#runs tbody").replaceChildren();
}

function renderCard(card) {
  const banner = $("#banner");
  if (card.banner) {
    const err = card.last_error;
    banner.className = "banner " + card.banner;
    banner.textContent = err ? `${err.message} (${err.code}, ${when(err.at)})` : BANNER_WORDS[card.banner] || card.banner;
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  $("#card-body").replaceChildren(kv([
    ["Account", card.account_id, "account"],
    ["Business", card.business_name || "—", "business"],
    ["Mode", card.livemode ? "live" : "test", "mode"],
    ["Plan", card.tier, "tier"],
    ["Status", pill(card.status), "status"],
    ["Last sync", when(card.last_sync_at), "last-sync"],
    ["Next sync", card.next_sync_at ? when(card.next_sync_at) : "only on “Re-sync now”", "next-sync"],
  ]));
  if (card.status === "disconnected") {
    $("#card-body").append(h("p", { class: "muted" }, "Disconnected: the data below is kept but no longer updated."));
  }
  const b = card.backfill || { status: "pending", progress: 0 };
  $("#backfill").hidden = false;
  $("#backfill-bar").value = b.progress || 0;
  $("#backfill-text").textContent = `${b.status} ${Math.round((b.progress || 0) * 100)}%`;
  $("#backfill").dataset.status = b.status;

  const connected = card.status === "active";
  $("#connect").hidden = connected;
  $("#connect").textContent = card.status === "disconnected" ? "Connect Stripe" : connected ? "Connect Stripe" : "Reconnect Stripe";
  $("#resync").hidden = !connected;
  $("#disconnect").hidden = card.status === "disconnected";
  const until = resyncBlockedUntil();
  if (until) showResyncLimit(until);
  else if (!$("#resync").dataset.busy) {
    $("#resync").disabled = false;
    $("#resync").textContent = "Re-sync now";
    $("#resync").title = "";
  }
}

async function loadRuns() {
  try {
    const runs = (await api("GET", "/v1/stripe/syncs?limit=5")).data || [];
    $("#runs tbody").replaceChildren(...runs.map((r) => h("tr", { "data-trigger": r.trigger, "data-status": r.status },
      h("td", {}, r.trigger), h("td", {}, pill(r.status)), h("td", {}, when(r.started_at)),
      h("td", {}, when(r.finished_at)), h("td", {}, r.counts ? r.counts.customers : ""),
      h("td", {}, r.counts ? r.counts.invoices : ""), h("td", {}, r.error ? r.error.message : ""))));
    return runs;
  } catch (_) {
    return [];
  }
}

async function connectStripe() {
  say("#connection-msg", "Opening Stripe…");
  try {
    // The answer sets the cookie that binds the flow to this browser: same origin, credentials kept.
    const { authorize_url } = await api("POST", "/v1/stripe/connect");
    window.location.assign(authorize_url);
  } catch (e) {
    sayError("#connection-msg", e);
  }
}

async function resync() {
  const btn = $("#resync");
  btn.dataset.busy = "1";
  btn.disabled = true;
  try {
    const { sync } = await api("POST", "/v1/stripe/syncs");
    say("#connection-msg", `Sync ${sync.status}.`);
  } catch (e) {
    if (e.code === "manual_sync_limit") {
      const retryAfter = Number(e.body && e.body.retry_after) || 0;
      const until = Date.now() + retryAfter * 1000;
      localStorage.setItem("resync-blocked:" + session.workspace, String(until));
      showResyncLimit(until);
    }
    sayError("#connection-msg", e);
  } finally {
    delete btn.dataset.busy;
    if (!resyncBlockedUntil()) btn.disabled = false;
    scheduleCard(300);
  }
}

async function disconnect() {
  try {
    await api("DELETE", "/v1/stripe/connection");
    say("#connection-msg", "Stripe is disconnected.");
  } catch (e) {
    sayError("#connection-msg", e);
  }
  $("#disconnect-confirm").hidden = true;
  scheduleCard(0);
}

// ---- customer 360 ---------------------------------------------------------------------------

let lastEmail = null;

async function lookUp(email) {
  lastEmail = email;
  say("#customer-msg", "");
  try {
    renderPanel(await api("GET", "/v1/stripe/customers?" + new URLSearchParams({ email })));
  } catch (e) {
    $("#panel").replaceChildren();
    sayError("#customer-msg", e);
  }
}

async function openCustomer(id) {
  say("#customer-msg", "");
  try {
    renderPanel(await api("GET", "/v1/stripe/customers/" + encodeURIComponent(id)));
  } catch (e) {
    sayError("#customer-msg", e);
  }
}

function renderPanel(p) {
  const box = $("#panel");
  box.dataset.match = p.match;
  $("#link").hidden = !lastEmail;
  if (p.match === "not_found") {
    box.replaceChildren(h("p", { id: "no-customer" }, "No Stripe customer found"));
    return;
  }
  if (p.match === "deleted") {
    box.replaceChildren(h("p", { id: "deleted-customer" }, "This customer was deleted in Stripe."));
    return;
  }
  const c = p.customer;
  const every = c.plan ? `${c.plan.interval_count > 1 ? c.plan.interval_count + " " : ""}${c.plan.interval}` : "";
  const plan = !c.plan
    ? "No plan"
    : c.plan.unit_amount === null || c.plan.unit_amount === undefined
      ? `${c.plan.product} · per ${every}`
      : `${c.plan.product} · ${money(c.plan.unit_amount, c.plan.currency)} / ${every}${c.plan.quantity > 1 ? " × " + c.plan.quantity : ""}`;
  const inv = c.last_invoice;
  const invoice = inv
    ? h("span", {}, `${money(inv.amount_due, inv.currency)} ${inv.status}, ${when(inv.created)} `,
      inv.hosted_invoice_url ? h("a", { href: inv.hosted_invoice_url, target: "_blank", rel: "noopener" }, "invoice") : null)
    : "—";
  const risk = c.churn_risk || { level: "low", reasons: [] };
  box.replaceChildren(...[
    h("h3", {}, `${c.name || c.email || c.id}`, p.stale ? h("span", { class: "pill medium", title: "The connection is not active: data is not being updated" }, "stale") : null),
    kv([
      ["Email", c.email || "—", "email"],
      ["Customer", c.id, "id"],
      ["Plan", plan, "plan"],
      ["MRR", money(c.mrr.amount, c.mrr.currency), "mrr"],
      ["LTV", money(c.ltv.amount, c.ltv.currency), "ltv"],
      ["Payment status", pill(c.payment_status), "payment-status"],
      ["Last invoice", invoice, "last-invoice"],
      ["Churn risk", h("span", {}, pill(risk.level), " ", risk.reasons.join(", ")), "churn-risk"],
      ["Synced", when(p.synced_at), "synced"],
    ]),
    h("p", {}, h("a", { id: "stripe-link", href: c.dashboard_url, target: "_blank", rel: "noopener" }, "Open in Stripe ↗")),
    p.other_matches && p.other_matches.length
      ? h("p", { id: "other-matches" }, "Other customers with this email: ",
        p.other_matches.map((id) => h("button", { type: "button", class: "link", onclick: () => openCustomer(id) }, id)))
      : null,
  ].filter(Boolean));
}

async function link(customerId) {
  try {
    await api("PUT", "/v1/stripe/links", { email: lastEmail, customer_id: customerId });
    say("#customer-msg", `Linked ${lastEmail} to ${customerId}.`);
    await lookUp(lastEmail);
    say("#customer-msg", `Linked ${lastEmail} to ${customerId}.`);
  } catch (e) {
    sayError("#customer-msg", e);
  }
}

// ---- routing rules --------------------------------------------------------------------------

const rules = { cursors: [null], page: 0 };

function ruleQuery(cursor) {
  const currency = $("#rule-currency").value.trim().toLowerCase();
  const q = new URLSearchParams();
  const status = $("#rule-status").value;
  if (status) q.set("status", status);
  if (currency) q.set("currency", currency);
  const scale = 10 ** minorDigits(currency || "usd");
  const min = $("#rule-min").value;
  const max = $("#rule-max").value;
  if (min !== "") q.set("min_mrr", String(Math.round(Number(min) * scale)));
  if (max !== "") q.set("max_mrr", String(Math.round(Number(max) * scale)));
  q.set("limit", $("#rule-limit").value || "10");
  if (cursor) q.set("cursor", cursor);
  return q;
}

async function loadRules() {
  say("#rules-msg", "");
  try {
    const list = await api("GET", "/v1/stripe/customers?" + ruleQuery(rules.cursors[rules.page]));
    const rows = (list.data || []).map((p) => {
      const c = p.customer || {};
      return h("tr", { class: "pick", "data-customer": c.id, onclick: () => openCustomer(c.id) },
        h("td", {}, c.email || c.id), h("td", {}, c.plan ? c.plan.product : "—"),
        h("td", {}, c.mrr ? money(c.mrr.amount, c.mrr.currency) : "—"),
        h("td", {}, pill(c.payment_status || "none")),
        h("td", {}, c.churn_risk ? pill(c.churn_risk.level) : ""));
    });
    $("#rule-table tbody").replaceChildren(...rows);
    rules.cursors.length = rules.page + 1;
    if (list.next_cursor) rules.cursors.push(list.next_cursor);
    $("#rule-next").disabled = !list.next_cursor;
    $("#rule-first").disabled = rules.page === 0;
    $("#rule-page").textContent = rows.length ? `page ${rules.page + 1}, ${rows.length} customers` : "no customers match";
  } catch (e) {
    $("#rule-table tbody").replaceChildren();
    sayError("#rules-msg", e);
  }
}

// ---- metrics --------------------------------------------------------------------------------

function isoDay(d) { return d.toISOString().slice(0, 10); }
function daysAgo(n) { return isoDay(new Date(Date.now() - n * 86400000)); }

async function loadMetrics() {
  say("#metrics-msg", "");
  const currency = $("#m-currency").value.trim().toLowerCase() || "usd";
  const q = new URLSearchParams({ from: $("#m-from").value, to: $("#m-to").value, currency });
  try {
    const m = await api("GET", "/v1/stripe/metrics?" + q);
    const tile = (k, v, id) => h("div", { class: "tile", "data-metric": id }, h("div", { class: "k" }, k), h("div", { class: "v" }, v));
    $("#tiles").replaceChildren(
      tile("MRR", money(m.mrr, m.currency), "mrr"),
      tile("ARR", money(m.arr, m.currency), "arr"),
      tile("ARPU", money(m.arpu, m.currency), "arpu"),
      tile("Revenue", money(m.total_revenue, m.currency), "total_revenue"),
      tile("Customers", m.customer_count, "customer_count"),
      tile("Active subs", m.active_subscriptions, "active_subscriptions"),
      tile("New subs", m.new_subscriptions, "new_subscriptions"),
      tile("Churned subs", m.churned_subscriptions, "churned_subscriptions"),
      tile("Payment success", `${(m.payment_success_rate * 100).toFixed(1)}%`, "payment_success_rate"),
      tile("Failed payments", m.failed_payments, "failed_payments"),
    );
    say("#metrics-msg", `As of ${when(m.as_of)}, ${m.currency.toUpperCase()}, ${q.get("from") || "30 days ago"} to ${q.get("to") || "today"}.`);
  } catch (e) {
    $("#tiles").replaceChildren();
    sayError("#metrics-msg", e);
    return;
  }
  try {
    const m90 = await api("GET", "/v1/stripe/metrics?" + new URLSearchParams({ from: daysAgo(89), to: daysAgo(0), currency }));
    drawChart(m90.series || [], m90.currency);
  } catch (e) {
    $("#chart").replaceChildren();
    sayError("#metrics-msg", e);
  }
}

// Two lines on one time axis: MRR (left scale) and active subscriptions (right scale), as SVG.
function drawChart(series, currency) {
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const W = 640, H = 200, L = 70, R = 40, T = 10, B = 24;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-points": series.length });
  const n = Math.max(series.length - 1, 1);
  // Round scales up to 1, 2 or 5 × 10^k so the axis labels are plain numbers.
  const nice = (v) => {
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * p).find((c) => c >= v);
  };
  const maxMrr = nice(Math.max(10 ** minorDigits(currency) * 10, ...series.map((p) => p.mrr)));
  const maxSubs = nice(Math.max(2, ...series.map((p) => p.active_subscriptions)));
  const x = (i) => L + ((W - L - R) * i) / n;
  const yM = (v) => T + (H - T - B) * (1 - v / maxMrr);
  const yS = (v) => T + (H - T - B) * (1 - v / maxSubs);
  for (const f of [0, 0.5, 1]) {
    const y = T + (H - T - B) * (1 - f);
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y }));
    svg.append(s("text", { x: L - 4, y: y + 4, "text-anchor": "end" }, money(maxMrr * f, currency)));
    svg.append(s("text", { x: W - R + 4, y: y + 4 }, String(maxSubs * f)));
  }
  if (series.length) {
    svg.append(s("text", { x: L, y: H - 6 }, series[0].date));
    svg.append(s("text", { x: W - R, y: H - 6, "text-anchor": "end" }, series[series.length - 1].date));
    const path = (y, key) => series.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    svg.append(s("path", { class: "mrr", d: path(yM, "mrr") }));
    svg.append(s("path", { class: "subs", d: path(yS, "active_subscriptions") }));
  }
  svg.append(s("text", { x: L + 6, y: T + 12, fill: "#635bff" }, "— MRR"));
  svg.append(s("text", { x: L + 70, y: T + 12 }, "- - active subscriptions"));
  $("#chart").replaceChildren(svg);
}

// ---- wiring ---------------------------------------------------------------------------------

function loadAll() {
  showWho();
  wasBusy = false;
  rules.cursors = [null];
  rules.page = 0;
  $("#rule-table tbody").replaceChildren();
  $("#rule-page").textContent = "";
  say("#rules-msg", "");
  $("#panel").replaceChildren();
  $("#link").hidden = true;
  lastEmail = null;
  loadCard();
  loadRules();
  loadMetrics();
}

const OAUTH_WORDS = {
  access_denied: "You declined the connection in Stripe.",
  invalid_state: "This connection attempt is not valid here: it expired, was already used, or was started in another browser or by another user. Start again with Connect Stripe.",
  invalid_grant: "Stripe refused the authorization. Start again with Connect Stripe.",
  wrong_scope: "Stripe granted more than read-only access, so the grant was discarded.",
  account_in_use: "That Stripe account is connected to another workspace. Disconnect it there first.",
};

function showOauthResult() {
  const params = new URLSearchParams(window.location.search);
  const outcome = params.get("stripe");
  if (!outcome) return;
  const box = $("#oauth-result");
  if (outcome === "connected") {
    box.textContent = "Stripe is connected. The backfill has started.";
    box.className = "notice";
  } else {
    const reason = params.get("reason") || "unknown";
    box.textContent = `Stripe was not connected: ${OAUTH_WORDS[reason] || "an error occurred."} (${reason})`;
    box.className = "notice error";
  }
  box.dataset.outcome = outcome;
  box.dataset.reason = params.get("reason") || "";
  box.hidden = false;
  history.replaceState(null, "", window.location.pathname);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#workspace").value = session.workspace || localStorage.getItem("workspace") || "ws_dev";
  $("#role").value = session.role || localStorage.getItem("role") || "owner";
  $("#m-from").value = daysAgo(29);
  $("#m-to").value = daysAgo(0);
  showOauthResult();

  $("#who").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await signIn($("#workspace").value.trim(), $("#role").value);
      loadAll();
    } catch (e) {
      say("#connection-msg", "Could not get a dev token: " + e.message, true);
    }
  });
  $("#connect").addEventListener("click", connectStripe);
  $("#resync").addEventListener("click", resync);
  $("#disconnect").addEventListener("click", () => { $("#disconnect-confirm").hidden = false; });
  $("#disconnect-confirm").addEventListener("click", disconnect);
  $("#search").addEventListener("submit", (ev) => { ev.preventDefault(); lookUp($("#email").value.trim()); });
  $("#link").addEventListener("submit", (ev) => { ev.preventDefault(); link($("#link-customer").value.trim()); });
  $("#rule").addEventListener("submit", (ev) => { ev.preventDefault(); rules.cursors = [null]; rules.page = 0; loadRules(); });
  $("#rule-next").addEventListener("click", () => { rules.page += 1; loadRules(); });
  $("#rule-first").addEventListener("click", () => { rules.page = 0; loadRules(); });
  $("#metrics-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadMetrics(); });

  if (session.token) loadAll();
  else $("#who").requestSubmit();
});
