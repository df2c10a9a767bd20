// Long-running SignalR test client driven by the Python test suite
// (tests/support/signalr_node.py). Uses the real @microsoft/signalr client.
//
// Usage: node signalr-client.mjs '{"url":"http://127.0.0.1:PORT/partnerhub",
//          "restaurantId":"r1","token":"...","skipNegotiation":false,
//          "serverTimeoutMs":30000,"keepAliveMs":15000}'
//
// Optional config (a tablet that renews its token and never gives up):
//   "mintToken": {"secret":"...","ttlSeconds":3,"sub":"tablet:r1"}
//       accessTokenFactory mints a FRESH HS256 JWT on every call (claims restaurantId, sub,
//       iat, exp = now + ttlSeconds) instead of returning the fixed "token"; every mint is
//       reported as {"event":"tokenMinted","count":n,"exp":...}. Note that the client calls the
//       factory twice per connect (negotiate, then the WebSocket) unless skipNegotiation.
//   "retryForever": {"baseMs":1000,"maxMs":5000}  (or true for these defaults)
//       withAutomaticReconnect(policy) where policy returns min(baseMs * 2^n, maxMs) and never
//       null; each call is reported as {"event":"retry","previousRetryCount":n,
//       "elapsedMs":...,"reason":"...","delayMs":...}. Without it: withAutomaticReconnect().
//
// stdout: one JSON object per line (events, results). Logging goes to stderr.
// stdin:  one JSON command per line:
//   {"cmd":"invoke","id":"x","method":"GetPendingOrders","args":[]}
//   {"cmd":"send","method":"...","args":[...]}
//   {"cmd":"stop"}
// Closing stdin stops the connection and exits 0.
import * as signalR from "@microsoft/signalr";
import { createHmac } from "node:crypto";
import readline from "node:readline";

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function emitAndExit(obj, code) {
    process.stdout.write(JSON.stringify(obj) + "\n", () => process.exit(code));
}

function errText(err) {
    if (err === undefined || err === null) return null;
    if (err instanceof Error) return err.message || String(err);
    return String(err);
}

// Logger for configureLogging: Warning and above, always to stderr.
const stderrLogger = {
    log(level, message) {
        if (level >= signalR.LogLevel.Warning && level !== signalR.LogLevel.None) {
            process.stderr.write(`[${new Date().toISOString()}] ${signalR.LogLevel[level]}: ${message}\n`);
        }
    },
};

let config;
try {
    config = JSON.parse(process.argv[2] ?? "");
    if (!config || typeof config.url !== "string") throw new Error("config.url (string) is required");
} catch (err) {
    emitAndExit({ event: "startFailed", error: `bad config: ${errText(err)}` }, 2);
    await new Promise(() => {}); // wait for exit
}

const { url, restaurantId, token } = config;

function displayNewOrder(order) {
    emit({ event: "NewOrder", args: [order] });
}

function base64url(obj) {
    return Buffer.from(JSON.stringify(obj)).toString("base64url");
}

// HS256 JWT, as the backend would issue it (no npm package: node:crypto only).
function mintJwt(secret, claims) {
    const signingInput = `${base64url({ alg: "HS256", typ: "JWT" })}.${base64url(claims)}`;
    const signature = createHmac("sha256", secret).update(signingInput).digest("base64url");
    return `${signingInput}.${signature}`;
}

let tokensMinted = 0;
let accessTokenFactory = () => token;
if (config.mintToken) {
    const { secret, ttlSeconds = 3, sub = `tablet:${restaurantId}` } = config.mintToken;
    accessTokenFactory = () => {
        const now = Math.floor(Date.now() / 1000);
        const exp = now + Number(ttlSeconds);
        tokensMinted += 1;
        emit({ event: "tokenMinted", count: tokensMinted, exp });
        return mintJwt(secret, { restaurantId, sub, iat: now, exp });
    };
}

// Retry forever with capped exponential back-off: never returns null, so the client never
// gives up reconnecting (the default policy stops after 0, 2, 10, 30 s).
function retryForeverPolicy({ baseMs = 1000, maxMs = 5000 } = {}) {
    return {
        nextRetryDelayInMilliseconds(ctx) {
            const delayMs = Math.min(baseMs * 2 ** Math.min(ctx.previousRetryCount, 30), maxMs);
            emit({
                event: "retry",
                previousRetryCount: ctx.previousRetryCount,
                elapsedMs: ctx.elapsedMilliseconds,
                reason: errText(ctx.retryReason),
                delayMs,
            });
            return delayMs;
        },
    };
}

const httpOptions = { accessTokenFactory };
if (config.skipNegotiation) {
    httpOptions.skipNegotiation = true;
    httpOptions.transport = signalR.HttpTransportType.WebSockets;
}
let builder = new signalR.HubConnectionBuilder().withUrl(`${url}?restaurantId=${restaurantId}`, httpOptions);
if (config.retryForever) {
    builder = builder.withAutomaticReconnect(retryForeverPolicy(config.retryForever === true ? {} : config.retryForever));
} else {
    builder = builder.withAutomaticReconnect();
}
const connection = builder.configureLogging(stderrLogger).build();
if (config.serverTimeoutMs !== undefined && config.serverTimeoutMs !== null) {
    connection.serverTimeoutInMilliseconds = Number(config.serverTimeoutMs);
}
if (config.keepAliveMs !== undefined && config.keepAliveMs !== null) {
    connection.keepAliveIntervalInMilliseconds = Number(config.keepAliveMs);
}

connection.on("NewOrder", (order) => displayNewOrder(order));
for (const name of ["PendingOrders", "OrderAccepted", "OrderRejected", "OrderAcknowledged"]) {
    connection.on(name, (...args) => emit({ event: name, args }));
}
connection.onreconnecting((error) => emit({ event: "reconnecting", error: errText(error) }));
connection.onreconnected((connectionId) => emit({ event: "reconnected", connectionId: connectionId ?? null }));
connection.onclose((error) => emit({ event: "closed", error: errText(error) }));

let stopping = false;

async function stopAndExit() {
    if (stopping) return;
    stopping = true;
    try {
        await started;
    } catch {
        // start failure is handled (exit 2) below
        return;
    }
    try {
        await connection.stop();
    } catch (err) {
        process.stderr.write(`stop failed: ${errText(err)}\n`);
    }
    emitAndExit({ event: "stopped" }, 0);
}

async function handleCommand(line) {
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (err) {
        emit({ event: "error", id: null, error: `bad command: ${errText(err)}` });
        return;
    }
    const id = cmd.id ?? null;
    try {
        await started;
    } catch {
        return;
    }
    const args = Array.isArray(cmd.args) ? cmd.args : [];
    switch (cmd.cmd) {
        case "invoke":
            try {
                const result = await connection.invoke(cmd.method, ...args);
                emit({ event: "result", id, result: result === undefined ? null : result });
            } catch (err) {
                emit({ event: "error", id, error: errText(err) });
            }
            break;
        case "send":
            try {
                await connection.send(cmd.method, ...args);
                if (id !== null) emit({ event: "sent", id });
            } catch (err) {
                emit({ event: "error", id, error: errText(err) });
            }
            break;
        case "stop":
            await stopAndExit();
            break;
        default:
            emit({ event: "error", id, error: `unknown cmd: ${cmd.cmd}` });
    }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
    if (line.trim() === "") return;
    handleCommand(line).catch((err) => emit({ event: "error", id: null, error: errText(err) }));
});
rl.on("close", () => {
    stopAndExit().catch((err) => process.stderr.write(`stop on stdin close failed: ${errText(err)}\n`));
});

process.on("unhandledRejection", (err) => {
    process.stderr.write(`unhandledRejection: ${errText(err)}\n`);
});

const started = connection.start();
started.then(
    () => emit({ event: "started", connectionId: connection.connectionId ?? null }),
    (err) => emitAndExit({ event: "startFailed", error: errText(err) }, 2),
);
