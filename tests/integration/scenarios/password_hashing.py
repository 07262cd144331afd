"""Password hashing under a memory bound (argon2id m=19 MiB, t=2, p=1, a few hashes at a time),
logins that do not reveal which accounts exist by their timing, and old hashes rehashed at login."""

import os
import statistics
import threading

from harness import TestFailure

# The peak resident memory allowed after the bursts below. Unbounded, 48 concurrent 64 MiB
# hashes took the server past 1 GB; bounded to 2 x 19 MiB it stays near 70 MB.
PEAK_RSS_LIMIT_KB = 200 * 1024

# crypto_pwhash_str's interactive defaults (argon2id m=64 MiB, t=2), as older builds stored them.
LEGACY_PASSWORD = "legacy-password-1234"
LEGACY_HASH = "$argon2id$v=19$m=65536,t=2,p=1$EksI5KXVKfBjEld562R2Yg$JDdDZcC4Y6ZomLsLAAObWwuf3Fo0MYZpTqduhF7r2b0"
NEW_PARAMS = "$argon2id$v=19$m=19456,t=2,p=1$"


def peak_rss_kb(srv):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise TestFailure("no VmHWM in /proc/PID/status")


def concurrently(n, fn):
    """Runs fn(i) for i in 0..n-1 at the same moment; returns the answers (or exceptions)."""
    results = [None] * n
    start = threading.Barrier(n)

    def run(i):
        start.wait()
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return results


def statuses(results, allowed, what):
    counts = {}
    for r in results:
        if isinstance(r, Exception) or r is None:
            raise TestFailure(f"{what}: a request got no answer: {r}")
        if r.status not in allowed:
            raise TestFailure(f"{what}: unexpected answer {r.describe()}")
        if r.status == 429 and not (isinstance(r.json, dict) and r.json.get("errcode") == "M_LIMIT_EXCEEDED"
                                    and isinstance(r.json.get("retry_after_ms"), int)):
            raise TestFailure(f"{what}: a 429 without M_LIMIT_EXCEEDED and retry_after_ms: {r.describe()}")
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def login(client, user, password):
    return client.request("POST", "/login", body={"type": "m.login.password",
                                                  "identifier": {"type": "m.id.user", "user": user},
                                                  "password": password})


def test_concurrent_logins_and_registrations_stay_under_a_memory_bound(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    client = srv.client()
    logins = concurrently(48, lambda i: login(client, alice.localpart, f"wrong-{i}"))
    login_counts = statuses(logins, (403, 429), "48 wrong-password logins")
    regs = concurrently(32, lambda i: client.request("POST", "/register", body={
        "username": f"burst-{i}-{ctx.run_id}".lower(), "password": f"pw-{i}-long-enough", "auth": {"type": "m.login.dummy"}}))
    reg_counts = statuses(regs, (200, 429), "32 registrations")
    peak = peak_rss_kb(srv)
    print(f"peak RSS {peak // 1024} MiB; logins {login_counts}; registrations {reg_counts}")
    if ctx.sanitized:
        print("    (RSS bound not checked: under AddressSanitizer freed memory is quarantined)")
    elif peak > PEAK_RSS_LIMIT_KB:
        raise TestFailure(f"peak RSS {peak // 1024} MiB is above {PEAK_RSS_LIMIT_KB // 1024} MiB "
                          f"(logins {login_counts}, registrations {reg_counts})")
    if not login_counts.get(403) or not reg_counts.get(200):
        raise TestFailure(f"no request got through: logins {login_counts}, registrations {reg_counts}")
    # Nothing stays taken: the right password logs in afterwards.
    ctx.expect(login(client, alice.localpart, alice.password), 200)


def test_an_unknown_user_login_costs_as_much_as_a_wrong_password(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    client = srv.client()
    known, unknown = [], []
    for i in range(5):
        res = login(client, alice.localpart, f"wrong-{i}")
        ctx.expect(res, 403, "M_FORBIDDEN")
        known.append(res.elapsed)
        res = login(client, f"nobody-{i}-{ctx.run_id}", f"wrong-{i}")
        ctx.expect(res, 403, "M_FORBIDDEN")
        unknown.append(res.elapsed)
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"median login: existing user {k * 1000:.0f} ms, unknown user {u * 1000:.0f} ms")
    if u < k / 3:
        raise TestFailure(f"an unknown user's login ({u * 1000:.0f} ms) is much faster than a known user's "
                          f"({k * 1000:.0f} ms): timing reveals which accounts exist")


def test_an_old_hash_verifies_and_is_rehashed_at_login(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    srv.stop()
    srv.sql("UPDATE users SET password_hash = ? WHERE user_id = ?", LEGACY_HASH, alice.user_id)
    srv.start()
    client = srv.client()
    ctx.expect(login(client, alice.localpart, "wrong-password"), 403, "M_FORBIDDEN")
    ctx.expect(login(client, alice.localpart, LEGACY_PASSWORD), 200)
    # The rehash is written before the login answers.
    ((stored,),) = srv.sql("SELECT password_hash FROM users WHERE user_id = ?", alice.user_id)
    if not stored.startswith(NEW_PARAMS):
        raise TestFailure(f"the old hash was not replaced with today's parameters: {stored[:40]}...")
    ctx.expect(login(client, alice.localpart, LEGACY_PASSWORD), 200)
    ctx.expect(login(client, alice.localpart, "wrong-password"), 403, "M_FORBIDDEN")

