// Interop: matrix-js-sdk creates a room version 12 room (its ID is the create event's hash, with
// no domain), another user joins it, and both exchange messages seen live through sync. Checks
// that the SDK handles the domain-less room ID and infinitely powerful creators against Trestle.
//
//   cd tests/interop && TRESTLE_BINARY=$PWD/../../build/trestle node --test --test-force-exit js_room_v12.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle } from "./trestle_process.mjs";
import { waitFor } from "./js_support.mjs";
import { createClient, ClientEvent, RoomEvent, SyncState, EventType } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000;

if (!process.env.SDK_LOG) {
  for (const level of ["log", "trace", "debug", "info", "warn", "error"]) console[level] = () => {};
}
logger.setLevel("warn");

let server;
before(async () => {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-v12-", timeoutMs: STEP_TIMEOUT_MS,
                              hold: (s) => { server = s; } });
});
after(async () => {
  if (server) await stopTrestle(server);
});

// Registers through the m.login.dummy UIA stage and returns a syncing client.
async function registeredClient(baseUrl, username) {
  const anon = createClient({ baseUrl });
  let session;
  try {
    await anon.registerRequest({ username, password: `${username}-password-1` });
  } catch (err) {
    session = err.data?.session;
  }
  const res = await anon.registerRequest({ username, password: `${username}-password-1`,
                                           auth: { type: "m.login.dummy", session } });
  const client = createClient({ baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id });
  const prepared = waitFor(`${username} first sync`, client, [ClientEvent.Sync], () => {
    if (client.getSyncState() === SyncState.Error) throw new Error(`${username} sync error`);
    return client.isInitialSyncComplete();
  });
  await client.startClient({ initialSyncLimit: 20 });
  await prepared;
  return client;
}

function recordMessages(client) {
  const seen = [];
  client.on(RoomEvent.Timeline, (event, room, toStart, removed, data) => {
    if (toStart || removed || !data?.liveEvent || event.getType() !== EventType.RoomMessage) return;
    seen.push({ roomId: room?.roomId, sender: event.getSender(), body: event.getContent().body });
  });
  return seen;
}

test("matrix-js-sdk: a v12 room with a domain-less ID: create, join, messages both ways",
  { timeout: 90_000 }, async () => {
    const { baseUrl } = server;
    const alice = await registeredClient(baseUrl, "alice");
    const bob = await registeredClient(baseUrl, "bob");
    try {
      const aliceSeen = recordMessages(alice);
      const bobSeen = recordMessages(bob);

      const { room_id: roomId } = await alice.createRoom({ room_version: "12", preset: "public_chat", name: "Twelve" });
      assert.match(roomId, /^![A-Za-z0-9_-]{43}$/, "a v12 room ID is the create event's hash, without a domain");
      const room = await waitFor("alice sees the room joined", alice, [RoomEvent.MyMembership, ClientEvent.Room],
        () => (alice.getRoom(roomId)?.getMyMembership() === "join" ? alice.getRoom(roomId) : null));
      assert.equal(room.getVersion(), "12");
      const create = room.currentState.getStateEvents("m.room.create", "");
      assert.equal(create?.getSender(), alice.getUserId());
      assert.equal(create?.getId(), "$" + roomId.slice(1), "the room ID is the create event's ID with '!'");
      // Creators are not listed in the power levels of a v12 room.
      const levels = room.currentState.getStateEvents("m.room.power_levels", "")?.getContent();
      assert.equal(levels?.users?.[alice.getUserId()], undefined);

      await bob.joinRoom(roomId);
      await waitFor("bob sees himself joined", bob, [RoomEvent.MyMembership, ClientEvent.Room],
        () => bob.getRoom(roomId)?.getMyMembership() === "join");

      await alice.sendTextMessage(roomId, "hello bob, from a v12 room");
      await waitFor("bob receives alice's message", bob, [RoomEvent.Timeline],
        () => bobSeen.find((m) => m.roomId === roomId && m.body === "hello bob, from a v12 room"));
      await bob.sendTextMessage(roomId, "hello alice");
      await waitFor("alice receives bob's message", alice, [RoomEvent.Timeline],
        () => aliceSeen.find((m) => m.roomId === roomId && m.sender === bob.getUserId() && m.body === "hello alice"));

      // The creator cannot be kicked by anyone.
      await assert.rejects(bob.kick(roomId, alice.getUserId()), (err) => err.errcode === "M_FORBIDDEN");
    } finally {
      alice.stopClient();
      bob.stopClient();
    }
  });
