"""Debian's synadm (Synapse's admin CLI, which we did not write) managing users: every `synadm user`
command an operator reaches for, each answer's content checked, and its effect where it has one."""

import json
import subprocess
import urllib.parse

from harness import TestFailure


def q(user_id):
    return urllib.parse.quote(user_id, safe="")


def run_all(sa, *args):
    """Runs synadm for commands that print several documents (`user modify` and `user deactivate`
    first show the account's details, and `modify` of a new account shows its 404, as Synapse
    answers): every JSON document it printed, in order. Fails on a non-zero exit or an ERROR."""
    sa._write_config()
    cmd = ["synadm", "--batch", "-o", "json", "-c", sa.config_file] + [str(a) for a in args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or " ERROR " in f" {done.stderr}":
        raise TestFailure(f"synadm {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    docs, text, i, dec = [], done.stdout, 0, json.JSONDecoder()
    while i < len(text):
        if text[i] in "{[":
            try:
                doc, i = dec.raw_decode(text, i)
                docs.append(doc)
                continue
            except ValueError:
                pass
        i += 1
    return docs


def login(srv, user, password):
    return srv.client().request("POST", "/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})


def test_synadm_user_commands(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    sa = ctx.synadm(srv, admin)

    # user list, with its filters.
    out = sa.run("user", "list", "-n", alice.localpart)
    if out["total"] != 1 or [u["name"] for u in out["users"]] != [alice.user_id]:
        raise TestFailure(f"user list -n: {out}")
    out = sa.run("user", "list", "-i", alice.user_id)
    if [u["name"] for u in out["users"]] != [alice.user_id] or out["users"][0]["admin"] is not False:
        raise TestFailure(f"user list -i: {out}")
    out = sa.run("user", "list", "-l", "1")
    if len(out["users"]) != 1 or out.get("next_token") != "1" or out["total"] < 3:
        raise TestFailure(f"user list -l 1 does not page: {out}")
    out = sa.run("user", "list", "-l", "1", "-f", "1")
    if len(out["users"]) != 1 or out.get("next_token") != "2":
        raise TestFailure(f"user list -f 1: {out}")
    out = sa.run("user", "list", "-G", "-d")
    names = [u["name"] for u in out["users"]]
    if not {admin.user_id, alice.user_id, bob.user_id} <= set(names):
        raise TestFailure(f"user list -G -d misses users: {names}")

    # user details.
    out = sa.run("user", "details", alice.user_id)
    if out["name"] != alice.user_id or out["admin"] or out["deactivated"] or out["displayname"] != alice.localpart:
        raise TestFailure(f"user details: {out}")

    # user modify: create an account (synadm shows the 404 of the account that is not there yet).
    new_id = f"@made-{ctx.run_id}:localhost".lower()
    docs = run_all(sa, "user", "modify", new_id, "-P", "made-pw", "-n", "Made By Synadm",
                   "-t", "email", f"made-{ctx.run_id}@example.org")
    if not docs or docs[-1].get("name") != new_id or docs[-1].get("displayname") != "Made By Synadm":
        raise TestFailure(f"user modify (create) answered {docs}")
    ctx.expect(login(srv, new_id, "made-pw"), body={"user_id": new_id})
    # user 3pid finds it by the address it was given.
    out = sa.run("user", "3pid", "-m", "email", f"made-{ctx.run_id}@example.org".lower())
    if out != {"user_id": new_id}:
        raise TestFailure(f"user 3pid: {out}")
    # ... and change it: display name, password and the admin flag.
    docs = run_all(sa, "user", "modify", new_id, "-n", "Renamed", "-P", "new-made-pw", "-a")
    if docs[-1].get("displayname") != "Renamed" or docs[-1].get("admin") is not True:
        raise TestFailure(f"user modify (change) answered {docs}")
    ctx.expect(login(srv, new_id, "new-made-pw"))
    ctx.expect(login(srv, new_id, "made-pw"), 403, "M_FORBIDDEN")
    ctx.expect(admin.request("GET", f"/_synapse/admin/v1/users/{q(new_id)}/admin"), body={"admin": True})

    # user password: the new one works, the old token does not.
    out = sa.run("user", "password", alice.user_id, "-p", "alice-new-pw")
    if out != {}:
        raise TestFailure(f"user password answered {out}")
    ctx.expect(alice.request("GET", "/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    alice.token = ctx.expect(login(srv, alice.localpart, "alice-new-pw"))["access_token"]
    alice.device_id = ctx.expect(alice.request("GET", "/account/whoami"))["device_id"]
    # --no-logout keeps the sessions.
    sa.run("user", "password", alice.user_id, "-n", "-p", "alice-third-pw")
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})

    # user whois: the session we just used.
    out = sa.run("user", "whois", alice.user_id)
    if out["user_id"] != alice.user_id or alice.device_id not in out["devices"]:
        raise TestFailure(f"user whois: {out}")
    conns = out["devices"][alice.device_id]["sessions"][0]["connections"]
    if not conns or conns[0]["ip"] != "127.0.0.1":
        raise TestFailure(f"user whois shows no connection: {out}")

    # user membership.
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    out = sa.run("user", "membership", alice.user_id, "--ids")
    if out != {"joined_rooms": [room], "total": 1}:
        raise TestFailure(f"user membership: {out}")
    # By default synadm shows aliases, read with the admin's token from a room the admin is not in.
    alias_name = f"synadm-{ctx.run_id}".lower()
    ctx.expect(alice.request("PUT", f"/directory/room/{q('#' + alias_name + ':localhost')}", body={"room_id": room}))
    out = sa.run("user", "membership", alice.user_id)
    if out != {"joined_rooms": [f"#{alias_name}:localhost"], "total": 1}:
        raise TestFailure(f"user membership (aliases): {out}")

    # user prune-devices: lists the devices (GET .../devices), then deletes one (POST .../delete_devices).
    phone = ctx.expect(login(srv, alice.localpart, "alice-third-pw"))
    # (-l: list only; synadm picks devices unseen for -d days or, with -i, the one named.)
    out = sa.run("user", "prune-devices", alice.user_id, "-l", "-i", phone["device_id"], "--ts")
    if [(d["device_id"], d["user_id"], d["last_seen_ip"]) for d in out] != [(phone["device_id"], alice.user_id, "127.0.0.1")]:
        raise TestFailure(f"user prune-devices -l: {out}")
    ctx.expect(srv.client().request("GET", "/account/whoami", token=phone["access_token"]), body={"user_id": alice.user_id})
    out = sa.run("user", "prune-devices", alice.user_id, "-i", phone["device_id"], "--ts")
    if [d["device_id"] for d in out] != [phone["device_id"]]:
        raise TestFailure(f"user prune-devices -i: {out}")
    ctx.expect(srv.client().request("GET", "/account/whoami", token=phone["access_token"]), 401, "M_UNKNOWN_TOKEN")
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})
    devices = ctx.expect(admin.request("GET", f"/_synapse/admin/v2/users/{q(alice.user_id)}/devices"))
    if [d["device_id"] for d in devices["devices"]] != [alice.device_id]:
        raise TestFailure(f"after prune-devices: {devices}")

    # user login: a token that acts as alice (with synadm's default expiry of a day, and never).
    for extra in ([], ["--expire-never"]):
        out = sa.run("user", "login", alice.user_id, *extra)
        ctx.expect(srv.client().request("GET", "/account/whoami", token=out["access_token"]),
                   body={"user_id": alice.user_id})

    # user shadow-ban, and -u to lift it.
    if sa.run("user", "shadow-ban", bob.user_id) != {}:
        raise TestFailure("user shadow-ban answered something")
    ctx.expect(admin.request("GET", f"/_synapse/admin/v2/users/{q(bob.user_id)}"), body={"shadow_banned": True})
    sa.run("user", "shadow-ban", bob.user_id, "-u")
    ctx.expect(admin.request("GET", f"/_synapse/admin/v2/users/{q(bob.user_id)}"), body={"shadow_banned": False})

    # user deactivate (synadm shows details and membership first), and --gdpr-erase.
    docs = run_all(sa, "user", "deactivate", bob.user_id)
    if docs[-1] != {"id_server_unbind_result": "success"} or docs[0].get("name") != bob.user_id:
        raise TestFailure(f"user deactivate answered {docs}")
    ctx.expect(bob.request("GET", "/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    ctx.expect(login(srv, bob.localpart, bob.password), 403, "M_FORBIDDEN")
    docs = run_all(sa, "user", "deactivate", alice.user_id, "--gdpr-erase")
    if docs[-1] != {"id_server_unbind_result": "success"}:
        raise TestFailure(f"user deactivate --gdpr-erase answered {docs}")
    out = sa.run("user", "details", alice.user_id)
    if not out["deactivated"] or not out["erased"]:
        raise TestFailure(f"after --gdpr-erase: {out}")
    out = sa.run("user", "list", "-i", alice.user_id)
    if out["total"] != 0:
        raise TestFailure(f"user list shows a deactivated user without -d: {out}")
    out = sa.run("user", "list", "-i", alice.user_id, "-d")
    if [u["deactivated"] for u in out["users"]] != [True]:
        raise TestFailure(f"user list -d: {out}")


def test_synadm_refusals(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    # Not an admin: synadm shows the 403.
    done = ctx.synadm(srv, alice).run("user", "list", expect_failure=True)
    if "M_FORBIDDEN" not in done.stdout:
        raise TestFailure(f"a non-admin's synadm user list: {done.stdout} {done.stderr}")
    sa = ctx.synadm(srv, admin)
    done = sa.run("user", "details", f"@nobody-{ctx.run_id}:localhost", expect_failure=True)
    if "M_NOT_FOUND" not in done.stdout:
        raise TestFailure(f"details of an unknown user: {done.stdout}")
    done = sa.run("user", "login", admin.user_id, expect_failure=True)
    if "M_INVALID_PARAM" not in done.stdout:
        raise TestFailure(f"logging in as oneself: {done.stdout}")
    done = sa.run("user", "3pid", "-m", "email", "nobody@example.org", expect_failure=True)
    if "M_NOT_FOUND" not in done.stdout:
        raise TestFailure(f"3pid of nobody: {done.stdout}")
    done = sa.run("user", "auth-provider", "-p", "cas", "nobody", expect_failure=True)
    if "M_NOT_FOUND" not in done.stdout:
        raise TestFailure(f"auth-provider of nobody: {done.stdout}")
