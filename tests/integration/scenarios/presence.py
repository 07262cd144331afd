"""Presence in /sync: a change of a room member's presence wakes a waiting /sync at once."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from longpoll import BackgroundSync, shared_room, since_of  # noqa: E402


def test_presence_change_wakes_a_waiting_sync(ctx):
    srv = ctx.server()
    alice, bob, room = shared_room(ctx, srv)
    since_of(ctx, alice)
    since = since_of(ctx, alice)
    waiting = BackgroundSync(alice, since=since, timeout=10000)
    waiting.start()
    time.sleep(0.3)  # let it park in the server
    if not waiting.is_alive():
        raise TestFailure(f"/sync with nothing new returned at once: {waiting.result and waiting.result.describe()}")
    changed_at = time.monotonic()
    ctx.expect(bob.request("PUT", f"/presence/{bob.user_id}/status", body={"presence": "unavailable"}))
    res = waiting.wait(15)
    ctx.expect(res, 200, body={"presence": {"events": {"$contains": [
        {"type": "m.presence", "sender": bob.user_id, "content": {"presence": "unavailable"}}]}}})
    if waiting.finished - changed_at > 2.0:
        raise TestFailure(f"/sync answered {waiting.finished - changed_at:.2f}s after the change (want well under 2 s)")
