"""Debian's synadm (Synapse's admin CLI) manages registration tokens on Trestle: regtok list,
details, new (random or named, with uses and expiry), update and delete; a user then registers
with a token synadm made, and a second registration is refused once uses_allowed is reached."""

import subprocess
import time

from harness import TestFailure


def token_server(ctx):
    """A server requiring registration tokens, with an admin registered before the requirement
    was switched on (as an operator would bootstrap: the first admin needs no token)."""
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    srv.stop()
    srv.config_overrides["registration_requires_token"] = True
    srv.start()
    return srv, admin


def register_with_token(ctx, srv, localpart, token, status=200, errcode=None):
    """POST /register through the flow [m.login.registration_token, m.login.dummy]."""
    client = srv.client()
    first = ctx.expect(client.request("POST", "/register", body={"username": localpart, "password": "sekrit-1234"}), 401)
    if first["flows"] != [{"stages": ["m.login.registration_token", "m.login.dummy"]}]:
        raise TestFailure(f"flows: {first['flows']}")
    session = first["session"]
    res = client.request("POST", "/register", body={
        "auth": {"type": "m.login.registration_token", "token": token, "session": session}})
    if status != 200:
        return ctx.expect(res, status, errcode)
    ctx.expect(res, 401, body={"completed": ["m.login.registration_token"]})
    return ctx.expect(client.request("POST", "/register", body={"auth": {"type": "m.login.dummy", "session": session}}),
                      200, body={"user_id": f"$re:@{localpart}:.*", "access_token": "$nonempty"})


def synadm_text(sa, *args):
    """synadm's output where it prints text rather than JSON (regtok delete's confirmation)."""
    sa._write_config()
    done = subprocess.run(["synadm", "--batch", "-o", "json", "-c", sa.config_file] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or "returned status code" in done.stderr:
        raise TestFailure(f"synadm {' '.join(map(str, args))}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def test_regtok_commands(ctx):
    srv, admin = token_server(ctx)
    sa = ctx.synadm(srv, admin)
    if sa.run("regtok", "list") != {"registration_tokens": []}:
        raise TestFailure("a new server has no tokens")

    # new: a random token of the default length, unlimited, no expiry
    rnd = sa.run("regtok", "new")
    if not (len(rnd["token"]) == 16 and rnd["uses_allowed"] is None and rnd["expiry_time"] is None
            and rnd["pending"] == 0 and rnd["completed"] == 0):
        raise TestFailure(f"regtok new: {rnd}")
    short = sa.run("regtok", "new", "--length", 6, "--uses-allowed", 4)
    if len(short["token"]) != 6 or short["uses_allowed"] != 4:
        raise TestFailure(f"regtok new --length 6 --uses-allowed 4: {short}")

    # new with a name, uses and expiry
    name = f"synadm-{ctx.run_id}"
    expiry = int(time.time() * 1000) + 86_400_000
    named = sa.run("regtok", "new", "--token", name, "--uses-allowed", 1, "--expiry-ts", expiry)
    if named != {"token": name, "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": expiry}:
        raise TestFailure(f"regtok new --token: {named}")
    dated = sa.run("regtok", "new", "--token", f"dated-{ctx.run_id}", "--expire-at", "2100-01-01")
    if not (isinstance(dated["expiry_time"], int) and dated["expiry_time"] > expiry):
        raise TestFailure(f"regtok new --expire-at: {dated}")
    sa.run("regtok", "new", "--token", name, expect_failure=True)  # exists already

    # details, as a timestamp and (synadm's default) as a date
    details = sa.run("regtok", "details", name, "--timestamp")
    if details != named:
        raise TestFailure(f"regtok details --timestamp: {details}")
    readable = sa.run("regtok", "details", name)
    if not isinstance(readable["expiry_time"], str) or readable["token"] != name:
        raise TestFailure(f"regtok details: {readable}")

    # list, all and by validity
    listed = sa.run("regtok", "list", "--timestamp")["registration_tokens"]
    if sorted(t["token"] for t in listed) != sorted([rnd["token"], short["token"], name, dated["token"]]):
        raise TestFailure(f"regtok list: {listed}")
    if named not in listed:
        raise TestFailure(f"regtok list shows {name} as {listed}")

    # update: uses, then expiry (-1: none), each leaving the other as it was
    upd = sa.run("regtok", "update", name, "--uses-allowed", 2)
    if upd["uses_allowed"] != 2 or upd["expiry_time"] is None:
        raise TestFailure(f"regtok update --uses-allowed 2: {upd}")
    upd = sa.run("regtok", "update", name, "--expiry-ts", -1, "--uses-allowed", 1)
    if upd["uses_allowed"] != 1 or upd["expiry_time"] is not None:
        raise TestFailure(f"regtok update --expiry-ts -1 --uses-allowed 1: {upd}")

    # a user registers with the token synadm made; the second is refused (uses_allowed 1)
    register_with_token(ctx, srv, f"first-{ctx.run_id}", name)
    used = sa.run("regtok", "details", name, "--timestamp")
    if (used["pending"], used["completed"]) != (0, 1):
        raise TestFailure(f"after one registration: {used}")
    register_with_token(ctx, srv, f"second-{ctx.run_id}", name, 401, "M_UNAUTHORIZED")
    invalid = [t["token"] for t in sa.run("regtok", "list", "--invalid")["registration_tokens"]]
    valid = [t["token"] for t in sa.run("regtok", "list", "--valid")["registration_tokens"]]
    if invalid != [name] or sorted(valid) != sorted([rnd["token"], short["token"], dated["token"]]):
        raise TestFailure(f"the used-up token is the one invalid: --valid {valid}, --invalid {invalid}")

    # delete
    # "--": a random token may start with "-", which synadm (click) would take for an option.
    said = synadm_text(sa, "regtok", "delete", "--", short["token"])
    if "deleted" not in said:
        raise TestFailure(f"regtok delete printed {said!r}")
    done = sa.run("regtok", "details", "--", short["token"], expect_failure=True)
    if "M_NOT_FOUND" not in done.stdout:
        raise TestFailure(f"regtok details of a deleted token: {done.stdout} {done.stderr}")
    left = sorted(t["token"] for t in sa.run("regtok", "list")["registration_tokens"])
    if left != sorted([rnd["token"], name, dated["token"]]):
        raise TestFailure(f"after delete: {left}")


def test_regtok_expiry(ctx):
    """A token synadm made with an expiry a moment ahead registers until then and not after."""
    srv, admin = token_server(ctx)
    sa = ctx.synadm(srv, admin)
    # Far enough ahead that synadm (a Python start-up) and one registration fit on a loaded machine.
    soon = int(time.time() * 1000) + 8000
    tok = sa.run("regtok", "new", "--expiry-ts", soon)["token"]
    register_with_token(ctx, srv, f"early-{ctx.run_id}", tok)
    time.sleep(max(0.0, soon / 1000 - time.time()) + 0.1)
    register_with_token(ctx, srv, f"late-{ctx.run_id}", tok, 401, "M_UNAUTHORIZED")
    res = srv.client().request("GET", "/_matrix/client/v1/register/m.login.registration_token/validity",
                               query={"token": tok})
    ctx.expect(res, 200, body={"valid": False})
    if tok not in [t["token"] for t in sa.run("regtok", "list", "--invalid")["registration_tokens"]]:
        raise TestFailure("an expired token is listed as invalid")
    if tok in [t["token"] for t in sa.run("regtok", "list", "--valid")["registration_tokens"]]:
        raise TestFailure("an expired token is not listed as valid")
