"""E2EE keys: concurrent claims, durability, request bounds, long-poll wake-ups, and cross-signing
with real ed25519 signatures (libsodium through ctypes, as the server links it anyway)."""

import base64
import ctypes
import ctypes.util
import json
import threading
import time

from harness import TestFailure

_sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
_sodium.sodium_init()


def b64(raw):
    return base64.b64encode(raw).decode().rstrip("=")


class Ed25519:
    def __init__(self, seed_byte):
        seed = bytes([seed_byte]) * 32
        self.pk = ctypes.create_string_buffer(32)
        self.sk = ctypes.create_string_buffer(64)
        _sodium.crypto_sign_seed_keypair(self.pk, self.sk, seed)
        self.public = b64(self.pk.raw)

    def sign_json(self, obj, user_id, key_id):
        """Signs obj (without signatures/unsigned) as the spec says and adds the signature."""
        to_sign = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        msg = json.dumps(to_sign, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        sig = ctypes.create_string_buffer(64)
        _sodium.crypto_sign_detached(sig, None, msg, ctypes.c_ulonglong(len(msg)), self.sk)
        obj.setdefault("signatures", {}).setdefault(user_id, {})[key_id] = b64(sig.raw)
        return obj


def cross_signing_key(user_id, usage, key, signer=None, signer_id=None):
    obj = {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{key.public}": key.public}}
    if signer:
        signer.sign_json(obj, user_id, signer_id)
    return obj


def upload_otks(ctx, user, count, prefix="K"):
    keys = {f"signed_curve25519:{prefix}{i:04d}": {"key": f"{prefix}{i}", "signatures": {}} for i in range(count)}
    return ctx.expect(user.request("POST", "/keys/upload", body={"one_time_keys": keys}))


def test_concurrent_claims_hand_out_each_key_once(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    upload_otks(ctx, alice, 10)
    ctx.expect(alice.request("POST", "/keys/upload", body={
        "fallback_keys": {"signed_curve25519:FB": {"key": "fallback", "fallback": True, "signatures": {}}}}))
    results, errors = [], []
    barrier = threading.Barrier(20)

    def claim():
        try:
            barrier.wait()
            res = bob.request("POST", "/keys/claim", body={"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}})
            results.append(ctx.expect(res)["one_time_keys"][alice.user_id][alice.device_id])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise TestFailure(f"a claim failed: {errors[0]}")
    ids = [next(iter(r)) for r in results]
    otk_ids = [i for i in ids if i != "signed_curve25519:FB"]
    if len(otk_ids) != 10 or len(set(otk_ids)) != 10:
        raise TestFailure(f"expected 10 distinct one-time keys among 20 claims, got {sorted(otk_ids)}")
    if ids.count("signed_curve25519:FB") != 10:
        raise TestFailure(f"expected the fallback key for the other 10 claims, got {sorted(ids)}")
    body = ctx.expect(alice.request("GET", "/sync"))
    if body["device_one_time_keys_count"].get("signed_curve25519") != 0 or body["device_unused_fallback_key_types"] != []:
        raise TestFailure(f"after the claims: counts {body['device_one_time_keys_count']}, "
                          f"unused fallback {body['device_unused_fallback_key_types']}")


def test_uploaded_keys_survive_kill_9(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    device_keys = {"user_id": alice.user_id, "device_id": alice.device_id, "algorithms": ["m.megolm.v1.aes-sha2"],
                   "keys": {f"ed25519:{alice.device_id}": "edkey"}, "signatures": {}}
    ctx.expect(alice.request("POST", "/keys/upload", body={"device_keys": device_keys}))
    upload_otks(ctx, alice, 5)
    master = Ed25519(7)
    ctx.expect(alice.request("POST", "/keys/device_signing/upload", body={
        "master_key": cross_signing_key(alice.user_id, "master", master)}))
    srv.kill()
    srv.start()
    body = ctx.expect(alice.request("POST", "/keys/query", body={"device_keys": {alice.user_id: []}}))
    got = body["device_keys"][alice.user_id].get(alice.device_id, {})
    if got.get("keys") != device_keys["keys"]:
        raise TestFailure(f"device keys after kill -9: {got}")
    if alice.user_id not in body["master_keys"]:
        raise TestFailure("the master key is gone after kill -9")
    counts = ctx.expect(alice.request("POST", "/keys/upload", body={}))["one_time_key_counts"]
    if counts.get("signed_curve25519") != 5:
        raise TestFailure(f"one-time keys after kill -9: {counts}")


def test_oversized_requests_are_refused(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    keys = {f"signed_curve25519:K{i}": "k" for i in range(1001)}
    ctx.expect(alice.request("POST", "/keys/upload", body={"one_time_keys": keys}), 400, "M_TOO_LARGE")
    claim = {f"@u{i}:example.org": {"D": "signed_curve25519"} for i in range(1001)}
    ctx.expect(alice.request("POST", "/keys/claim", body={"one_time_keys": claim}), 400, "M_TOO_LARGE")
    query = {f"@u{i}:example.org": [] for i in range(1001)}
    ctx.expect(alice.request("POST", "/keys/query", body={"device_keys": query}), 400, "M_TOO_LARGE")
    sigs = {alice.user_id: {f"K{i}": {} for i in range(1001)}}
    ctx.expect(alice.request("POST", "/keys/signatures/upload", body=sigs), 400, "M_TOO_LARGE")
    # 1000 is fine.
    keys = {f"signed_curve25519:K{i}": "k" for i in range(1000)}
    ctx.expect(alice.request("POST", "/keys/upload", body={"one_time_keys": keys}),
               body={"one_time_key_counts": {"signed_curve25519": 1000}})


def test_a_long_poll_wakes_when_a_room_mate_changes_keys(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}", body={}))
    since = ctx.expect(alice.request("GET", "/sync"))["next_batch"]
    out = {}

    def poll():
        out["res"] = alice.request("GET", "/sync", query={"since": since, "timeout": "10000"})

    t = threading.Thread(target=poll)
    start = time.monotonic()
    t.start()
    time.sleep(0.3)
    ctx.expect(bob.request("POST", "/keys/upload", body={"device_keys": {
        "user_id": bob.user_id, "device_id": bob.device_id, "algorithms": [], "keys": {}, "signatures": {}}}))
    t.join(15)
    elapsed = time.monotonic() - start
    body = ctx.expect(out["res"])
    if bob.user_id not in body["device_lists"]["changed"]:
        raise TestFailure(f"the long-poll answered without bob in device_lists.changed: {body['device_lists']}")
    if elapsed > 5:
        raise TestFailure(f"the long-poll took {elapsed:.1f}s to notice bob's new keys")


def test_cross_signing_with_real_signatures(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    # Alice's device keys, signed by the device's own key.
    dev = Ed25519(1)
    device_keys = dev.sign_json({"user_id": alice.user_id, "device_id": alice.device_id,
                                 "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                                 "keys": {f"ed25519:{alice.device_id}": dev.public, f"curve25519:{alice.device_id}": "curve"}},
                                alice.user_id, f"ed25519:{alice.device_id}")
    ctx.expect(alice.request("POST", "/keys/upload", body={"device_keys": device_keys}))
    master, ssk, usk = Ed25519(2), Ed25519(3), Ed25519(4)
    mid = f"ed25519:{master.public}"
    body = {"master_key": cross_signing_key(alice.user_id, "master", master),
            "self_signing_key": cross_signing_key(alice.user_id, "self_signing", ssk, master, mid),
            "user_signing_key": cross_signing_key(alice.user_id, "user_signing", usk, master, mid)}
    # The first upload needs no password.
    ctx.expect(alice.request("POST", "/keys/device_signing/upload", body=body))
    # The same again is fine without a password too.
    ctx.expect(alice.request("POST", "/keys/device_signing/upload", body=body))

    # A self-signing key not signed by the master key is refused.
    other = Ed25519(9)
    bad = cross_signing_key(alice.user_id, "self_signing", ssk, other, mid)
    ctx.expect(alice.request("POST", "/keys/device_signing/upload", body={"self_signing_key": bad}), 400, "M_INVALID_SIGNATURE")

    # Bob's master key, for alice's user-signing key to sign.
    bob_master = Ed25519(5)
    ctx.expect(bob.request("POST", "/keys/device_signing/upload", body={"master_key": cross_signing_key(bob.user_id, "master", bob_master)}))

    # Signatures: ssk signs alice's device; the device signs the master key; usk signs bob's master.
    signed_device = ssk.sign_json(json.loads(json.dumps(device_keys)), alice.user_id, f"ed25519:{ssk.public}")
    signed_master = dev.sign_json(cross_signing_key(alice.user_id, "master", master), alice.user_id, f"ed25519:{alice.device_id}")
    signed_bob = usk.sign_json(cross_signing_key(bob.user_id, "master", bob_master), alice.user_id, f"ed25519:{usk.public}")
    forged = other.sign_json(json.loads(json.dumps(device_keys)), alice.user_id, f"ed25519:{ssk.public}")
    res = ctx.expect(alice.request("POST", "/keys/signatures/upload", body={
        alice.user_id: {alice.device_id: signed_device, master.public: signed_master, "NOSUCHDEVICE": {"user_id": alice.user_id}},
        bob.user_id: {bob_master.public: signed_bob}}))
    fails = res["failures"]
    if list(fails.get(alice.user_id, {})) != ["NOSUCHDEVICE"] or bob.user_id in fails:
        raise TestFailure(f"unexpected failures: {fails}")
    res = ctx.expect(alice.request("POST", "/keys/signatures/upload", body={alice.user_id: {alice.device_id: forged}}))
    if res["failures"].get(alice.user_id, {}).get(alice.device_id, {}).get("errcode") != "M_INVALID_SIGNATURE":
        raise TestFailure(f"a forged signature was not refused: {res}")

    # What alice sees: her device signed by her ssk, her master signed by her device, her usk,
    # and bob's master with her signature.
    q = ctx.expect(alice.request("POST", "/keys/query", body={"device_keys": {alice.user_id: [], bob.user_id: []}}))
    sigs = q["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    if f"ed25519:{ssk.public}" not in sigs or f"ed25519:{alice.device_id}" not in sigs:
        raise TestFailure(f"device signatures seen by alice: {sigs}")
    if sigs[f"ed25519:{ssk.public}"] != signed_device["signatures"][alice.user_id][f"ed25519:{ssk.public}"]:
        raise TestFailure("the stored signature differs from the uploaded one")
    if f"ed25519:{alice.device_id}" not in q["master_keys"][alice.user_id]["signatures"][alice.user_id]:
        raise TestFailure(f"alice's master key lacks her device's signature: {q['master_keys'][alice.user_id]}")
    if alice.user_id not in q["user_signing_keys"] or bob.user_id in q["user_signing_keys"]:
        raise TestFailure(f"user-signing keys seen by alice: {list(q['user_signing_keys'])}")
    if alice.user_id not in q["master_keys"][bob.user_id].get("signatures", {}):
        raise TestFailure(f"alice does not see her signature of bob's master key: {q['master_keys'][bob.user_id]}")
    if alice.user_id not in q["self_signing_keys"]:
        raise TestFailure("alice's self-signing key is missing")

    # What bob sees: alice's master and self-signing keys, not her user-signing key, and not her
    # signature of his master key.
    q = ctx.expect(bob.request("POST", "/keys/query", body={"device_keys": {alice.user_id: [], bob.user_id: []}}))
    if alice.user_id in q["user_signing_keys"] or alice.user_id not in q["self_signing_keys"]:
        raise TestFailure(f"bob sees user-signing keys {list(q['user_signing_keys'])}")
    if alice.user_id in q["master_keys"][bob.user_id].get("signatures", {}):
        raise TestFailure("bob sees alice's user-signing signature of his master key")
    if f"ed25519:{ssk.public}" not in q["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]:
        raise TestFailure("bob does not see alice's self-signing signature of her device")

    # Replacing the keys now needs the password (user-interactive auth).
    master2 = Ed25519(6)
    new = {"master_key": cross_signing_key(alice.user_id, "master", master2)}
    res = alice.request("POST", "/keys/device_signing/upload", body=new)
    uia = ctx.expect(res, 401)
    if "session" not in uia or not any("m.login.password" in f["stages"] for f in uia["flows"]):
        raise TestFailure(f"no password UIA for replacing keys: {uia}")
    new["auth"] = {"type": "m.login.password", "session": uia["session"], "password": alice.password,
                   "identifier": {"type": "m.id.user", "user": alice.user_id}}
    ctx.expect(alice.request("POST", "/keys/device_signing/upload", body=new))
    q = ctx.expect(bob.request("POST", "/keys/query", body={"device_keys": {alice.user_id: []}}))
    if q["master_keys"][alice.user_id]["keys"] != {f"ed25519:{master2.public}": master2.public}:
        raise TestFailure("the master key was not replaced")


def test_appservice_users_upload_keys_as_their_device_and_need_no_uia(ctx):
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from appservice_support import AsClient, AsEnv, registration

    with AsEnv(ctx) as env:
        bridge = registration("bridge", None, "_bridge_bot", users=[(True, "@_br_.*")])
        srv = env.server([bridge])
        br = AsClient(srv, bridge)
        u = br.register("_br_alice")
        # Without a device there is nothing to attach one-time keys to.
        ctx.expect(br.request("POST", "/keys/upload", user_id=u, body={"one_time_keys": {"curve25519:A": "a"}}),
                   400, "M_MISSING_PARAM")
        ctx.expect(br.request("PUT", "/devices/BRDEV", user_id=u, body={}), 201)
        dk = {"user_id": u, "device_id": "BRDEV", "algorithms": [], "keys": {"ed25519:BRDEV": "k"}, "signatures": {}}
        ctx.expect(br.request("POST", "/keys/upload", user_id=u, device_id="BRDEV",
                              body={"device_keys": dk, "one_time_keys": {"curve25519:A": "a"}}),
                   body={"one_time_key_counts": {"curve25519": 1}})
        dk_other = dict(dk, device_id="OTHER")
        ctx.expect(br.request("POST", "/keys/upload", user_id=u, device_id="BRDEV", body={"device_keys": dk_other}),
                   400, "M_INVALID_PARAM")
        q = ctx.expect(br.request("POST", "/keys/query", user_id=u, body={"device_keys": {u: []}}))
        if list(q["device_keys"][u]) != ["BRDEV"]:
            raise TestFailure(f"the appservice user's device keys: {q['device_keys']}")
        # Cross-signing keys: first upload, then a replacement, both without UIA (MSC4190).
        for seed in (11, 12):
            key = Ed25519(seed)
            ctx.expect(br.request("POST", "/keys/device_signing/upload", user_id=u,
                                  body={"master_key": cross_signing_key(u, "master", key)}))
        q = ctx.expect(br.request("POST", "/keys/query", user_id=u, body={"device_keys": {u: []}}))
        if q["master_keys"][u]["keys"] != {f"ed25519:{Ed25519(12).public}": Ed25519(12).public}:
            raise TestFailure("the appservice user's master key was not replaced")


def test_private_key_changes_reach_only_the_user_who_can_see_them(ctx):
    """A user-signing key, and its signatures of other users' master keys, are shown to their
    owner only: a room-mate's device_lists.changed must not name the owner for them, while the
    owner sees herself (new user-signing key) and the user she signed (SyTest 08-cross-signing,
    "Changing user-signing key notifies local users")."""
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}", body={}))
    master, usk, bob_master = Ed25519(2), Ed25519(4), Ed25519(5)
    mid = f"ed25519:{master.public}"
    ctx.expect(alice.request("POST", "/keys/device_signing/upload",
                             body={"master_key": cross_signing_key(alice.user_id, "master", master)}))
    ctx.expect(bob.request("POST", "/keys/device_signing/upload",
                           body={"master_key": cross_signing_key(bob.user_id, "master", bob_master)}))
    alice_since = ctx.expect(alice.request("GET", "/sync"))["next_batch"]
    bob_since = ctx.expect(bob.request("GET", "/sync"))["next_batch"]

    # Alice adds a user-signing key: news for alice's devices only.
    upload = {"user_signing_key": cross_signing_key(alice.user_id, "user_signing", usk, master, mid)}
    uia = ctx.expect(alice.request("POST", "/keys/device_signing/upload", body=upload), 401)
    upload["auth"] = {"type": "m.login.password", "session": uia["session"], "password": alice.password,
                      "identifier": {"type": "m.id.user", "user": alice.user_id}}
    ctx.expect(alice.request("POST", "/keys/device_signing/upload", body=upload))
    changed = ctx.expect(bob.request("GET", "/sync", query={"since": bob_since}))["device_lists"]["changed"]
    if alice.user_id in changed:
        raise TestFailure(f"bob was told about alice's user-signing key: changed={changed}")
    body = ctx.expect(alice.request("GET", "/sync", query={"since": alice_since}))
    if alice.user_id not in body["device_lists"]["changed"]:
        raise TestFailure(f"alice was not told about her own new user-signing key: {body['device_lists']}")
    alice_since = body["next_batch"]
    res = ctx.expect(alice.request("GET", "/keys/changes", query={"from": bob_since, "to": alice_since}))
    if alice.user_id not in res["changed"]:
        raise TestFailure(f"/keys/changes for alice lacks her own user-signing key change: {res}")

    # Alice signs bob's master key: alice (who alone sees the signature) must hear that bob's
    # keys changed; bob hears nothing about alice.
    signed_bob = usk.sign_json(cross_signing_key(bob.user_id, "master", bob_master), alice.user_id, f"ed25519:{usk.public}")
    res = ctx.expect(alice.request("POST", "/keys/signatures/upload", body={bob.user_id: {bob_master.public: signed_bob}}))
    if res["failures"]:
        raise TestFailure(f"signature upload failed: {res}")
    body = ctx.expect(alice.request("GET", "/sync", query={"since": alice_since}))
    if bob.user_id not in body["device_lists"]["changed"]:
        raise TestFailure(f"alice's sync does not name bob after she signed his master key: {body['device_lists']}")
    changed = ctx.expect(bob.request("GET", "/sync", query={"since": bob_since}))["device_lists"]["changed"]
    if alice.user_id in changed:
        raise TestFailure(f"bob was told about alice's signature of his key: changed={changed}")
