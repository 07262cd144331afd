"""Debian's synadm (Synapse's admin CLI, unchanged) drives Trestle's admin API for rooms: room list
(with search and order), details, members, state, delete, and history purge / purge-status. Each
answer's content is checked."""

import json
import os
import subprocess
import time
import urllib.parse

from harness import TestFailure


def q(s):
    return urllib.parse.quote(s, safe="")


def synadm_docs(sa, *args):
    """Runs synadm and returns every JSON document it printed (`room delete` prints the room's
    details and members before the deletion's answer, so its output is several documents)."""
    sa._write_config()
    cmd = ["synadm", "--batch", "-o", "json", "-c", sa.config_file] + [str(a) for a in args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or "returned status code" in done.stderr:
        raise TestFailure(f"synadm {' '.join(args)} failed: {done.stdout}\n{done.stderr}")
    decoder, text, docs = json.JSONDecoder(), done.stdout.strip(), []
    while text:
        doc, end = decoder.raw_decode(text)
        docs.append(doc)
        text = text[end:].strip()
    return docs


def setup(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    rooms = {}
    for name, members in (("Alpha", [bob]), ("Beta", []), ("Gamma", [bob])):
        room = ctx.expect(alice.request("POST", "/createRoom", body={
            "preset": "public_chat", "name": f"{name} {ctx.run_id}", "topic": f"{name} topic"}))["room_id"]
        for m in members:
            ctx.expect(m.request("POST", f"/join/{q(room)}", body={}))
        rooms[name] = room
    return srv, admin, alice, bob, rooms, ctx.synadm(srv, admin)


def test_synadm_room_list_search_sort(ctx):
    srv, admin, alice, bob, rooms, sa = setup(ctx)
    listed = sa.run("room", "list")
    if listed["total_rooms"] != 3 or sorted(r["room_id"] for r in listed["rooms"]) != sorted(rooms.values()):
        raise TestFailure(f"room list: {listed}")
    by_name = sa.run("room", "list", "--name", f"beta {ctx.run_id}")
    if [r["room_id"] for r in by_name["rooms"]] != [rooms["Beta"]] or by_name["rooms"][0]["name"] != f"Beta {ctx.run_id}" \
            or by_name["rooms"][0]["creator"] != alice.user_id or by_name["rooms"][0]["joined_members"] != 1:
        raise TestFailure(f"room list --name: {by_name}")
    searched = sa.run("room", "search", ctx.run_id, "--sort", "name", "--reverse")
    if [r["name"] for r in searched["rooms"]] != [f"{n} {ctx.run_id}" for n in ("Gamma", "Beta", "Alpha")]:
        raise TestFailure(f"room search --sort name --reverse: {searched}")
    by_size = sa.run("room", "list", "--sort", "joined_members")
    if [r["joined_members"] for r in by_size["rooms"]] != [2, 2, 1]:
        raise TestFailure(f"room list --sort joined_members: {by_size}")
    paged = sa.run("room", "list", "--limit", 2, "--from", 1, "--sort", "name")
    if paged["offset"] != 1 or paged["total_rooms"] != 3 or [r["room_id"] for r in paged["rooms"]] != [rooms["Beta"], rooms["Gamma"]]:
        raise TestFailure(f"room list --limit 2 --from 1: {paged}")


def test_synadm_room_details_members_state(ctx):
    srv, admin, alice, bob, rooms, sa = setup(ctx)
    details = sa.run("room", "details", rooms["Alpha"])
    expect = {"room_id": rooms["Alpha"], "name": f"Alpha {ctx.run_id}", "topic": "Alpha topic", "joined_members": 2,
              "joined_local_members": 2, "creator": alice.user_id, "public": False, "join_rules": "public",
              "forgotten": False}
    if any(details.get(k) != v for k, v in expect.items()):
        raise TestFailure(f"room details: {details}")
    members = sa.run("room", "members", rooms["Alpha"])
    if members["total"] != 2 or sorted(members["members"]) != sorted([alice.user_id, bob.user_id]):
        raise TestFailure(f"room members: {members}")
    state = sa.run("room", "state", rooms["Alpha"])
    types = {(e["type"], e["state_key"]) for e in state["state"]}
    if not {("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.member", bob.user_id)} <= types:
        raise TestFailure(f"room state: {state}")
    topic = [e for e in state["state"] if e["type"] == "m.room.topic"][0]
    if topic["content"] != {"topic": "Alpha topic"} or topic["sender"] != alice.user_id:
        raise TestFailure(f"room state topic: {topic}")
    levels = sa.run("room", "power-levels", "--room-id", rooms["Alpha"])
    if [r["room_id"] for r in levels["rooms"]] != [rooms["Alpha"]] or \
            levels["rooms"][0]["power_levels"] != {alice.user_id: 100} or levels["rooms_w_power_levels_curr_batch"] != 1:
        raise TestFailure(f"room power-levels (room list by ID, then its state): {levels}")
    failed = sa.run("room", "details", f"!nope:{admin.user_id.split(':', 1)[1]}", expect_failure=True)
    if "M_NOT_FOUND" not in failed.stdout:
        raise TestFailure(f"details of an unknown room: {failed.stdout} {failed.stderr}")


def test_synadm_room_delete(ctx):
    srv, admin, alice, bob, rooms, sa = setup(ctx)
    room = rooms["Gamma"]
    docs = synadm_docs(sa, "room", "delete", room, "--new-room-user-id", admin.user_id, "--room-name", "Moved",
                       "--message", "Gamma was closed", "--block")
    details, members, deleted = docs[0], docs[1], docs[-1]
    if details.get("room_id") != room or members.get("total") != 2:
        raise TestFailure(f"synadm showed the room first: {docs[:2]}")
    if sorted(deleted["kicked_users"]) != sorted([alice.user_id, bob.user_id]) or deleted["failed_to_kick_users"] != [] \
            or not deleted["new_room_id"]:
        raise TestFailure(f"room delete: {deleted}")
    new_room = deleted["new_room_id"]
    joined = ctx.expect(bob.request("GET", "/joined_rooms"))["joined_rooms"]
    if room in joined or new_room not in joined:
        raise TestFailure(f"bob's rooms after the delete: {joined}")
    ctx.expect(bob.request("GET", f"/rooms/{q(new_room)}/state/m.room.name"), body={"name": "Moved"})
    ctx.expect(bob.request("POST", f"/join/{q(room)}", body={}), 403, "M_UNKNOWN")
    left = srv.sql("SELECT count(*) FROM events WHERE room_id = ?", room)[0][0]
    if left:
        raise TestFailure(f"{left} events of the deleted room are left")
    after = sa.run("room", "list")
    if room in [r["room_id"] for r in after["rooms"]] or new_room not in [r["room_id"] for r in after["rooms"]]:
        raise TestFailure(f"room list after the delete: {after}")
    sa.run("room", "details", room, expect_failure=True)


def test_synadm_history_purge(ctx):
    srv, admin, alice, bob, rooms, sa = setup(ctx)
    room = rooms["Alpha"]
    ids = [ctx.expect(alice.request("PUT", f"/rooms/{q(room)}/send/m.room.message/t{i}",
                                    body={"msgtype": "m.text", "body": f"message {i}"}))["event_id"] for i in range(4)]
    started = sa.run("history", "purge", room, "--before-event-id", ids[2], "--delete-local")
    purge_id = started["purge_id"]
    deadline = time.time() + 20
    while True:
        status = sa.run("history", "purge-status", purge_id)
        if status["status"] != "active" or time.time() > deadline:
            break
        time.sleep(0.1)
    if status != {"status": "complete"}:
        raise TestFailure(f"history purge-status: {status}")
    msgs = ctx.expect(bob.request("GET", f"/rooms/{q(room)}/messages", query={"dir": "b", "limit": "50"}))
    bodies = [e["content"]["body"] for e in msgs["chunk"] if e["type"] == "m.room.message"]
    if bodies != ["message 3", "message 2"]:
        raise TestFailure(f"messages after synadm history purge: {bodies}")
    # By time (--before-ts), without --delete-local: local events are kept.
    started = sa.run("history", "purge", room, "--before-ts", int(time.time() * 1000) + 1000)
    deadline = time.time() + 20
    while sa.run("history", "purge-status", started["purge_id"])["status"] == "active" and time.time() < deadline:
        time.sleep(0.1)
    msgs = ctx.expect(bob.request("GET", f"/rooms/{q(room)}/messages", query={"dir": "b", "limit": "50"}))
    if [e["content"]["body"] for e in msgs["chunk"] if e["type"] == "m.room.message"] != ["message 3", "message 2"]:
        raise TestFailure("a purge without --delete-local deleted local events")
    failed = sa.run("history", "purge-status", "no-such-purge", expect_failure=True)
    if "M_NOT_FOUND" not in failed.stdout:
        raise TestFailure(f"purge-status of an unknown purge: {failed.stdout} {failed.stderr}")


def test_synadm_room_join_and_make_admin(ctx):
    srv, admin, alice, bob, rooms, sa = setup(ctx)
    carol = ctx.register(srv, "carol")
    room = rooms["Beta"]
    joined = sa.run("room", "join", room, carol.user_id)
    if joined != {"room_id": room}:
        raise TestFailure(f"room join: {joined}")
    if room not in ctx.expect(carol.request("GET", "/joined_rooms"))["joined_rooms"]:
        raise TestFailure("carol was not joined")
    made = sa.run("room", "make-admin", room, "--user-id", carol.user_id)
    if made != {}:
        raise TestFailure(f"room make-admin: {made}")
    pl = ctx.expect(carol.request("GET", f"/rooms/{q(room)}/state/m.room.power_levels"))
    if pl["users"].get(carol.user_id) != 100:
        raise TestFailure(f"carol's power after make-admin: {pl}")
