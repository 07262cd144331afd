// The trestle process under test, shared by the interop suites: spawn it on a config, wait until
// it answers, stop it, and show the end of its log when something goes wrong.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync, openSync, closeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tail(file, n = 40) {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-n).join("\n");
  } catch {
    return "(no server log)";
  }
}

// PostgreSQL: when TRESTLE_TEST_PG names a cluster's socket directory (scripts/postgres.sh run
// sets it), each server gets a database of its own there, named after its data directory (so a
// restart on the same directory finds its data again); unset, the config's SQLite file is kept.
const PG_DIR = process.env.TRESTLE_TEST_PG || null;
const pgCreated = new Set();  // databases made by this process and not dropped yet

function psql(sql) {
  execFileSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG_DIR, "-U", "postgres", "-d", "postgres",
                        "-c", sql], { timeout: 60_000, stdio: ["ignore", "ignore", "pipe"] });
}

export function pgDatabaseName(dataDir) {
  return path.basename(dataDir).replace(/[^A-Za-z0-9_-]/g, "_").slice(-63);  // a quoted identifier
}

// Points the config's `database:` block at the server's own PostgreSQL database (made if new).
function usePostgres(configPath, dataDir) {
  const name = pgDatabaseName(dataDir);
  if (!pgCreated.has(name)) {
    psql(`DROP DATABASE IF EXISTS "${name}"`);
    psql(`CREATE DATABASE "${name}"`);
    pgCreated.add(name);
  }
  const yaml = readFileSync(configPath, "utf8");
  const block = `database:\n  name: psycopg2\n  args:\n    user: postgres\n    dbname: "${name}"\n    host: "${PG_DIR}"\n`;
  const out = yaml.replace(/^database:\n(?:[ \t]+.*\n)*/m, block);
  if (out === yaml && !yaml.includes(block)) throw new Error(`${configPath} has no database block`);
  writeFileSync(configPath, out);
}

function dropPostgres(dataDir) {
  const name = pgDatabaseName(dataDir);
  if (!pgCreated.delete(name) || process.env.TRESTLE_TEST_PG_DISPOSABLE) return;  // the cluster goes
  psql(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
}

// Starts the binary (stdout and stderr to logPath). Returns at once, so the caller holds the
// process (and can stop it) even if it never becomes ready. With TRESTLE_TEST_PG set, first moves
// the config's database to PostgreSQL (see usePostgres).
export function spawnTrestle({ binary, configPath, logPath, dataDir, port }) {
  if (PG_DIR) usePostgres(configPath, dataDir);
  const logFd = openSync(logPath, "a");
  const proc = spawn(binary, ["--config", configPath], { stdio: ["ignore", logFd, logFd] });
  closeSync(logFd);
  let exited = null;
  proc.on("exit", (code, signal) => { exited = { code, signal }; });
  proc.on("error", (err) => { exited = { error: err.message }; });
  return { proc, baseUrl: `http://127.0.0.1:${port}`, dataDir, logPath, exited: () => exited };
}

// Waits until GET /versions answers, or throws with the log's tail.
export async function waitReady(server, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exited = server.exited();
    if (exited) throw new Error(`trestle exited during start-up (${JSON.stringify(exited)}):\n${tail(server.logPath)}`);
    try {
      const r = await fetch(`${server.baseUrl}/_matrix/client/versions`, { signal: AbortSignal.timeout(2_000) });
      if (r.ok) return;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`trestle did not answer on ${server.baseUrl}:\n${tail(server.logPath)}`);
    await sleep(50);
  }
}

// SIGTERM, SIGKILL after 5 s, then removes the data directory (and drops its PostgreSQL database)
// unless KEEP_DATA is set.
export async function stopTrestle(server) {
  if (!server.exited()) {
    const gone = new Promise((resolve) => server.proc.once("exit", resolve));
    server.proc.kill("SIGTERM");
    const t = setTimeout(() => server.proc.kill("SIGKILL"), 5_000);
    await gone;
    clearTimeout(t);
  }
  if (process.env.KEEP_DATA) return;
  rmSync(server.dataDir, { recursive: true, force: true });
  if (PG_DIR) dropPostgres(server.dataDir);
}

// A free TCP port on 127.0.0.1 (the kernel's choice; closed again before it is returned).
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Sets per_second / burst_count inside the block that starts at `key:` (up to the next top-level
// key) of a generated config.
export function setLimits(yaml, key, perSecond, burst) {
  const re = new RegExp(`^(${key}:\\n(?:[ \\t]+.*\\n|\\n)*)`, "m");
  const m = yaml.match(re);
  if (!m) throw new Error(`generated config has no ${key} block`);
  const block = m[1]
    .replace(/per_second:.*$/gm, `per_second: ${perSecond}`)
    .replace(/burst_count:.*$/gm, `burst_count: ${burst}`);
  return yaml.replace(m[1], block);
}

// Generates a config in a new temp dir (name starts with `prefix`), on a free port, with the
// message, registration and login rate limits relaxed so a journey is never rate limited; starts
// the binary and waits until it answers. `hold(server)` gets the server as soon as there is
// something to clean up, so the caller can stop it even when start-up fails.
export async function startRelaxedTrestle({ binary, prefix, timeoutMs, hold }) {
  const dataDir = mkdtempSync(path.join(tmpdir(), prefix));
  const configPath = path.join(dataDir, "homeserver.yaml");
  const logPath = path.join(dataDir, "server.log");
  hold({ proc: null, baseUrl: null, dataDir, logPath, exited: () => true });
  execFileSync(binary, ["generate-config", "--server-name", "localhost", "--data-dir", dataDir, "-o", configPath],
               { timeout: 30_000 });
  const port = await freePort();
  let yaml = readFileSync(configPath, "utf8");
  if (!/^\s*- port: \d+$/m.test(yaml)) throw new Error("generated config has no listener port");
  yaml = yaml.replace(/^(\s*- port: )\d+$/m, `$1${port}`);
  for (const key of ["rc_message", "rc_registration", "rc_login"]) yaml = setLimits(yaml, key, 1000, 1000);
  writeFileSync(configPath, yaml);
  const server = spawnTrestle({ binary, configPath, logPath, dataDir, port });
  hold(server);
  await waitReady(server, timeoutMs);
  return server;
}
