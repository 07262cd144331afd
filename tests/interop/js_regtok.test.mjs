// Interop: matrix-js-sdk's InteractiveAuth registers through the m.login.registration_token
// stage (spec v1.2, "Token-authenticated registration") against the real Trestle binary with
// registration_requires_token: the SDK picks the flow [m.login.registration_token,
// m.login.dummy], asks the app for the token (stateUpdated), submits it with the session, and
// completes m.login.dummy itself. A token with one use then refuses the next registration with
// the M_UNAUTHORIZED the SDK shows its user. (matrix-nio 0.20 has no registration-token support:
// its register() sends m.login.dummy only.)
//
//   cd tests/interop && TRESTLE_BINARY=$PWD/../../build/trestle node --test --test-force-exit js_regtok.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { freePort, setLimits, spawnTrestle, stopTrestle, tail, waitReady } from "./trestle_process.mjs";
import { captureConsole } from "./js_support.mjs";

import { createClient, InteractiveAuth, AuthType } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(process.env.TRESTLE_BINARY ?? path.join(HERE, "../../build/trestle"));
const STEP_TIMEOUT_MS = 20_000;

const sdkLog = captureConsole();
logger.setLevel("debug");

let server;
let configPath;
let yaml;

async function start(extra) {
  writeFileSync(configPath, yaml + extra);
  const { dataDir, logPath, port } = server;
  server = { ...spawnTrestle({ binary: BINARY, configPath, logPath, dataDir, port }), port };
  await waitReady(server, STEP_TIMEOUT_MS);
}

async function stopKeepingData() {
  const gone = new Promise((resolve) => server.proc.once("exit", resolve));
  server.proc.kill("SIGTERM");
  await gone;
}

before(async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "trestle-interop-regtok-"));
  configPath = path.join(dataDir, "homeserver.yaml");
  const logPath = path.join(dataDir, "server.log");
  server = { proc: null, dataDir, logPath, exited: () => true };
  execFileSync(BINARY, ["generate-config", "--server-name", "localhost", "--data-dir", dataDir, "-o", configPath],
               { timeout: 30_000 });
  const port = await freePort();
  yaml = readFileSync(configPath, "utf8").replace(/^(\s*- port: )\d+$/m, `$1${port}`);
  for (const key of ["rc_message", "rc_registration", "rc_login"]) yaml = setLimits(yaml, key, 1000, 1000);
  server.port = port;
  await start("");
});

after(async () => {
  if (server) await stopTrestle(server);
});

function failWithContext(err) {
  err.message += `\n--- server log ---\n${tail(server.logPath)}\n--- sdk log ---\n${sdkLog.slice(-40).join("\n")}`;
  throw err;
}

async function admin(method, tail_, token, body) {
  const r = await fetch(`${server.baseUrl}/_synapse/admin/v1/registration_tokens${tail_}`, {
    method, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json();
  assert.equal(r.status, 200, `${method} registration_tokens${tail_}: ${JSON.stringify(json)}`);
  return json;
}

// Registers with InteractiveAuth, giving `token` when the SDK asks for the token stage. Resolves
// with the registration, or with {failed: status} when the server refused the token.
function registerWithToken(username, token) {
  const c = createClient({ baseUrl: server.baseUrl });
  const asked = [];
  return new Promise((resolve, reject) => {
    let ia;
    ia = new InteractiveAuth({
      matrixClient: c,
      doRequest: (auth) => c.registerRequest({ username, password: "pw-" + username, ...(auth ? { auth } : {}) }),
      stateUpdated: (stage, status) => {
        asked.push(stage);
        if (stage !== AuthType.RegistrationToken) return reject(new Error(`unexpected stage ${stage}`));
        if (status?.errcode) return resolve({ failed: status, asked });
        ia.submitAuthDict({ type: AuthType.RegistrationToken, token });
      },
      requestEmailToken: () => Promise.reject(new Error("no email stage was offered")),
    });
    ia.attemptAuth().then((res) => resolve({ res, asked }), reject);
  });
}

test("matrix-js-sdk registers with a registration token", { timeout: 60_000 }, async () => {
  try {
    // The operator's first admin registers before tokens are required, and makes a token.
    const anon = createClient({ baseUrl: server.baseUrl });
    let session;
    try {
      await anon.registerRequest({ username: "boss", password: "pw-boss" });
    } catch (err) {
      session = err.data?.session;
    }
    const boss = await anon.registerRequest({ username: "boss", password: "pw-boss", auth: { type: "m.login.dummy", session } });
    execFileSync(BINARY, ["--config", configPath, "set-admin", boss.user_id], { timeout: 30_000 });
    const made = await admin("POST", "/new", boss.access_token, { uses_allowed: 1 });
    assert.equal(made.token.length, 16);

    await stopKeepingData();
    await start("\nregistration_requires_token: true\n");

    const first = await registerWithToken("newbie", made.token);
    assert.ok(first.res, `registered: ${JSON.stringify(first)}`);
    assert.equal(first.res.user_id, "@newbie:localhost");
    assert.deepEqual(first.asked, [AuthType.RegistrationToken], "the SDK asked for the token once and did the dummy stage itself");
    const who = await createClient({ baseUrl: server.baseUrl, accessToken: first.res.access_token }).whoami();
    assert.equal(who.user_id, "@newbie:localhost");
    const after = await admin("GET", `/${made.token}`, boss.access_token);
    assert.deepEqual([after.pending, after.completed], [0, 1]);

    const second = await registerWithToken("latecomer", made.token);
    assert.equal(second.failed?.errcode, "M_UNAUTHORIZED", `second registration: ${JSON.stringify(second)}`);
  } catch (err) {
    failWithContext(err);
  }
});
