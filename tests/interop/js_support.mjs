// What the matrix-js-sdk interop tests share: quiet SDK logging kept for failure reports, and
// waiting for a condition on an emitter.

// The SDK logs through the console. Unless SDK_LOG is set, the console's lines are kept (the last
// `keep`) in the returned array, for a test to attach to its failure, instead of being printed.
export function captureConsole(keep = 200) {
  const lines = [];
  if (!process.env.SDK_LOG) {
    for (const level of ["log", "trace", "debug", "info", "warn", "error"]) {
      console[level] = (...args) => {
        lines.push(`[${level}] ${args.map((a) => (typeof a === "string" ? a : String(a))).join(" ")}`);
        if (lines.length > keep) lines.shift();
      };
    }
  }
  return lines;
}

// Resolves with the first truthy value of check(...eventArgs), re-checked on each of `events`
// and every 100 ms; rejects when check throws or after `ms`. `what` (a string, or a function
// giving one) names the wait in the timeout's error.
export function waitFor(what, emitter, events, check, ms = 20_000) {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(poll);
      for (const e of events) emitter.off(e, onEvent);
      fn(v);
    };
    const attempt = (...args) => {
      try {
        const v = check(...args);
        if (v) finish(resolve, v);
      } catch (err) {
        finish(reject, err);
      }
    };
    const onEvent = (...args) => attempt(...args);
    const timer = setTimeout(
      () => finish(reject, new Error(
        `timed out after ${ms} ms waiting for: ${typeof what === "function" ? what() : what}`)), ms);
    const poll = setInterval(() => attempt(), 100);
    for (const e of events) emitter.on(e, onEvent);
    attempt();
  });
}
