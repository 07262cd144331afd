"""Spaces and mutual rooms where a case file cannot say it: paging over more rooms than one page
holds (mutual rooms: 100 a page; the hierarchy: at most 50 rooms a page whatever `limit` asks)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SERVER_NAME, TestFailure  # noqa: E402


def test_mutual_rooms_pages_over_more_than_one_batch(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    rooms = set()
    for _ in range(103):
        room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
        ctx.expect(bob.request("POST", f"/join/{room}", body={}))
        rooms.add(room)
    seen = []
    token = None
    pages = 0
    while True:
        query = {"user_id": alice.user_id}
        if token:
            query["from"] = token
        body = ctx.expect(bob.request("GET", "/_matrix/client/v1/mutual_rooms", query=query),
                          body={"joined": "$array", "count": 103})
        pages += 1
        seen += body["joined"]
        token = body.get("next_batch")
        if not token:
            break
        if pages > 5:
            raise TestFailure("mutual_rooms never stops paging")
    if pages != 2 or len(seen) != 103 or set(seen) != rooms:
        raise TestFailure(f"pages={pages} rooms={len(seen)} distinct={len(set(seen))}")
    # The unstable path pages with batch_token / next_batch_token (matrix-js-sdk).
    first = ctx.expect(bob.request("GET", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms",
                                   query={"user_id": alice.user_id}), body={"joined": {"$len": 100}})
    rest = ctx.expect(bob.request("GET", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms",
                                  query={"user_id": alice.user_id, "batch_token": first["next_batch_token"]}),
                      body={"joined": {"$len": 3}, "next_batch_token": "$absent"})
    if set(first["joined"]) | set(rest["joined"]) != rooms:
        raise TestFailure("the unstable path's pages do not cover the rooms")


def test_hierarchy_pages_are_capped_at_50_rooms(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    space = ctx.expect(alice.request("POST", "/createRoom", body={
        "preset": "public_chat", "creation_content": {"type": "m.space"}}))["room_id"]
    children = []
    for i in range(55):
        room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
        ctx.expect(alice.request("PUT", f"/rooms/{space}/state/m.space.child/{room}",
                                 body={"via": [SERVER_NAME], "order": f"{i:03d}"}))
        children.append(room)
    first = ctx.expect(alice.request("GET", f"/_matrix/client/v1/rooms/{space}/hierarchy", query={"limit": "1000"}),
                       body={"rooms": {"$len": 50}, "next_batch": "$nonempty"})
    rest = ctx.expect(alice.request("GET", f"/_matrix/client/v1/rooms/{space}/hierarchy",
                                    query={"limit": "1000", "from": first["next_batch"]}),
                      body={"rooms": {"$len": 6}, "next_batch": "$absent"})
    got = [r["room_id"] for r in first["rooms"] + rest["rooms"]]
    if got != [space] + children:
        raise TestFailure("the pages are not the space then its children in order")
