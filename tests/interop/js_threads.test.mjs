// Interop: matrix-js-sdk's thread and edit models over the real Trestle binary. Alice sends a
// thread root, two thread replies and an edit of the first reply; a second client of hers starts
// with threadSupport and must build its Thread model from the server (GET /threads, the bundled
// m.thread aggregation, /relations) and show the edit through the bundled m.replace.
//
//   cd tests/interop && TRESTLE_BINARY=$PWD/../../build/trestle node --test --test-force-exit js_threads.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle, tail } from "./trestle_process.mjs";
import { captureConsole } from "./js_support.mjs";

import { createClient, ClientEvent, SyncState, THREAD_RELATION_TYPE } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000;

// Keep the SDK's console logging out of the output (SDK_LOG=1 lets it through).
const sdkLog = captureConsole();
logger.setLevel("warn");

let server;
before(async () => {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-threads-", timeoutMs: STEP_TIMEOUT_MS,
                              hold: (s) => { server = s; } });
});
after(async () => {
  if (server) await stopTrestle(server);
});

// Polls `check` every 50 ms until it returns something truthy.
async function until(what, check, ms = STEP_TIMEOUT_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${typeof what === "function" ? what() : what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function register(baseUrl, username, password) {
  const c = createClient({ baseUrl });
  let session;
  try {
    await c.registerRequest({ username, password });
  } catch (err) {
    session = err.data?.session;
  }
  const res = await c.registerRequest({ username, password, auth: { type: "m.login.dummy", session } });
  return createClient({ baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id });
}

async function login(baseUrl, username, password) {
  const anon = createClient({ baseUrl });
  const res = await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: username },
                                        password });
  return createClient({ baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id,
                        threadSupport: true });
}

test("matrix-js-sdk: Thread model, client.relations and edits from server-side aggregations",
  { timeout: 90_000 }, async () => {
    const { baseUrl } = server;
    let reader;
    try {
      const alice = await register(baseUrl, "alice", "alice-password-1");
      const { room_id: roomId } = await alice.createRoom({ name: "Threads", preset: "private_chat" });
      const { event_id: rootId } = await alice.sendEvent(roomId, "m.room.message", { msgtype: "m.text", body: "root" });
      const inThread = (body) => ({
        msgtype: "m.text", body,
        "m.relates_to": { rel_type: THREAD_RELATION_TYPE.name, event_id: rootId, is_falling_back: true,
                          "m.in_reply_to": { event_id: rootId } },
      });
      const { event_id: reply1 } = await alice.sendEvent(roomId, "m.room.message", inThread("first reply"));
      const { event_id: reply2 } = await alice.sendEvent(roomId, "m.room.message", inThread("second reply"));
      const { event_id: editId } = await alice.sendEvent(roomId, "m.room.message", {
        msgtype: "m.text", body: "* first reply, edited",
        "m.new_content": { msgtype: "m.text", body: "first reply, edited" },
        "m.relates_to": { rel_type: "m.replace", event_id: reply1 },
      });

      // A second device of alice's, with thread support, learns it all from the server.
      reader = await login(baseUrl, "alice", "alice-password-1");
      const prepared = new Promise((resolve, reject) => {
        reader.on(ClientEvent.Sync, (state) => {
          if (state === SyncState.Prepared || state === SyncState.Syncing) resolve();
          if (state === SyncState.Error) reject(new Error("sync error"));
        });
      });
      await reader.startClient({ initialSyncLimit: 2, threadSupport: true });
      await prepared;
      assert.ok(reader.supportsThreads(), "the client runs with thread support");
      const room = await until("the room reaches the reader", () => reader.getRoom(roomId));
      await room.fetchRoomThreads();

      const thread = await until(
        () => `a thread for the root (threads: ${room.getThreads().map((t) => t.id).join(",")})`,
        () => room.getThread(rootId));
      assert.deepEqual(room.getThreads().map((t) => t.id), [rootId], "getThreads() lists the one thread");
      await until(() => `thread.length 2 (is ${thread.length})`, () => thread.length === 2);
      await until(() => `thread.replyToEvent is the second reply (is ${thread.replyToEvent?.getId()})`,
        () => thread.replyToEvent?.getId() === reply2);
      assert.equal(thread.rootEvent?.getId(), rootId);

      // client.relations: the thread's replies from GET /relations/{root}/m.thread.
      const rel = await reader.relations(roomId, rootId, THREAD_RELATION_TYPE.name);
      assert.equal(rel.originalEvent?.getId(), rootId);
      assert.deepEqual(rel.events.map((e) => e.getId()).sort(), [reply1, reply2].sort(),
        "relations() returns both replies");
      // The first reply carries its edit as a bundled m.replace: the SDK applies it.
      const first = rel.events.find((e) => e.getId() === reply1);
      assert.equal(first.replacingEvent()?.getId(), editId, "replacingEvent() is the edit");
      assert.equal(first.getContent().body, "first reply, edited");
      assert.equal(first.getOriginalContent().body, "first reply", "the server left the original content intact");

      // The edits themselves, through client.relations with m.replace.
      const edits = await reader.relations(roomId, reply1, "m.replace");
      assert.deepEqual(edits.events.map((e) => e.getId()), [editId]);
    } catch (err) {
      if (server) err.message += `\n--- server log tail ---\n${tail(server.logPath)}`;
      err.message += `\n--- sdk log tail ---\n${sdkLog.slice(-30).join("\n")}`;
      throw err;
    } finally {
      reader?.stopClient();
    }
  });
