"""The appservice sender across processes (issue 13): each appservice is sent to by one process at a
time, the holder of its lease, and another takes over when that process dies. The main process and
a worker (`trestle -c homeserver.yaml -c sender1.yaml`) share one PostgreSQL database, the worker
named by notify_appservices_from_worker; a stream of events goes through main while the worker
delivers it to a slow appservice; the worker is killed (-9) with a transaction on the wire; main
takes the lease once it expires and delivers the rest; the worker, started again, takes its lease
back. Across all of it every event arrives, in exactly one transaction id; a transaction sent again
has the same id and the same body; ids first arrive in increasing order and are never reused.
TRESTLE_AS_LEASE_MS (the sender's test knob) makes the lease 1.5 s. Needs --database postgres."""

import json
import os
import signal
import threading
import time

import harness
from harness import TestFailure, TestSkipped
from appservice_support import AsClient, AsEnv, registration, send_text, wait_for
from workers import Worker

LEASE_MS = 1500
# A takeover comes once the dead holder's lease expired (LEASE_MS after its last renewal) at the
# other process's next round (every LEASE_MS / 3); the rest is slack for a loaded machine.
TAKEOVER_BOUND_S = LEASE_MS / 1000 * 4 / 3 + 3.0
AS_ID = "takeover"


def lease_owner(srv):
    rows = srv.sql("SELECT owner FROM appservice_leases WHERE appservice_id = ?", AS_ID)
    return rows[0][0] if rows else None


class Sender:
    """Sends numbered messages through main from a thread until stopped; records the event ids."""

    def __init__(self, asc, room, prefix):
        self.asc, self.room, self.prefix = asc, room, prefix
        self.ids = []
        self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        try:
            i = 0
            while not self.done.is_set():
                self.ids.append(send_text(self.asc, self.room, f"{self.prefix} {i}"))
                i += 1
                time.sleep(0.02)
        except Exception as e:  # reported by the test
            self.error = e

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(30)
        if self.error and not exc[0]:
            raise TestFailure(f"sending through main failed: {self.error!r}")
        return False


def check_transactions(lst, sent):
    """Every sent event in exactly one txn id; an id sent again has the same body; ids first arrive
    in increasing order. Returns the accepted ids in arrival order."""
    bodies, order = {}, []
    for rec in lst.txn_requests():
        tid = rec.txn_id
        if tid in bodies:
            if bodies[tid] != rec.raw:
                raise TestFailure(f"transaction {tid} was sent twice with different bodies:\n"
                                  f"  {bodies[tid][:300]!r}\n  {rec.raw[:300]!r}")
            continue
        bodies[tid] = rec.raw
        order.append(tid)
    ids = [int(t) for t in order]
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        raise TestFailure(f"transaction ids did not first arrive in increasing order: {ids}")
    in_txn = {}
    for tid in order:
        for e in json.loads(bodies[tid]).get("events", []):
            eid = e.get("event_id")
            if eid in in_txn:
                raise TestFailure(f"event {eid} was in transactions {in_txn[eid]} and {tid}")
            in_txn[eid] = tid
    missing = [e for e in sent if e not in in_txn]
    if missing:
        raise TestFailure(f"{len(missing)} of {len(sent)} events never arrived, e.g. {missing[:3]}")
    return ids


class Deployment:
    """Main and the sender1 worker on one PostgreSQL database, sender1 named to send to a slow
    appservice (a transaction stays on the wire for a while, so a kill or a pause lands
    mid-delivery), with TRESTLE_AS_LEASE_MS set for both; everything stopped at the end."""

    def __init__(self, ctx):
        if not ctx.postgres:
            raise TestSkipped("several processes share a PostgreSQL database (--database postgres)")
        if getattr(harness, "TOPOLOGY", "single") != "single":
            raise TestSkipped("it starts its own two processes (main and the sender worker)")
        self.ctx = ctx

    def __enter__(self):
        self.previous = os.environ.get("TRESTLE_AS_LEASE_MS")
        os.environ["TRESTLE_AS_LEASE_MS"] = str(LEASE_MS)  # inherited by the processes started below
        self.env = AsEnv(self.ctx).__enter__()
        self.worker = None
        try:
            reg = registration(AS_ID, None, "_to_bot", users=[(True, "@_to_.*")])
            self.lst = self.env.listener(reg)
            self.lst.on_txn = lambda rec: time.sleep(0.1)
            self.main = self.env.server([reg], start=False, config={
                "instance_map": {"main": {"host": "127.0.0.1", "port": 8008},
                                 "sender1": {"host": "127.0.0.1", "port": 8101}},
                "notify_appservices_from_worker": "sender1"})
            self.main.start()
            self.worker = Worker(self.main, "sender1").start()
            self.asc = AsClient(self.main, reg)
            self.room = self.ctx.expect(self.asc.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
            wait_for(lambda: lease_owner(self.main) == "sender1", 10, "sender1 (the preferred instance) to hold the lease")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.worker is not None and self.worker.proc is not None:
                self.worker.stop()
        finally:
            self.env.__exit__(*exc)
            if self.previous is None:
                os.environ.pop("TRESTLE_AS_LEASE_MS", None)
            else:
                os.environ["TRESTLE_AS_LEASE_MS"] = self.previous
        return False

    def sender(self, prefix):
        return Sender(self.asc, self.room, prefix)

    def on_the_wire(self):
        return wait_for(lambda: [r for r in self.lst.txn_requests() if r.status is None], 10,
                        "a transaction on the wire")[0]


def test_a_killed_sender_is_taken_over_and_nothing_is_lost_or_sent_twice(ctx):
    with Deployment(ctx) as d:
        main, worker, lst = d.main, d.worker, d.lst
        sent = []
        # The worker delivers; killed while a transaction is on the wire.
        with d.sender("before the kill") as s:
            wait_for(lambda: len(lst.accepted_txns()) >= 3, 15, "the worker's first transactions")
            on_wire = d.on_the_wire()
            worker.proc.kill()
            worker.proc.wait()
            worker.proc = None
            killed_at = time.monotonic()
            # Main takes over once the lease expired, and delivers what is sent meanwhile.
            wait_for(lambda: lease_owner(main) == "main", TAKEOVER_BOUND_S, "main to take the lease over")
            took_over_s = time.monotonic() - killed_at
            time.sleep(1.0)
        sent += s.ids
        lst.wait_delivered(sent, timeout=20)
        # The worker is dead: what arrived after the kill came from main, starting with the
        # transaction the worker never heard the answer to, sent again with the same id and body.
        after = [r for r in lst.txn_requests() if r.time > killed_at]
        if not any(r.status == 200 for r in after):
            raise TestFailure("nothing was delivered after the takeover")
        if not any(r.txn_id == on_wire.txn_id and r.raw == on_wire.raw for r in after):
            raise TestFailure(f"transaction {on_wire.txn_id}, on the wire at the kill, was not sent again as it was")
        if "sending from main" not in main.output():
            raise TestFailure("main's log does not say that it sends to the appservice now")

        # The worker comes back: it takes its lease back at once; main stops sending. The appservice
        # answers at once now, so that main is caught up and stores each transaction in the commit of
        # its events (the write group hook, whose fence then keeps main from storing any after the
        # worker took the lease, before main's renewal tells it).
        lst.on_txn = None
        with d.sender("after the restart") as s:
            time.sleep(0.3)
            worker.start()
            wait_for(lambda: lease_owner(main) == "sender1", 10, "sender1 to take its lease back")
            time.sleep(1.0)
        sent += s.ids
        lst.wait_delivered(sent, timeout=20)
        if "another process holds the sender's lease now" not in main.output():
            raise TestFailure("main did not say that it stopped sending when sender1 came back")

        ids = check_transactions(lst, sent)
        lst.check_auth()
        print(f"    {len(sent)} events in {len(ids)} transactions; main took over {took_over_s:.1f} s after the kill")


def test_a_paused_sender_loses_its_lease_and_stores_nothing_after(ctx):
    """Not dead, only stopped (SIGSTOP) past its lease: main takes over; the worker, continued,
    finds the lease gone (its renewal, or the fence of its next write) and stores nothing more,
    though it had transactions built and one on the wire; then, the preferred instance, it takes the
    lease back. Every event still arrives once, in one transaction id."""
    with Deployment(ctx) as d:
        main, worker, lst = d.main, d.worker, d.lst
        with d.sender("around the pause") as s:
            wait_for(lambda: len(lst.accepted_txns()) >= 3, 15, "the worker's first transactions")
            d.on_the_wire()
            os.kill(worker.proc.pid, signal.SIGSTOP)
            try:
                wait_for(lambda: lease_owner(main) == "main", TAKEOVER_BOUND_S, "main to take the lease over")
                time.sleep(1.0)  # main delivers meanwhile
            finally:
                os.kill(worker.proc.pid, signal.SIGCONT)
            wait_for(lambda: "no longer holds the sender's lease" in worker.output()
                     or "another process holds the sender's lease now" in worker.output(), 10,
                     "the continued worker to find its lease gone")
            wait_for(lambda: lease_owner(main) == "sender1", 10, "sender1 to take its lease back")
            time.sleep(0.5)
        lst.wait_delivered(s.ids, timeout=20)
        ids = check_transactions(lst, s.ids)
        lst.check_auth()
        print(f"    {len(s.ids)} events in {len(ids)} transactions")
