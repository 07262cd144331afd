// A matrix-js-sdk + Rust crypto peer driven by e2ee_nio.py (the js <-> nio cross check): logs
// in, joins the encrypted room it is invited to, decrypts a message a nio client sends, answers
// with an encrypted message of its own, and exits. One JSON line on stdout per step:
//   {"joined": roomId, "device_id": ...}, {"decrypted": eventId, "body": ...}, {"sent": eventId}
// Errors go to stderr, with exit status 1.
//
//   node e2ee_js_peer.mjs BASE_URL USER PASSWORD ROOM_ID EXPECT_BODY REPLY_BODY

import { createClient, ClientEvent, RoomEvent, SyncState } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const [baseUrl, user, password, roomId, expectBody, replyBody] = process.argv.slice(2);
const TIMEOUT_MS = 30_000;

const log = [];
for (const level of ["log", "trace", "debug", "info", "warn", "error"]) {
  console[level] = (...args) => {
    log.push(`[${level}] ${args.map(String).join(" ")}`);
    if (log.length > 100) log.shift();
  };
}
logger.setLevel("debug");
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function waitFor(what, client, events, check) {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      try {
        const v = check();
        if (v) done(resolve, v);
      } catch (err) {
        done(reject, err);
      }
    };
    const poll = setInterval(attempt, 100);
    const timer = setTimeout(() => done(reject, new Error(`timed out waiting for: ${what}`)), TIMEOUT_MS);
    const done = (fn, v) => {
      clearInterval(poll);
      clearTimeout(timer);
      for (const e of events) client.off(e, attempt);
      fn(v);
    };
    for (const e of events) client.on(e, attempt);
    attempt();
  });
}

let client;
try {
  const anon = createClient({ baseUrl });
  const res = await anon.loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user }, password,
  });
  client = createClient({ baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id });
  await client.initRustCrypto({ useIndexedDB: false });
  await client.startClient({ initialSyncLimit: 20 });
  await waitFor("first sync", client, [ClientEvent.Sync],
    () => [SyncState.Prepared, SyncState.Syncing].includes(client.getSyncState()));
  await waitFor("the invite", client, [RoomEvent.MyMembership],
    () => client.getRoom(roomId)?.getMyMembership() === "invite");
  await client.joinRoom(roomId);
  await waitFor("joined", client, [RoomEvent.MyMembership], () => client.getRoom(roomId)?.getMyMembership() === "join");
  say({ joined: roomId, device_id: client.getDeviceId() });
  const ev = await waitFor(`a message decrypting to ${JSON.stringify(expectBody)}`, client, [RoomEvent.Timeline],
    () => client.getRoom(roomId).getLiveTimeline().getEvents().find(
      (e) => e.isEncrypted() && !e.isDecryptionFailure() && e.getClearContent()?.body === expectBody));
  say({ decrypted: ev.getId(), body: ev.getClearContent().body, sender: ev.getSender() });
  const { event_id: sent } = await client.sendTextMessage(roomId, replyBody);
  say({ sent });
  client.stopClient();
  process.exit(0);
} catch (err) {
  process.stderr.write(`${err?.stack ?? err}\n--- matrix-js-sdk log (tail) ---\n${log.slice(-40).join("\n")}\n`);
  client?.stopClient();
  process.exit(1);
}
