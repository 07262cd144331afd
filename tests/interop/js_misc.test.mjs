// Interop: matrix-js-sdk's reportEvent, reportRoom and timestampToEvent against the real Trestle
// binary (spec report_content.yaml, room_event_by_timestamp.yaml).
//
//   TRESTLE_BINARY=/path/to/trestle node --test --test-force-exit js_misc.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle, tail } from "./trestle_process.mjs";
import { createClient, Direction } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const TIMEOUT_MS = 20_000;

logger.setLevel("error");

let server;

before(async () => {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-misc-", timeoutMs: TIMEOUT_MS,
                              hold: (s) => { server = s; } });
});

after(async () => {
  if (server) await stopTrestle(server);
});

async function register(name) {
  const c = createClient({ baseUrl: server.baseUrl });
  const username = `${name}${Date.now()}${Math.floor(Math.random() * 1e6)}`;
  let session;
  try {
    await c.registerRequest({ username, password: "pw-" + username });
  } catch (err) {
    session = err.data?.session;
  }
  const res = await c.registerRequest({ username, password: "pw-" + username,
                                        auth: { type: "m.login.dummy", session } });
  return createClient({ baseUrl: server.baseUrl, userId: res.user_id, accessToken: res.access_token,
                        deviceId: res.device_id });
}

test("report an event and a room, find events by timestamp", { timeout: 60_000 }, async (t) => {
  try {
    const alice = await register("alice");
    const bob = await register("bob");
    const { room_id: roomId } = await alice.createRoom({ preset: "public_chat" });
    await bob.joinRoom(roomId);
    const before = Date.now() - 1;
    const { event_id: spam } = await alice.sendMessage(roomId, { msgtype: "m.text", body: "spam" });

    assert.deepEqual(await bob.reportEvent(roomId, spam, -100, "this makes me sad"), {});
    await assert.rejects(bob.reportEvent(roomId, "$nope", -100, "x"),
                         (err) => err.httpStatus === 404 && err.errcode === "M_NOT_FOUND");
    assert.deepEqual(await bob.reportRoom(roomId, "bad room"), {});

    const found = await bob.timestampToEvent(roomId, before, Direction.Forward);
    assert.ok(typeof found.event_id === "string" && typeof found.origin_server_ts === "number", JSON.stringify(found));
    assert.ok(found.origin_server_ts >= before, JSON.stringify(found));
    const last = await bob.timestampToEvent(roomId, Date.now() + 60_000, Direction.Backward);
    assert.equal(last.event_id, spam);
    await assert.rejects(bob.timestampToEvent(roomId, 1, Direction.Backward),
                         (err) => err.httpStatus === 404 && err.errcode === "M_NOT_FOUND");
  } catch (err) {
    t.diagnostic(tail(server.logPath));
    throw err;
  }
});
