/**
 * partner-client.js — a small client for partner-stream's plain WebSocket protocol (/ws/partner).
 *
 * An ES module with no dependencies, no build step and no global side effects: importing it only
 * defines functions; nothing runs until you call start(). Served by every worker at
 * /static/partner-client.js. Protocol reference: docs/protocols.md.
 *
 * What it does for you:
 *   - connects to ws(s)://HOST/ws/partner?restaurantId=R&access_token=JWT, and keeps doing so forever
 *     with exponential backoff and full jitter (delay = random(0, min(30 s, 500 ms * 2^attempt)));
 *   - stops for good (status "offline" with an error) on close codes 4500-4999 and on a refused token
 *     (HTTP 401/403 before the upgrade), follows 421 {"owner"} to the owning worker, honours 503 Retry-After;
 *   - applies the PendingOrders snapshot sent on every connect, then pushes whose seq is exactly the next
 *     one; a duplicate (seq already seen) is ignored and a gap makes it ask for a fresh snapshot
 *     ({"type":"resume"}, then {"type":"getPendingOrders"}, then a reconnect), so orders() never holds
 *     a duplicate or misses an order;
 *   - pings every 15 s and reconnects if the server is silent for 35 s;
 *   - acknowledges orders: acknowledge(orderId) when you have shown one, or ackOnDisplay: true to
 *     acknowledge every unacknowledged order as soon as it has been handed to your "order" listeners.
 *
 *   const client = createPartnerClient({ url: "wss://host/ws/partner", restaurantId: "42", token });
 *   client.on("order", (order, meta) => show(order));         // meta: {source: "push"|"snapshot", initial}
 *   client.on("resolved", (e) => remove(e.orderId));          // e.outcome: "accepted"|"rejected"|"unknown"
 *   client.on("status", (s) => banner(s.state, s.lastSyncAt)); // connecting | live | reconnecting | offline
 *   client.start();
 *
 * Events (on(event, fn) returns an unsubscribe function; off(event, fn) does the same):
 *   order(order, {source, initial})  an order this client had not seen pending before (push or snapshot;
 *                                    initial: true for the orders of the first snapshot after start())
 *   resolved({orderId, restaurantId, outcome, seq, acceptedAt?, estimatedReadyAt?, reason?})
 *                                    outcome "unknown" when it vanished from a snapshot (resolved while away)
 *   acknowledged({orderId, restaurantId, acknowledgedAt, seq})
 *   snapshot({restaurantId, seq, orders, added, removed, initial})  after every snapshot was applied
 *   change(orders)                   after anything changed orders() (same array as orders())
 *   status({state, lastSyncAt, attempt, error, nextRetryAt})
 *                                    lastSyncAt / nextRetryAt: epoch ms or null; error: null or
 *                                    {message, code?, httpStatus?}; attempt: reconnect attempt number
 *
 * Blazor (JS interop, without touching the app's existing handlers) — wwwroot/js/orders.js:
 *   import { createPartnerClient } from "./partner-client.js"; // a copy in wwwroot/js, or the worker's URL
 *   export function connect(dotnet, url, restaurantId, token) {
 *     const client = createPartnerClient({ url, restaurantId, token, ackOnDisplay: true });
 *     client.on("order", (order) => dotnet.invokeMethodAsync("OnNewOrder", order));
 *     client.on("resolved", (e) => dotnet.invokeMethodAsync("OnOrderResolved", e));
 *     client.on("status", (s) => dotnet.invokeMethodAsync("OnStatus", s.state, s.error?.message ?? null));
 *     client.start();
 *     return { stop: () => client.stop(), acknowledge: (id) => client.acknowledge(id) };
 *   }
 * C#: var js = await JS.InvokeAsync<IJSObjectReference>("import", "./js/orders.js");
 *     handle = await js.InvokeAsync<IJSObjectReference>("connect", DotNetObjectReference.Create(this), url, rid, token);
 *     ... [JSInvokable] public Task OnNewOrder(OrderDto order) => ...;  await handle.InvokeVoidAsync("stop");
 */

const EVENTS = Object.freeze(["order", "resolved", "acknowledged", "snapshot", "change", "status"]);
const PUSHES = Object.freeze(["NewOrder", "OrderAccepted", "OrderRejected", "OrderAcknowledged"]);
const OPEN = 1; // WebSocket.OPEN, without relying on a global

export const DEFAULTS = Object.freeze({
  backoffBaseMs: 500,
  backoffCapMs: 30_000,
  pingIntervalMs: 15_000,
  serverTimeoutMs: 35_000,
  connectTimeoutMs: 10_000,
  resyncTimeoutMs: 10_000,
  // A connection must stay live this long before the backoff starts again from attempt 0,
  // so a server that accepts and then drops us at once is not hammered.
  stableAfterMs: 5_000,
});

/** Full-jitter exponential backoff: a uniformly random delay in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt, baseMs = DEFAULTS.backoffBaseMs, capMs = DEFAULTS.backoffCapMs, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}

/** True for close codes after which the client must not reconnect (4500-4999). */
export function isTerminalCloseCode(code) {
  return code >= 4500 && code <= 4999;
}

/**
 * @param {object} options
 * @param {string} options.url             ws(s):// or http(s):// URL of /ws/partner (relative URLs work in browsers)
 * @param {string|number} options.restaurantId
 * @param {string} [options.token]         the tablet JWT, or:
 * @param {() => string|Promise<string>} [options.tokenProvider]  called before every connect attempt
 * @param {boolean} [options.ackOnDisplay] acknowledge each order once it was handed to "order" listeners
 * @param {Function} [options.WebSocket]   WebSocket constructor (default: globalThis.WebSocket)
 * @param {Function} [options.fetch]       fetch, used only to learn why a connect failed (default: globalThis.fetch)
 */
export function createPartnerClient(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  if (!opts.url) throw new TypeError("createPartnerClient: 'url' is required");
  if (opts.restaurantId === undefined || opts.restaurantId === null || opts.restaurantId === "") {
    throw new TypeError("createPartnerClient: 'restaurantId' is required");
  }
  if (!opts.token && typeof opts.tokenProvider !== "function") {
    throw new TypeError("createPartnerClient: 'token' or 'tokenProvider' is required");
  }
  const restaurantId = String(opts.restaurantId);
  const WebSocketImpl = opts.WebSocket || globalThis.WebSocket;
  const fetchImpl = opts.fetch || (typeof globalThis.fetch === "function" ? globalThis.fetch.bind(globalThis) : null);
  const random = opts.random || Math.random;
  if (typeof WebSocketImpl !== "function") throw new TypeError("createPartnerClient: no WebSocket implementation");

  const listeners = new Map(EVENTS.map((name) => [name, new Set()]));
  const pending = new Map(); // orderId -> order, the restaurant's pending orders as of `seq`
  const ackWanted = new Map(); // orderId -> [{resolve, reject}] acknowledgements not yet confirmed
  const ackSent = new Set(); // orderIds acknowledged on the current socket
  const requests = new Map(); // request id -> orderId, for replies

  let status = { state: "offline", lastSyncAt: null, attempt: 0, error: null, nextRetryAt: null };
  let running = false;
  let generation = 0; // bumped per connect attempt and by stop(): callbacks of older sockets are ignored
  let socket = null;
  let opened = false; // the current socket reached "open"
  let synced = false; // the current socket delivered its snapshot
  let everSynced = false;
  let liveSince = 0;
  let lastReceivedAt = 0;
  let closeMessage = null; // the server's {"type":"close"} on the current socket
  let seq = null;
  let attempt = 0;
  let resyncStage = 0; // 0: in sync, 1: sent resume, 2: sent getPendingOrders
  let redirectUrl = null; // the owning worker's URL, from a 421
  let redirected = false;
  let authRetried = false;
  let requestCounter = 0;
  let retryTimer = null;
  let connectTimer = null;
  let pingTimer = null;
  let watchdogTimer = null;
  let resyncTimer = null;

  // -- events -------------------------------------------------------------------------------

  function emit(event, ...args) {
    for (const fn of [...listeners.get(event)]) {
      try {
        fn(...args);
      } catch (err) {
        // A broken listener must not break the stream (nor the other listeners).
        console.error(`partner-client: '${event}' listener failed`, err);
      }
    }
  }

  function on(event, fn) {
    if (!listeners.has(event)) throw new TypeError(`unknown event '${event}'; expected one of ${EVENTS.join(", ")}`);
    if (typeof fn !== "function") throw new TypeError("listener must be a function");
    listeners.get(event).add(fn);
    return () => off(event, fn);
  }

  function off(event, fn) {
    listeners.get(event)?.delete(fn);
  }

  function setStatus(patch) {
    status = { ...status, ...patch };
    emit("status", { ...status, error: status.error ? { ...status.error } : null });
  }

  // -- state --------------------------------------------------------------------------------

  function orders() {
    return [...pending.values()].sort(
      (a, b) => (Date.parse(a.createdAt) || 0) - (Date.parse(b.createdAt) || 0) || (a.seq ?? 0) - (b.seq ?? 0),
    );
  }

  function applySnapshot(message) {
    const data = message.data || {};
    const incoming = Array.isArray(data.orders) ? data.orders : [];
    const before = new Map(pending);
    pending.clear();
    for (const order of incoming) pending.set(String(order.orderId), order);
    seq = typeof message.seq === "number" ? message.seq : (data.seq ?? 0);
    resyncStage = 0;
    clearTimeout(resyncTimer);
    const initial = !everSynced;
    everSynced = true;
    const wasSynced = synced;
    synced = true;
    if (!wasSynced) liveSince = Date.now();
    status.lastSyncAt = Date.now();

    const added = [...pending.keys()].filter((id) => !before.has(id));
    const removed = [...before.keys()].filter((id) => !pending.has(id));
    const list = orders();
    emit("snapshot", { restaurantId: data.restaurantId ?? restaurantId, seq, orders: list, added, removed, initial });
    for (const id of removed) {
      emit("resolved", { orderId: id, restaurantId, outcome: "unknown", seq });
    }
    for (const [id, order] of pending) {
      const previous = before.get(id);
      if (previous && !previous.acknowledgedAt && order.acknowledgedAt) {
        emit("acknowledged", { orderId: id, restaurantId, acknowledgedAt: order.acknowledgedAt, seq });
      }
    }
    for (const id of added) announce(pending.get(id), { source: "snapshot", initial });
    emit("change", list);
    if (!wasSynced) {
      authRetried = false;
      redirected = false;
      setStatus({ state: "live", attempt: 0, error: null, nextRetryAt: null });
    }
    flushAcks();
  }

  function applyPush(message) {
    if (!synced || resyncStage > 0) return; // waiting for a snapshot that covers this push
    const next = message.seq;
    if (typeof next !== "number" || next <= seq) return; // duplicate or older than what we hold
    if (next !== seq + 1) {
      requestResync();
      return;
    }
    const data = message.data || {};
    const id = String(data.orderId);
    if (message.type === "NewOrder") {
      const known = pending.has(id);
      pending.set(id, data);
      seq = next;
      if (!known) announce(data, { source: "push", initial: false });
    } else if (message.type === "OrderAcknowledged") {
      seq = next;
      const order = pending.get(id);
      if (order) pending.set(id, { ...order, acknowledgedAt: data.acknowledgedAt });
      settleAck(id, true, data);
      emit("acknowledged", { ...data, orderId: id });
    } else {
      if (!pending.has(id)) {
        requestResync(); // we never saw this order pending: our list has drifted
        return;
      }
      seq = next;
      pending.delete(id);
      settleAck(id, true, null);
      const outcome = message.type === "OrderAccepted" ? "accepted" : "rejected";
      emit("resolved", { ...data, orderId: id, outcome });
    }
    status.lastSyncAt = Date.now();
    emit("change", orders());
  }

  function announce(order, meta) {
    emit("order", order, meta);
    if (opts.ackOnDisplay && !order.acknowledgedAt) {
      acknowledge(order.orderId).catch(() => {});
    }
  }

  function requestResync() {
    resyncStage = 1;
    send({ type: "resume", seq });
    clearTimeout(resyncTimer);
    const gen = generation;
    resyncTimer = setTimeout(() => {
      if (gen !== generation || resyncStage === 0) return;
      resyncStage = 2;
      send({ type: "getPendingOrders" });
      resyncTimer = setTimeout(() => {
        if (gen === generation && resyncStage > 0) abandon(gen, "no snapshot after a gap in seq");
      }, opts.resyncTimeoutMs);
    }, opts.resyncTimeoutMs);
  }

  // -- acknowledgements -----------------------------------------------------------------------

  function acknowledge(orderId) {
    const id = String(orderId);
    const order = pending.get(id);
    if (order && order.acknowledgedAt) {
      return Promise.resolve({ orderId: id, acknowledgedAt: order.acknowledgedAt });
    }
    return new Promise((resolve, reject) => {
      if (!ackWanted.has(id)) ackWanted.set(id, []);
      ackWanted.get(id).push({ resolve, reject });
      if (synced) sendAck(id);
    });
  }

  function sendAck(id) {
    if (ackSent.has(id)) return;
    const requestId = `ack-${++requestCounter}`;
    if (send({ type: "ack", orderId: id, id: requestId })) {
      ackSent.add(id);
      requests.set(requestId, id);
    }
  }

  function flushAcks() {
    for (const id of [...ackWanted.keys()]) {
      const order = pending.get(id);
      if (!order) settleAck(id, true, null); // no longer pending: nothing left to acknowledge
      else if (order.acknowledgedAt) settleAck(id, true, { orderId: id, acknowledgedAt: order.acknowledgedAt });
      else sendAck(id);
    }
  }

  function settleAck(id, ok, value) {
    const waiters = ackWanted.get(id);
    if (!waiters) return;
    ackWanted.delete(id);
    for (const waiter of waiters) {
      if (ok) waiter.resolve(value);
      else waiter.reject(value);
    }
  }

  function onReply(message) {
    const id = requests.get(String(message.id));
    if (id === undefined) return;
    requests.delete(String(message.id));
    if (message.error) settleAck(id, false, new Error(message.error));
    else settleAck(id, true, { orderId: id, acknowledgedAt: null });
  }

  // -- connection -----------------------------------------------------------------------------

  function send(message) {
    if (!socket || socket.readyState !== OPEN) return false;
    try {
      socket.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  function baseUrl() {
    const base = typeof globalThis.location?.href === "string" ? globalThis.location.href : undefined;
    return new URL(redirectUrl || opts.url, base);
  }

  function endpointUrl(token, scheme) {
    const url = baseUrl();
    const secure = url.protocol === "https:" || url.protocol === "wss:";
    url.protocol = scheme === "ws" ? (secure ? "wss:" : "ws:") : secure ? "https:" : "http:";
    url.searchParams.set("restaurantId", restaurantId);
    url.searchParams.set("access_token", token);
    return url.toString();
  }

  async function currentToken() {
    if (typeof opts.tokenProvider === "function") return String(await opts.tokenProvider());
    return String(opts.token);
  }

  function clearTimers() {
    clearTimeout(retryTimer);
    clearTimeout(connectTimer);
    clearTimeout(resyncTimer);
    clearInterval(pingTimer);
    clearInterval(watchdogTimer);
    retryTimer = connectTimer = resyncTimer = pingTimer = watchdogTimer = null;
  }

  async function connect() {
    const gen = ++generation;
    clearTimers();
    let token;
    try {
      token = await currentToken();
    } catch (err) {
      if (gen === generation && running) scheduleRetry({ message: `token provider failed: ${err?.message ?? err}` });
      return;
    }
    if (gen !== generation || !running) return;
    let ws;
    try {
      ws = new WebSocketImpl(endpointUrl(token, "ws"));
    } catch (err) {
      goOffline({ message: `cannot open a WebSocket to ${opts.url}: ${err?.message ?? err}` });
      return;
    }
    socket = ws;
    opened = false;
    synced = false;
    closeMessage = null;
    resyncStage = 0;
    ackSent.clear();
    requests.clear();
    connectTimer = setTimeout(() => abandon(gen, "connection timed out"), opts.connectTimeoutMs);
    ws.onopen = () => {
      if (gen !== generation) return;
      opened = true;
      clearTimeout(connectTimer);
      lastReceivedAt = Date.now();
      pingTimer = setInterval(() => send({ type: "ping" }), opts.pingIntervalMs);
      const check = Math.min(5_000, opts.serverTimeoutMs);
      watchdogTimer = setInterval(() => {
        if (Date.now() - lastReceivedAt > opts.serverTimeoutMs) abandon(gen, "server silent");
      }, check);
    };
    ws.onmessage = (event) => {
      if (gen !== generation) return;
      lastReceivedAt = Date.now();
      if (typeof event.data === "string") onFrame(event.data);
    };
    ws.onerror = () => {}; // a close event always follows
    ws.onclose = (event) => {
      if (gen !== generation) return;
      closed(gen, event.code, event.reason, token);
    };
  }

  function onFrame(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (!message || typeof message.type !== "string") return;
    if (message.type === "PendingOrders") applySnapshot(message);
    else if (PUSHES.includes(message.type)) applyPush(message);
    else if (message.type === "reply") onReply(message);
    else if (message.type === "close") closeMessage = message;
    if (synced) status.lastSyncAt = Date.now(); // a ping or reply also proves we are still in sync
  }

  /** Drop the current socket without waiting for its close handshake, then reconnect. */
  function abandon(gen, reason) {
    if (gen !== generation || !socket) return;
    const ws = socket;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(1000, "client reconnecting");
    } catch {
      // already closing
    }
    closed(gen, 0, reason, null);
  }

  function closed(gen, code, reason, token) {
    const wasOpened = opened;
    const wasSynced = synced;
    const liveFor = wasSynced ? Date.now() - liveSince : 0;
    const farewell = closeMessage;
    socket = null;
    opened = synced = false;
    clearTimers();
    requests.clear();
    if (!running) return;
    const terminal = isTerminalCloseCode(code) || (farewell && farewell.reconnect === false);
    const error = { message: farewell?.reason || reason || (wasOpened ? "connection lost" : "could not connect") };
    if (farewell?.code || code) error.code = farewell?.code || code;
    if (terminal) {
      goOffline(error);
      return;
    }
    if (wasSynced && liveFor >= opts.stableAfterMs) attempt = 0;
    if (!wasOpened && token !== null) {
      diagnose(gen, token, error);
      return;
    }
    scheduleRetry(error);
  }

  /** A WebSocket hides why an upgrade was refused: ask the same URL over plain HTTP. */
  async function diagnose(gen, token, fallback) {
    if (!fetchImpl) {
      scheduleRetry(fallback);
      return;
    }
    const usedRedirect = redirectUrl !== null;
    let response;
    let body = {};
    try {
      response = await fetchImpl(endpointUrl(token, "http"), { method: "GET", cache: "no-store", credentials: "omit" });
      body = await response.json().catch(() => ({}));
    } catch {
      if (gen !== generation || !running) return;
      if (usedRedirect) redirectUrl = null;
      scheduleRetry({ message: "server unreachable" });
      return;
    }
    if (gen !== generation || !running) return;
    const httpStatus = response.status;
    const message = typeof body?.error === "string" ? body.error : `HTTP ${httpStatus}`;
    if (httpStatus === 401 || httpStatus === 403) {
      if (httpStatus === 401 && typeof opts.tokenProvider === "function" && !authRetried) {
        authRetried = true; // maybe the provider hands out a fresh token next time
        scheduleRetry({ message, httpStatus }, { immediate: true });
      } else {
        goOffline({ message, httpStatus });
      }
      return;
    }
    if (httpStatus === 400 && /restaurantId/i.test(message)) {
      goOffline({ message, httpStatus });
      return;
    }
    if (httpStatus === 421 && typeof body?.owner === "string") {
      redirectUrl = new URL(baseUrl().pathname, body.owner).toString();
      const immediate = !redirected; // follow the first redirect at once, back off if they chain
      redirected = true;
      scheduleRetry({ message: `restaurant is served by ${body.owner}`, httpStatus }, { immediate });
      return;
    }
    if (usedRedirect) redirectUrl = null; // the owner we were sent to did not take us: start over
    const retryAfter = Number(response.headers?.get?.("Retry-After"));
    const minDelayMs = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0;
    scheduleRetry({ message: httpStatus === 400 ? fallback.message : message, httpStatus }, { minDelayMs });
  }

  function scheduleRetry(error, { immediate = false, minDelayMs = 0 } = {}) {
    if (!running) return;
    clearTimers();
    const delay = immediate ? 0 : Math.max(minDelayMs, backoffDelay(attempt, opts.backoffBaseMs, opts.backoffCapMs, random));
    attempt += 1;
    setStatus({ state: "reconnecting", attempt, error, nextRetryAt: Date.now() + delay });
    retryTimer = setTimeout(connect, delay);
  }

  function goOffline(error) {
    running = false;
    generation++;
    clearTimers();
    closeSocket();
    for (const id of [...ackWanted.keys()]) settleAck(id, false, new Error(error?.message || "client stopped"));
    setStatus({ state: "offline", error, nextRetryAt: null });
  }

  function closeSocket() {
    const ws = socket;
    socket = null;
    opened = synced = false;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      if (ws.readyState === OPEN) ws.send(JSON.stringify({ type: "close" }));
      ws.close(1000, "client stopped");
    } catch {
      // already closed
    }
  }

  // -- public API -----------------------------------------------------------------------------

  function start() {
    if (running) return client;
    running = true;
    attempt = 0;
    authRetried = false;
    redirected = false;
    redirectUrl = null;
    setStatus({ state: "connecting", attempt: 0, error: null, nextRetryAt: null });
    connect();
    return client;
  }

  function stop() {
    if (!running && status.state === "offline") return client;
    goOffline(null);
    return client;
  }

  const client = Object.freeze({
    start,
    stop,
    acknowledge,
    orders,
    on,
    off,
    /** The current status object (same shape as the "status" event). */
    status: () => ({ ...status, error: status.error ? { ...status.error } : null }),
    /** The seq of the state orders() reflects (null before the first snapshot). */
    seq: () => seq,
  });
  return client;
}
