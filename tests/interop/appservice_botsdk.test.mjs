// Interop: matrix-bot-sdk's Appservice class (a real bridge framework, unmodified) against the
// real Trestle binary. The registration file is written in the bot-sdk's IAppserviceRegistration
// shape and listed in app_service_config_files; the bot-sdk listens on a free loopback port.
//
//   - the bot-sdk registers its bot user (begin()) and bridged users (ensureRegistered), also as
//     a restarted bridge with empty storage would (M_USER_IN_USE is taken as "already there"),
//     and is kept to its namespace (M_EXCLUSIVE / M_FORBIDDEN); so are users (M_EXCLUSIVE);
//   - a bridged user joins a bridge-made room by alias and sends with a masqueraded identity
//     (Intent.sendText, underlyingClient with ?user_id= and the device from registration,
//     timestamp massaging with ?ts=), a burst beyond rc_message (rate_limited: false);
//   - a portal room: the bot-sdk's join strategy has the bot invite a refused user;
//   - a matrix-js-sdk user (registered through m.login.dummy) creates a room and invites a
//     bridged user; the bot-sdk learns of it from a transaction, the bridged user joins, the
//     js-sdk user's message reaches the bot-sdk as "room.message", and the bridged user's reply
//     reaches the js-sdk user through /sync with the bridged user as sender;
//   - media: a bridged user uploads a PNG (uploadContent, masqueraded) and sends it as m.image; the
//     js-sdk user downloads it and a 32x32 crop thumbnail through the authenticated endpoints
//     (mxcUrlToHttp with useAuthentication) and gets the same bytes and a well-formed image;
//   - ephemeral events (receipts, typing) arrive under MSC2409's key, which the bot-sdk reads;
//   - user and alias queries (GET /_matrix/app/v1/users/..., /rooms/...) create on demand;
//   - the bridge restarts (new Appservice, empty storage): what was sent while it was down
//     arrives, in order; a kick reaches it as "room.leave";
//   - the ping (POST /_matrix/client/v1/appservice/{id}/ping): matrix-bot-sdk 0.8 has no
//     pingHomeserver() and no /_matrix/app/v1/ping route, so the test calls the endpoint through
//     the bot's client, first as the bot-sdk ships (its 404 must come back as 502 M_BAD_STATUS)
//     and then with a ping route added to the bot-sdk's express app;
//   - every homeserver -> appservice request carried `Authorization: Bearer <hs_token>`, and the
//     bot-sdk accepted it.
//
// matrix-bot-sdk requires @matrix-org/matrix-sdk-crypto-nodejs, whose install script downloads a
// native library: package.json points it (dependency + `overrides`) at stubs/, which only loads.
//
//   cd tests/interop && npm ci && node --test --test-force-exit appservice_botsdk.test.mjs
//   TRESTLE_BINARY=/path/to/trestle node --test ...      (default: ../../build/trestle)
//   SDK_LOG=1 lets the SDKs' logs through; KEEP_DATA=1 keeps the server's data directory.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import zlib from "node:zlib";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { freePort, setLimits, spawnTrestle, stopTrestle, tail, waitReady } from "./trestle_process.mjs";
import { waitFor } from "./js_support.mjs";

import { createClient, ClientEvent, RoomEvent, RoomMemberEvent, SyncState, EventType, MsgType, Direction } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import botsdk from "matrix-bot-sdk"; // CommonJS: its exports object

const { Appservice, MemoryStorageProvider, LogService, LogLevel } = botsdk;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000; // any single wait
const TEST_TIMEOUT_MS = 120_000; // the whole journey
const HS = "localhost"; // server_name

// Both SDKs log a lot (matrix-js-sdk through the console, the bot-sdk through its LogService).
// Keep it out of the test output and attach its tail to a failure instead; SDK_LOG=1 lets it
// through.
const sdkLog = [];
function keepLog(line) {
  sdkLog.push(line);
  if (sdkLog.length > 300) sdkLog.shift();
}
const fmt = (args) => args.map((a) => {
  if (typeof a === "string") return a;
  if (a instanceof Error) return a.stack ?? String(a);
  try { return JSON.stringify(a); } catch { return String(a); }
}).join(" ");
if (!process.env.SDK_LOG) {
  for (const level of ["log", "trace", "debug", "info", "warn", "error"]) {
    console[level] = (...args) => keepLog(`[js-sdk ${level}] ${fmt(args)}`);
  }
  const botLogger = {};
  for (const level of ["trace", "debug", "info", "warn", "error"]) {
    botLogger[level] = (module, ...args) => keepLog(`[bot-sdk ${level}] ${module}: ${fmt(args)}`);
  }
  LogService.setLogger(botLogger);
}
LogService.setLevel(LogLevel.DEBUG);
logger.setLevel("debug");

// ---------------------------------------------------------------------------------------------
// Server lifecycle (as in js_journey.test.mjs, plus the appservice registration)

let server; // { proc, baseUrl, dataDir, logPath, exited }

// Tight limits for users: the appservice (rate_limited: false) must not feel them, however much
// its users send or it registers; the js-sdk user stays well within them.
const RC_MESSAGE = { perSecond: 0.1, burst: 5 };
const RC_REGISTRATION = { perSecond: 0.1, burst: 2 };
const BRIDGE_BURST = 12; // messages alice sends at once: more than rc_message's burst

// Writes the registration (JSON is YAML) next to the config and lists it in the config.
async function startServer(registration) {
  const dataDir = mkdtempSync(path.join(tmpdir(), "trestle-interop-botsdk-"));
  const configPath = path.join(dataDir, "homeserver.yaml");
  const registrationPath = path.join(dataDir, "botsdk-registration.yaml");
  const logPath = path.join(dataDir, "server.log");
  server = { proc: null, baseUrl: null, dataDir, logPath, exited: () => true };
  execFileSync(BINARY, [
    "generate-config", "--server-name", HS, "--data-dir", dataDir, "-o", configPath,
  ], { timeout: 30_000 });
  writeFileSync(registrationPath, `${JSON.stringify(registration, null, 2)}\n`);
  const port = await freePort();
  let yaml = readFileSync(configPath, "utf8");
  assert.match(yaml, /^\s*- port: \d+$/m, "generated config has no listener port");
  yaml = yaml.replace(/^(\s*- port: )\d+$/m, `$1${port}`);
  yaml = setLimits(yaml, "rc_message", RC_MESSAGE.perSecond, RC_MESSAGE.burst);
  yaml = setLimits(yaml, "rc_registration", RC_REGISTRATION.perSecond, RC_REGISTRATION.burst);
  yaml = setLimits(yaml, "rc_login", 1000, 1000);
  assert.match(yaml, /^app_service_config_files:.*$/m, "generated config has app_service_config_files");
  yaml = yaml.replace(/^app_service_config_files:.*$/m, `app_service_config_files: [${JSON.stringify(registrationPath)}]`);
  writeFileSync(configPath, yaml);

  server = spawnTrestle({ binary: BINARY, configPath, logPath, dataDir, port });
  await waitReady(server, STEP_TIMEOUT_MS);
}

async function stopServer() {
  if (!server) return;
  await stopTrestle(server);
  server = undefined;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Settles like `promise`, or rejects after `ms` naming `what`: no await can hang the test.
function within(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

// Expects `promise` to reject with a bot-sdk MatrixError of this status and errcode; returns it.
async function rejectsWith(promise, status, errcode, what) {
  let err;
  try {
    await within(promise, what);
  } catch (e) {
    err = e;
  }
  assert.ok(err, `${what}: expected ${status} ${errcode}, but it succeeded`);
  if (err.message?.startsWith("timed out")) throw err;
  assert.equal(err.statusCode, status, `${what}: HTTP status (${err.message}; body ${JSON.stringify(err.body)})`);
  assert.equal(err.errcode, errcode, `${what}: errcode (body ${JSON.stringify(err.body)})`);
  return err;
}

const token = () => randomBytes(24).toString("hex");

// Registers through User-Interactive Authentication with m.login.dummy, as js_journey does.
async function registerHuman(baseUrl, username, password) {
  const c = createClient({ baseUrl });
  let uia;
  try {
    await c.registerRequest({ username, password, initial_device_display_name: "interop-botsdk" });
    assert.fail("register without auth must be answered 401 with UIA flows");
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    assert.equal(err.httpStatus, 401, `register without auth: ${err}`);
    uia = err.data;
  }
  assert.ok(uia?.flows?.some((f) => f.stages?.length === 1 && f.stages[0] === "m.login.dummy"),
    `a flow of just m.login.dummy is offered: ${JSON.stringify(uia)}`);
  const res = await c.registerRequest({
    username, password, initial_device_display_name: "interop-botsdk",
    auth: { type: "m.login.dummy", session: uia.session },
  });
  assert.equal(res.user_id, `@${username}:${HS}`);
  return createClient({ baseUrl, userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id });
}

async function startSyncing(client) {
  const prepared = waitFor(`${client.getUserId()} first sync`, client, [ClientEvent.Sync], (state) => {
    if (state === SyncState.Error) throw new Error(`${client.getUserId()} sync error`);
    return state === SyncState.Prepared || client.isInitialSyncComplete();
  });
  await client.startClient({ initialSyncLimit: 20 });
  await prepared;
}

// Live m.room.message events the js-sdk client sees arrive through /sync.
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
// Images: a small PNG made here, and a check that what comes back is a well-formed PNG or JPEG

// zlib.crc32 exists from Node 20.15 / 22.2; otherwise the usual table.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = zlib.crc32 ?? ((buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
});
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

// An 8-bit RGB PNG, width x height, of a gradient (so a crop has something to keep).
function makePng(width, height) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3); // filter byte 0 (None), then the pixels
    for (let x = 0; x < width; x++) {
      raw.set([Math.round((x * 255) / (width - 1)), Math.round((y * 255) / (height - 1)), 128], row + 1 + x * 3);
    }
  }
  return Buffer.concat([PNG_SIGNATURE, pngChunk("IHDR", ihdr), pngChunk("IDAT", zlib.deflateSync(raw)),
    pngChunk("IEND", Buffer.alloc(0))]);
}

// { format, width, height } of a PNG (every chunk's CRC checked, IDAT inflated to the size IHDR
// implies) or a baseline/progressive JPEG (SOI, then the SOF marker's dimensions); throws otherwise.
function readImage(buf) {
  if (buf.length >= 8 && buf.subarray(0, 8).equals(PNG_SIGNATURE)) {
    let at = 8;
    let ihdr;
    const idat = [];
    let ended = false;
    while (!ended) {
      assert.ok(at + 12 <= buf.length, `PNG truncated at byte ${at}`);
      const len = buf.readUInt32BE(at);
      const type = buf.toString("latin1", at + 4, at + 8);
      assert.ok(at + 12 + len <= buf.length, `PNG chunk ${type} runs past the end`);
      const data = buf.subarray(at + 8, at + 8 + len);
      assert.equal(buf.readUInt32BE(at + 8 + len), crc32(buf.subarray(at + 4, at + 8 + len)), `PNG chunk ${type}: CRC`);
      if (!ihdr) assert.equal(type, "IHDR", "the first PNG chunk is IHDR");
      if (type === "IHDR") ihdr = data;
      else if (type === "IDAT") idat.push(data);
      else if (type === "IEND") ended = true;
      at += 12 + len;
    }
    const width = ihdr.readUInt32BE(0);
    const height = ihdr.readUInt32BE(4);
    const [depth, colour, , , interlace] = ihdr.subarray(8);
    const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colour];
    assert.ok(channels, `PNG colour type ${colour}`);
    assert.ok(idat.length > 0, "PNG has image data");
    const pixels = zlib.inflateSync(Buffer.concat(idat));
    if (interlace === 0) {
      assert.equal(pixels.length, height * (1 + Math.ceil((width * channels * depth) / 8)),
        "PNG image data is as large as IHDR says");
    }
    return { format: "png", width, height };
  }
  if (buf.length >= 4 && buf[0] === 0xff && buf[1] === 0xd8) {
    let at = 2;
    while (at + 4 <= buf.length) {
      assert.equal(buf[at], 0xff, `JPEG marker expected at byte ${at}`);
      const marker = buf[at + 1];
      const len = buf.readUInt16BE(at + 2);
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { format: "jpeg", height: buf.readUInt16BE(at + 5), width: buf.readUInt16BE(at + 7) };
      }
      at += 2 + len;
    }
    assert.fail("JPEG without a SOF marker");
  }
  assert.fail(`neither PNG nor JPEG: starts ${buf.subarray(0, 8).toString("hex")}`);
}

// ---------------------------------------------------------------------------------------------
// The appservice

const AS_ID = "botsdk-interop";
const BOT_USER = `@bridgebot:${HS}`;
let registration;
let appservice;
const seen = {
  hsRequests: [], // every request the bot-sdk authenticated: { method, path, authorization, queryToken, authed }
  events: [], // "room.event" (every event of every transaction)
  messages: [], // "room.message"
  invites: [], // "room.invite"
  joins: [], // "room.join"
  leaves: [], // "room.leave"
  ephemeral: [], // "ephemeral.event"
  userQueries: [], // "query.user"
  aliasQueries: [], // "query.room": { alias, result }
  pings: [], // POST /_matrix/app/v1/ping bodies
};
let pingRouteEnabled = false;

function appserviceOptions(port, baseUrl, storage) {
  return {
    port,
    bindAddress: "127.0.0.1",
    homeserverName: HS,
    homeserverUrl: baseUrl,
    registration: structuredClone(registration), // the bot-sdk writes into it
    storage,
  };
}

async function startAppservice(port, baseUrl) {
  appservice = new Appservice(appserviceOptions(port, baseUrl, new MemoryStorageProvider()));

  // Observe (without changing) how the bot-sdk authenticates the homeserver's requests.
  const isAuthed = appservice.isAuthed.bind(appservice);
  appservice.isAuthed = (req) => {
    const authed = isAuthed(req);
    seen.hsRequests.push({
      method: req.method, path: req.path, authorization: req.headers.authorization,
      queryToken: req.query?.access_token, authed,
    });
    return authed;
  };
  // matrix-bot-sdk 0.8 has no /_matrix/app/v1/ping; a route added before begin() can answer it
  // (expressAppInstance is documented for this). Until enabled it falls through to the bot-sdk's
  // own catch-all 404, i.e. the behaviour of the bot-sdk as shipped.
  appservice.expressAppInstance.post("/_matrix/app/v1/ping", (req, res, next) => {
    if (!pingRouteEnabled) return next();
    const authed = appservice.isAuthed(req);
    seen.pings.push({ body: req.body, authed });
    if (!authed) return res.status(403).json({ errcode: "M_FORBIDDEN", error: "Bad hs_token" });
    return res.status(200).json({});
  });

  appservice.on("room.event", (roomId, event) => seen.events.push({ roomId, event }));
  appservice.on("room.message", (roomId, event) => seen.messages.push({ roomId, event }));
  appservice.on("room.invite", (roomId, event) => seen.invites.push({ roomId, event }));
  appservice.on("room.join", (roomId, event) => seen.joins.push({ roomId, event }));
  appservice.on("room.leave", (roomId, event) => seen.leaves.push({ roomId, event }));
  appservice.on("ephemeral.event", (event) => seen.ephemeral.push(event));
  // Without a listener the bot-sdk never answers a user query: one is required.
  appservice.on("query.user", (userId, createUser) => {
    seen.userQueries.push(userId);
    if (userId === `@bridge_carol:${HS}`) createUser({ display_name: "Carol (bridged)" });
    else createUser(false);
  });
  // Likewise for alias queries: the bot-sdk creates the room (with the alias) from what the
  // listener returns, before answering 200.
  appservice.on("query.room", (alias, createRoom) => {
    const result = alias === `#bridge_portal_auto:${HS}` ? { preset: "public_chat", name: "Made on demand" } : false;
    seen.aliasQueries.push({ alias, result }); // the bot-sdk adds result.__roomId once it made the room
    createRoom(result);
  });

  // begin(): listen, then register the bot user (sender_localpart).
  await within(appservice.begin(), "appservice.begin() (listen, register the bot user)");
}

function stopAppservice() {
  if (!appservice) return;
  appservice.stop();
  // close() waits for keep-alive connections (the homeserver's): end them now.
  appservice.appServer?.closeAllConnections?.();
  appservice = undefined;
}

// ---------------------------------------------------------------------------------------------
// The journey

let asPort;

before(async () => {
  asPort = await freePort();
  registration = {
    id: AS_ID,
    url: `http://127.0.0.1:${asPort}`,
    as_token: token(),
    hs_token: token(),
    sender_localpart: "bridgebot",
    namespaces: {
      users: [{ exclusive: true, regex: `@bridge_.*:${HS}` }],
      aliases: [{ exclusive: true, regex: `#bridge_.*:${HS}` }],
      rooms: [],
    },
    protocols: [],
    rate_limited: false,
    "de.sorunome.msc2409.push_ephemeral": true,
  };
  await startServer(registration);
});

after(async () => {
  stopAppservice();
  await stopServer();
});

test("matrix-bot-sdk Appservice: registration, masquerading, transactions, queries, ping",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl } = server;
    const clients = [];
    let step = "start";
    try {
      // --- The bot-sdk starts and registers its bot user -----------------------------------
      step = "bot-sdk begin() and the bot user";
      await startAppservice(asPort, baseUrl);
      assert.equal(appservice.botUserId, BOT_USER);
      await within(appservice.botIntent.ensureRegistered(), "botIntent.ensureRegistered()");
      const botWho = await within(appservice.botClient.getWhoAmI(), "bot whoami");
      assert.equal(botWho.user_id, BOT_USER, "whoami with the as_token and no user_id is the sender_localpart user");

      // --- Bridged users ---------------------------------------------------------------------
      step = "bridged users register";
      const alice = appservice.getIntentForSuffix("alice");
      const bob = appservice.getIntentForUserId(`@bridge_bob:${HS}`);
      assert.equal(alice.userId, `@bridge_alice:${HS}`);
      for (const intent of [alice, bob]) {
        await within(intent.ensureRegistered(), `${intent.userId} ensureRegistered()`);
        const who = await within(intent.underlyingClient.getWhoAmI(), `${intent.userId} whoami`);
        assert.equal(who.user_id, intent.userId, "whoami with ?user_id= asserts the bridged identity");
        // ensureRegistered() goes on with the new device (MSC3202's org.matrix.msc3202.device_id).
        const deviceId = intent.underlyingClient.impersonatedDeviceId;
        assert.equal(typeof deviceId, "string", "registration returned a device_id");
        assert.equal(who.device_id, deviceId, "whoami with the asserted device");
      }

      // A bridge restarted with empty storage registers again: the bot-sdk takes M_USER_IN_USE
      // as "already registered" (any other answer makes ensureRegistered throw).
      step = "re-registration after a restart with empty storage";
      await rejectsWith(
        appservice.botClient.doRequest("POST", "/_matrix/client/v3/register", null,
          { type: "m.login.application_service", username: "bridge_alice" }),
        400, "M_USER_IN_USE", "registering bridge_alice twice");
      const restarted = new Appservice(appserviceOptions(asPort, baseUrl, new MemoryStorageProvider()));
      await within(restarted.botIntent.ensureRegistered(), "restarted bot-sdk: botIntent.ensureRegistered()");
      await within(restarted.getIntentForSuffix("alice").ensureRegistered(),
        "restarted bot-sdk: alice ensureRegistered()");

      // The namespace binds the appservice, and its exclusivity binds everyone else.
      step = "namespaces";
      const outsider = appservice.getIntentForUserId(`@outsider:${HS}`);
      await rejectsWith(outsider.ensureRegistered(), 400, "M_EXCLUSIVE", "appservice registers a user outside its namespace");
      await rejectsWith(outsider.underlyingClient.getWhoAmI(), 403, "M_FORBIDDEN", "appservice masquerades outside its namespace");

      // --- A js-sdk user -----------------------------------------------------------------------
      step = "js-sdk user registers (m.login.dummy) and syncs";
      const human = await within(registerHuman(baseUrl, "human", "human-password-1"), "register human");
      clients.push(human);
      {
        const c = createClient({ baseUrl });
        let err;
        try {
          await within(c.registerRequest({ username: "bridge_mallory", password: "mallory-password-1" }),
            "a user registers in the exclusive namespace");
        } catch (e) {
          err = e;
        }
        assert.equal(err?.httpStatus, 400, `a user registering in the exclusive namespace: ${err}`);
        assert.equal(err?.errcode, "M_EXCLUSIVE", `a user registering in the exclusive namespace: ${err}`);
      }
      const humanSeen = recordMessages(human);
      await within(startSyncing(human), "human first sync");

      // --- A bridged user in a bridge-made room, with a masqueraded identity ------------------
      step = "bridged user joins a room by alias and sends as itself";
      const lobbyAlias = `#bridge_lobby:${HS}`;
      const lobbyId = await within(appservice.botClient.createRoom({
        preset: "public_chat", name: "Bridge lobby", room_alias_name: "bridge_lobby",
      }), "bot creates the lobby with an alias in its namespace");
      assert.match(lobbyId, new RegExp(`^!.+:${HS}$`));
      assert.equal(await within(alice.joinRoom(lobbyAlias), "alice joins the lobby by alias"), lobbyId);
      assert.ok((await within(alice.getJoinedRooms(), "alice's joined rooms")).includes(lobbyId),
        "GET /joined_rooms?user_id= lists the lobby for alice");

      const lobbyText = `hello from the bridge ${Date.now()}`;
      const lobbyTextId = await within(alice.sendText(lobbyId, lobbyText), "alice sendText");
      const lobbyNotice = `a notice from the bridge ${Date.now()}`;
      const lobbyNoticeId = await within(
        alice.underlyingClient.sendMessage(lobbyId, { msgtype: "m.notice", body: lobbyNotice }),
        "alice's underlyingClient.sendMessage");
      // Timestamp massaging: ?ts= sets origin_server_ts (application-service-api.md).
      const massagedTs = 1_600_000_000_000;
      const massaged = await within(alice.underlyingClient.doRequest("PUT",
        `/_matrix/client/v3/rooms/${encodeURIComponent(lobbyId)}/send/m.room.message/botsdk-ts-1`,
        { ts: massagedTs }, { msgtype: "m.text", body: "from the past" }), "alice sends with ?ts=");
      assert.equal(typeof massaged.event_id, "string");

      for (const [id, body, msgtype] of [[lobbyTextId, lobbyText, "m.text"], [lobbyNoticeId, lobbyNotice, "m.notice"],
        [massaged.event_id, "from the past", "m.text"]]) {
        const ev = await within(appservice.botClient.getEvent(lobbyId, id), `bot reads ${id}`);
        assert.equal(ev.sender, alice.userId, `sender of "${body}"`);
        assert.equal(ev.type, "m.room.message");
        assert.deepEqual([ev.content.msgtype, ev.content.body], [msgtype, body]);
      }
      const massagedEvent = await within(appservice.botClient.getEvent(lobbyId, massaged.event_id), "bot reads the ?ts= event");
      assert.equal(massagedEvent.origin_server_ts, massagedTs, "origin_server_ts follows ?ts=");

      // A bridge relays bursts: with rate_limited: false, rc_message does not apply to it.
      step = "a burst of bridged messages (rate_limited: false)";
      const burst = await within(Promise.all(Array.from({ length: BRIDGE_BURST },
        (_, i) => alice.sendText(lobbyId, `burst ${i}`))), `alice sends ${BRIDGE_BURST} messages at once`);
      assert.equal(new Set(burst).size, BRIDGE_BURST, "each message of the burst is its own event");

      // The js-sdk user joins the lobby by alias and reads the bridged messages from history.
      step = "the js-sdk user reads the lobby";
      assert.equal((await within(human.joinRoom(lobbyAlias), "human joins the lobby")).roomId, lobbyId);
      const lobbyPage = await within(human.createMessagesRequest(lobbyId, null, 30, Direction.Backward), "lobby /messages");
      const lobbyHistory = lobbyPage.chunk.filter((e) => e.type === EventType.RoomMessage)
        .map((e) => [e.event_id, e.sender, e.content.body]).reverse();
      assert.deepEqual(lobbyHistory.slice(0, 3), [
        [lobbyTextId, alice.userId, lobbyText],
        [lobbyNoticeId, alice.userId, lobbyNotice],
        [massaged.event_id, alice.userId, "from the past"],
      ], "the lobby's history as the js-sdk user reads it");
      assert.deepEqual(lobbyHistory.slice(3).map(([id, sender]) => [id, sender]).sort(),
        burst.map((id) => [id, alice.userId]).sort(), "then the burst");

      {
        let err;
        try {
          await within(human.createAlias(`#bridge_squat:${HS}`, lobbyId), "human creates an alias in the namespace");
        } catch (e) {
          err = e;
        }
        assert.equal(err?.httpStatus, 400, `a user creating an alias in the exclusive namespace: ${err}`);
        assert.equal(err?.errcode, "M_EXCLUSIVE", `a user creating an alias in the exclusive namespace: ${err}`);
      }

      // The bot-sdk got its own users' events through transactions too (bridges drop echoes).
      await waitFor("the bot-sdk receives alice's lobby messages as room.message", appservice, ["room.message"],
        () => [lobbyTextId, lobbyNoticeId, massaged.event_id].every((id) => seen.messages.some((m) => m.event.event_id === id)));
      for (const m of seen.messages.filter((x) => x.roomId === lobbyId)) {
        assert.equal(m.event.sender, alice.userId, "lobby messages in transactions are alice's");
      }

      // --- A portal room: invite-only, owned by the bot --------------------------------------------
      // Intent.sendText joins first; the join is refused (not invited), and the bot-sdk's
      // AppserviceJoinRoomStrategy has the bot invite the user and joins again.
      step = "portal room through the bot-sdk's join strategy";
      const portalId = await within(appservice.botClient.createRoom({ preset: "private_chat", name: "Portal" }),
        "bot creates an invite-only portal room");
      const portalText = `hello portal ${Date.now()}`;
      const portalTextId = await within(bob.sendText(portalId, portalText), "bob sendText into the portal (join strategy)");
      const portalMembers = await within(appservice.botClient.getJoinedRoomMembers(portalId), "portal members");
      assert.deepEqual(portalMembers.sort(), [BOT_USER, bob.userId].sort(), "portal members");
      const portalEvent = await within(appservice.botClient.getEvent(portalId, portalTextId), "bot reads the portal message");
      assert.deepEqual([portalEvent.sender, portalEvent.content.body], [bob.userId, portalText]);
      const bobMembership = await within(appservice.botClient.getRoomStateEvent(portalId, "m.room.member", bob.userId),
        "bob's membership in the portal");
      assert.equal(bobMembership.membership, "join");

      // --- Alias queries: a room made on demand ---------------------------------------------------
      step = "alias queries";
      const autoAlias = `#bridge_portal_auto:${HS}`;
      const joinedAuto = await within(human.joinRoom(autoAlias), "human joins an alias the appservice makes on demand");
      const autoQuery = seen.aliasQueries.find((q) => q.alias === autoAlias);
      assert.ok(autoQuery?.result?.__roomId, `the bot-sdk was asked about ${autoAlias} and made a room: ${JSON.stringify(seen.aliasQueries)}`);
      assert.equal(joinedAuto.roomId, autoQuery.result.__roomId, "the alias resolves to the room the bot-sdk made");
      assert.equal(await within(human.getRoomIdForAlias(autoAlias), "resolve the alias again").then((r) => r.room_id),
        autoQuery.result.__roomId);
      let noRoomErr;
      try {
        await within(human.getRoomIdForAlias(`#bridge_nothing:${HS}`), "resolve an alias the appservice disowns");
      } catch (e) {
        noRoomErr = e;
      }
      assert.ok(seen.aliasQueries.some((q) => q.alias === `#bridge_nothing:${HS}`), "the bot-sdk was asked about #bridge_nothing");
      assert.equal(noRoomErr?.httpStatus, 404, `an alias the appservice disowns: ${noRoomErr}`);
      assert.equal(noRoomErr?.errcode, "M_NOT_FOUND");

      // --- The js-sdk user invites a bridged user -------------------------------------------------
      step = "js-sdk user creates a room and invites a bridged user";
      const { room_id: roomId } = await within(human.createRoom({ name: "Bridged chat", preset: "private_chat" }),
        "human creates a room");
      await waitFor("human is joined in the new room", human, [RoomEvent.MyMembership, ClientEvent.Room],
        () => human.getRoom(roomId)?.getMyMembership() === "join");
      await within(human.invite(roomId, bob.userId), "human invites bob");
      const invite = await waitFor("the bot-sdk receives bob's invite (room.invite) through a transaction",
        appservice, ["room.invite"], () => seen.invites.find((i) => i.roomId === roomId && i.event.state_key === bob.userId));
      assert.equal(invite.event.sender, human.getUserId(), "the invite's sender");
      assert.equal(invite.event.content.membership, "invite");
      assert.equal(invite.event.type, "m.room.member");

      step = "the bridged user joins through the bot-sdk";
      assert.equal(await within(bob.joinRoom(roomId), "bob joins"), roomId);
      await waitFor("the bot-sdk sees bob's join (room.join)", appservice, ["room.join"],
        () => seen.joins.some((j) => j.roomId === roomId && j.event.state_key === bob.userId));
      await waitFor("human sees bob join", human, [RoomMemberEvent.Membership],
        () => human.getRoom(roomId)?.getMember(bob.userId)?.membership === "join");

      step = "js-sdk message reaches the bot-sdk as room.message";
      const humanBody = `hello bridge, from a js-sdk user ${Date.now()}`;
      const { event_id: humanEventId } = await within(human.sendTextMessage(roomId, humanBody), "human sends");
      const got = await waitFor("the bot-sdk receives the js-sdk user's message (room.message)", appservice,
        ["room.message"], () => seen.messages.find((m) => m.event.event_id === humanEventId));
      assert.equal(got.roomId, roomId);
      assert.equal(got.event.room_id, roomId);
      assert.equal(got.event.type, "m.room.message");
      assert.equal(got.event.sender, human.getUserId());
      assert.deepEqual([got.event.content.msgtype, got.event.content.body], [MsgType.Text, humanBody]);
      assert.equal(typeof got.event.origin_server_ts, "number");
      assert.ok(seen.events.some((e) => e.event.event_id === humanEventId), "room.event fired for it as well");

      step = "the bridged user replies and the js-sdk user sees it through /sync";
      const replyBody = `a reply from the bridge ${Date.now()}`;
      const replyId = await within(bob.underlyingClient.replyText(roomId, got.event, replyBody), "bob replies");
      const plainBody = `and a plain message from the bridge ${Date.now()}`;
      const plainId = await within(bob.sendText(roomId, plainBody), "bob sendText");
      const reply = await waitFor("human receives bob's reply through sync", human, [RoomEvent.Timeline],
        () => humanSeen.find((e) => e.eventId === replyId));
      assert.equal(reply.roomId, roomId);
      assert.equal(reply.sender, bob.userId, "the reply's sender is the bridged user");
      assert.equal(reply.content.msgtype, MsgType.Text);
      assert.ok(reply.content.body.endsWith(replyBody), `reply body: ${JSON.stringify(reply.content.body)}`);
      assert.equal(reply.content["m.relates_to"]?.["m.in_reply_to"]?.event_id, humanEventId, "the reply relation");
      const plain = await waitFor("human receives bob's plain message through sync", human, [RoomEvent.Timeline],
        () => humanSeen.find((e) => e.eventId === plainId));
      assert.equal(plain.sender, bob.userId);
      assert.deepEqual([plain.content.msgtype, plain.content.body], [MsgType.Text, plainBody]);
      const timeline = human.getRoom(roomId).getLiveTimeline().getEvents()
        .filter((e) => e.getType() === EventType.RoomMessage).map((e) => [e.getId(), e.getSender()]);
      assert.deepEqual(timeline, [[humanEventId, human.getUserId()], [replyId, bob.userId], [plainId, bob.userId]],
        "the js-sdk user's timeline");
      await waitFor("the bot-sdk receives bob's own messages back (echo)", appservice, ["room.message"],
        () => [replyId, plainId].every((id) => seen.messages.some((m) => m.event.event_id === id && m.event.sender === bob.userId)));

      // --- Media: the bridged user uploads an image, the js-sdk user downloads it ------------------
      // Uploaded as bob (POST /_matrix/media/v3/upload?user_id=), sent as m.image; the js-sdk user
      // takes the mxc URI from /sync and fetches it and a crop thumbnail through the
      // authenticated endpoints (/_matrix/client/v1/media/..., MSC3916) with its access token.
      step = "the bridged user uploads an image and the js-sdk user downloads it";
      const png = makePng(64, 48);
      assert.deepEqual(readImage(png), { format: "png", width: 64, height: 48 }, "the PNG made here reads back");
      const mxc = await within(bob.underlyingClient.uploadContent(png, "image/png", "pixel.png"), "bob uploads a PNG");
      assert.match(mxc, new RegExp(`^mxc://${HS}/[A-Za-z0-9_-]+$`), "upload returns an mxc URI of this server");
      const imageId = await within(bob.underlyingClient.sendMessage(roomId, {
        msgtype: MsgType.Image, body: "pixel.png", url: mxc,
        info: { mimetype: "image/png", size: png.length, w: 64, h: 48 },
      }), "bob sends an m.image");
      const image = await waitFor("human receives bob's m.image through sync", human, [RoomEvent.Timeline],
        () => humanSeen.find((e) => e.eventId === imageId));
      assert.equal(image.sender, bob.userId);
      assert.deepEqual([image.content.msgtype, image.content.url], [MsgType.Image, mxc]);

      const authHeaders = { Authorization: `Bearer ${human.getAccessToken()}` };
      const get = (url, headers = authHeaders) => within(
        fetch(url, { headers, signal: AbortSignal.timeout(STEP_TIMEOUT_MS) }).then(async (r) => ({
          status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()),
        })), `GET ${url}`);
      // mxcUrlToHttp(mxc, width, height, method, allowDirectLinks, allowRedirects, useAuthentication)
      const downloadUrl = human.mxcUrlToHttp(image.content.url, undefined, undefined, undefined, false, true, true);
      const mediaPath = `/_matrix/client/v1/media/download/${mxc.slice("mxc://".length)}`;
      assert.equal(new URL(downloadUrl).pathname, mediaPath, `the js-sdk's authenticated URL: ${downloadUrl}`);
      const download = await get(downloadUrl);
      assert.equal(download.status, 200, `download: ${download.body.toString("utf8", 0, 300)}`);
      assert.equal(download.headers.get("content-type"), "image/png", "download Content-Type");
      assert.ok(download.body.equals(png), `the download is the uploaded bytes (${download.body.length} vs ${png.length} bytes)`);
      assert.match(download.headers.get("content-disposition") ?? "", /pixel\.png/, "the upload's file name comes back");
      const anonymous = await get(downloadUrl, {});
      assert.equal(anonymous.status, 401, "the authenticated endpoint without a token");
      assert.equal(JSON.parse(anonymous.body).errcode, "M_MISSING_TOKEN");
      const legacy = await get(`${baseUrl}/_matrix/media/v3/download/${mxc.slice("mxc://".length)}`, {});
      assert.equal(legacy.status, 404, "new media is not served by the frozen legacy endpoint");

      const thumbUrl = human.mxcUrlToHttp(image.content.url, 32, 32, "crop", false, true, true);
      const thumbQuery = new URL(thumbUrl).searchParams;
      assert.equal(new URL(thumbUrl).pathname, mediaPath.replace("/download/", "/thumbnail/"), `thumbnail URL: ${thumbUrl}`);
      assert.deepEqual([thumbQuery.get("width"), thumbQuery.get("height"), thumbQuery.get("method")], ["32", "32", "crop"]);
      const thumb = await get(thumbUrl);
      assert.equal(thumb.status, 200, `thumbnail: ${thumb.body.toString("utf8", 0, 300)}`);
      const thumbImage = readImage(thumb.body);
      assert.equal(thumb.headers.get("content-type"), `image/${thumbImage.format}`, "thumbnail Content-Type matches its bytes");
      assert.deepEqual([thumbImage.width, thumbImage.height], [32, 32], "a 32x32 crop of the 64x48 image");

      // --- Ephemeral events (MSC2409), which the bot-sdk reads under the unstable key -----------
      step = "ephemeral events";
      const replyEvent = human.getRoom(roomId).findEventById(replyId);
      await within(human.sendReadReceipt(replyEvent), "human sends a read receipt");
      const receipt = await waitFor("the bot-sdk receives the read receipt (ephemeral.event m.receipt)", appservice,
        ["ephemeral.event"], () => seen.ephemeral.find((e) => e.type === "m.receipt" && e.room_id === roomId &&
          e.content?.[replyId]?.["m.read"]?.[human.getUserId()]));
      assert.equal(typeof receipt.content[replyId]["m.read"][human.getUserId()].ts, "number");
      await within(human.sendTyping(roomId, true, 10_000), "human starts typing");
      await waitFor("the bot-sdk receives the typing notification (ephemeral.event m.typing)", appservice,
        ["ephemeral.event"], () => seen.ephemeral.find((e) => e.type === "m.typing" && e.room_id === roomId &&
          e.content?.user_ids?.includes(human.getUserId())));

      // --- User queries --------------------------------------------------------------------------
      // An invite to an unknown user in the namespace asks the appservice, which registers it
      // (the bot-sdk's onUser: ensureRegistered + display name) before answering 200.
      step = "user queries";
      const carol = `@bridge_carol:${HS}`;
      const { room_id: carolRoom } = await within(human.createRoom({ preset: "private_chat", invite: [carol] }),
        "human creates a room inviting an unknown bridged user");
      assert.ok(seen.userQueries.includes(carol), `the bot-sdk was asked about ${carol}: ${JSON.stringify(seen.userQueries)}`);
      await waitFor("the bot-sdk receives carol's invite", appservice, ["room.invite"],
        () => seen.invites.some((i) => i.roomId === carolRoom && i.event.state_key === carol));
      const carolProfile = await within(human.getProfileInfo(carol), "carol's profile");
      assert.equal(carolProfile.displayname, "Carol (bridged)");
      // A user the appservice does not know stays unknown.
      const dave = `@bridge_dave:${HS}`;
      let daveErr;
      try {
        await within(human.getProfileInfo(dave), "dave's profile");
      } catch (e) {
        daveErr = e;
      }
      assert.ok(seen.userQueries.includes(dave), `the bot-sdk was asked about ${dave}`);
      assert.equal(daveErr?.httpStatus, 404, `profile of a user the appservice disowns: ${daveErr}`);
      assert.equal(daveErr?.errcode, "M_NOT_FOUND");

      // --- The bridge restarts: nothing sent meanwhile is lost ---------------------------------------
      step = "bridge restart";
      stopAppservice();
      const whileDown = [`sent while the bridge was down 1 ${Date.now()}`, `sent while the bridge was down 2 ${Date.now()}`];
      const whileDownIds = [];
      for (const body of whileDown) {
        whileDownIds.push((await within(human.sendTextMessage(roomId, body), "human sends while the bridge is down")).event_id);
      }
      // Trestle's delivery status (readable with the as_token) shows the failed attempt.
      const statusUrl = `${baseUrl}/_trestle/admin/v1/appservices/${encodeURIComponent(AS_ID)}/status`;
      let status;
      const statusDeadline = Date.now() + STEP_TIMEOUT_MS;
      for (;;) {
        const r = await fetch(statusUrl, { headers: { Authorization: `Bearer ${registration.as_token}` },
          signal: AbortSignal.timeout(5_000) });
        status = await r.json();
        assert.equal(r.status, 200, `delivery status: ${JSON.stringify(status)}`);
        if (status.backoff_ms > 0) break;
        if (Date.now() > statusDeadline) assert.fail(`no failed delivery reported: ${JSON.stringify(status)}`);
        await sleep(100);
      }
      // A restarted bridge: new Appservice, new (empty) storage, same registration and port.
      await startAppservice(asPort, baseUrl);
      await waitFor(() => `the restarted bot-sdk receives what was sent while it was down (has ${JSON.stringify(
        seen.messages.map((m) => m.event.content?.body))})`, appservice, ["room.message"],
        () => whileDownIds.every((id) => seen.messages.some((m) => m.event.event_id === id)));
      const order = whileDownIds.map((id) => seen.messages.findIndex((m) => m.event.event_id === id));
      assert.ok(order[0] < order[1], "in the order they were sent");
      for (const [i, id] of whileDownIds.entries()) {
        const m = seen.messages.find((x) => x.event.event_id === id);
        assert.deepEqual([m.roomId, m.event.sender, m.event.content.body], [roomId, human.getUserId(), whileDown[i]]);
      }

      // --- The js-sdk user kicks the bridged user -----------------------------------------------------
      step = "kick";
      await within(human.kick(roomId, bob.userId, "bridge maintenance"), "human kicks bob");
      const kick = await waitFor("the bot-sdk sees bob leave (room.leave)", appservice, ["room.leave"],
        () => seen.leaves.find((l) => l.roomId === roomId && l.event.state_key === bob.userId));
      assert.deepEqual([kick.event.sender, kick.event.content.membership, kick.event.content.reason],
        [human.getUserId(), "leave", "bridge maintenance"]);
      const bobNow = appservice.getIntentForUserId(bob.userId); // the restarted bot-sdk's intent
      assert.ok(!(await within(bobNow.refreshJoinedRooms(), "bob's joined rooms")).includes(roomId),
        "the room is gone from bob's joined rooms");
      await rejectsWith(bobNow.underlyingClient.sendText(roomId, "still here?"), 403, "M_FORBIDDEN",
        "a kicked bridged user sends");

      // --- Ping ----------------------------------------------------------------------------------
      step = "ping";
      const pingPath = `/_matrix/client/v1/appservice/${encodeURIComponent(AS_ID)}/ping`;
      // As shipped, matrix-bot-sdk 0.8 answers /_matrix/app/v1/ping with its catch-all 404.
      const unsupported = await rejectsWith(
        appservice.botClient.doRequest("POST", pingPath, null, { transaction_id: "botsdk-ping-1" }),
        502, "M_BAD_STATUS", "ping while the bot-sdk has no ping route");
      assert.equal(unsupported.body.status, 404, `the appservice's status is reported: ${JSON.stringify(unsupported.body)}`);
      assert.match(unsupported.body.body ?? "", /M_UNRECOGNIZED/, "the appservice's body is reported");
      pingRouteEnabled = true;
      const pong = await within(appservice.botClient.doRequest("POST", pingPath, null, { transaction_id: "botsdk-ping-2" }),
        "ping with a ping route");
      assert.equal(typeof pong.duration_ms, "number", `ping response: ${JSON.stringify(pong)}`);
      assert.ok(pong.duration_ms >= 0);
      assert.deepEqual(seen.pings.map((p) => [p.body?.transaction_id, p.authed]), [["botsdk-ping-2", true]],
        "the ping reached the appservice with its transaction_id and the hs_token");
      await rejectsWith(
        appservice.botClient.doRequest("POST", "/_matrix/client/v1/appservice/someone-else/ping", null, {}),
        403, "M_FORBIDDEN", "ping for another appservice's id");

      // --- How the homeserver authenticated itself --------------------------------------------
      step = "hs_token on every homeserver request";
      const txns = seen.hsRequests.filter((r) => r.method === "PUT" && r.path.startsWith("/_matrix/app/v1/transactions/"));
      assert.ok(txns.length > 0, "transactions went through the bot-sdk's authentication");
      assert.ok(seen.hsRequests.some((r) => r.path.startsWith("/_matrix/app/v1/users/")), "user queries too");
      assert.ok(seen.hsRequests.some((r) => r.path.startsWith("/_matrix/app/v1/rooms/")), "alias queries too");
      for (const r of seen.hsRequests) {
        assert.equal(r.authorization, `Bearer ${registration.hs_token}`,
          `${r.method} ${r.path} carries Authorization: Bearer <hs_token>`);
        assert.equal(r.authed, true, `the bot-sdk accepted ${r.method} ${r.path}`);
      }
      const txnIds = txns.map((r) => r.path.split("/").pop());
      assert.equal(new Set(txnIds).size, txnIds.length, `transaction ids never repeat: ${txnIds}`);
    } catch (err) {
      const message = `[step: ${step}] ${err?.message ?? err}`
        + (err?.body ? `\nresponse body: ${JSON.stringify(err.body)}` : "")
        + `\n--- server log (tail) ---\n${tail(server.logPath)}`
        + `\n--- SDK logs (tail) ---\n${sdkLog.slice(-80).join("\n")}`;
      if (err instanceof assert.AssertionError) {
        err.message = message; // keeps actual/expected for the report
        throw err;
      }
      throw new Error(message, { cause: err }); // e.g. the bot-sdk's MatrixError: its message is read-only
    } finally {
      for (const c of clients) c.stopClient();
      stopAppservice();
    }
  });
