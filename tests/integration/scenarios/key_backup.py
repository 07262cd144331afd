"""Server-side key backup beyond what case files say: acknowledged keys survive kill -9, size
bounds, and appservice identity assertion (the backup belongs to the asserted user)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from appservice_support import AsClient, AsEnv, registration  # noqa: E402

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"


def key(index=0, forwarded=0, verified=False, data="x"):
    return {"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ephemeral": "eph", "ciphertext": data, "mac": "mac"}}


def create(ctx, user, auth_data=None):
    res = user.request("POST", "/room_keys/version", body={"algorithm": ALGORITHM, "auth_data": auth_data or {"public_key": "pk"}})
    return ctx.expect(res, body={"version": "$string"})["version"]


def test_acknowledged_backup_keys_survive_kill_9(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    version = create(ctx, alice)
    expected = {}
    for i in range(40):
        room = f"!room{i % 4}:example.org"
        body = key(index=i, data=f"c{i}")
        if i % 2:
            res = alice.request("PUT", f"/room_keys/keys/{room}/s{i}", query={"version": version}, body=body)
        else:
            res = alice.request("PUT", "/room_keys/keys", query={"version": version},
                                body={"rooms": {room: {"sessions": {f"s{i}": body}}}})
        answer = ctx.expect(res, body={"count": i + 1, "etag": "$string"})
        expected.setdefault(room, {})[f"s{i}"] = body
    etag = answer["etag"]
    srv.kill()
    srv.start()
    got = ctx.expect(alice.request("GET", "/room_keys/keys", query={"version": version}))
    if got != {"rooms": {r: {"sessions": s} for r, s in expected.items()}}:
        raise TestFailure(f"backed-up keys differ after kill -9: {str(got)[:300]}")
    ctx.expect(alice.request("GET", "/room_keys/version"),
               body={"version": version, "count": 40, "etag": etag, "auth_data": {"public_key": "pk"}})
    # A deletion acknowledged before a crash stays deleted.
    ctx.expect(alice.request("DELETE", f"/room_keys/version/{version}"))
    srv.kill()
    srv.start()
    ctx.expect(alice.request("GET", "/room_keys/version"), 404, errcode="M_NOT_FOUND")
    ctx.expect(alice.request("GET", "/room_keys/keys", query={"version": version}), 404, errcode="M_NOT_FOUND")
    # The next version's number is higher even after a restart.
    if int(create(ctx, alice)) <= int(version):
        raise TestFailure("a new backup version reused an old number after a restart")


def test_backup_sizes_are_bounded(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    big = "A" * (17 * 1024)
    res = alice.request("POST", "/room_keys/version", body={"algorithm": ALGORITHM, "auth_data": {"public_key": big}})
    ctx.expect(res, 413, errcode="M_TOO_LARGE")
    ctx.expect(alice.request("GET", "/room_keys/version"), 404, errcode="M_NOT_FOUND")
    version = create(ctx, alice)
    res = alice.request("PUT", f"/room_keys/version/{version}", body={"algorithm": ALGORITHM, "auth_data": {"public_key": big}})
    ctx.expect(res, 413, errcode="M_TOO_LARGE")
    ctx.expect(alice.request("GET", "/room_keys/version"), body={"auth_data": {"public_key": "pk"}})
    res = alice.request("PUT", "/room_keys/keys/!r:example.org/s", query={"version": version}, body=key(data=big))
    ctx.expect(res, 413, errcode="M_TOO_LARGE")
    # Just under the bound is fine.
    res = alice.request("PUT", "/room_keys/keys/!r:example.org/s", query={"version": version},
                        body=key(data="A" * (15 * 1024)))
    ctx.expect(res, body={"count": 1})
    # Too many keys in one request: nothing is stored.
    minimal = {"first_message_index": 0, "forwarded_count": 0, "is_verified": False, "session_data": {}}
    sessions = {f"k{i}": minimal for i in range(5001)}
    res = alice.request("PUT", "/room_keys/keys/!r:example.org", query={"version": version}, body={"sessions": sessions})
    ctx.expect(res, 413, errcode="M_TOO_LARGE")
    ctx.expect(alice.request("GET", "/room_keys/version"), body={"count": 1})
    del sessions["k0"]
    res = alice.request("PUT", "/room_keys/keys/!r:example.org", query={"version": version}, body={"sessions": sessions})
    ctx.expect(res, body={"count": 5001})
    # Long IDs.
    res = alice.request("PUT", f"/room_keys/keys/!r:example.org/{'s' * 256}", query={"version": version}, body=key())
    ctx.expect(res, 400, errcode="M_INVALID_PARAM")


def test_appservice_backup_belongs_to_the_asserted_user(ctx):
    with AsEnv(ctx) as env:
        bridge = registration("bridge", None, "_kb_bot", users=[(True, "@_kb_.*")])
        srv = env.server([bridge])
        br = AsClient(srv, bridge)
        user = br.register("_kb_alice")
        res = br.request("POST", "/room_keys/version", user_id=user, body={"algorithm": ALGORITHM, "auth_data": {"public_key": "u"}})
        version = ctx.expect(res)["version"]
        ctx.expect(br.request("PUT", "/room_keys/keys/!r:example.org/s", user_id=user, query={"version": version},
                              body=key(data="as")), body={"count": 1})
        ctx.expect(br.request("GET", "/room_keys/version", user_id=user),
                   body={"version": version, "auth_data": {"public_key": "u"}, "count": 1})
        ctx.expect(br.request("GET", "/room_keys/keys/!r:example.org/s", user_id=user, query={"version": version}),
                   body={"session_data": {"ciphertext": "as"}})
        # The appservice's own user has no backup: the asserted user's is not the sender's.
        ctx.expect(br.request("GET", "/room_keys/version"), 404, errcode="M_NOT_FOUND")
        # The same user, logged in with a device of its own, sees the same backup.
        login = br.request("POST", "/login", body={"type": "m.login.application_service",
                                                   "identifier": {"type": "m.id.user", "user": user}})
        token = ctx.expect(login)["access_token"]
        ctx.expect(srv.client().request("GET", "/room_keys/version", token=token), body={"version": version, "count": 1})


def test_session_ids_with_base64_characters(ctx):
    """Megolm session IDs are base64: '/' and '+' arrive percent-encoded (or '+' as is) in the path."""
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    version = create(ctx, alice)
    sid = "AbC/dEf+gh"
    res = alice.request("PUT", "/room_keys/keys/%21r%3Aexample.org/AbC%2FdEf%2Bgh", query={"version": version},
                        body=key(data="b64"))
    ctx.expect(res, body={"count": 1})
    ctx.expect(alice.request("GET", "/room_keys/keys/!r:example.org/AbC%2FdEf+gh", query={"version": version}),
               body={"session_data": {"ciphertext": "b64"}})
    ctx.expect(alice.request("GET", "/room_keys/keys", query={"version": version}),
               body={"rooms": {"$keys": ["!r:example.org"], "!r:example.org": {"sessions": {"$keys": [sid]}}}})
    ctx.expect(alice.request("DELETE", "/room_keys/keys/!r:example.org/AbC%2FdEf%2Bgh", query={"version": version}),
               body={"count": 0})
