// Interop: knocking with matrix-js-sdk (a real client library, not ours) against the real Trestle
// binary. Bob knocks with client.knockRoom on Alice's room (join rule "knock"); his sync shows the
// room with membership "knock" and the stripped state of knock_state (its name); Alice sees the
// knock as a member event and accepts it with client.invite; Bob's sync turns it into an invite,
// he joins, and Alice sees him joined. Crypto-free.
//
//   cd tests/interop && TRESTLE_BINARY=$PWD/../../build/trestle node --test --test-force-exit js_knock.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle, tail } from "./trestle_process.mjs";
import { captureConsole, waitFor } from "./js_support.mjs";

import { createClient, ClientEvent, RoomEvent, RoomMemberEvent, SyncState } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000;
const TEST_TIMEOUT_MS = 90_000;

// Keep the SDK's console logging out of the output; its tail is attached to a failure.
const sdkLog = captureConsole();
logger.setLevel("debug");

let server;

before(async () => {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-knock-", timeoutMs: STEP_TIMEOUT_MS,
                              hold: (s) => { server = s; } });
});

after(async () => {
  if (server) await stopTrestle(server);
  server = undefined;
});

// Registers through the m.login.dummy UIA flow and returns a client for the new session.
async function register(baseUrl, username) {
  const anon = createClient({ baseUrl });
  const password = `${username}-password-1`;
  let session;
  try {
    await anon.registerRequest({ username, password });
    assert.fail("register without auth must ask for UIA");
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    session = err.data?.session;
  }
  const res = await anon.registerRequest({ username, password, auth: { type: "m.login.dummy", session } });
  return createClient({ baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id });
}

async function startSyncing(client) {
  const prepared = waitFor(`${client.getUserId()} first sync`, client, [ClientEvent.Sync], () => {
    if (client.getSyncState() === SyncState.Error) throw new Error(`${client.getUserId()} sync error`);
    return client.isInitialSyncComplete();
  });
  await client.startClient({ initialSyncLimit: 20 });
  await prepared;
}

test("matrix-js-sdk: knockRoom, the knock in sync, invite accepts it, join", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { baseUrl } = server;
  const clients = [];
  try {
    const alice = await register(baseUrl, "alice");
    const bob = await register(baseUrl, "bob");
    clients.push(alice, bob);
    await startSyncing(alice);
    await startSyncing(bob);

    const { room_id: roomId } = await alice.createRoom({
      name: "Knock knock",
      preset: "private_chat",
      room_version: "10",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }],
    });

    // Bob knocks; the SDK's knockRoom answers with the room ID.
    const knocked = await bob.knockRoom(roomId, { reason: "may I come in?" });
    assert.equal(knocked.room_id, roomId);

    // Bob's sync brings the room under rooms.knock: membership "knock", named from knock_state.
    const room = await waitFor("bob's client has the room with membership knock", bob,
      [RoomEvent.MyMembership, ClientEvent.Room, ClientEvent.Sync],
      () => {
        const r = bob.getRoom(roomId);
        return r?.getMyMembership() === "knock" ? r : null;
      });
    assert.equal(room.name, "Knock knock", "the room name comes from the knock's stripped state");
    const own = room.currentState.getMember(bob.getUserId())?.events.member;
    assert.equal(own?.getContent().membership, "knock");
    assert.equal(own?.getContent().reason, "may I come in?");

    // Alice sees the knock as Bob's member event, and accepts it with an invite.
    await waitFor("alice sees bob knocking", alice, [RoomMemberEvent.Membership, ClientEvent.Sync],
      () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "knock");
    await alice.invite(roomId, bob.getUserId());

    await waitFor("bob's client turns the knock into an invite", bob, [RoomEvent.MyMembership, ClientEvent.Sync],
      () => bob.getRoom(roomId)?.getMyMembership() === "invite");
    await bob.joinRoom(roomId);
    await waitFor("bob is joined", bob, [RoomEvent.MyMembership, ClientEvent.Sync],
      () => bob.getRoom(roomId)?.getMyMembership() === "join");
    await waitFor("alice sees bob joined", alice, [RoomMemberEvent.Membership, ClientEvent.Sync],
      () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
  } catch (err) {
    err.message += `\n--- server log (tail) ---\n${server ? tail(server.logPath) : ""}`
      + `\n--- matrix-js-sdk log (tail) ---\n${sdkLog.slice(-60).join("\n")}`;
    throw err;
  } finally {
    for (const c of clients) c.stopClient();
  }
});
