// matrix-js-sdk clients with Rust crypto, shared by the end-to-end encryption interop suites:
// register, log in and start syncing, wait for a condition, read a decrypted event.
import assert from "node:assert/strict";

import { createClient, ClientEvent, SyncState } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

// Keeps the SDK's (very chatty) console logging out of the output unless SDK_LOG is set; returns
// the ring of its last 300 lines, to attach to a failure.
export function captureSdkLog() {
  const sdkLog = [];
  if (!process.env.SDK_LOG) {
    for (const level of ["log", "trace", "debug", "info", "warn", "error"]) {
      console[level] = (...args) => {
        sdkLog.push(`[${level}] ${args.map((a) => (typeof a === "string" ? a : String(a))).join(" ")}`);
        if (sdkLog.length > 300) sdkLog.shift();
      };
    }
  }
  logger.setLevel("debug");
  return sdkLog;
}

// Resolves with the first truthy value of `check()`, re-checked when one of `events` fires on
// `emitter` (none when null) and every 100 ms; rejects after `ms` naming `what` (string or function).
export function waitFor(what, emitter, events, check, ms) {
  return new Promise((resolve, reject) => {
    let done = false;
    let busy = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      if (emitter) for (const e of events) emitter.off(e, attempt);
      fn(v);
    };
    const attempt = async () => {
      if (busy || done) return;
      busy = true;
      try {
        const v = await check();
        if (v) finish(resolve, v);
      } catch (err) {
        finish(reject, err);
      } finally {
        busy = false;
      }
    };
    const timer = setTimeout(async () => finish(reject, new Error(
      `timed out after ${ms} ms waiting for: ${typeof what === "function" ? await what() : what}`)), ms);
    const poll = setInterval(attempt, 100);
    if (emitter) for (const e of events) emitter.on(e, attempt);
    attempt();
  });
}

// Registers through user-interactive auth (a first 401, then m.login.dummy with its session).
export async function register(baseUrl, username, password) {
  const c = createClient({ baseUrl });
  let session;
  try {
    await c.registerRequest({ username, password });
    assert.fail("register without auth must be answered 401");
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    assert.equal(err.httpStatus, 401, `register: ${err}`);
    session = err.data.session;
  }
  await c.registerRequest({ username, password, auth: { type: "m.login.dummy", session } });
}

// Logs in with a password, starts Rust crypto (in-memory store: Node has no IndexedDB) and sync,
// and waits for the first sync. `clientOptions` go to createClient (e.g. cryptoCallbacks); the
// client is pushed onto `clients` at once, so the caller can stop it even if start-up fails.
export async function loginE2ee(baseUrl, username, password, clients, timeoutMs, clientOptions = {}) {
  const anon = createClient({ baseUrl });
  const res = await anon.loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user: username }, password,
    initial_device_display_name: `e2ee-${username}`,
  });
  const client = createClient({
    baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id, ...clientOptions,
  });
  clients.push(client);
  await client.initRustCrypto({ useIndexedDB: false });
  const prepared = waitFor(`${username} first sync`, client, [ClientEvent.Sync], () => {
    const state = client.getSyncState();
    if (state === SyncState.Error) throw new Error(`${username} sync error`);
    return state === SyncState.Prepared || state === SyncState.Syncing;
  }, timeoutMs);
  await client.startClient({ initialSyncLimit: 20 });
  await prepared;
  return client;
}

// The decrypted body of `eventId` as `client` sees it in `roomId`, or null while it cannot yet.
export function clearBody(client, roomId, eventId) {
  const ev = client.getRoom(roomId)?.findEventById(eventId);
  if (!ev || ev.isBeingDecrypted() || ev.isDecryptionFailure() || !ev.isEncrypted()) return null;
  return ev.getClearContent()?.body ?? null;
}

export function describeEvent(client, roomId, eventId) {
  const ev = client.getRoom(roomId)?.findEventById(eventId);
  if (!ev) return "not on the timeline";
  return `type ${ev.getWireType()}, failure ${ev.isDecryptionFailure()} (${ev.decryptionFailureReason}), `
    + `content ${JSON.stringify(ev.getContent()).slice(0, 120)}`;
}
