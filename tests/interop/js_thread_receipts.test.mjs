// Interop: matrix-js-sdk with threadSupport reads a thread. Bob posts a thread root and replies;
// Alice's client (startClient with threadSupport: true, so its sync filter asks for unread_thread_notifications
// and its receipts carry thread_id) shows the thread's unread count from the server's
// per-thread counts, sends a read receipt on the last reply (the SDK adds thread_id: the root),
// and the server then counts that thread as read while the main timeline stays unread.
//
//   cd tests/interop && TRESTLE_BINARY=$PWD/../../build/trestle node --test --test-force-exit js_thread_receipts.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle, tail } from "./trestle_process.mjs";
import { captureConsole, waitFor } from "./js_support.mjs";

import { createClient, ClientEvent, RoomEvent, SyncState, NotificationCountType, THREAD_RELATION_TYPE } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000;
const TEST_TIMEOUT_MS = 90_000;

// Keep the SDK's console logging out of the output; its tail goes with a failure.
const sdkLog = captureConsole();
logger.setLevel("debug");

let server;
before(async () => {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-threadrx-", timeoutMs: STEP_TIMEOUT_MS,
                              hold: (s) => { server = s; } });
});
after(async () => {
  if (server) await stopTrestle(server);
});

async function api(baseUrl, method, p, token, body) {
  const res = await fetch(`${baseUrl}/_matrix/client/v3${p}`, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function register(baseUrl, username) {
  const body = { username, password: `${username}-password-1`, auth: { type: "m.login.dummy" } };
  return api(baseUrl, "POST", "/register", null, body);
}

// The SDK with thread support also fetches a thread's relations (/relations, /threads): helper
// "relations" builds those endpoints in parallel. Until they are there, an M_UNRECOGNIZED answer
// to them becomes an empty page, so this test needs only what it tests; once the endpoints
// answer, the real answers pass through untouched.
async function fetchWithRelationsFallback(url, init) {
  const res = await fetch(url, init);
  const u = String(url);
  if (res.status === 404 && (/\/relations\//.test(u) || /\/threads(\?|$)/.test(u))) {
    const body = await res.clone().json().catch(() => ({}));
    if (body.errcode === "M_UNRECOGNIZED") {
      return new Response(JSON.stringify({ chunk: [] }), { status: 200, headers: { "Content-Type": "application/json" } });
    }
  }
  return res;
}

let txn = 0;
async function send(baseUrl, token, roomId, content) {
  const r = await api(baseUrl, "PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${++txn}`, token, content);
  return r.event_id;
}

test("matrix-js-sdk: a threaded read receipt clears that thread's unread count only",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl } = server;
    const a = await register(baseUrl, "alice");
    const b = await register(baseUrl, "bob");
    const { room_id: roomId } = await api(baseUrl, "POST", "/createRoom", a.access_token, { preset: "public_chat" });
    await api(baseUrl, "POST", `/join/${encodeURIComponent(roomId)}`, b.access_token, {});

    const alice = createClient({ baseUrl, userId: a.user_id, accessToken: a.access_token, deviceId: a.device_id,
                                 fetchFn: fetchWithRelationsFallback });
    try {
      const prepared = waitFor("alice's first sync", alice, [ClientEvent.Sync], () => {
        if (alice.getSyncState() === SyncState.Error) throw new Error("alice sync error");
        return alice.isInitialSyncComplete();
      });
      await alice.startClient({ initialSyncLimit: 20, threadSupport: true });
      await prepared;
      assert.ok(alice.supportsThreads(), "the client runs with thread support");

      // Bob: a root in the main timeline and two replies in its thread.
      const rootId = await send(baseUrl, b.access_token, roomId, { msgtype: "m.text", body: "thread root" });
      const reply = (body) => ({ msgtype: "m.text", body,
        "m.relates_to": { rel_type: THREAD_RELATION_TYPE.name, event_id: rootId, is_falling_back: true,
                          "m.in_reply_to": { event_id: rootId } } });
      await send(baseUrl, b.access_token, roomId, reply("first reply"));
      const lastReplyId = await send(baseUrl, b.access_token, roomId, reply("second reply"));

      const room = await waitFor("alice's client has the room", alice, [ClientEvent.Room], () => alice.getRoom(roomId));
      const counts = () => `thread ${room.getThreadUnreadNotificationCount(rootId, NotificationCountType.Total)}, ` +
        `main ${room.getRoomUnreadNotificationCount(NotificationCountType.Total)}`;
      await waitFor(() => `per-thread counts from the server (have ${counts()})`, alice, [ClientEvent.Sync],
        () => counts() === "thread 2, main 1");

      // Alice reads the thread: the SDK's receipt on a thread reply names the thread.
      const lastReply = await waitFor("alice's client has the last reply", alice, [ClientEvent.Sync, RoomEvent.Timeline],
        () => room.findEventById(lastReplyId));
      assert.equal(lastReply.threadRootId, rootId, "the SDK puts the reply in the root's thread");
      await alice.sendReadReceipt(lastReply);

      // A new message in the main timeline brings the room into the next sync with the server's
      // counts: the thread is read, the main timeline is not.
      const laterId = await send(baseUrl, b.access_token, roomId, { msgtype: "m.text", body: "later in main" });
      await waitFor(() => `the thread read, main unread (have ${counts()})`, alice, [ClientEvent.Sync],
        () => room.findEventById(laterId) && counts() === "thread 0, main 2");

      // The receipt went out threaded: the server shows it with the root as thread_id.
      const sync = await api(baseUrl, "GET", "/sync?timeout=0", a.access_token);
      const receipts = sync.rooms.join[roomId].ephemeral.events.filter((e) => e.type === "m.receipt");
      const mine = receipts.map((e) => e.content[lastReplyId]?.["m.read"]?.[a.user_id]).find(Boolean);
      assert.equal(mine?.thread_id, rootId, `receipt in sync: ${JSON.stringify(receipts)}`);

      // A new reply in the thread counts again, from the receipt on.
      await send(baseUrl, b.access_token, roomId, reply("third reply"));
      await waitFor(() => `one unread reply after the receipt (have ${counts()})`, alice, [ClientEvent.Sync],
        () => counts() === "thread 1, main 2");
    } catch (err) {
      err.message += `\n--- server log ---\n${tail(server.logPath)}\n--- sdk log ---\n${sdkLog.slice(-40).join("\n")}`;
      throw err;
    } finally {
      alice.stopClient();
    }
  });
