// Interop: matrix-js-sdk (a real client library, not ours) reads spaces from the real Trestle
// binary: MatrixClient.getRoomHierarchy (limit, max depth, suggested only, paging with the
// returned token), getRoomSummary (MSC3266's unstable im.nheko.summary path, which the SDK calls)
// and the stable /v1/mutual_rooms through the SDK's authedRequest.
//
//   cd tests/interop && TRESTLE_BINARY=$PWD/../../build/trestle node --test --test-force-exit js_spaces.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle, tail } from "./trestle_process.mjs";

import { createClient, ClientPrefix, Method } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000;
const TEST_TIMEOUT_MS = 60_000;

logger.setLevel("warn");

let server;

before(async () => {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-spaces-", timeoutMs: STEP_TIMEOUT_MS,
                              hold: (s) => { server = s; } });
});

after(async () => {
  if (server) await stopTrestle(server);
});

// Registers through the m.login.dummy UIA flow and returns a logged-in client.
async function register(username) {
  const anon = createClient({ baseUrl: server.baseUrl });
  let session;
  try {
    await anon.registerRequest({ username, password: "interop-pass-1" });
  } catch (err) {
    assert.equal(err.httpStatus, 401, `register: ${err}`);
    session = err.data.session;
  }
  const res = await anon.registerRequest({ username, password: "interop-pass-1",
                                           auth: { type: "m.login.dummy", session } });
  return createClient({ baseUrl: server.baseUrl, userId: res.user_id, accessToken: res.access_token,
                        deviceId: res.device_id });
}

function failWithLog(err) {
  if (server?.logPath) err.message += `\n--- server log tail ---\n${tail(server.logPath)}`;
  throw err;
}

test("matrix-js-sdk walks a space, reads room summaries and mutual rooms", { timeout: TEST_TIMEOUT_MS }, async () => {
  try {
    const alice = await register("spacealice");
    const bob = await register("spacebob");

    const { room_id: space } = await alice.createRoom({ preset: "public_chat", name: "Team",
                                                        creation_content: { type: "m.space" } });
    const { room_id: general } = await alice.createRoom({ preset: "public_chat", name: "General",
                                                          room_alias_name: "spaces-general" });
    const { room_id: secret } = await alice.createRoom({ preset: "private_chat", name: "Secret" });
    const { room_id: sub } = await alice.createRoom({ preset: "public_chat", name: "Sub",
                                                      creation_content: { type: "m.space" } });
    const { room_id: deep } = await alice.createRoom({ preset: "public_chat", name: "Deep" });
    await alice.sendStateEvent(space, "m.space.child", { via: ["localhost"], order: "1", suggested: true }, general);
    await alice.sendStateEvent(space, "m.space.child", { via: ["localhost"], order: "2" }, secret);
    await alice.sendStateEvent(space, "m.space.child", { via: ["localhost"], order: "3" }, sub);
    await alice.sendStateEvent(sub, "m.space.child", { via: ["localhost"] }, deep);
    await alice.sendStateEvent(sub, "m.space.child", { via: ["localhost"] }, space);  // a loop

    // The whole tree, as bob (not in the private room) sees it.
    const all = await bob.getRoomHierarchy(space);
    assert.deepEqual(all.rooms.map((r) => r.room_id), [space, general, sub, deep]);
    assert.equal(all.next_batch, undefined);
    const top = all.rooms[0];
    assert.equal(top.room_type, "m.space");
    assert.equal(top.name, "Team");
    assert.equal(top.children_state.length, 3);
    assert.ok(top.children_state.every((e) => e.type === "m.space.child" && typeof e.origin_server_ts === "number"));
    assert.equal(all.rooms[1].name, "General");
    assert.equal(all.rooms[1].canonical_alias, "#spaces-general:localhost");

    // alice, a member of the private room, sees it.
    const mine = await alice.getRoomHierarchy(space);
    assert.deepEqual(mine.rooms.map((r) => r.room_id), [space, general, secret, sub, deep]);

    // Max depth and suggested only.
    const shallow = await bob.getRoomHierarchy(space, undefined, 1);
    assert.deepEqual(shallow.rooms.map((r) => r.room_id), [space, general, sub]);
    const suggested = await bob.getRoomHierarchy(space, undefined, undefined, true);
    assert.deepEqual(suggested.rooms.map((r) => r.room_id), [space, general]);

    // Paging two rooms at a time with the SDK's fromToken.
    const seen = [];
    let token;
    for (let i = 0; i < 5; i++) {
      const page = await bob.getRoomHierarchy(space, 2, undefined, false, token);
      assert.ok(page.rooms.length <= 2);
      seen.push(...page.rooms.map((r) => r.room_id));
      token = page.next_batch;
      if (!token) break;
    }
    assert.equal(token, undefined, "paging ends");
    assert.deepEqual(seen, [space, general, sub, deep]);

    // A changed max depth with a token is refused.
    const first = await bob.getRoomHierarchy(space, 1);
    await assert.rejects(bob.getRoomHierarchy(space, 1, 3, false, first.next_batch),
                         (e) => e.httpStatus === 400 && e.errcode === "M_INVALID_PARAM");
    // A private root is refused.
    await assert.rejects(bob.getRoomHierarchy(secret), (e) => e.httpStatus === 403 && e.errcode === "M_FORBIDDEN");

    // Room summaries (the SDK calls MSC3266's unstable path), by alias and by ID.
    const summary = await bob.getRoomSummary("#spaces-general:localhost");
    assert.equal(summary.room_id, general);
    assert.equal(summary.name, "General");
    assert.equal(summary.join_rule, "public");
    assert.equal(summary.membership, "leave");
    await assert.rejects(bob.getRoomSummary(secret), (e) => e.httpStatus === 404 && e.errcode === "M_NOT_FOUND");
    const stable = await bob.http.authedRequest(Method.Get, `/room_summary/${encodeURIComponent(space)}`, undefined,
                                                undefined, { prefix: ClientPrefix.V1 });
    assert.equal(stable.room_type, "m.space");

    // Mutual rooms.
    await bob.joinRoom(general);
    await bob.joinRoom(space);
    const mutual = await bob.http.authedRequest(Method.Get, "/mutual_rooms", { user_id: alice.getUserId() },
                                                undefined, { prefix: ClientPrefix.V1 });
    assert.deepEqual([...mutual.joined].sort(), [general, space].sort());
    assert.equal(mutual.count, 2);
    assert.equal(mutual.next_batch, undefined);
  } catch (err) {
    failWithLog(err);
  }
});
