// Interop: the encrypted-bridge journey (issue 8) with nothing but the as_token. A "bridge" drives
// matrix-sdk-crypto-wasm's OlmMachine directly (the crypto the js-sdk uses, real Olm/Megolm) for a
// user it owns, masquerading as that user's device (?user_id=&device_id=), and gets its to-device
// messages (MSC4203, `de.sorunome.msc2409.to_device`) and its key counts and device lists (MSC3202)
// from appservice transactions, never from /sync. A matrix-js-sdk user with Rust crypto talks to it.
//
//  1. trestle starts with a registration (receive_ephemeral, org.matrix.msc3202, MSC4190) whose URL
//     is a listener in this test that records the transactions;
//  2. the bridge registers its user (m.login.application_service, inhibit_login), creates a device
//     (PUT /devices/{id}?user_id=), and uploads that device's keys through the OlmMachine;
//  3. alice (js-sdk) creates an encrypted room and invites the bridged user, who joins;
//  4. alice sends: the room key arrives in a transaction's to-device messages, the event in a
//     transaction's events, and the bridge decrypts it;
//  5. the bridge replies encrypted (claim, share the room key, encrypt, send) and alice decrypts;
//  6. the transactions carried the device's one-time key counts and alice's device-list change.
//
//   cd tests/interop && node --test --test-force-exit e2ee_bridge.test.mjs
//   TRESTLE_BINARY=/path/to/trestle ...      (default: ../../build/trestle)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { freePort, setLimits, spawnTrestle, waitReady, stopTrestle, tail } from "./trestle_process.mjs";
import { captureSdkLog, clearBody, describeEvent, loginE2ee as login, register, waitFor as waitUntil } from "./js_crypto_clients.mjs";

import * as wasm from "@matrix-org/matrix-sdk-crypto-wasm";
import { ClientEvent, RoomEvent, EventType } from "matrix-js-sdk";

const {
  OlmMachine, UserId, DeviceId, RoomId, RequestType, DeviceLists, EncryptionSettings, DecryptionSettings,
  TrustRequirement,
} = wasm;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000; // any single wait
const TEST_TIMEOUT_MS = 90_000; // the whole journey (normally well under 20 s)
const MEGOLM = "m.megolm.v1.aes-sha2";
const HS = "localhost";
const TO_DEVICE = "de.sorunome.msc2409.to_device";
const DEVICE_LISTS = "org.matrix.msc3202.device_lists";
const OTK_COUNTS = "org.matrix.msc3202.device_one_time_keys_count";
const FALLBACK_TYPES = "org.matrix.msc3202.device_unused_fallback_key_types";
const BRIDGE_DEVICE = "BRIDGEDEV";

// Keep the SDK's (very chatty) console logging out of the output; attach its tail to a failure.
const sdkLog = captureSdkLog();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// The appservice listener: records every transaction body, answers 200 {}.

const txns = []; // { txnId, body } in arrival order (a retried txnId is recorded once)
let listener;

function startListener(port) {
  listener = createServer((req, res) => {
    let data = "";
    req.on("data", (c) => { data += c; });
    req.on("end", () => {
      const m = req.method === "PUT" && req.url.match(/^\/_matrix\/app\/v1\/transactions\/([^/?]+)/);
      if (m) {
        const txnId = decodeURIComponent(m[1]);
        if (!txns.some((t) => t.txnId === txnId)) {
          txns.push({ txnId, authorization: req.headers.authorization, body: JSON.parse(data || "{}") });
        }
        res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
      } else if (req.url.startsWith("/_matrix/app/v1/ping")) {
        res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
      } else {
        res.writeHead(404, { "Content-Type": "application/json" })
          .end(JSON.stringify({ errcode: "M_NOT_FOUND", error: "nothing here" }));
      }
    });
  });
  return new Promise((resolve) => listener.listen(port, "127.0.0.1", resolve));
}

// ---------------------------------------------------------------------------------------------
// Server lifecycle: a relaxed config (as trestle_process.mjs's) plus the registration.

let server;
let registration;

async function startServer() {
  const dataDir = mkdtempSync(path.join(tmpdir(), "trestle-interop-e2ee-bridge-"));
  server = { proc: null, baseUrl: null, dataDir, logPath: path.join(dataDir, "server.log"), exited: () => true };
  const configPath = path.join(dataDir, "homeserver.yaml");
  const registrationPath = path.join(dataDir, "bridge-registration.yaml");
  execFileSync(BINARY, ["generate-config", "--server-name", HS, "--data-dir", dataDir, "-o", configPath],
               { timeout: 30_000 });
  writeFileSync(registrationPath, `${JSON.stringify(registration, null, 2)}\n`); // JSON is YAML
  const port = await freePort();
  let yaml = readFileSync(configPath, "utf8");
  assert.match(yaml, /^\s*- port: \d+$/m, "generated config has a listener port");
  yaml = yaml.replace(/^(\s*- port: )\d+$/m, `$1${port}`);
  for (const key of ["rc_message", "rc_registration", "rc_login"]) yaml = setLimits(yaml, key, 1000, 1000);
  assert.match(yaml, /^app_service_config_files:.*$/m, "generated config has app_service_config_files");
  yaml = yaml.replace(/^app_service_config_files:.*$/m, `app_service_config_files: [${JSON.stringify(registrationPath)}]`);
  writeFileSync(configPath, yaml);
  server = spawnTrestle({ binary: BINARY, configPath, logPath: server.logPath, dataDir, port });
  await waitReady(server, STEP_TIMEOUT_MS);
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function loginE2ee(baseUrl, username, password, clients) {
  return login(baseUrl, username, password, clients, STEP_TIMEOUT_MS);
}

// Every wait of these suites is bounded by STEP_TIMEOUT_MS unless it says otherwise.
const waitFor = (what, emitter, events, check, ms = STEP_TIMEOUT_MS) => waitUntil(what, emitter, events, check, ms);

// ---------------------------------------------------------------------------------------------
// The bridge: Client-Server requests with the as_token, as its user and device.

async function asRequest(method, apiPath, body, query = {}) {
  const qs = new URLSearchParams(query).toString();
  const r = await fetch(`${server.baseUrl}/_matrix/client/v3${apiPath}${qs ? `?${qs}` : ""}`, {
    method,
    headers: { Authorization: `Bearer ${registration.as_token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : (typeof body === "string" ? body : JSON.stringify(body)),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = { raw: text }; }
  return { status: r.status, json };
}

async function asOk(method, apiPath, body, query, want = 200) {
  const r = await asRequest(method, apiPath, body, query);
  assert.equal(r.status, want, `${method} ${apiPath} as the appservice: ${JSON.stringify(r.json)}`);
  return r.json;
}

class Bridge {
  constructor(userId, deviceId) {
    this.userId = userId;
    this.deviceId = deviceId;
    this.as = { user_id: userId, device_id: deviceId }; // device masquerading
    this.fed = 0; // transactions fed to the machine so far
    this.events = []; // room events from the transactions
    this.chain = Promise.resolve();
    this.sent = []; // kinds of outgoing requests sent, for the failure message
  }

  async init() {
    this.machine = await OlmMachine.initialize(new UserId(this.userId), new DeviceId(this.deviceId));
  }

  // The OlmMachine's calls, one at a time.
  serial(fn) {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => {});
    return p;
  }

  // Sends one outgoing request of the machine to the server (as the bridged device), marks it sent.
  async send(req) {
    let r;
    switch (req.type) {
      case RequestType.KeysUpload: r = await asOk("POST", "/keys/upload", req.body, this.as); break;
      case RequestType.KeysQuery: r = await asOk("POST", "/keys/query", req.body, this.as); break;
      case RequestType.KeysClaim: r = await asOk("POST", "/keys/claim", req.body, this.as); break;
      case RequestType.ToDevice:
        r = await asOk("PUT", `/sendToDevice/${encodeURIComponent(req.event_type)}/${encodeURIComponent(req.txn_id)}`,
                       req.body, this.as);
        break;
      case RequestType.SignatureUpload: r = await asOk("POST", "/keys/signatures/upload", req.body, this.as); break;
      default: throw new Error(`unexpected outgoing request type ${req.type}`);
    }
    this.sent.push(req.type);
    await this.machine.markRequestAsSent(req.id, req.type, JSON.stringify(r));
  }

  async flushOutgoing() {
    for (const req of await this.machine.outgoingRequests()) await this.send(req);
  }

  // Feeds the transactions not yet seen into the machine (as a /sync would), then sends whatever
  // the machine wants sent.
  sync() {
    return this.serial(async () => {
      while (this.fed < txns.length) {
        const body = txns[this.fed++].body;
        this.events.push(...(body.events ?? []));
        const toDevice = (body[TO_DEVICE] ?? [])
          .filter((m) => m.to_user_id === this.userId && m.to_device_id === this.deviceId)
          .map(({ sender, type, content }) => ({ sender, type, content }));
        const lists = body[DEVICE_LISTS] ?? {};
        const counts = body[OTK_COUNTS]?.[this.userId]?.[this.deviceId];
        const fallback = body[FALLBACK_TYPES]?.[this.userId]?.[this.deviceId];
        await this.machine.receiveSyncChanges(
          JSON.stringify(toDevice),
          new DeviceLists((lists.changed ?? []).map((u) => new UserId(u)), (lists.left ?? []).map((u) => new UserId(u))),
          new Map(Object.entries(counts ?? {})),
          fallback ? new Set(fallback) : null);
      }
      await this.flushOutgoing();
    });
  }
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  assert.ok(globalThis.crypto?.subtle, "Node has WebCrypto (globalThis.crypto)");
  if (typeof wasm.initAsync === "function") await wasm.initAsync();
  const asPort = await freePort();
  await startListener(asPort);
  registration = {
    id: "e2ee-bridge",
    url: `http://127.0.0.1:${asPort}`,
    as_token: `as-${randomBytes(12).toString("hex")}`,
    hs_token: `hs-${randomBytes(12).toString("hex")}`,
    sender_localpart: "_br_bot",
    namespaces: { users: [{ exclusive: true, regex: `@_br_.*:${HS}` }], aliases: [], rooms: [] },
    rate_limited: false,
    receive_ephemeral: true,
    "org.matrix.msc3202": true,
    "io.element.msc4190": true,
  };
  await startServer();
});

after(async () => {
  if (server) await stopTrestle(server);
  if (listener) await new Promise((r) => listener.close(r));
});

test("encrypted bridge: OlmMachine as a masqueraded appservice device, keys via transactions",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl } = server;
    const clients = [];
    let bridge;
    let step = "start";
    try {
      // 2. The bridged user and its device, with nothing but the as_token.
      step = "the bridge registers its user and device";
      const reg = await asOk("POST", "/register",
        { type: "m.login.application_service", username: "_br_bob", inhibit_login: true });
      const bridgedId = reg.user_id;
      assert.equal(bridgedId, `@_br_bob:${HS}`);
      assert.equal(reg.access_token, undefined, "inhibit_login: no access token");
      await asOk("PUT", `/devices/${BRIDGE_DEVICE}`, { display_name: "bridge" }, { user_id: bridgedId }, 201);
      bridge = new Bridge(bridgedId, BRIDGE_DEVICE);
      await bridge.init();
      await bridge.sync(); // the device keys and one-time keys go up
      const mine = await asOk("POST", "/keys/query", { device_keys: { [bridgedId]: [] } });
      assert.ok(mine.device_keys?.[bridgedId]?.[BRIDGE_DEVICE], `the bridge device's keys on the server: ${JSON.stringify(mine)}`);

      step = "the bridge device's one-time key counts arrive in a transaction";
      const countTxn = await waitFor("a transaction with the bridge device's one-time key counts", null, [], () =>
        txns.find((t) => t.body[OTK_COUNTS]?.[bridgedId]?.[BRIDGE_DEVICE]?.signed_curve25519 > 0));
      await bridge.sync();

      // 3. alice (js-sdk, Rust crypto) creates an encrypted room and invites the bridged user.
      step = "alice logs in and creates the encrypted room";
      await register(baseUrl, "alice", "alice-password-1");
      const alice = await loginE2ee(baseUrl, "alice", "alice-password-1", clients);
      await waitFor("alice's device keys reach the server", alice, [ClientEvent.Sync], async () => {
        const r = await asOk("POST", "/keys/query", { device_keys: { [alice.getUserId()]: [] } });
        return r.device_keys?.[alice.getUserId()]?.[alice.getDeviceId()];
      });
      const { room_id: roomId } = await alice.createRoom({
        name: "Bridged", preset: "private_chat", invite: [bridgedId],
        initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: MEGOLM } }],
      });
      step = "the bridged user joins and tracks the room's members";
      await asOk("POST", `/join/${encodeURIComponent(roomId)}`, {}, { user_id: bridgedId });
      const members = await asOk("GET", `/rooms/${encodeURIComponent(roomId)}/joined_members`, undefined,
                                 { user_id: bridgedId });
      const memberIds = Object.keys(members.joined ?? {});
      assert.deepEqual(memberIds.sort(), [alice.getUserId(), bridgedId].sort(), "joined members");
      await bridge.serial(() => bridge.machine.updateTrackedUsers(memberIds.map((u) => new UserId(u))));
      await bridge.sync(); // keys/query for alice
      await waitFor("alice sees an encrypted room with the bridged user joined", alice, [ClientEvent.Sync],
        async () => alice.getRoom(roomId)?.getJoinedMemberCount() === 2
          && await alice.getCrypto().isEncryptionEnabledInRoom(roomId));

      // 4. alice sends; the room key comes as a to-device message in a transaction, the event in
      // a transaction's events; the bridge decrypts it.
      step = "alice sends an encrypted message; the bridge decrypts it";
      const aliceBody = `hello bridge ${Date.now()}`;
      const { event_id: aliceEvent } = await alice.sendTextMessage(roomId, aliceBody);
      const encrypted = await waitFor(
        () => `the bridge gets ${aliceEvent} in a transaction (${txns.length} transactions: `
          + `${JSON.stringify(txns.map((t) => Object.keys(t.body)))})`,
        null, [], async () => { await bridge.sync(); return bridge.events.find((e) => e.event_id === aliceEvent); });
      assert.equal(encrypted.type, EventType.RoomMessageEncrypted);
      assert.equal(encrypted.content.algorithm, MEGOLM);
      const roomKeyTxn = txns.find((t) => (t.body[TO_DEVICE] ?? []).some((m) =>
        m.type === "m.room.encrypted" && m.sender === alice.getUserId() && m.to_user_id === bridgedId
        && m.to_device_id === BRIDGE_DEVICE));
      assert.ok(roomKeyTxn, "alice's Olm-encrypted room key reached the bridge in a transaction");
      const settings = new DecryptionSettings(TrustRequirement.Untrusted);
      let lastError;
      const decrypted = await waitFor(() => `the bridge decrypts ${aliceEvent}: ${lastError}`, null, [], async () => {
        await bridge.sync();
        try {
          return await bridge.serial(() => bridge.machine.decryptRoomEvent(JSON.stringify(encrypted), new RoomId(roomId), settings));
        } catch (err) {
          lastError = err?.message ?? String(err);
          return null;
        }
      });
      const clear = JSON.parse(decrypted.event);
      assert.equal(clear.type, EventType.RoomMessage);
      assert.equal(clear.content.body, aliceBody, "the bridge's decrypted body");
      assert.equal(decrypted.sender.toString(), alice.getUserId());
      assert.equal(decrypted.senderDevice.toString(), alice.getDeviceId());

      // 5. The bridge replies, encrypted as its device; alice decrypts.
      step = "the bridge replies encrypted";
      const bridgeBody = `hello alice, from the bridge ${Date.now()}`;
      const replyContent = await bridge.serial(async () => {
        // A fresh UserId for each call: the wasm binding takes ownership of the ones in an array.
        const aliceUser = () => new UserId(alice.getUserId());
        await bridge.machine.updateTrackedUsers([aliceUser()]);
        await bridge.flushOutgoing(); // keys/query if still needed
        const claim = await bridge.machine.getMissingSessions([aliceUser()]);
        if (claim) await bridge.send(claim);
        const shares = await bridge.machine.shareRoomKey(new RoomId(roomId), [aliceUser()], new EncryptionSettings());
        assert.ok(shares.length > 0, "the bridge shares its room key with alice's device");
        for (const req of shares) await bridge.send(req);
        return bridge.machine.encryptRoomEvent(new RoomId(roomId), "m.room.message",
          JSON.stringify({ msgtype: "m.text", body: bridgeBody }));
      });
      const { event_id: bridgeEvent } = await asOk("PUT",
        `/rooms/${encodeURIComponent(roomId)}/send/m.room.encrypted/bridge-${Date.now()}`, replyContent,
        { user_id: bridgedId });
      const got = await waitFor(() => `alice decrypts ${bridgeEvent}: ${describeEvent(alice, roomId, bridgeEvent)}`,
        alice, [RoomEvent.Timeline, ClientEvent.Event], () => clearBody(alice, roomId, bridgeEvent));
      assert.equal(got, bridgeBody, "alice's decrypted body");
      const ev = alice.getRoom(roomId).findEventById(bridgeEvent);
      assert.equal(ev.getSender(), bridgedId);
      assert.equal(ev.getWireContent().device_id, BRIDGE_DEVICE, "sent from the masqueraded device");

      // 6. The transactions carried the device's key counts and alice's device-list change, and the
      // bridge device's /sync got no to-device messages (they went to the appservice).
      step = "MSC3202 data in the transactions";
      // alice's claim (for her Olm session to the bridge) lowered the count below the first one.
      const first = countTxn.body[OTK_COUNTS][bridgedId][BRIDGE_DEVICE].signed_curve25519;
      const seen = () => txns.map((t) => t.body[OTK_COUNTS]?.[bridgedId]?.[BRIDGE_DEVICE]?.signed_curve25519)
        .filter((n) => n !== undefined);
      await waitFor(() => `a transaction with the count after alice's claim (counts: ${seen()})`, null, [], () =>
        seen().some((n) => n < first));
      assert.ok(txns.every((t) => t.authorization === `Bearer ${registration.hs_token}`),
        "every transaction carried the hs_token");
      const changed = txns.flatMap((t) => t.body[DEVICE_LISTS]?.changed ?? []);
      assert.ok(changed.includes(alice.getUserId()), `alice in device_lists.changed: ${JSON.stringify(changed)}`);
      const s = await asOk("GET", "/sync", undefined, { user_id: bridgedId, device_id: BRIDGE_DEVICE, timeout: "0" });
      assert.deepEqual(s.to_device?.events ?? [], [], "the bridge device's /sync has no to-device messages");
    } catch (err) {
      err.message += `\n--- at: ${step}; bridge sent request types ${JSON.stringify(bridge?.sent)}`
        + `\n--- transactions ---\n${txns.map((t) => JSON.stringify(t.body).slice(0, 400)).join("\n")}`
        + `\n--- server log (tail) ---\n${tail(server.logPath)}`
        + `\n--- matrix-js-sdk log (tail) ---\n${sdkLog.slice(-60).join("\n")}`;
      throw err;
    } finally {
      for (const c of clients) c.stopClient();
    }
  });
