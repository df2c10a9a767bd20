// The order board: one card per pending order of the tablet's restaurant, straight from the stream.
//
// Cards appear and leave only on stream events (NewOrder / snapshot; OrderAccepted / OrderRejected):
// Accept and Reject call CentralHub, whose OrderService publishes the event that removes the card.

import { createPartnerClient } from "/static/partner-client.js";

const TOKEN_KEY = "partner-board.token"; // sessionStorage: this tab only
const HUB_URL_KEY = "partner-board.centralHubUrl"; // localStorage: a device setting
const SOUND_KEY = "partner-board.sound";
const NEW_CUE_MS = 60_000; // how long a new card keeps its "New" badge
const HUB_TIMEOUT_MS = 15_000;
const CONFIRMATION_WAIT_MS = 30_000; // after a 2xx, how long to wait for the stream before re-enabling
const AGE_WARN_S = 10 * 60;
const AGE_LATE_S = 20 * 60;
const DEFAULT_UNSEEN_AFTER_S = 60;

const $ = (id) => document.getElementById(id);
const el = {
  restaurant: $("restaurant-label"),
  count: $("order-count"),
  connection: $("connection"),
  connectionText: $("connection-text"),
  reconnect: $("reconnect"),
  sound: $("sound-toggle"),
  settingsToggle: $("settings-toggle"),
  settings: $("settings"),
  settingsForm: $("settings-form"),
  hubUrl: $("hub-url"),
  hubUrlReset: $("hub-url-reset"),
  signOut: $("sign-out"),
  signIn: $("sign-in"),
  signInForm: $("sign-in-form"),
  tokenInput: $("token-input"),
  signInError: $("sign-in-error"),
  board: $("board"),
  stale: $("stale-banner"),
  empty: $("empty"),
  cards: $("cards"),
  announcer: $("announcer"),
  template: $("card-template"),
};

const money = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
// The worker's PARTNER_STREAM_UNSEEN_AFTER (its first step), carried by the page: <body data-unseen-after-seconds>.
const UNSEEN_AFTER_S = unseenAfterSeconds(document.body.dataset.unseenAfterSeconds);
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

let session = null; // {token, restaurantId}
let client = null;
let ticker = null;
let audio = null;
const cards = new Map(); // orderId -> {li, order, ...element refs}
const toCue = new Set(); // orders announced by the stream as new, to highlight when their card is built
const acked = new Set(); // orders this board has acknowledged

// -- token and settings ----------------------------------------------------------------------

export function decodeToken(raw) {
  const token = raw.trim().replace(/^Bearer\s+/i, "");
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("This is not a tablet token (expected a JWT: three parts separated by dots).");
  let claims;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    claims = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error("The token's payload cannot be read.");
  }
  const restaurant = claims.restaurantId ?? claims.restaurant_id ?? claims.RestaurantId;
  if (restaurant === undefined || restaurant === null || restaurant === "") {
    throw new Error("The token names no restaurant (no restaurantId claim): it is not a tablet token.");
  }
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
    throw new Error(`The token expired at ${new Date(claims.exp * 1000).toLocaleString()}.`);
  }
  return { token, restaurantId: String(restaurant) };
}

function defaultHubUrl() {
  return window.location.origin;
}

function hubUrl() {
  return localStorage.getItem(HUB_URL_KEY) || defaultHubUrl();
}

function hubEndpoint(orderId, action) {
  const base = hubUrl().endsWith("/") ? hubUrl() : `${hubUrl()}/`;
  return new URL(`api/orders/${encodeURIComponent(orderId)}/${action}`, base).toString();
}

// -- sign in / out --------------------------------------------------------------------------

function signIn(raw, { remember = true } = {}) {
  session = decodeToken(raw);
  if (remember) sessionStorage.setItem(TOKEN_KEY, session.token);
  el.signIn.hidden = true;
  el.board.hidden = false;
  el.signOut.hidden = false;
  el.count.hidden = false;
  el.restaurant.textContent = `· restaurant ${session.restaurantId}`;
  document.title = `Orders · restaurant ${session.restaurantId}`;
  startClient();
}

function signOut() {
  client?.stop();
  client = null;
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(ticker);
  ticker = null;
  for (const card of cards.values()) clearTimeout(card.timer);
  cards.clear();
  toCue.clear();
  acked.clear();
  el.cards.replaceChildren();
  el.board.hidden = true;
  el.signIn.hidden = false;
  el.signOut.hidden = true;
  el.count.hidden = true;
  el.reconnect.hidden = true;
  el.restaurant.textContent = "";
  el.tokenInput.value = "";
  document.title = "Order board · partner-stream";
  renderStatus(null);
  el.tokenInput.focus();
}

function startClient() {
  const url = new URL("/ws/partner", window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  client = createPartnerClient({ url: url.toString(), restaurantId: session.restaurantId, token: session.token });
  client.on("order", (order, meta) => {
    if (!meta.initial) toCue.add(String(order.orderId));
  });
  client.on("change", render);
  client.on("status", renderStatus);
  client.start();
  clearInterval(ticker);
  ticker = setInterval(tick, 1000);
}

// -- rendering ------------------------------------------------------------------------------

function render(orders) {
  const ids = new Set(orders.map((o) => String(o.orderId)));
  for (const [id, card] of cards) {
    if (!ids.has(id)) {
      clearTimeout(card.timer);
      card.li.remove();
      cards.delete(id);
    }
  }
  let previous = null;
  const fresh = [];
  for (const order of orders) {
    const id = String(order.orderId);
    let card = cards.get(id);
    if (!card) {
      card = buildCard(order);
      cards.set(id, card);
      if (toCue.delete(id)) fresh.push(card);
    }
    card.order = order;
    const expected = previous ? previous.li.nextElementSibling : el.cards.firstElementChild;
    if (expected !== card.li) {
      if (previous) previous.li.after(card.li);
      else el.cards.prepend(card.li);
    }
    previous = card;
  }
  el.empty.hidden = orders.length > 0;
  el.count.textContent = `${orders.length} pending`;
  updateStale();
  tick();
  for (const card of fresh) cue(card);
  acknowledgeVisible();
}

function buildCard(order) {
  const li = el.template.content.firstElementChild.cloneNode(true);
  const id = String(order.orderId);
  const q = (selector) => li.querySelector(selector);
  const card = {
    li,
    order,
    timer: null,
    accept: q(".accept"),
    reject: q(".reject"),
    rejectPanel: q(".reject-panel"),
    rejectReason: q(".reject-reason"),
    rejectConfirm: q(".reject-confirm"),
    rejectCancel: q(".reject-cancel"),
    error: q(".card-error"),
    note: q(".card-note"),
    age: q(".age"),
    missed: q(".badge-missed"),
    body: q(".card-body"),
  };
  li.dataset.orderId = id;
  const headingId = `order-${cssSafe(id)}-customer`;
  const customer = q(".customer");
  customer.id = headingId;
  customer.textContent = order.customerName || "Customer";
  card.body.setAttribute("aria-labelledby", headingId);
  card.missed.id = `order-${cssSafe(id)}-missed`;
  q(".order-ref").textContent = `#${id.slice(0, 8)}`;
  const items = q(".items");
  for (const item of order.items || []) {
    const row = document.createElement("li");
    const qty = document.createElement("span");
    qty.className = "qty";
    qty.textContent = `${item.quantity}×`;
    const name = document.createElement("span");
    name.className = "item-name";
    name.textContent = item.name;
    const price = document.createElement("span");
    price.className = "line-price";
    price.textContent = money.format((item.quantity || 0) * (item.unitPrice || 0));
    row.append(qty, name, price);
    if (item.notes) {
      const notes = document.createElement("span");
      notes.className = "notes";
      notes.textContent = item.notes;
      row.append(notes);
    }
    row.setAttribute("aria-label", `${item.quantity} × ${item.name}${item.notes ? `, ${item.notes}` : ""}`);
    items.append(row);
  }
  q(".total-value").textContent = money.format(order.totalPrice ?? 0);
  const who = order.customerName || "customer";
  card.accept.setAttribute("aria-label", `Accept order from ${who}`);
  card.reject.setAttribute("aria-label", `Reject order from ${who}`);
  card.rejectConfirm.setAttribute("aria-label", `Confirm rejecting the order from ${who}`);
  card.rejectReason.setAttribute("aria-label", `Reason for rejecting the order from ${who}`);
  card.accept.addEventListener("click", () => resolveOrder(card, "accept"));
  card.reject.addEventListener("click", () => {
    card.rejectPanel.hidden = false;
    card.rejectReason.focus();
  });
  card.rejectCancel.addEventListener("click", () => {
    card.rejectPanel.hidden = true;
    card.reject.focus();
  });
  card.rejectConfirm.addEventListener("click", () => resolveOrder(card, "reject", card.rejectReason.value));
  return card;
}

function cssSafe(text) {
  return text.replace(/[^A-Za-z0-9_-]/g, "_");
}

function tick() {
  const now = Date.now();
  for (const card of cards.values()) {
    const created = Date.parse(card.order.createdAt);
    if (Number.isNaN(created)) continue;
    const seconds = Math.max(0, Math.floor((now - created) / 1000));
    card.age.textContent = formatAge(seconds);
    card.age.classList.toggle("warn", seconds >= AGE_WARN_S && seconds < AGE_LATE_S);
    card.age.classList.toggle("late", seconds >= AGE_LATE_S);
    renderMissed(card, unseenFor(card.order, now, UNSEEN_AFTER_S));
  }
}

/** The threshold from the page's data attribute; 60 s if it is missing, not a number, or not positive. */
export function unseenAfterSeconds(raw) {
  const value = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
  return Number.isFinite(value) && value > 0 ? value : DEFAULT_UNSEEN_AFTER_S;
}

/**
 * How long no tablet showed ``order``: (acknowledgedAt ?? now) - createdAt, as
 * {seconds, acknowledged}; null while that is within ``thresholdSeconds`` or cannot be known.
 */
export function unseenFor(order, now, thresholdSeconds) {
  const created = Date.parse(order.createdAt);
  const acknowledged = Boolean(order.acknowledgedAt);
  const until = acknowledged ? Date.parse(order.acknowledgedAt) : now;
  if (Number.isNaN(created) || Number.isNaN(until)) return null;
  const ms = until - created;
  if (!(ms > thresholdSeconds * 1000)) return null;
  return { seconds: Math.floor(ms / 1000), acknowledged };
}

function renderMissed(card, unseen) {
  const text = !unseen
    ? ""
    : unseen.acknowledged
      ? `Missed for ${formatAge(unseen.seconds)} — arrived while no tablet showed it`
      : `Unseen for ${formatAge(unseen.seconds)}`;
  card.li.classList.toggle("is-missed", Boolean(unseen));
  card.li.classList.toggle("is-unseen", Boolean(unseen) && !unseen.acknowledged);
  if (card.missed.textContent !== text) card.missed.textContent = text;
  card.missed.hidden = !unseen;
  // The badge is part of the card's accessible description only while it shows.
  if (unseen) card.body.setAttribute("aria-describedby", card.missed.id);
  else card.body.removeAttribute("aria-describedby");
}

export function formatAge(seconds) {
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(seconds % 60).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

function renderStatus(status) {
  const state = status ? status.state : "signed-out";
  el.connection.dataset.state = state;
  const lastSync = status?.lastSyncAt ? `last sync ${clock.format(new Date(status.lastSyncAt))}` : "never synced";
  let text;
  switch (state) {
    case "live":
      text = "Live";
      break;
    case "connecting":
      text = "Connecting…";
      break;
    case "reconnecting":
      text = `Reconnecting… (attempt ${status.attempt}) · ${lastSync}`;
      break;
    case "offline":
      text = status.error ? `Offline: ${status.error.message} · ${lastSync}` : `Offline · ${lastSync}`;
      break;
    default:
      text = "Signed out";
  }
  el.connectionText.textContent = text;
  el.connection.title = status?.error?.message ?? "";
  el.reconnect.hidden = state !== "offline" || !session;
  updateStale();
}

function updateStale() {
  const stale = Boolean(session) && el.connection.dataset.state !== "live";
  el.board.classList.toggle("stale", stale);
  el.stale.hidden = !stale || cards.size === 0;
}

// -- new-order cue, sound, acknowledgement -----------------------------------------------------

function cue(card) {
  card.li.classList.add("is-new");
  setTimeout(() => card.li.classList.remove("is-new"), NEW_CUE_MS);
  const { order } = card;
  const items = (order.items || []).map((i) => `${i.quantity} × ${i.name}`).join(", ");
  announce(`New order from ${order.customerName}: ${items}. Total ${money.format(order.totalPrice ?? 0)}.`);
  if (localStorage.getItem(SOUND_KEY) === "on") chime();
}

function announce(text) {
  el.announcer.textContent = "";
  requestAnimationFrame(() => {
    el.announcer.textContent = text;
  });
}

function chime() {
  if (!audio) return; // created on the user's gesture (sound toggle), as browsers require
  if (audio.state === "suspended") audio.resume().catch(() => {});
  const start = audio.currentTime + 0.01;
  for (const [offset, frequency] of [
    [0, 880],
    [0.18, 1320],
  ]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.3, start + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.3);
    osc.connect(gain).connect(audio.destination);
    osc.start(start + offset);
    osc.stop(start + offset + 0.32);
  }
}

function renderSound() {
  const on = localStorage.getItem(SOUND_KEY) === "on";
  el.sound.setAttribute("aria-pressed", String(on));
  el.sound.title = on ? "A chime plays for each new order" : "New orders arrive silently";
}

/** Browsers allow audio only after a user gesture: create (or resume) the context on one. */
function unlockAudio() {
  if (localStorage.getItem(SOUND_KEY) !== "on") return;
  const Context = window.AudioContext || window.webkitAudioContext;
  if (Context && !audio) audio = new Context();
  if (audio?.state === "suspended") audio.resume().catch(() => {});
}

function toggleSound() {
  const on = localStorage.getItem(SOUND_KEY) !== "on";
  localStorage.setItem(SOUND_KEY, on ? "on" : "off");
  if (on) {
    unlockAudio();
    chime(); // a sample of the cue
  }
  renderSound();
}

/** Tell the stream that this tablet has shown an order (only while the page is actually visible). */
function acknowledgeVisible() {
  if (!client || document.visibilityState !== "visible") return;
  for (const [id, card] of cards) {
    if (card.order.acknowledgedAt || acked.has(id)) continue;
    acked.add(id);
    client.acknowledge(id).catch(() => acked.delete(id));
  }
}

// -- Accept / Reject via CentralHub ---------------------------------------------------------------

async function resolveOrder(card, action, reason) {
  const id = card.li.dataset.orderId;
  const button = action === "accept" ? card.accept : card.rejectConfirm;
  const idleLabel = button.textContent;
  setCardError(card, null);
  setNote(card, null);
  clearTimeout(card.timer);
  for (const b of [card.accept, card.reject, card.rejectConfirm]) b.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = action === "accept" ? "Accepting…" : "Rejecting…";
  const body = { restaurantId: session.restaurantId };
  if (action === "reject") body.reason = reason;
  const abort = new AbortController();
  const timeout = setTimeout(() => abort.abort(), HUB_TIMEOUT_MS);
  const target = hubUrl();
  try {
    let response;
    try {
      response = await fetch(hubEndpoint(id, action), {
        method: "POST",
        headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: abort.signal,
        cache: "no-store",
      });
    } catch (err) {
      const why = err?.name === "AbortError" ? "no answer in time" : "cannot reach it";
      throw new Error(`CentralHub at ${target}: ${why}.`);
    }
    if (!response.ok) {
      const detail = await response.json().catch(() => null);
      const message = typeof detail?.error === "string" ? detail.error : response.statusText || "request failed";
      throw new Error(`CentralHub answered ${response.status}: ${message}.`);
    }
    if (!card.li.isConnected) return; // the stream was faster than the answer
    button.removeAttribute("aria-busy");
    button.textContent = action === "accept" ? "Accepted" : "Rejected";
    card.rejectPanel.hidden = action === "accept";
    setNote(card, "Sent. Waiting for the order system to confirm…");
    card.timer = setTimeout(() => {
      if (!card.li.isConnected) return;
      button.textContent = idleLabel;
      for (const b of [card.accept, card.reject, card.rejectConfirm]) b.disabled = false;
      setNote(card, null);
      setCardError(card, "No confirmation from the order system yet. Try again, or check CentralHub.");
    }, CONFIRMATION_WAIT_MS);
  } catch (err) {
    button.removeAttribute("aria-busy");
    button.textContent = idleLabel;
    for (const b of [card.accept, card.reject, card.rejectConfirm]) b.disabled = false;
    const verb = action === "accept" ? "accept" : "reject";
    setCardError(card, `Could not ${verb} this order. ${err.message}`);
  } finally {
    clearTimeout(timeout);
  }
}

function setCardError(card, message) {
  card.error.hidden = !message;
  card.error.textContent = message || "";
  card.li.classList.toggle("failed", Boolean(message));
}

function setNote(card, message) {
  card.note.hidden = !message;
  card.note.textContent = message || "";
}

// -- wiring -----------------------------------------------------------------------------------

function showSignInError(message) {
  el.signInError.hidden = !message;
  el.signInError.textContent = message || "";
  el.tokenInput.setAttribute("aria-invalid", message ? "true" : "false");
}

function init() {
  el.hubUrl.value = hubUrl();
  el.hubUrl.placeholder = defaultHubUrl();
  renderSound();
  renderStatus(null);

  el.signInForm.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      signIn(el.tokenInput.value);
      showSignInError(null);
    } catch (err) {
      showSignInError(err.message);
      el.tokenInput.focus();
    }
  });
  el.signOut.addEventListener("click", signOut);
  el.reconnect.addEventListener("click", () => client?.start());
  el.sound.addEventListener("click", toggleSound);
  el.settingsToggle.addEventListener("click", () => {
    const open = el.settings.hidden;
    el.settings.hidden = !open;
    el.settingsToggle.setAttribute("aria-expanded", String(open));
    if (open) el.hubUrl.focus();
  });
  el.settingsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = el.hubUrl.value.trim();
    if (value && value !== defaultHubUrl()) localStorage.setItem(HUB_URL_KEY, value);
    else localStorage.removeItem(HUB_URL_KEY);
    el.hubUrl.value = hubUrl();
    el.settings.hidden = true;
    el.settingsToggle.setAttribute("aria-expanded", "false");
  });
  el.hubUrlReset.addEventListener("click", () => {
    localStorage.removeItem(HUB_URL_KEY);
    el.hubUrl.value = hubUrl();
  });
  document.addEventListener("visibilitychange", acknowledgeVisible);
  // Sound was left on in an earlier visit: the first tap anywhere re-enables it.
  document.addEventListener("pointerdown", unlockAudio, { passive: true });
  document.addEventListener("keydown", unlockAudio);

  const remembered = sessionStorage.getItem(TOKEN_KEY);
  if (remembered) {
    try {
      signIn(remembered, { remember: false });
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignInError(err.message);
    }
  }
}

init();
