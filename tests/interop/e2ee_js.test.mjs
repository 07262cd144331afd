// Interop: end-to-end encryption with matrix-js-sdk 37.5 and its Rust crypto (the wasm build of
// matrix-sdk-crypto; real Olm/Megolm, not ours) against the real Trestle binary. The server does
// no cryptography: this proves it stores, indexes and relays what a real client needs.
//
//  1. alice and bob (one device each) talk in an m.megolm.v1.aes-sha2 room and decrypt each
//     other (device keys upload/query, one-time key claim, room keys over Olm by sendToDevice,
//     to_device in /sync);
//  2. a second device of alice logs in later: her first device learns of it (device_lists in
//     /sync), shares the room key with it, and it decrypts new messages;
//  3. alice bootstraps cross-signing (device_signing/upload, signatures/upload) and bob sees her
//     devices signed by her; resetting it needs password UIA;
//  4. alice sets up secret storage (account data) and a key backup (room_keys), and her second
//     device restores from it the key of a message sent before it existed;
//  5. the second device logs out: the others see its keys gone.
//
//   cd tests/interop && node --test --test-force-exit e2ee_js.test.mjs
//   TRESTLE_BINARY=/path/to/trestle ...      (default: ../../build/trestle)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startRelaxedTrestle, stopTrestle, tail } from "./trestle_process.mjs";
import { captureSdkLog, clearBody, describeEvent, loginE2ee as login, register, waitFor as waitUntil } from "./js_crypto_clients.mjs";

import { ClientEvent, RoomEvent, EventType } from "matrix-js-sdk";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000; // any single wait
const TEST_TIMEOUT_MS = 120_000; // the whole journey (normally well under 30 s)
const MEGOLM = "m.megolm.v1.aes-sha2";

// Keep the SDK's (very chatty) console logging out of the output; attach its tail to a failure.
const sdkLog = captureSdkLog();

// ---------------------------------------------------------------------------------------------
// Server lifecycle

let server;

async function startServer() {
  await startRelaxedTrestle({ binary: BINARY, prefix: "trestle-interop-e2ee-js-", timeoutMs: STEP_TIMEOUT_MS,
                              hold: (s) => { server = s; } });
}

// ---------------------------------------------------------------------------------------------
// Helpers

// Every wait of these suites is bounded by STEP_TIMEOUT_MS unless it says otherwise.
const waitFor = (what, emitter, events, check, ms = STEP_TIMEOUT_MS) => waitUntil(what, emitter, events, check, ms);

// Secret-storage keys a user "typed in" (shared by that user's devices in this test).
const secretStorageKeys = new Map(); // username -> Map(keyId -> Uint8Array)

function cryptoCallbacks(username) {
  if (!secretStorageKeys.has(username)) secretStorageKeys.set(username, new Map());
  const mine = secretStorageKeys.get(username);
  return {
    getSecretStorageKey: async ({ keys }) => {
      const keyId = Object.keys(keys).find((k) => mine.has(k));
      return keyId ? [keyId, mine.get(keyId)] : null;
    },
    cacheSecretStorageKey: (keyId, _keyInfo, key) => mine.set(keyId, key),
  };
}

// A logged-in, syncing Rust-crypto client whose secret-storage keys are this user's; it keeps its
// password for user-interactive auth.
async function loginE2ee(baseUrl, username, password, clients) {
  const client = await login(baseUrl, username, password, clients, STEP_TIMEOUT_MS,
                             { cryptoCallbacks: cryptoCallbacks(username) });
  client.password = password;
  return client;
}

async function waitDecrypted(client, roomId, eventId, body, who) {
  const got = await waitFor(() => `${who} decrypts ${eventId}: ${describeEvent(client, roomId, eventId)}`,
    client, [RoomEvent.Timeline, ClientEvent.Event],
    () => clearBody(client, roomId, eventId));
  assert.equal(got, body, `${who}'s decrypted body`);
  const ev = client.getRoom(roomId).findEventById(eventId);
  assert.equal(ev.getWireType(), EventType.RoomMessageEncrypted, "sent as m.room.encrypted");
  assert.equal(ev.getWireContent().algorithm, MEGOLM);
  assert.equal(ev.getType(), EventType.RoomMessage, "decrypts to m.room.message");
}

async function authedFetch(client, method, pathAndQuery, body) {
  const r = await fetch(`${server.baseUrl}/_matrix/client/v3${pathAndQuery}`, {
    method,
    headers: { Authorization: `Bearer ${client.getAccessToken()}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

// A UIA callback for device_signing/upload: first without auth (the spec lets a first upload go
// without UIA); on 401, m.login.password in the offered session. Records what happened.
function passwordUia(client, record) {
  return async (makeRequest) => {
    try {
      const r = await makeRequest(null);
      record.push("no-uia");
      return r;
    } catch (err) {
      if (err.httpStatus !== 401) throw err;
      assert.ok(err.data?.flows?.some((f) => f.stages?.includes("m.login.password")),
        `device_signing/upload offers m.login.password: ${JSON.stringify(err.data)}`);
      record.push("password");
      return makeRequest({
        type: "m.login.password", session: err.data.session,
        identifier: { type: "m.id.user", user: client.getUserId() }, password: client.password,
      });
    }
  };
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  assert.ok(globalThis.crypto?.subtle, "Node has WebCrypto (globalThis.crypto)");
  await startServer();
});

after(async () => {
  if (server) await stopTrestle(server);
});

test("matrix-js-sdk + Rust crypto: encrypted room, new device, cross-signing, key backup",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl } = server;
    const clients = [];
    try {
      await register(baseUrl, "alice", "alice-password-1");
      await register(baseUrl, "bob", "bob-password-1");
      const alice = await loginE2ee(baseUrl, "alice", "alice-password-1", clients);
      const bob = await loginE2ee(baseUrl, "bob", "bob-password-1", clients);

      // Both devices publish their keys (an outgoing request of the crypto machine, not awaited by
      // startClient): wait until the server has them, then each sees the other's real keys.
      for (const c of [alice, bob]) {
        await waitFor(`${c.getUserId()}'s device keys reach the server`, c, [ClientEvent.Sync], async () => {
          const r = await authedFetch(c, "POST", "/keys/query", { device_keys: { [c.getUserId()]: [] } });
          return r.json.device_keys?.[c.getUserId()]?.[c.getDeviceId()];
        });
      }
      for (const [c, other] of [[alice, bob], [bob, alice]]) {
        const map = await c.getCrypto().getUserDeviceInfo([other.getUserId()], true);
        const dev = map.get(other.getUserId())?.get(other.getDeviceId());
        assert.ok(dev, `${c.getUserId()} sees ${other.getDeviceId()} via /keys/query`);
        const own = await other.getCrypto().getOwnDeviceKeys();
        assert.equal(dev.getFingerprint(), own.ed25519, "ed25519 key round-trips");
        assert.equal(dev.getIdentityKey(), own.curve25519, "curve25519 key round-trips");
      }

      // 1. An encrypted room; messages both ways.
      const { room_id: roomId } = await alice.createRoom({
        name: "Secret", preset: "private_chat", invite: [bob.getUserId()],
        initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: MEGOLM } }],
      });
      await waitFor("bob sees the invite", bob, [RoomEvent.MyMembership],
        () => bob.getRoom(roomId)?.getMyMembership() === "invite");
      await bob.joinRoom(roomId);
      for (const c of [alice, bob]) {
        await waitFor(`${c.getUserId()} sees an encrypted room with both joined`, c, [ClientEvent.Sync],
          async () => c.getRoom(roomId)?.getJoinedMemberCount() === 2
            && await c.getCrypto().isEncryptionEnabledInRoom(roomId));
      }
      const earlyBody = `first secret from alice ${Date.now()}`;
      const { event_id: early } = await alice.sendTextMessage(roomId, earlyBody);
      await waitDecrypted(bob, roomId, early, earlyBody, "bob");
      const bobBody = `reply from bob ${Date.now()}`;
      const { event_id: reply } = await bob.sendTextMessage(roomId, bobBody);
      await waitDecrypted(alice, roomId, reply, bobBody, "alice");

      // 2. Alice's second device logs in later: it cannot read the earlier message (no key), but
      // her first device learns of it through device_lists and shares the next room key with it.
      const alice2 = await loginE2ee(baseUrl, "alice", "alice-password-1", clients);
      await waitFor("alice's first device learns of her new device (device_lists.changed)", alice,
        [ClientEvent.Sync], async () => {
          const map = await alice.getCrypto().getUserDeviceInfo([alice.getUserId()]);
          return map.get(alice.getUserId())?.has(alice2.getDeviceId());
        });
      await waitFor("bob learns of alice's new device", bob, [ClientEvent.Sync], async () => {
        const map = await bob.getCrypto().getUserDeviceInfo([alice.getUserId()]);
        return map.get(alice.getUserId())?.has(alice2.getDeviceId());
      });
      const laterBody = `later secret from alice ${Date.now()}`;
      const { event_id: later } = await alice.sendTextMessage(roomId, laterBody);
      await waitDecrypted(alice2, roomId, later, laterBody, "alice's second device");
      await waitDecrypted(bob, roomId, later, laterBody, "bob");
      const bob2Body = `bob to both alices ${Date.now()}`;
      const { event_id: bob2 } = await bob.sendTextMessage(roomId, bob2Body);
      await waitDecrypted(alice2, roomId, bob2, bob2Body, "alice's second device (from bob)");
      await waitDecrypted(alice, roomId, bob2, bob2Body, "alice (from bob)");
      assert.equal(clearBody(alice2, roomId, early), null, "the second device has no key for the early message yet");

      // 3. Cross-signing, bootstrapped by the SDK on alice's first device.
      const uia = [];
      await alice.getCrypto().bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordUia(alice, uia) });
      assert.equal(uia.length, 1, `device_signing/upload done once (${uia})`);
      assert.ok(await alice.getCrypto().isCrossSigningReady(), "alice's cross-signing is ready");
      const aliceMaster = (await alice.getCrypto().getCrossSigningKeyId());
      assert.ok(aliceMaster, "alice has a master key");
      await alice.getCrypto().crossSignDevice(alice2.getDeviceId());
      for (const [c, who] of [[bob, "bob"], [alice2, "alice's second device"]]) {
        for (const dev of [alice.getDeviceId(), alice2.getDeviceId()]) {
          await waitFor(`${who} sees alice's device ${dev} signed by her self-signing key`, c, [ClientEvent.Sync],
            async () => {
              await c.getCrypto().getUserDeviceInfo([alice.getUserId()], true);
              return (await c.getCrypto().getDeviceVerificationStatus(alice.getUserId(), dev))?.signedByOwner;
            });
        }
      }
      const q = await authedFetch(bob, "POST", "/keys/query", { device_keys: { [alice.getUserId()]: [] } });
      assert.equal(q.status, 200);
      assert.deepEqual(Object.keys(q.json.master_keys?.[alice.getUserId()]?.keys ?? {}), [`ed25519:${aliceMaster}`],
        "bob's /keys/query returns alice's master key");
      assert.ok(q.json.self_signing_keys?.[alice.getUserId()], "and her self-signing key");
      assert.equal(q.json.user_signing_keys?.[alice.getUserId()], undefined, "but not her user-signing key");

      // 4. Secret storage + a new key backup, then a restore on the second device.
      const recoveryKey = await alice.getCrypto().createRecoveryKeyFromPassphrase();
      await alice.getCrypto().bootstrapSecretStorage({
        createSecretStorageKey: async () => recoveryKey,
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
      });
      // resetKeyBackup creates the version, then enables it asynchronously (GET /room_keys/version).
      const version = await waitFor("alice's first device enables the new backup version", alice, [ClientEvent.Sync],
        () => alice.getCrypto().getActiveSessionBackupVersion());
      const info = await authedFetch(alice, "GET", "/room_keys/version");
      assert.equal(info.status, 200, JSON.stringify(info.json));
      assert.equal(info.json.version, version);
      assert.equal(info.json.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2");
      await waitFor("alice's room keys reach the backup", alice, [ClientEvent.Sync], async () => {
        const keys = await authedFetch(alice, "GET", `/room_keys/keys?version=${encodeURIComponent(version)}`);
        return keys.status === 200 && Object.keys(keys.json.rooms?.[roomId]?.sessions ?? {}).length >= 2;
      });

      // The second device found no backup when it started: look again (GET /room_keys/version),
      // then take the backup key from secret storage (account data, opened with the recovery key).
      const check = await alice2.getCrypto().checkKeyBackupAndEnable();
      assert.equal(check?.backupInfo?.version, version, "the second device finds the backup version");
      await alice2.getCrypto().loadSessionBackupPrivateKeyFromSecretStorage();
      const restored = await alice2.getCrypto().restoreKeyBackup();
      assert.ok(restored.imported >= 1, `restored keys: ${JSON.stringify(restored)}`);
      await waitDecrypted(alice2, roomId, early, earlyBody, "alice's second device after restoring the backup");

      // Resetting cross-signing (a master key exists now) requires UIA: m.login.password.
      const uia2 = [];
      await alice.getCrypto().bootstrapCrossSigning({
        setupNewCrossSigning: true, authUploadDeviceSigningKeys: passwordUia(alice, uia2),
      });
      assert.deepEqual(uia2, ["password"], "replacing the master key needed password UIA");
      const newMaster = await alice.getCrypto().getCrossSigningKeyId();
      assert.notEqual(newMaster, aliceMaster);
      await waitFor("bob sees alice's new master key", bob, [ClientEvent.Sync], async () => {
        const r = await authedFetch(bob, "POST", "/keys/query", { device_keys: { [alice.getUserId()]: [] } });
        return Object.keys(r.json.master_keys?.[alice.getUserId()]?.keys ?? {})[0] === `ed25519:${newMaster}`;
      });

      // 5. The second device logs out: its keys go with it, and the others see it gone
      // (device_lists.changed), so new room keys are no longer shared with it.
      const alice2Id = alice2.getDeviceId();
      await alice2.logout(true);
      clients.splice(clients.indexOf(alice2), 1);
      for (const [c, who] of [[alice, "alice"], [bob, "bob"]]) {
        await waitFor(`${who} sees alice's logged-out device gone`, c, [ClientEvent.Sync], async () => {
          const map = await c.getCrypto().getUserDeviceInfo([alice.getUserId()]);
          return map.get(alice.getUserId())?.has(alice.getDeviceId()) && !map.get(alice.getUserId()).has(alice2Id);
        });
      }
      const q2 = await authedFetch(bob, "POST", "/keys/query", { device_keys: { [alice.getUserId()]: [] } });
      assert.deepEqual(Object.keys(q2.json.device_keys[alice.getUserId()]), [alice.getDeviceId()],
        "/keys/query lists only alice's remaining device");
      const lastBody = `after the logout ${Date.now()}`;
      const { event_id: last } = await alice.sendTextMessage(roomId, lastBody);
      await waitDecrypted(bob, roomId, last, lastBody, "bob (after alice's logout)");
    } catch (err) {
      err.message += `\n--- server log (tail) ---\n${tail(server.logPath)}`
        + `\n--- matrix-js-sdk log (tail) ---\n${sdkLog.slice(-80).join("\n")}`;
      throw err;
    } finally {
      for (const c of clients) c.stopClient();
    }
  });
