// Interop: matrix-js-sdk (a real client library, not ours) does a whole user journey against the
// real Trestle binary: register two users through the m.login.dummy UIA flow, log in, sync,
// create a room, invite, join through the invite seen by sync, and exchange messages that each
// client must see arrive live on its timeline. Crypto-free (no initRustCrypto).
//
//   cd tests/interop && npm ci && node --test
//   TRESTLE_BINARY=/path/to/trestle node --test      (default: ../../build/trestle)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle, tail } from "./trestle_process.mjs";
import { captureConsole, waitFor } from "./js_support.mjs";

import {
  createClient,
  ClientEvent,
  RoomEvent,
  RoomMemberEvent,
  SyncState,
  EventType,
  MsgType,
  Direction,
  InteractiveAuth,
} from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000; // any single wait
const TEST_TIMEOUT_MS = 120_000; // the whole journey

// The SDK logs through the console (each child logger at debug level, and some known noise at
// error level, e.g. matrix-js-sdk#3781 "Got room state event for unknown room" for every new
// room). Keep it out of the test output and attach its tail to a failure instead; SDK_LOG=1
// lets it through.
const sdkLog = captureConsole();
logger.setLevel("debug");

// ---------------------------------------------------------------------------------------------
// Server lifecycle

let server; // { proc, baseUrl, dataDir, logPath }

async function startServer() {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-js-", timeoutMs: STEP_TIMEOUT_MS,
                              hold: (s) => { server = s; } });
}

async function stopServer() {
  if (!server) return;
  await stopTrestle(server);
  server = undefined;
}

// ---------------------------------------------------------------------------------------------
// Helpers

// Registers by hand through User-Interactive Authentication: the first request (no `auth`)
// must be answered 401 with the flows and a session only; the second completes m.login.dummy.
async function registerByHand(baseUrl, username, password) {
  const c = createClient({ baseUrl });
  let uia;
  try {
    await c.registerRequest({ username, password, initial_device_display_name: "interop-reg" });
    assert.fail("register without auth must be answered 401 with UIA flows");
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    assert.equal(err.httpStatus, 401, `register without auth: ${err}`);
    uia = err.data;
  }
  assert.ok(Array.isArray(uia?.flows), `UIA response has flows: ${JSON.stringify(uia)}`);
  assert.ok(
    uia.flows.some((f) => Array.isArray(f.stages) && f.stages.length === 1 && f.stages[0] === "m.login.dummy"),
    `a flow of just m.login.dummy is offered: ${JSON.stringify(uia.flows)}`);
  assert.equal(typeof uia.session, "string", "UIA response has a session");
  // Spec (User-Interactive Authentication API): errcode/error are only added after a failed
  // stage attempt; InteractiveAuth shows them to the user as an error.
  assert.equal(uia.errcode, undefined, `no errcode before any auth attempt: ${JSON.stringify(uia)}`);
  assert.equal(uia.error, undefined, `no error before any auth attempt: ${JSON.stringify(uia)}`);

  const res = await c.registerRequest({
    username, password, initial_device_display_name: "interop-reg",
    auth: { type: "m.login.dummy", session: uia.session },
  });
  checkRegistered(res, username);
  return res;
}

// Registers the way Element does: matrix-js-sdk's InteractiveAuth drives the UIA flow (it
// auto-completes m.login.dummy) around MatrixClient.registerRequest.
async function registerWithInteractiveAuth(baseUrl, username, password) {
  const c = createClient({ baseUrl });
  const stages = [];
  const ia = new InteractiveAuth({
    matrixClient: c,
    doRequest: (auth) => c.registerRequest({
      username, password, initial_device_display_name: "interop-reg", ...(auth ? { auth } : {}),
    }),
    stateUpdated: (stage, status) => stages.push({ stage, status }),
    requestEmailToken: () => Promise.reject(new Error("no email stage was offered")),
  });
  const res = await ia.attemptAuth();
  // Only a stage needing the user (or an error to show) reaches stateUpdated; dummy does not.
  assert.deepEqual(stages, [], `InteractiveAuth needed no user input: ${JSON.stringify(stages)}`);
  checkRegistered(res, username);
  return res;
}

function checkRegistered(res, username) {
  assert.equal(res.user_id, `@${username}:localhost`);
  assert.equal(typeof res.access_token, "string");
  assert.equal(typeof res.device_id, "string");
}

// Logs in with m.login.password (user identifier) and returns a fresh client for that session.
async function loginClient(baseUrl, username, password) {
  const anon = createClient({ baseUrl });
  const flows = await anon.loginFlows();
  assert.ok(flows.flows.some((f) => f.type === "m.login.password"), `password login offered: ${JSON.stringify(flows)}`);
  const res = await anon.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: username },
    password,
    initial_device_display_name: `interop-${username}`,
  });
  assert.equal(res.user_id, `@${username}:localhost`);
  const client = createClient({
    baseUrl,
    userId: res.user_id,
    accessToken: res.access_token,
    deviceId: res.device_id,
  });
  const who = await client.whoami();
  assert.equal(who.user_id, res.user_id);
  assert.equal(who.device_id, res.device_id);
  return client;
}

async function startSyncing(client, opts = {}) {
  const prepared = waitFor(`${client.getUserId()} first sync`, client, [ClientEvent.Sync], (state) => {
    if (state === SyncState.Error) throw new Error(`${client.getUserId()} sync error`);
    return state === SyncState.Prepared || client.isInitialSyncComplete();
  });
  await client.startClient({ initialSyncLimit: 20, ...opts });
  await prepared;
}

// Records live m.room.message events per room as they arrive through RoomEvent.Timeline.
function recordMessages(client) {
  const seen = [];
  client.on(RoomEvent.Timeline, (event, room, toStartOfTimeline, removed, data) => {
    if (toStartOfTimeline || removed || !data?.liveEvent) return;
    if (event.getType() !== EventType.RoomMessage) return;
    seen.push({ roomId: room?.roomId, eventId: event.getId(), sender: event.getSender(), content: event.getContent() });
  });
  return seen;
}

// ---------------------------------------------------------------------------------------------
// The journey

before(async () => {
  await startServer();
});

after(async () => {
  await stopServer();
});

test("matrix-js-sdk: register, login, room, invite, join, messages both ways over live sync",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl } = server;
    const clients = [];
    try {
      // Registration through UIA: one by hand, one through the SDK's InteractiveAuth.
      const regA = await registerByHand(baseUrl, "alice", "alice-password-1");
      const regB = await registerWithInteractiveAuth(baseUrl, "bob", "bob-password-1");
      assert.notEqual(regA.access_token, regB.access_token);

      // Login with a password gives each user a new device that we then sync with.
      const alice = await loginClient(baseUrl, "alice", "alice-password-1");
      const bob = await loginClient(baseUrl, "bob", "bob-password-1");
      clients.push(alice, bob);
      assert.notEqual(alice.getDeviceId(), regA.device_id);

      const aliceSeen = recordMessages(alice);
      const bobSeen = recordMessages(bob);
      await startSyncing(alice);
      await startSyncing(bob, { lazyLoadMembers: true }); // as Element does: filter + /members

      // Alice creates a room and invites Bob.
      const { room_id: roomId } = await alice.createRoom({ name: "Interop", preset: "private_chat" });
      assert.match(roomId, /^!.+:localhost$/);
      await waitFor("alice sees herself joined in the new room", alice, [RoomEvent.MyMembership, ClientEvent.Room],
        () => alice.getRoom(roomId)?.getMyMembership() === "join");
      await alice.invite(roomId, bob.getUserId());
      // The room summary's counts are required in a sync whenever they changed (sync.yaml); the
      // SDK prefers them over its own member list once it has seen them.
      const counts = (c) => {
        const room = c.getRoom(roomId);
        return `joined ${room?.getJoinedMemberCount()}, invited ${room?.getInvitedMemberCount()}`;
      };
      await waitFor(() => `alice's client counts bob as invited (has ${counts(alice)})`, alice,
        [RoomMemberEvent.Membership, ClientEvent.Sync],
        () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "invite" &&
          counts(alice) === "joined 1, invited 1");

      // Bob learns of the invite through his sync, and joins it.
      const invited = await waitFor("bob sees the invite through sync", bob, [RoomEvent.MyMembership, ClientEvent.Room],
        () => {
          const room = bob.getRoom(roomId);
          return room?.getMyMembership() === "invite" ? room : null;
        });
      const inviteEvent = invited.currentState.getMember(bob.getUserId())?.events.member;
      assert.equal(inviteEvent?.getSender(), alice.getUserId(), "invite was sent by alice");
      assert.equal(inviteEvent?.getContent().membership, "invite");

      await bob.joinRoom(roomId);
      await waitFor("bob is joined", bob, [RoomEvent.MyMembership],
        () => bob.getRoom(roomId)?.getMyMembership() === "join");
      await waitFor("alice sees bob join", alice, [RoomMemberEvent.Membership],
        () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
      assert.equal(bob.getRoom(roomId).name, "Interop", "bob's client derives the room name from state");
      for (const c of [alice, bob]) {
        await waitFor(() => `${c.getUserId()}'s client counts 2 joined, 0 invited (has ${counts(c)})`, c,
          [ClientEvent.Sync], () => counts(c) === "joined 2, invited 0");
      }
      await bob.getRoom(roomId).loadMembersIfNeeded();
      assert.deepEqual(
        bob.getRoom(roomId).getJoinedMembers().map((m) => m.userId).sort(),
        [alice.getUserId(), bob.getUserId()].sort(), "bob's (lazy-loaded) member list");

      // Messages both ways; each client must see the other's message arrive live.
      const aliceBody = `hello bob, from alice ${Date.now()}`;
      const bobBody = `hello alice, from bob ${Date.now()}`;
      const { event_id: aliceEventId } = await alice.sendTextMessage(roomId, aliceBody);
      const fromAlice = await waitFor("bob receives alice's message on his timeline", bob, [RoomEvent.Timeline],
        () => bobSeen.find((e) => e.eventId === aliceEventId));
      assert.equal(fromAlice.roomId, roomId);
      assert.equal(fromAlice.sender, alice.getUserId());
      assert.equal(fromAlice.content.msgtype, MsgType.Text);
      assert.equal(fromAlice.content.body, aliceBody);

      const { event_id: bobEventId } = await bob.sendTextMessage(roomId, bobBody);
      const fromBob = await waitFor("alice receives bob's message on her timeline", alice, [RoomEvent.Timeline],
        () => aliceSeen.find((e) => e.eventId === bobEventId));
      assert.equal(fromBob.roomId, roomId);
      assert.equal(fromBob.sender, bob.getUserId());
      assert.equal(fromBob.content.msgtype, MsgType.Text);
      assert.equal(fromBob.content.body, bobBody);

      // Both timelines end up with the same two messages in the same order.
      for (const c of [alice, bob]) {
        await waitFor(`${c.getUserId()} has both messages on the live timeline`, c, [RoomEvent.Timeline], () => {
          const ids = c.getRoom(roomId).getLiveTimeline().getEvents()
            .filter((e) => e.getType() === EventType.RoomMessage).map((e) => e.getId());
          return ids.includes(aliceEventId) && ids.includes(bobEventId);
        });
        const msgs = c.getRoom(roomId).getLiveTimeline().getEvents()
          .filter((e) => e.getType() === EventType.RoomMessage)
          .map((e) => [e.getId(), e.getSender(), e.getContent().body]);
        assert.deepEqual(msgs, [
          [aliceEventId, alice.getUserId(), aliceBody],
          [bobEventId, bob.getUserId(), bobBody],
        ], `${c.getUserId()}'s timeline`);
      }
      // History through /messages, newest first, as a client's back-pagination reads it.
      const page = await bob.createMessagesRequest(roomId, null, 10, Direction.Backward);
      const history = page.chunk.filter((e) => e.type === EventType.RoomMessage).map((e) => [e.event_id, e.sender, e.content.body]);
      assert.deepEqual(history, [
        [bobEventId, bob.getUserId(), bobBody],
        [aliceEventId, alice.getUserId(), aliceBody],
      ], "/messages backwards");

      // No one saw a message from someone else.
      for (const e of [...aliceSeen, ...bobSeen]) {
        assert.ok([alice.getUserId(), bob.getUserId()].includes(e.sender), `unexpected sender ${e.sender}`);
      }
    } catch (err) {
      err.message += `\n--- server log (tail) ---\n${tail(server.logPath)}`
        + `\n--- matrix-js-sdk log (tail) ---\n${sdkLog.slice(-60).join("\n")}`;
      throw err;
    } finally {
      for (const c of clients) c.stopClient();
    }
  });
