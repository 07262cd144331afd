#!/usr/bin/python3
"""Interop: end-to-end encryption with matrix-nio + python-olm (real Olm/Megolm, not ours)
against the real Trestle binary. Two users each log in a device with an encryption store, upload
device and one-time keys, and talk in an encrypted room (m.megolm.v1.aes-sha2): the sender
queries the other's device keys, claims a one-time key, shares the room key over Olm through
/sendToDevice, and the receiver gets it in /sync's to_device and decrypts. Both ways. Then a
js <-> nio cross check: a matrix-js-sdk + Rust crypto peer (e2ee_js_peer.mjs, needs node and
tests/interop/node_modules, else skipped) joins, decrypts nio's message, and nio decrypts its answer.

Run with Debian's python (python3-matrix-nio, python3-olm):

    /usr/bin/python3 tests/interop/e2ee_nio.py [--binary build/trestle]

Exit status 0 only if every check passed; the last line is "N passed, N failed".
"""

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysUploadResponse,
    LoginResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

# The server lifecycle and the check bookkeeping are shared with the crypto-free journey.
from nio_journey import Checks, JourneyAborted, Server, STEP_TIMEOUT, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
JOURNEY_TIMEOUT = 90.0
SYNC_TIMEOUT_MS = 30000
MEGOLM = "m.megolm.v1.aes-sha2"


class Observer:
    """Records what one client's sync callbacks deliver: decrypted texts and undecryptable
    Megolm events (retried once the room key arrives)."""

    def __init__(self, client):
        self.client = client
        self.texts = {}  # event_id -> (room_id, sender, body, decrypted)
        self.undecrypted = {}  # event_id -> (room, MegolmEvent)
        self.to_device_types = []
        self.otk_counts = []
        self.changed = asyncio.Event()
        client.add_event_callback(self.on_text, RoomMessageText)
        client.add_event_callback(self.on_megolm, MegolmEvent)
        client.add_response_callback(self.on_sync, SyncResponse)

    async def on_text(self, room, event):
        self.texts[event.event_id] = (room.room_id, event.sender, event.body, event.decrypted)
        self.changed.set()

    async def on_megolm(self, room, event):
        self.undecrypted[event.event_id] = (room, event)
        self.changed.set()

    async def on_sync(self, response):
        self.to_device_types += [e.source.get("type") for e in response.to_device_events]
        if response.device_key_count.signed_curve25519 is not None:
            self.otk_counts.append(response.device_key_count.signed_curve25519)
        self.changed.set()

    def text(self, event_id):
        """The decrypted message, decrypting a late-keyed Megolm event if its key is here now."""
        if event_id in self.texts:
            return self.texts[event_id]
        if event_id in self.undecrypted:
            room, ev = self.undecrypted[event_id]
            try:
                dec = self.client.decrypt_event(ev)
            except Exception:  # noqa: BLE001 - the key has not arrived yet
                return None
            if isinstance(dec, RoomMessageText):
                return (room.room_id, dec.sender, dec.body, dec.decrypted)
        return None


def e2ee_client(base_url, user, store_dir):
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    return AsyncClient(base_url, user, store_path=store_dir, config=config)


async def journey(server, checks, store_root):
    base = server.base_url
    clients, tasks = [], []
    try:
        for name in ("alice", "bob"):
            reg = AsyncClient(base, config=AsyncClientConfig(encryption_enabled=False))
            clients.append(reg)
            r = await reg.register(name, f"{name}-password-1", f"nio-reg-{name}")
            checks.require(f"register {name}", isinstance(r, RegisterResponse), repr(r))

        users, uploaded = {}, {}
        for name in ("alice", "bob"):
            store = os.path.join(store_root, name)
            os.makedirs(store)
            c = e2ee_client(base, f"@{name}:localhost", store)
            clients.append(c)
            r = await c.login(f"{name}-password-1", device_name=f"nio-e2ee-{name}")
            checks.require(f"login {name} with an olm account", isinstance(r, LoginResponse) and c.olm is not None,
                           repr(r))
            # Device keys + one-time keys, signed by the olm account.
            checks.require(f"{name} should upload keys", c.should_upload_keys)
            r = await c.keys_upload()
            checks.require(f"{name} /keys/upload", isinstance(r, KeysUploadResponse), repr(r))
            checks.check(f"{name} /keys/upload counts the one-time keys",
                         r.signed_curve25519_count > 0, repr(r.signed_curve25519_count))
            uploaded[name] = r.signed_curve25519_count
            checks.check(f"{name} has nothing more to upload", not c.should_upload_keys)
            users[name] = c
        alice, bob = users["alice"], users["bob"]
        a_obs, b_obs = Observer(alice), Observer(bob)

        for c in (alice, bob):
            r = await c.sync(timeout=0, full_state=True)
            checks.require(f"initial sync {c.user_id}", isinstance(r, SyncResponse), repr(r))
            checks.check(f"{c.user_id}'s sync counts its one-time keys",
                         (r.device_key_count.signed_curve25519 or 0) > 0, repr(r.device_key_count))
            tasks.append(asyncio.create_task(c.sync_forever(timeout=SYNC_TIMEOUT_MS, loop_sleep_time=0)))

        # An encrypted room: m.room.encryption in the initial state.
        r = await alice.room_create(name="Secret", invite=[bob.user_id], initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}])
        checks.require("alice creates an encrypted room", isinstance(r, RoomCreateResponse), repr(r))
        room_id = r.room_id
        await wait_until("bob's sync delivers the invite", lambda: room_id in bob.invited_rooms, b_obs.changed)
        r = await bob.join(room_id)
        checks.require("bob joins", isinstance(r, JoinResponse), repr(r))
        for c, obs in ((alice, a_obs), (bob, b_obs)):
            await wait_until(f"{c.user_id} sees an encrypted room with both members",
                             lambda: room_id in c.rooms and c.rooms[room_id].encrypted
                             and set(c.rooms[room_id].users) == {alice.user_id, bob.user_id}, obs.changed)

        # /keys/query through nio: each learns the other's device and its real identity keys.
        for c, other, obs in ((alice, bob, a_obs), (bob, alice, b_obs)):
            await wait_until(
                f"{c.user_id} learns {other.user_id}'s device keys (keys/query)",
                lambda: any(d.id == other.device_id for d in c.device_store.active_user_devices(other.user_id)),
                obs.changed)
            dev = next(d for d in c.device_store.active_user_devices(other.user_id) if d.id == other.device_id)
            checks.check(f"{c.user_id} has {other.user_id}'s ed25519 key",
                         dev.ed25519 == other.olm.account.identity_keys["ed25519"], repr(dev.keys))
            checks.check(f"{c.user_id} has {other.user_id}'s curve25519 key",
                         dev.curve25519 == other.olm.account.identity_keys["curve25519"], repr(dev.keys))

        # Messages both ways: the sender claims a one-time key, shares the Megolm session over Olm
        # (sendToDevice), sends m.room.encrypted; the receiver decrypts.
        stamp = int(time.time() * 1000)
        for sender, receiver, obs in ((alice, bob, b_obs), (bob, alice, a_obs)):
            name = sender.user_id[1:].split(":")[0]
            body = f"secret from {name} {stamp}"
            r = await sender.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                       ignore_unverified_devices=True)
            checks.require(f"{name} sends an encrypted message", isinstance(r, RoomSendResponse), repr(r))
            event_id = r.event_id
            got = await wait_until(f"{receiver.user_id} decrypts {name}'s message",
                                   lambda: obs.text(event_id), obs.changed)
            checks.check(f"{name}'s message decrypted: body", got[2] == body, repr(got))
            checks.check(f"{name}'s message decrypted: sender", got[1] == sender.user_id, repr(got))
            checks.check(f"{name}'s message was encrypted", got[3] is True, repr(got))
            # nio hands the callbacks the Olm-decrypted to-device event: an m.room_key.
            checks.check(f"{receiver.user_id} got the room key by to-device (Olm-decrypted m.room_key)",
                         "m.room_key" in obs.to_device_types, repr(obs.to_device_types))

        # On the wire the room holds only ciphertext.
        # (Raw HTTP: nio would decrypt the chunk of room_messages.)
        url = (f"{base}/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=20")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {bob.access_token}"})
        raw = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=10).read()))["chunk"]
        types = [e.get("type") for e in raw]
        checks.check("/messages shows the messages as m.room.encrypted",
                     types.count("m.room.encrypted") == 2 and "m.room.message" not in types, repr(types))
        checks.check("the ciphertext is megolm",
                     all(e["content"].get("algorithm") == MEGOLM for e in raw if e.get("type") == "m.room.encrypted"),
                     repr(raw[:1]))

        # Alice claimed one of bob's one-time keys (bob then answered over the same Olm session,
        # claiming none of hers): bob's sync reported the lower count (and nio topped it up).
        top = max(b_obs.otk_counts) if b_obs.otk_counts else 0
        checks.check("bob's one-time key count dropped after alice's claim",
                     any(n == top - 1 for n in b_obs.otk_counts), repr(b_obs.otk_counts))
        # Alice's count stays what she uploaded: nothing claimed hers. (Not compared with bob's
        # count: how many keys nio tops up to, and when, is its business.)
        checks.check("alice's one-time keys were not claimed", set(a_obs.otk_counts) == {uploaded["alice"]},
                     f"alice {a_obs.otk_counts!r}, bob {b_obs.otk_counts!r}")

        await js_cross_check(server, checks, alice, bob, a_obs, b_obs, room_id)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        for c in clients:
            await c.close()


async def js_cross_check(server, checks, alice, bob, a_obs, b_obs, room_id):
    """js <-> nio: carol, a matrix-js-sdk + Rust crypto client (e2ee_js_peer.mjs), joins the room,
    decrypts what nio's alice sends, and answers with a message that both nio clients decrypt."""
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(HERE, "node_modules", "matrix-js-sdk")):
        print("skip    js <-> nio cross check (no node or no tests/interop/node_modules)", flush=True)
        return
    reg = AsyncClient(server.base_url, config=AsyncClientConfig(encryption_enabled=False))
    try:
        r = await reg.register("carol", "carol-password-1", "nio-reg-carol")
        checks.require("register carol (the js peer)", isinstance(r, RegisterResponse), repr(r))
    finally:
        await reg.close()
    carol = "@carol:localhost"
    r = await alice.room_invite(room_id, carol)
    checks.require("alice invites carol", isinstance(r, RoomInviteResponse), repr(r))
    stamp = int(time.time() * 1000)
    to_carol, from_carol = f"nio alice to js carol {stamp}", f"js carol to nio {stamp}"
    proc = await asyncio.create_subprocess_exec(
        node, os.path.join(HERE, "e2ee_js_peer.mjs"), server.base_url, "carol", "carol-password-1", room_id,
        to_carol, from_carol, cwd=HERE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async def step(key):
            line = await asyncio.wait_for(proc.stdout.readline(), 40)
            if not line:
                err = (await proc.stderr.read()).decode(errors="replace")
                raise RuntimeError(f"js peer ended before '{key}':\n{err[-3000:]}")
            msg = json.loads(line)
            checks.require(f"js peer: {key}", key in msg, repr(msg))
            return msg

        joined = await step("joined")
        # Alice must know carol's device (device_lists.changed -> /keys/query) before she sends, or
        # nio shares the room key with the devices it knows only.
        for c, obs in ((alice, a_obs), (bob, b_obs)):
            await wait_until(f"{c.user_id} learns carol's device {joined.get('device_id')} (device_lists, keys/query)",
                             lambda: carol in c.rooms[room_id].users and any(
                                 d.id == joined.get("device_id") for d in c.device_store.active_user_devices(carol)),
                             obs.changed)
        r = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": to_carol},
                                  ignore_unverified_devices=True)
        checks.require("alice sends to carol", isinstance(r, RoomSendResponse), repr(r))
        msg = await step("decrypted")
        checks.check("js carol decrypts nio alice's message", msg.get("decrypted") == r.event_id
                     and msg.get("sender") == alice.user_id, repr(msg))
        msg = await step("sent")
        for c, obs in ((alice, a_obs), (bob, b_obs)):
            got = await wait_until(f"{c.user_id} (nio) decrypts js carol's message",
                                   lambda: obs.text(msg["sent"]), obs.changed)
            checks.check(f"{c.user_id} reads carol's message", got[1:] == (carol, from_carol, True), repr(got))
        rc = await asyncio.wait_for(proc.wait(), 20)
        checks.check("js peer exits cleanly", rc == 0, f"exit {rc}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=os.environ.get("TRESTLE_BINARY")
                        or os.path.join(HERE, "..", "..", "build", "trestle"))
    args = parser.parse_args()

    checks = Checks()
    server = Server(os.path.abspath(args.binary))
    store_root = tempfile.mkdtemp(prefix="trestle-e2ee-nio-store-")
    try:
        server.start()
        asyncio.run(asyncio.wait_for(journey(server, checks, store_root), JOURNEY_TIMEOUT))
    except JourneyAborted:
        pass
    except BaseException as e:  # noqa: BLE001 - any crash, timeout or interrupt is a failure
        checks.check("journey ran to the end", False, f"{type(e).__name__}: {e}")
        traceback.print_exc()
    finally:
        if checks.failed and server.proc:
            print("--- server log (tail) ---\n" + server.tail(), flush=True)
        server.stop()
        shutil.rmtree(store_root, ignore_errors=True)
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 0 if checks.failed == 0 and checks.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
