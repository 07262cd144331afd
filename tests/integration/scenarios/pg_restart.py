"""PostgreSQL restarts under load (issue 13): a server on a cluster of the scenario's own keeps
answering while the cluster is stopped (`pg_ctl stop -m fast`, then `-m immediate`: a crash) and
started again, with several senders (retrying a failed send with the same txn id), /sync long-polls
and reads running all the time. While the database is down every failed request is a 503 M_UNKNOWN
(a send: or a 500 M_UNKNOWN, see FAILED_ANSWERS) with a readable error, answered in time (no hang, no reset connection); a few seconds after the
cluster is back everything succeeds again, without restarting the server; every acknowledged send
is in the room exactly once, a retried txn id too; the server did not crash. A restart while the
server is idle costs no request at all (the pooled connections reconnect). Then a SIGTERM while the
database is down stops the server cleanly within a few seconds. And main with a worker (LISTEN/NOTIFY
between them) through a restart: the worker listens again by itself and its long-polls wake again.
PostgreSQL only; on clusters of the scenario's own (harness.OwnCluster), never the run's."""

import threading
import time

from harness import OwnCluster, TestFailure, TestSkipped

SENDERS = 4
DOWN_S = 3.0          # the cluster stays stopped this long, under load
RECOVERY_S = 5.0      # requests sent this long after the cluster is back must all succeed
SETTLE_S = 7.0        # load after the restart, before the next round
SYNC_TIMEOUT_MS = 1500
REQUEST_TIMEOUT_S = 20
# An answer later than this is a hang: a read or a send answers quickly, even when it fails, and a
# long-poll within its timeout.
MAX_ANSWER_S = 10.0
# What a request that fails while the database is down answers. A send may still get a 500: a
# write group whose connection is lost fails the group's other writes with "the write transaction
# was rolled back ..." (storage/database.cpp's write_group and run_group_hooks), not with the 503.
FAILED_ANSWERS = {"send": {(503, "M_UNKNOWN"), (500, "M_UNKNOWN")}}
FAILED_ANSWER = {(503, "M_UNKNOWN")}


class Load:
    """Threads sending and reading until stopped; every answer recorded as
    (kind, started, ended, status or None, errcode, error or what went wrong)."""

    def __init__(self, ctx, users, room):
        self.ctx, self.users, self.room = ctx, users, room
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.records = []
        self.acked = {}      # txn id -> (event_id, body text, failed attempts before the 200)
        self.unfinished = []  # txn ids that never got a 200
        self.threads = [threading.Thread(target=self.sender, args=(k,), daemon=True) for k in range(SENDERS)]
        self.threads += [threading.Thread(target=t, daemon=True) for t in (self.syncer, self.reader)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(120)
            if t.is_alive():
                raise TestFailure("a load thread did not end within 120 s (a request hangs)")

    def call(self, kind, user, method, path, **kwargs):
        started = time.monotonic()
        try:
            res = user.request(method, path, timeout=REQUEST_TIMEOUT_S, **kwargs)
        except TestFailure as e:  # no answer: a reset connection or a timeout
            with self.lock:
                self.records.append((kind, started, time.monotonic(), None, None, str(e)))
            return None
        body = res.json if isinstance(res.json, dict) else {}
        with self.lock:
            self.records.append((kind, started, time.monotonic(), res.status, body.get("errcode"),
                                 body.get("error") if res.status != 200 else None))
        return res

    def sender(self, k):
        user = self.users[k % len(self.users)]
        n = 0
        while not self.stopping.is_set():
            txn, text = f"pgr{k}-{n}", f"pg restart {k}-{n}"
            failures = 0
            deadline = None
            while True:
                res = self.call("send", user, "PUT", f"/rooms/{self.room}/send/m.room.message/{txn}",
                                body={"msgtype": "m.text", "body": text})
                if res is not None and res.status == 200:
                    with self.lock:
                        self.acked[txn] = (res.json["event_id"], text, failures, user)
                    break
                failures += 1
                # Once the load stops, a send still failing is retried for a while more (the
                # database is back by then), then given up on: the verdict names it.
                if self.stopping.is_set():
                    deadline = deadline or time.monotonic() + 30
                    if time.monotonic() > deadline:
                        with self.lock:
                            self.unfinished.append(txn)
                        return
                time.sleep(0.05)
            n += 1

    def syncer(self):
        user = self.users[0]
        since = None
        while not self.stopping.is_set():
            query = {"timeout": SYNC_TIMEOUT_MS if since else 0, "filter": {"room": {"timeline": {"limit": 1}}}}
            if since:
                query["since"] = since
            res = self.call("sync", user, "GET", "/sync", query=query)
            if res is not None and res.status == 200:
                since = res.json["next_batch"]
            else:
                time.sleep(0.05)

    def reader(self):
        user = self.users[-1]
        reads = [("messages", "GET", f"/rooms/{self.room}/messages", {"dir": "b", "limit": 5}),
                 ("profile", "GET", f"/profile/{user.user_id}", None),
                 ("members", "GET", f"/rooms/{self.room}/joined_members", None),
                 ("state", "GET", f"/rooms/{self.room}/state", None)]
        i = 0
        while not self.stopping.is_set():
            kind, method, path, query = reads[i % len(reads)]
            self.call(kind, user, method, path, query=query)
            i += 1
            time.sleep(0.02)


def check_round(name, records, down_from, up_at, problems):
    """The answers of one round: before the stop all good; while down, failures only as
    FAILED_ANSWERS says, with an error; from RECOVERY_S after the start all good again. Returns a summary."""
    failed_while_down = 0
    last_failure_after_up = None
    for kind, started, ended, status, errcode, error in records:
        took = ended - started
        limit = MAX_ANSWER_S + (SYNC_TIMEOUT_MS / 1000 if kind == "sync" else 0)
        if status is None:
            problems.append(f"{name}: {kind} got no answer after {took:.1f}s: {error}")
            continue
        if took > limit:
            problems.append(f"{name}: {kind} answered {status} after {took:.1f}s (a hang)")
        if status == 200:
            continue
        if ended < down_from:
            problems.append(f"{name}: {kind} failed before the database stopped: {status} {errcode} {error}")
        elif started > up_at + RECOVERY_S:
            problems.append(f"{name}: {kind} still fails {started - up_at:.1f}s after the database is back: "
                            f"{status} {errcode} {error}")
        allowed = FAILED_ANSWERS.get(kind, FAILED_ANSWER)
        if (status, errcode) not in allowed or not isinstance(error, str) or not error:
            problems.append(f"{name}: {kind} failed with {status} errcode {errcode!r} error {error!r} "
                            f"(expected {' or '.join(f'{s} {e}' for s, e in sorted(allowed))} with an error)")
        if down_from <= started <= up_at:
            failed_while_down += 1
        if ended > up_at:
            last_failure_after_up = max(last_failure_after_up or 0, ended - up_at)
    kinds_down = {r[0] for r in records if down_from <= r[1] <= up_at}
    if failed_while_down == 0:
        problems.append(f"{name}: no request failed while the database was down ({sorted(kinds_down)} were "
                        "sent): the scenario did not test anything")
    ok_after = {r[0] for r in records if r[1] > up_at and r[3] == 200}
    missing = {"send", "sync", "messages", "profile", "members", "state"} - ok_after
    if missing:
        problems.append(f"{name}: no {sorted(missing)} succeeded after the database came back")
    answers = {}
    for kind, _, _, status, errcode, _ in records:
        if status is not None and status != 200:
            answers[f"{status} {errcode}"] = answers.get(f"{status} {errcode}", 0) + 1
    return (f"{name}: {len(records)} requests, {failed_while_down} failed while down ("
            + ", ".join(f"{n}x {k}" for k, n in sorted(answers.items())) + "), the last failure "
            + ("before the start" if last_failure_after_up is None else f"{last_failure_after_up:.1f}s after it"))


def all_messages(user, room):
    events, token = [], None
    while True:
        query = {"dir": "b", "limit": 100}
        if token:
            query["from"] = token
        res = user.request("GET", f"/rooms/{room}/messages", query=query)
        if res.status != 200:
            raise TestFailure(f"/messages after the restarts: {res.describe()}")
        body = res.json
        events += [e for e in body["chunk"] if e["type"] == "m.room.message"]
        token = body.get("end")
        if not token or not body["chunk"]:
            return events


def crash_signs(output):
    signs = ("terminate called", "Segmentation fault", "Aborted", "AddressSanitizer", "runtime error:",
             "core dumped", "std::terminate")
    return [s for s in signs if s in output]


def test_postgres_restarts_under_load(ctx):
    if not ctx.postgres:
        raise TestSkipped("needs PostgreSQL (--database postgres)")
    cluster = OwnCluster()
    try:
        srv = cluster.server(ctx)
        srv.start()
        pid = srv.proc.pid
        alice = ctx.register(srv, "alice")
        bob = ctx.register(srv, "bob")
        room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
        ctx.expect(bob.request("POST", f"/join/{room}"))

        load = Load(ctx, [alice, bob], room)
        load.start()
        problems, summary = [], []
        try:
            time.sleep(2)
            for mode in ("fast", "immediate"):
                down_from = time.monotonic()
                cluster.stop(mode)
                time.sleep(DOWN_S)
                cluster.start()
                up_at = time.monotonic()
                time.sleep(SETTLE_S)
                with load.lock:  # the answers so far (in flight: the next round's)
                    records, load.records = load.records, []
                summary.append(check_round(f"stop -m {mode}", records, down_from, up_at, problems))
        finally:
            load.stop()
        if not srv.alive() or srv.proc.pid != pid:
            raise TestFailure("the server is no longer running after the restarts:\n" + srv.output()[-3000:])
        if load.unfinished:
            problems.append(f"sends that never got a 200, even after the database came back: {load.unfinished}")

        # Every acknowledged send is in the room exactly once, retried txn ids too.
        events = all_messages(alice, room)
        by_id, by_text = {}, {}
        for e in events:
            by_id[e["event_id"]] = by_id.get(e["event_id"], 0) + 1
            text = str(e["content"].get("body"))
            by_text[text] = by_text.get(text, 0) + 1
        retried = [txn for txn, (_, _, failures, _) in load.acked.items() if failures]
        for txn, (event_id, text, failures, _) in sorted(load.acked.items()):
            if by_id.get(event_id, 0) != 1:
                problems.append(f"txn {txn} was acknowledged as {event_id}, found {by_id.get(event_id, 0)} times")
            if by_text.get(text, 0) != 1:
                problems.append(f"txn {txn} ({failures} failed tries first): its message is in the room "
                                f"{by_text.get(text, 0)} times")
        strays = [t for t in by_text if t.startswith("pg restart ") and f"pgr{t[len('pg restart '):]}" not in load.acked]
        if strays:
            problems.append(f"messages in the room that no send was acknowledged for: {strays[:5]}")
        if not retried:
            problems.append("no send was retried after a failure: the scenario did not test txn id retries")
        # A retried txn id answers the event it made, once more.
        for txn in retried[:10]:
            event_id, text, _, user = load.acked[txn]
            res = user.request("PUT", f"/rooms/{room}/send/m.room.message/{txn}",
                               body={"msgtype": "m.text", "body": text})
            if res.status != 200 or res.json.get("event_id") != event_id:
                problems.append(f"txn {txn} sent again: {res.describe()}, expected {event_id}")
        signs = crash_signs(srv.output())
        if signs:
            problems.append(f"the server's log shows {signs}")
        if problems:
            raise TestFailure("\n".join(problems[:40]) + (f"\n... {len(problems) - 40} more" if len(problems) > 40 else "")
                              + "\n" + "\n".join(summary) + f"\n{len(load.acked)} sends acknowledged, "
                              f"{len(retried)} after a retry")
        print("    " + "\n    ".join(summary) + f"\n    {len(load.acked)} sends, {len(retried)} retried", flush=True)

        # A restart while nobody asks anything: the pooled connections all lost their sessions, and
        # the first requests after it find that out. They succeed all the same.
        cluster.stop("fast")
        cluster.start()
        for i in range(6):
            ctx.expect(bob.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 2}))
            ctx.expect(bob.request("GET", f"/profile/{bob.user_id}"))
            ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/idle-{i}",
                                     body={"msgtype": "m.text", "body": f"after an idle restart {i}"}))

        # SIGTERM while the database is down (a long-poll waiting, a send failing): a clean exit.
        since = ctx.expect(alice.request("GET", "/sync", query={"timeout": 0}))["next_batch"]
        cluster.stop("fast")
        res = alice.request("PUT", f"/rooms/{room}/send/m.room.message/down-at-exit",
                            body={"msgtype": "m.text", "body": "down"}, timeout=REQUEST_TIMEOUT_S)
        ctx.expect(res, 503, "M_UNKNOWN")

        def long_poll():
            try:
                alice.request("GET", "/sync", query={"timeout": 30000, "since": since}, timeout=40)
            except TestFailure:  # the server went away under it, as it should
                pass

        poll = threading.Thread(target=long_poll, daemon=True)
        poll.start()
        time.sleep(0.3)
        started = time.monotonic()
        code = srv.stop(timeout=15)
        took = time.monotonic() - started
        if code != 0 or took > 5:
            raise TestFailure(f"SIGTERM with the database down: exit status {code} after {took:.1f}s "
                              f"(expected 0 within 5s):\n" + srv.output()[-3000:])
    finally:
        cluster.close()


def workers_module():
    """scenarios/workers.py (its Worker: a worker process beside a harness Server)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers.py")
    spec = importlib.util.spec_from_file_location("pg_restart_workers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_worker_follows_main_across_a_postgres_restart(ctx):
    """Main and a worker (LISTEN/NOTIFY between them) through a restart of PostgreSQL: the worker
    answers 503 while it is down, listens again by itself within a few seconds, and its long-polls
    wake again when main commits; both stop cleanly."""
    if not ctx.postgres:
        raise TestSkipped("needs PostgreSQL (--database postgres)")
    workers = workers_module()
    cluster = OwnCluster()
    worker = None
    try:
        main = cluster.server(ctx, config={"instance_map": {"main": {"host": "127.0.0.1", "port": 8008},
                                                            "reader1": {"host": "127.0.0.1", "port": 8101}}})
        main.start()
        worker = workers.Worker(main, "reader1").start()
        alice = ctx.register(main, "alice")
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        on_worker = workers.as_user(worker.client(), alice)
        ctx.expect(on_worker.request("GET", f"/rooms/{room}/messages", query={"dir": "b"}))

        cluster.stop("immediate")
        ctx.expect(on_worker.request("GET", f"/rooms/{room}/messages", query={"dir": "b"}, timeout=REQUEST_TIMEOUT_S),
                   503, "M_UNKNOWN")
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/down", body={"msgtype": "m.text", "body": "x"},
                                 timeout=REQUEST_TIMEOUT_S), 503, "M_UNKNOWN")
        time.sleep(1)
        logged = len(worker.output())
        cluster.start()
        up_at = time.monotonic()
        # The worker's notification connection comes back by itself (its log says so).
        while "listening again" not in worker.output()[logged:]:
            if time.monotonic() - up_at > RECOVERY_S:
                raise TestFailure(f"the worker does not listen again {RECOVERY_S}s after the restart:\n"
                                  + worker.output()[-3000:])
            time.sleep(0.1)
        sent = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/down",
                                        body={"msgtype": "m.text", "body": "x"}))["event_id"]
        messages = ctx.expect(on_worker.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 5}))
        if sent not in [e["event_id"] for e in messages["chunk"]]:
            raise TestFailure(f"the worker does not see the send that main acknowledged: {messages}")
        # A long-poll on the worker wakes when main commits.
        since = workers.sync(ctx, on_worker)["next_batch"]
        answered = {}
        poll = threading.Thread(target=workers.poll_until, daemon=True, args=(
            ctx, on_worker, since, lambda body: workers.timeline_ids(body, room), answered))
        poll.start()
        time.sleep(0.3)
        event_id = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/after",
                                            body={"msgtype": "m.text", "body": "after"}))["event_id"]
        sent_at = time.monotonic()
        poll.join(25)
        if "body" not in answered or event_id not in workers.timeline_ids(answered["body"], room):
            raise TestFailure(f"the worker's long-poll did not answer with main's send: {answered.get('body')}")
        if answered["at"] - sent_at > workers.WAKE_BOUND_S:
            raise TestFailure(f"the worker's long-poll woke {answered['at'] - sent_at:.2f}s after the send")
        for srv_output in (main.output(), worker.output()):
            signs = crash_signs(srv_output)
            if signs:
                raise TestFailure(f"a log shows {signs}")
        worker.stop()
        worker = None
    finally:
        if worker is not None and worker.proc is not None and worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
        cluster.close()
