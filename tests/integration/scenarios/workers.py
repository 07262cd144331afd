"""Several processes on one PostgreSQL database: the main process and a worker
(`trestle -c homeserver.yaml -c worker.yaml`, Synapse's worker shape). A long-poll on the worker
wakes when the main process commits (PostgreSQL LISTEN/NOTIFY); a request on the worker sees every
write the main process acknowledged before it; typing, presence and token revocations reach the
other process; a stream write sent to a worker fails whole with a clear error; a worker refuses
SQLite and a config without instance_map. Needs the PostgreSQL run (--database postgres)."""

import os
import socket
import subprocess
import threading
import time

from harness import TestFailure, TestSkipped, Client, free_port, to_yaml, indent_text, tail, _die_with_parent

WAKE_BOUND_S = 3.0  # a wake-up takes milliseconds; the long-poll's own timeout is 20 s


class Worker:
    """A worker process beside `main` (a harness Server), on main's database and config."""

    def __init__(self, main, name):
        self.main = main
        self.name = name
        self.port = None
        self.proc = None
        self.runs = 0
        self.config_path = os.path.join(main.dir, f"{name}.yaml")

    def write_config(self, port):
        with open(self.config_path, "w") as f:
            f.write(to_yaml({"worker_app": "synapse.app.generic_worker", "worker_name": self.name,
                             "worker_listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                                                   "resources": [{"names": ["client"]}]}]}))

    def log_path(self):
        return os.path.join(self.main.dir, f"{self.name}.{self.runs}.log")

    def spawn(self):
        self.runs += 1
        with open(self.log_path(), "wb") as log:
            self.proc = subprocess.Popen([self.main.binary, "-c", self.main.config_path, "-c", self.config_path],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.main.dir, preexec_fn=_die_with_parent)
        return self.proc

    def start(self):
        self.port = free_port()
        self.write_config(self.port)
        self.spawn()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure(f"worker {self.name} exited at start-up ({self.proc.returncode}):\n"
                                  + indent_text(tail(self.output())))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.02)
        raise TestFailure(f"worker {self.name} did not accept connections within 30 s")

    def run_to_exit(self, timeout=30):
        self.write_config(free_port())
        proc = self.spawn()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TestFailure(f"worker {self.name} did not exit within {timeout}s:\n" + indent_text(tail(self.output())))
        self.proc = None
        return proc.returncode, self.output()

    def output(self):
        with open(self.log_path(), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            raise TestFailure(f"worker {self.name} exited by itself ({self.proc.returncode}):\n"
                              + indent_text(tail(self.output())))
        self.proc.terminate()
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure(f"worker {self.name} did not stop within 30 s of SIGTERM")
        self.proc = None
        if code != 0:
            raise TestFailure(f"worker {self.name} exited {code} after SIGTERM:\n" + indent_text(tail(self.output())))
        if "AddressSanitizer" in self.output() or "runtime error:" in self.output():
            raise TestFailure(f"worker {self.name}: sanitizer report:\n" + indent_text(tail(self.output(), 80)))

    def client(self):
        return Client(f"http://127.0.0.1:{self.port}")


def deployment(ctx, workers=("reader1",)):
    if not ctx.postgres:
        raise TestSkipped("several processes share a PostgreSQL database (--database postgres)")
    main = ctx.server(start=False)
    instance_map = {"main": {"host": "127.0.0.1", "port": 8008}}
    for i, name in enumerate(workers):
        instance_map[name] = {"host": "127.0.0.1", "port": 8101 + i}
    main.config_overrides = {"instance_map": instance_map, "use_presence": True}
    main.start()
    started = []
    try:
        for name in workers:
            started.append(Worker(main, name).start())
    except Exception:
        for w in started:
            w.proc.kill()
        raise
    return main, started


def as_user(client, user):
    """`user`'s requests, sent to another process."""
    class Bound:
        def request(self, method, path, **kw):
            kw.setdefault("token", user.token)
            return client.request(method, path, **kw)
    return Bound()


def sync(ctx, who, since=None, timeout=0):
    query = {"timeout": str(timeout)}
    if since:
        query["since"] = since
    return ctx.expect(who.request("GET", "/sync", query=query))


def poll_until(ctx, who, since, found, into):
    """Long-polls from `since` until an answer satisfies `found` (another change, a presence say,
    may answer first); puts that answer and its time in `into`."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = sync(ctx, who, since, timeout=20000)
        since = body["next_batch"]
        if found(body):
            into["body"] = body
            into["at"] = time.monotonic()
            return


def timeline_ids(body, room):
    joined = body.get("rooms", {}).get("join", {}).get(room, {})
    return [e["event_id"] for e in joined.get("timeline", {}).get("events", [])]


def alice_in_a_room(ctx, main, worker):
    """A user with a room of her own (on main), her requests to the worker, and a sync token."""
    alice = ctx.register(main, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    on_worker = as_user(worker.client(), alice)
    return alice, room, on_worker, sync(ctx, on_worker)["next_batch"]


def test_long_poll_on_a_worker_wakes_when_main_commits(ctx):
    main, (worker,) = deployment(ctx)
    try:
        alice, room, on_worker, since = alice_in_a_room(ctx, main, worker)
        for round_ in range(3):
            answered = {}

            def poll():
                poll_until(ctx, on_worker, since, lambda body: timeline_ids(body, room), answered)

            t = threading.Thread(target=poll)
            t.start()
            time.sleep(0.3)  # the long-poll is waiting
            event_id = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/w{round_}",
                                                body={"msgtype": "m.text", "body": f"hello {round_}"}))["event_id"]
            sent_at = time.monotonic()
            t.join(25)
            if "body" not in answered:
                raise TestFailure("the worker's long-poll never answered")
            if event_id not in timeline_ids(answered["body"], room):
                raise TestFailure(f"the worker's long-poll answered without the event: {answered['body']}")
            if answered["at"] - sent_at > WAKE_BOUND_S:
                raise TestFailure(f"the worker's long-poll woke {answered['at'] - sent_at:.2f}s after the send")
            since = answered["body"]["next_batch"]
    finally:
        worker.stop()


def test_a_worker_sees_what_main_acknowledged(ctx):
    main, (worker,) = deployment(ctx)
    try:
        alice = ctx.register(main, "alice")
        on_worker = as_user(worker.client(), alice)
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        since = sync(ctx, on_worker)["next_batch"]
        for i in range(20):
            event_id = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/r{i}",
                                                body={"msgtype": "m.text", "body": f"read me {i}"}))["event_id"]
            # At once, on the other process: /messages, /event, and a /sync without waiting.
            page = ctx.expect(on_worker.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": "1"}))
            if [e["event_id"] for e in page["chunk"]] != [event_id]:
                raise TestFailure(f"/messages on the worker right after send {i}: {page['chunk']}")
            ctx.expect(on_worker.request("GET", f"/rooms/{room}/event/{event_id}"))
            body = sync(ctx, on_worker, since)
            if event_id not in timeline_ids(body, room):
                raise TestFailure(f"/sync?timeout=0 on the worker right after send {i} lacks the event")
            since = body["next_batch"]
        # The worker's tokens continue on the main process, and the other way round.
        more = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/r-last",
                                        body={"msgtype": "m.text", "body": "last"}))["event_id"]
        body = sync(ctx, alice, since)
        if timeline_ids(body, room) != [more]:
            raise TestFailure(f"main's /sync from the worker's token: {timeline_ids(body, room)}, expected [{more}]")
        if timeline_ids(sync(ctx, on_worker, body["next_batch"]), room):
            raise TestFailure("the worker's /sync from main's token repeated events")
    finally:
        worker.stop()


def test_typing_presence_and_logout_reach_the_other_process(ctx):
    main, (worker,) = deployment(ctx)
    try:
        alice = ctx.register(main, "alice")
        bob = ctx.register(main, "bob")
        room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
        ctx.expect(bob.request("POST", f"/join/{room}"))
        bob_on_worker = as_user(worker.client(), bob)
        since = sync(ctx, bob_on_worker)["next_batch"]

        def typing_in(body):
            for e in body.get("rooms", {}).get("join", {}).get(room, {}).get("ephemeral", {}).get("events", []):
                if e["type"] == "m.typing":
                    return e["content"]["user_ids"]
            return None

        # Typing set on main wakes bob's long-poll on the worker and shows there.
        answered = {}

        def poll():
            poll_until(ctx, bob_on_worker, since, lambda body: typing_in(body) is not None, answered)

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.3)
        ctx.expect(alice.request("PUT", f"/rooms/{room}/typing/{alice.user_id}", body={"typing": True, "timeout": 30000}))
        t.join(25)
        if typing_in(answered.get("body", {})) != [alice.user_id]:
            raise TestFailure(f"typing on main, seen on the worker: {answered.get('body')}")
        since = answered["body"]["next_batch"]
        # Typing sent to the worker goes to main (which owns it), and comes back to both.
        alice_on_worker = as_user(worker.client(), alice)
        ctx.expect(alice_on_worker.request("PUT", f"/rooms/{room}/typing/{alice.user_id}", body={"typing": False}))
        deadline = time.monotonic() + WAKE_BOUND_S
        while True:
            body = sync(ctx, bob_on_worker, since, timeout=1000)
            if typing_in(body) == []:
                break
            if time.monotonic() > deadline:
                raise TestFailure("typing stopped on the worker never showed in the worker's /sync")
        # Presence set through the worker is the main process's.
        ctx.expect(alice_on_worker.request("PUT", f"/presence/{alice.user_id}/status",
                                           body={"presence": "unavailable", "status_msg": "away on a worker"}))
        deadline = time.monotonic() + WAKE_BOUND_S
        while True:
            got = ctx.expect(bob.request("GET", f"/presence/{alice.user_id}/status"))
            if got.get("presence") == "unavailable" and got.get("status_msg") == "away on a worker":
                break
            if time.monotonic() > deadline:
                raise TestFailure(f"presence set through the worker, read on main: {got}")
            time.sleep(0.05)
        # A logout on main ends the token on the worker too (which had it cached).
        ctx.expect(alice_on_worker.request("GET", "/account/whoami"), body={"user_id": alice.user_id})
        ctx.expect(alice.request("POST", "/logout", body={}))
        deadline = time.monotonic() + WAKE_BOUND_S
        while True:
            res = alice_on_worker.request("GET", "/account/whoami")
            if res.status == 401:
                ctx.expect(res, 401, "M_UNKNOWN_TOKEN")
                break
            if time.monotonic() > deadline:
                raise TestFailure(f"a token logged out on main still works on the worker: {res.status}")
            time.sleep(0.05)
    finally:
        worker.stop()


def test_a_stream_write_on_a_worker_fails_whole(ctx):
    main, (worker,) = deployment(ctx)
    try:
        alice = ctx.register(main, "alice")
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        on_worker = as_user(worker.client(), alice)
        res = on_worker.request("PUT", f"/rooms/{room}/send/m.room.message/misrouted",
                                body={"msgtype": "m.text", "body": "sent to a reader"})
        ctx.expect(res, 500, "M_UNKNOWN")
        if "main process" not in res.json.get("error", ""):
            raise TestFailure(f"the error does not say where the write belongs: {res.json}")
        page = ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": "5"}))
        if any(e.get("content", {}).get("body") == "sent to a reader" for e in page["chunk"]):
            raise TestFailure("the refused write was stored")
        # The same transaction through main is sent once.
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/misrouted",
                                 body={"msgtype": "m.text", "body": "sent to main"}))
    finally:
        worker.stop()


def test_worker_config_errors(ctx):
    if not ctx.postgres:
        raise TestSkipped("several processes share a PostgreSQL database (--database postgres)")
    main = ctx.server(start=False)
    main.config_overrides = {}
    os.makedirs(main.data_dir, exist_ok=True)
    main.prepare_database()
    main.write_config(free_port())
    # No instance_map in the shared config.
    code, out = Worker(main, "reader1").run_to_exit()
    if code != 2 or "instance_map" not in out:
        raise TestFailure(f"a worker without instance_map: exit {code}\n{tail(out)}")
    # A worker on SQLite.
    main.config_overrides = {"database": {"name": "sqlite3", "args": {"database": "w.db"}},
                             "instance_map": {"main": {"port": 8008}, "reader1": {"port": 8101}}}
    main.write_config(free_port())
    code, out = Worker(main, "reader1").run_to_exit()
    if code != 2 or "PostgreSQL" not in out:
        raise TestFailure(f"a worker on SQLite: exit {code}\n{tail(out)}")
    # A writer of a stream other than events that is not main (typing lives in main's memory).
    main.config_overrides = {"instance_map": {"main": {"port": 8008}, "reader1": {"port": 8101}},
                             "stream_writers": {"typing": "reader1"}}
    main.write_config(free_port())
    code, out = Worker(main, "reader1").run_to_exit()
    if code != 2 or "stream_writers.typing" not in out:
        raise TestFailure(f"stream_writers.typing naming a worker: exit {code}\n{tail(out)}")
    # An event writer that instance_map does not list.
    main.config_overrides = {"instance_map": {"main": {"port": 8008}, "reader1": {"port": 8101}},
                             "stream_writers": {"events": ["main", "writer9"]}}
    main.write_config(free_port())
    code, out = Worker(main, "reader1").run_to_exit()
    if code != 2 or "writer9" not in out:
        raise TestFailure(f"stream_writers.events naming an unknown instance: exit {code}\n{tail(out)}")


def test_kill_9_of_either_process_loses_nothing_and_a_restart_catches_up(ctx):
    main, (worker,) = deployment(ctx)
    try:
        alice, room, on_worker, since = alice_in_a_room(ctx, main, worker)
        # The worker dies; the main process keeps serving; the restarted worker answers the old
        # token with everything sent meanwhile.
        worker.proc.kill()
        worker.proc.wait()
        worker.proc = None
        sent = [ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/k{i}",
                                         body={"msgtype": "m.text", "body": f"while the worker was down {i}"}))["event_id"]
                for i in range(5)]
        worker.start()
        on_worker = as_user(worker.client(), alice)  # it listens on a new port
        body = sync(ctx, on_worker, since)
        if timeline_ids(body, room) != sent:
            raise TestFailure(f"the restarted worker's /sync: {timeline_ids(body, room)}, expected {sent}")
        since = body["next_batch"]
        # The main process dies: the worker keeps serving reads; what main acknowledged is there.
        main.kill()
        ctx.expect(on_worker.request("GET", f"/rooms/{room}/event/{sent[-1]}"))
        page = ctx.expect(on_worker.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": "5"}))
        if [e["event_id"] for e in page["chunk"]] != list(reversed(sent)):
            raise TestFailure("the worker's /messages while main was down lost acknowledged events")
        # Main restarted (on a new port): the worker's long-poll wakes for its new events.
        main.start()
        answered = {}
        t = threading.Thread(target=lambda: poll_until(ctx, on_worker, since, lambda b: timeline_ids(b, room), answered))
        t.start()
        time.sleep(0.3)
        after = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/after-restart",
                                         body={"msgtype": "m.text", "body": "after main's restart"}))["event_id"]
        t.join(25)
        if timeline_ids(answered.get("body", {}), room) != [after]:
            raise TestFailure(f"after main's restart the worker's long-poll got {answered.get('body')}")
    finally:
        worker.stop()
