// Interop: matrix-js-sdk's refresh-token support (MatrixClient with refreshToken and
// tokenRefreshFunction, its TokenRefresher, MatrixClient.refreshToken) against the real Trestle
// binary, configured with a 2-second refreshable access-token lifetime: a client logs in with
// refresh_token: true and keeps syncing, receiving and sending across several expiries, the
// SDK refreshing on M_UNKNOWN_TOKEN (soft_logout) and ahead of the known expiry.
//
//   cd tests/interop && TRESTLE_BINARY=$PWD/../../build/trestle node --test --test-force-exit js_refresh.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { freePort, setLimits, spawnTrestle, stopTrestle, tail, waitReady } from "./trestle_process.mjs";
import { captureConsole } from "./js_support.mjs";

import { createClient, ClientEvent, RoomEvent, SyncState, MatrixError } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000;
const LIFETIME_MS = 2_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Keep the SDK's console logging out of the output; attach its tail to a failure instead.
const sdkLog = captureConsole();
logger.setLevel("debug");

let server;
const clients = [];

before(async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "trestle-interop-refresh-"));
  const configPath = path.join(dataDir, "homeserver.yaml");
  const logPath = path.join(dataDir, "server.log");
  server = { proc: null, dataDir, logPath, exited: () => true };
  execFileSync(BINARY, ["generate-config", "--server-name", "localhost", "--data-dir", dataDir, "-o", configPath],
               { timeout: 30_000 });
  const port = await freePort();
  let yaml = readFileSync(configPath, "utf8").replace(/^(\s*- port: )\d+$/m, `$1${port}`);
  for (const key of ["rc_message", "rc_registration", "rc_login"]) yaml = setLimits(yaml, key, 1000, 1000);
  yaml += `\nrefreshable_access_token_lifetime: ${LIFETIME_MS}ms\n`;
  writeFileSync(configPath, yaml);
  server = spawnTrestle({ binary: BINARY, configPath, logPath, dataDir, port });
  await waitReady(server, STEP_TIMEOUT_MS);
});

after(async () => {
  for (const c of clients) c.stopClient();
  if (server) await stopTrestle(server);
});

function failWithContext(err) {
  const context = `\n--- server log ---\n${tail(server.logPath)}\n--- sdk log ---\n${sdkLog.slice(-40).join("\n")}`;
  err.message += context;
  throw err;
}

function waitFor(what, emitter, event, check, ms = STEP_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out after ${ms} ms waiting for: ${what}`));
    }, ms);
    function handler(...args) {
      if (check(...args)) {
        clearTimeout(timer);
        emitter.off(event, handler);
        resolve(args);
      }
    }
    emitter.on(event, handler);
  });
}

async function register(username) {
  const c = createClient({ baseUrl: server.baseUrl });
  const password = `pw-${username}`;
  try {
    await c.registerRequest({ username, password });
  } catch (e) {
    if (e.httpStatus !== 401 || !e.data?.session) throw e;
    await c.registerRequest({ username, password, auth: { type: "m.login.dummy", session: e.data.session } });
  }
  return { username, password };
}

test("matrix-js-sdk keeps syncing across access-token expiry with refresh tokens", { timeout: 120_000 }, async () => {
  try {
    const run = Date.now().toString(36);
    const alice = await register(`alice-refresh-${run}`);
    const bob = await register(`bob-refresh-${run}`);

    // Log in as the SDK does for a client that supports refresh tokens.
    const anon = createClient({ baseUrl: server.baseUrl });
    const login = await anon.loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: alice.username },
      password: alice.password,
      refresh_token: true,
    });
    assert.ok(login.refresh_token, "login gave no refresh_token");
    assert.ok(login.expires_in_ms > 0 && login.expires_in_ms <= LIFETIME_MS, `expires_in_ms ${login.expires_in_ms}`);

    // The refresh function an app gives the SDK: MatrixClient.refreshToken on an unauthenticated client.
    const refresher = createClient({ baseUrl: server.baseUrl });
    const refreshed = [];
    const tokenRefreshFunction = async (refreshToken) => {
      const r = await refresher.refreshToken(refreshToken);
      refreshed.push(r);
      return { accessToken: r.access_token, refreshToken: r.refresh_token,
               expiry: r.expires_in_ms ? new Date(Date.now() + r.expires_in_ms) : undefined };
    };
    const client = createClient({
      baseUrl: server.baseUrl, userId: login.user_id, deviceId: login.device_id,
      accessToken: login.access_token, refreshToken: login.refresh_token, tokenRefreshFunction,
    });
    clients.push(client);
    let loggedOut = false;
    client.on("Session.logged_out", () => { loggedOut = true; });

    const bobClient = createClient({ baseUrl: server.baseUrl });
    const bobLogin = await bobClient.loginRequest({
      type: "m.login.password", identifier: { type: "m.id.user", user: bob.username }, password: bob.password });
    const bobAuthed = createClient({ baseUrl: server.baseUrl, userId: bobLogin.user_id, deviceId: bobLogin.device_id,
                                     accessToken: bobLogin.access_token });
    clients.push(bobAuthed);

    const synced = waitFor("alice's first sync", client, ClientEvent.Sync, (state) => state === SyncState.Prepared);
    await client.startClient({ initialSyncLimit: 5 });
    await synced;

    const { room_id: roomId } = await client.createRoom({ invite: [bobLogin.user_id] });
    await bobAuthed.joinRoom(roomId);

    // Past several lifetimes: alice's sync long-polls meet expired tokens; bob's messages must
    // still reach her timeline, and her own sends must still work.
    for (let i = 0; i < 3; i++) {
      await sleep(LIFETIME_MS + 300);
      const body = `from bob ${i}`;
      const seen = waitFor(`alice sees "${body}"`, client, RoomEvent.Timeline,
                           (ev) => ev.getRoomId() === roomId && ev.getContent()?.body === body);
      await bobAuthed.sendTextMessage(roomId, body);
      await seen;
      await client.sendTextMessage(roomId, `from alice ${i}`);
    }
    assert.ok(refreshed.length >= 2, `the SDK refreshed ${refreshed.length} times`);
    assert.equal(loggedOut, false, "the SDK logged out");
    const me = await client.whoami();
    assert.equal(me.user_id, login.user_id);
    assert.equal(me.device_id, login.device_id, "refreshing kept the device");

    // The first refresh token was spent once its successor's access token was used.
    await assert.rejects(refresher.refreshToken(login.refresh_token), (e) => {
      assert.ok(e instanceof MatrixError, String(e));
      assert.equal(e.httpStatus, 401);
      assert.equal(e.errcode, "M_UNKNOWN_TOKEN");
      assert.equal(e.data.soft_logout, true);
      return true;
    });
  } catch (err) {
    failWithContext(err);
  }
});
