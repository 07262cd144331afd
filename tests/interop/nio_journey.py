#!/usr/bin/python3
"""Interop: matrix-nio (a real client library, not ours) does a whole user journey against the
real Trestle binary: register two users, log in, sync, create a room, invite, join through the
invite seen by sync, and exchange messages that each client must see arrive through its
sync_forever callbacks. Crypto-free (encryption disabled in the client config).

Run with Debian's python (it has python3-matrix-nio):

    /usr/bin/python3 tests/interop/nio_journey.py [--binary build/trestle]

The binary defaults to $TRESTLE_BINARY, else ../../build/trestle relative to this file.
Exit status 0 only if every check passed; the last line is "N passed, N failed".
"""

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    JoinResponse,
    LoginResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMemberEvent,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

HERE = os.path.dirname(os.path.abspath(__file__))
STEP_TIMEOUT = 20.0  # any single wait, seconds
JOURNEY_TIMEOUT = 120.0  # the whole journey, seconds
SYNC_TIMEOUT_MS = 30000  # long-poll timeout asked of /sync


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok      {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAILED  {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def require(self, name, ok, detail=""):
        """A check that the rest of the journey depends on: stop on failure."""
        if not self.check(name, ok, detail):
            raise JourneyAborted(name)


class JourneyAborted(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Server lifecycle


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relax_limits(yaml, key):
    """Sets per_second/burst_count to 1000 inside the top-level block `key:`."""
    m = re.search(rf"^{key}:\n(?:[ \t]+.*\n|\n)*", yaml, re.M)
    if not m:
        raise RuntimeError(f"generated config has no {key} block")
    block = re.sub(r"per_second:.*", "per_second: 1000", m.group(0))
    block = re.sub(r"burst_count:.*", "burst_count: 1000", block)
    return yaml[: m.start()] + block + yaml[m.end() :]


# PostgreSQL: when TRESTLE_TEST_PG names a cluster's socket directory (scripts/postgres.sh run sets
# it), the server gets a database of its own there, named after its data directory; unset, the
# generated config's SQLite file is kept. (trestle_process.mjs does the same for the JS suites.)
PG_DIR = os.environ.get("TRESTLE_TEST_PG") or None


def psql(sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG_DIR, "-U", "postgres",
                    "-d", "postgres", "-c", sql], check=True, timeout=60, stdout=subprocess.DEVNULL)


def use_postgres(yaml, data_dir):
    """Makes the server's database (a quoted identifier: the data directory's name) and returns
    the config with its `database:` block pointing there."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", os.path.basename(data_dir))[-63:]
    psql(f'DROP DATABASE IF EXISTS "{name}"')
    psql(f'CREATE DATABASE "{name}"')
    block = (f'database:\n  name: psycopg2\n  args:\n    user: postgres\n    dbname: "{name}"\n'
             f'    host: "{PG_DIR}"\n')
    yaml, n = re.subn(r"^database:\n(?:[ \t]+.*\n)*", lambda _: block, yaml, count=1, flags=re.M)
    if n != 1:
        raise RuntimeError("generated config has no database block")
    return yaml, name


class Server:
    def __init__(self, binary):
        self.binary = binary
        self.data_dir = tempfile.mkdtemp(prefix="trestle-interop-nio-")
        self.log_path = os.path.join(self.data_dir, "server.log")
        self.proc = None
        self.base_url = None
        self.pg_database = None

    def start(self):
        config = os.path.join(self.data_dir, "homeserver.yaml")
        subprocess.run(
            [self.binary, "generate-config", "--server-name", "localhost",
             "--data-dir", self.data_dir, "-o", config],
            check=True, timeout=30)
        with open(config) as f:
            yaml = f.read()
        port = free_port()
        yaml, n = re.subn(r"^(\s*- port: )\d+$", rf"\g<1>{port}", yaml, count=1, flags=re.M)
        if n != 1:
            raise RuntimeError("generated config has no listener port")
        for key in ("rc_message", "rc_registration", "rc_login"):
            yaml = relax_limits(yaml, key)
        if PG_DIR:
            yaml, self.pg_database = use_postgres(yaml, self.data_dir)
        with open(config, "w") as f:
            f.write(yaml)

        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "--config", config],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"trestle exited during start-up ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/_matrix/client/versions", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"trestle did not answer on {self.base_url}:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not os.environ.get("KEEP_DATA"):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if self.pg_database and not os.environ.get("TRESTLE_TEST_PG_DISPOSABLE"):
                psql(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
            self.pg_database = None

    def tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no server log)"


# ---------------------------------------------------------------------------------------------
# Client helpers


def new_client(base_url, user=""):
    config = AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
    return AsyncClient(base_url, user, config=config)


async def wait_until(what, predicate, changed, timeout=STEP_TIMEOUT):
    """Waits until predicate() is true, re-checking whenever `changed` (an asyncio.Event set by
    the sync callbacks) fires, and every 100 ms as a safety net."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise asyncio.TimeoutError(f"timed out after {timeout:.0f} s waiting for: {what}")
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), min(remaining, 0.1))
        except asyncio.TimeoutError:
            pass


class Observer:
    """Records what one client's sync_forever callbacks deliver."""

    def __init__(self, client):
        self.client = client
        self.messages = []  # (room_id, event_id, sender, body, msgtype)
        self.invites = []  # (room_id, sender, state_key, membership)
        self.members = []  # (room_id, sender, state_key, membership)
        self.syncs = 0
        self.changed = asyncio.Event()
        client.add_event_callback(self.on_message, RoomMessageText)
        client.add_event_callback(self.on_invite, InviteMemberEvent)
        client.add_event_callback(self.on_member, RoomMemberEvent)
        client.add_response_callback(self.on_sync, SyncResponse)

    async def on_message(self, room, event):
        self.messages.append((room.room_id, event.event_id, event.sender, event.body,
                              event.source.get("content", {}).get("msgtype")))
        self.changed.set()

    async def on_invite(self, room, event):
        self.invites.append((room.room_id, event.sender, event.state_key, event.membership))
        self.changed.set()

    async def on_member(self, room, event):
        self.members.append((room.room_id, event.sender, event.state_key, event.membership))
        self.changed.set()

    async def on_sync(self, response):
        self.syncs += 1
        self.changed.set()


# ---------------------------------------------------------------------------------------------
# The journey


async def journey(server, checks):
    base = server.base_url
    clients = []
    tasks = []
    try:
        # Registration: nio sends the m.login.dummy auth stage directly (no session yet).
        regs = {}
        for name in ("alice", "bob"):
            reg_client = new_client(base)
            clients.append(reg_client)
            r = await reg_client.register(name, f"{name}-password-1", f"nio-reg-{name}")
            checks.require(f"register {name} (m.login.dummy)", isinstance(r, RegisterResponse), repr(r))
            checks.check(f"register {name}: user_id", r.user_id == f"@{name}:localhost", r.user_id)
            regs[name] = r
            await reg_client.close()

        # Login with the password: a new device per user, which then syncs.
        users = {}
        for name in ("alice", "bob"):
            c = new_client(base, f"@{name}:localhost")
            clients.append(c)
            r = await c.login(f"{name}-password-1", device_name=f"nio-{name}")
            checks.require(f"login {name}", isinstance(r, LoginResponse), repr(r))
            checks.check(f"login {name}: user_id", r.user_id == f"@{name}:localhost", r.user_id)
            checks.check(f"login {name}: new device", r.device_id != regs[name].device_id,
                         f"{r.device_id} == {regs[name].device_id}")
            users[name] = c
        alice, bob = users["alice"], users["bob"]
        a_obs, b_obs = Observer(alice), Observer(bob)

        # Initial sync, then long-polling sync_forever loops delivering events to the callbacks.
        for c in (alice, bob):
            r = await c.sync(timeout=0, full_state=True)
            checks.require(f"initial sync {c.user_id}", isinstance(r, SyncResponse), repr(r))
            tasks.append(asyncio.create_task(c.sync_forever(timeout=SYNC_TIMEOUT_MS, loop_sleep_time=0)))

        # Alice creates a room and invites Bob.
        r = await alice.room_create(name="Interop")
        checks.require("alice creates a room", isinstance(r, RoomCreateResponse), repr(r))
        room_id = r.room_id
        checks.check("room id looks right", re.fullmatch(r"!.+:localhost", room_id) is not None, room_id)
        await wait_until("alice's sync shows the new room", lambda: room_id in alice.rooms, a_obs.changed)
        checks.check("alice's room is named from state", alice.rooms[room_id].name == "Interop",
                     repr(alice.rooms[room_id].name))
        r = await alice.room_invite(room_id, bob.user_id)
        checks.require("alice invites bob", isinstance(r, RoomInviteResponse), repr(r))
        # The room summary's counts are required in a sync whenever they changed (sync.yaml), and
        # nio prefers them over its own member list.
        await wait_until(
            "alice's sync shows bob invited",
            lambda: any(m[0] == room_id and m[2] == bob.user_id and m[3] == "invite" for m in a_obs.members),
            a_obs.changed)
        counts = (alice.rooms[room_id].joined_count, alice.rooms[room_id].invited_count)
        checks.check("alice's room counts 1 joined, 1 invited", counts == (1, 1), repr(counts))

        # Bob sees the invite through his sync, and joins it.
        invite = await wait_until(
            "bob's sync delivers the invite",
            lambda: next((i for i in b_obs.invites
                          if i[0] == room_id and i[2] == bob.user_id and i[3] == "invite"), None),
            b_obs.changed)
        checks.check("invite comes from alice", invite[1] == alice.user_id, repr(invite))
        checks.check("bob's client lists the room as invited", room_id in bob.invited_rooms,
                     repr(list(bob.invited_rooms)))
        r = await bob.join(room_id)
        checks.require("bob joins", isinstance(r, JoinResponse) and r.room_id == room_id, repr(r))
        await wait_until("bob's sync shows the joined room", lambda: room_id in bob.rooms, b_obs.changed)
        await wait_until(
            "alice's sync shows bob joined",
            lambda: any(m[0] == room_id and m[2] == bob.user_id and m[3] == "join" for m in a_obs.members),
            a_obs.changed)
        checks.check("alice's room has both members",
                     set(alice.rooms[room_id].users) == {alice.user_id, bob.user_id},
                     repr(set(alice.rooms[room_id].users)))
        await wait_until("bob's room state has both members",
                         lambda: set(bob.rooms[room_id].users) == {alice.user_id, bob.user_id},
                         b_obs.changed)
        checks.check("bob's room is named from state", bob.rooms[room_id].name == "Interop",
                     repr(bob.rooms[room_id].name))
        for c in (alice, bob):
            counts = (c.rooms[room_id].joined_count, c.rooms[room_id].invited_count)
            checks.check(f"{c.user_id}'s room counts 2 joined, 0 invited", counts == (2, 0), repr(counts))

        # Messages both ways; each client must see the other's message through its callbacks.
        stamp = int(time.time() * 1000)
        bodies = {"alice": f"hello bob, from alice {stamp}", "bob": f"hello alice, from bob {stamp}"}
        sent = {}
        for sender, receiver, obs in ((alice, bob, b_obs), (bob, alice, a_obs)):
            name = sender.user_id[1:].split(":")[0]
            r = await sender.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": bodies[name]})
            checks.require(f"{name} sends a message", isinstance(r, RoomSendResponse), repr(r))
            sent[name] = r.event_id
            got = await wait_until(
                f"{receiver.user_id} receives {name}'s message",
                lambda: next((m for m in obs.messages if m[1] == r.event_id), None), obs.changed)
            checks.check(f"{name}'s message: room", got[0] == room_id, repr(got))
            checks.check(f"{name}'s message: sender", got[2] == sender.user_id, repr(got))
            checks.check(f"{name}'s message: body", got[3] == bodies[name], repr(got))
            checks.check(f"{name}'s message: msgtype", got[4] == "m.text", repr(got))

        # Each client sees both messages, once each, in the order they were sent.
        for c, obs in ((alice, a_obs), (bob, b_obs)):
            await wait_until(f"{c.user_id} sees its own message echoed",
                             lambda: {sent["alice"], sent["bob"]} <= {m[1] for m in obs.messages}, obs.changed)
            in_room = [(m[1], m[2], m[3]) for m in obs.messages if m[0] == room_id]
            checks.check(f"{c.user_id} sees both messages once, in order", in_room == [
                (sent["alice"], alice.user_id, bodies["alice"]),
                (sent["bob"], bob.user_id, bodies["bob"]),
            ], repr(in_room))
        checks.check("both clients kept syncing", a_obs.syncs > 1 and b_obs.syncs > 1,
                     f"alice {a_obs.syncs}, bob {b_obs.syncs}")
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=os.environ.get("TRESTLE_BINARY")
                        or os.path.join(HERE, "..", "..", "build", "trestle"))
    args = parser.parse_args()

    checks = Checks()
    server = Server(os.path.abspath(args.binary))
    try:
        server.start()
        asyncio.run(asyncio.wait_for(journey(server, checks), JOURNEY_TIMEOUT))
    except JourneyAborted:
        pass
    except BaseException as e:  # noqa: BLE001 - any crash, timeout or interrupt is a failure
        checks.check("journey ran to the end", False, f"{type(e).__name__}: {e}")
        traceback.print_exc()
    finally:
        if checks.failed and server.proc:
            print("--- server log (tail) ---\n" + server.tail(), flush=True)
        server.stop()
    print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
    return 0 if checks.failed == 0 and checks.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
