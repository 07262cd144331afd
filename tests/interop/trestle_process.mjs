// The trestle process under test, shared by the interop suites: spawn it on a config, wait until
// it answers, stop it, and show the end of its log when something goes wrong.
import { spawn } from "node:child_process";
import { readFileSync, rmSync, openSync, closeSync } from "node:fs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tail(file, n = 40) {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-n).join("\n");
  } catch {
    return "(no server log)";
  }
}

// Starts the binary (stdout and stderr to logPath). Returns at once, so the caller holds the
// process (and can stop it) even if it never becomes ready.
export function spawnTrestle({ binary, configPath, logPath, dataDir, port }) {
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

// SIGTERM, SIGKILL after 5 s, then removes the data directory unless KEEP_DATA is set.
export async function stopTrestle(server) {
  if (!server.exited()) {
    const gone = new Promise((resolve) => server.proc.once("exit", resolve));
    server.proc.kill("SIGTERM");
    const t = setTimeout(() => server.proc.kill("SIGKILL"), 5_000);
    await gone;
    clearTimeout(t);
  }
  if (!process.env.KEEP_DATA) rmSync(server.dataDir, { recursive: true, force: true });
}
