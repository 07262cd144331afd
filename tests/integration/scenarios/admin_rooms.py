"""Synapse's admin API for rooms, what data cannot say: the background deletion (v2) polled to its
end, with the members seeing themselves leave and every row of the room gone from the database
file; purge_history deleting the timeline before a point while the room stays usable; a blocked,
purged room that cannot be rejoined."""

import time
import urllib.parse

from harness import SERVER_NAME, TestFailure

# Every table that holds rows of a room (storage/migrations.cpp), with its room column.
ROOM_TABLES = ["rooms", "events", "current_state", "room_memberships", "forward_extremities", "room_aliases",
               "account_data", "receipts", "event_search", "event_relations", "push_notifications",
               "push_room_notifications", "room_peeks",
               "appservice_room_list", "key_backup_keys"]


def rows(srv, sql, *args):
    return srv.sql(sql, *args)


def q(s):
    return urllib.parse.quote(s, safe="")


def poll(ctx, admin, path, done, what):
    deadline = time.time() + 20
    while True:
        body = ctx.expect(admin.request("GET", path))
        if done(body):
            return body
        if time.time() > deadline:
            raise TestFailure(f"{what} did not finish: {body}")
        time.sleep(0.05)


def send(ctx, user, room, body, txn):
    return ctx.expect(user.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{txn}",
                                   body={"msgtype": "m.text", "body": body}))["event_id"]


def busy_room(ctx, srv, alice, bob):
    """A room with everything a room leaves behind: messages, a reply thread, a reaction, receipts,
    room account data and tags, an alias, a directory listing, search entries."""
    room = ctx.expect(alice.request("POST", "/createRoom", body={
        "preset": "public_chat", "name": "Doomed", "room_alias_name": f"doomed-{ctx.run_id}", "visibility": "public"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{q(room)}", body={}))
    root = send(ctx, alice, room, "findable words", "t1")
    ctx.expect(bob.request("PUT", f"/rooms/{q(room)}/send/m.room.message/t2", body={
        "msgtype": "m.text", "body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}}))
    ctx.expect(bob.request("PUT", f"/rooms/{q(room)}/send/m.reaction/t3", body={
        "m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "+1"}}))
    # A mention: alice's own notification row, beside the room's rows of the plain messages.
    ctx.expect(bob.request("PUT", f"/rooms/{q(room)}/send/m.room.message/t4", body={
        "msgtype": "m.text", "body": "hey", "m.mentions": {"user_ids": [alice.user_id]}}))
    ctx.expect(bob.request("POST", f"/rooms/{q(room)}/receipt/m.read/{q(root)}", body={}))
    ctx.expect(bob.request("PUT", f"/user/{q(bob.user_id)}/rooms/{q(room)}/account_data/x.note", body={"n": 1}))
    ctx.expect(bob.request("PUT", f"/user/{q(bob.user_id)}/rooms/{q(room)}/tags/u.work", body={}))
    version = ctx.expect(bob.request("POST", "/room_keys/version", body={
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "pk", "signatures": {}}}))["version"]
    ctx.expect(bob.request("PUT", f"/room_keys/keys/{q(room)}/session1", query={"version": version}, body={
        "first_message_index": 0, "forwarded_count": 0, "is_verified": False,
        "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"}}))
    # Events are indexed for search in batches or when a search runs: this one indexes the room's.
    ctx.expect(alice.request("POST", "/search", body={"search_categories": {"room_events": {"search_term": "findable"}}}))
    return room


def test_background_delete_purges_every_table(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = busy_room(ctx, srv, alice, bob)
    for table in ROOM_TABLES:
        if table in ("room_peeks", "appservice_room_list"):
            continue  # not written by this room
        deadline = time.monotonic() + 10  # notifications are written just after the events
        while not rows(srv, f"SELECT 1 FROM {table} WHERE room_id = ?", room):
            if time.monotonic() > deadline:
                raise TestFailure(f"setup: {table} holds nothing of the room")
            time.sleep(0.05)
    since = ctx.expect(bob.request("GET", "/sync", query={"timeout": "0"}))["next_batch"]

    delete_id = ctx.expect(admin.request("DELETE", f"/_synapse/admin/v2/rooms/{q(room)}", body={}),
                           body={"delete_id": "$string"})["delete_id"]
    status = poll(ctx, admin, f"/_synapse/admin/v2/rooms/delete_status/{delete_id}",
                  lambda b: b["status"] in ("complete", "failed"), "the deletion")
    if status["status"] != "complete" or status["room_id"] != room or status["delete_id"] != delete_id:
        raise TestFailure(f"status: {status}")
    kicked = sorted(status["shutdown_room"]["kicked_users"])
    if kicked != sorted([alice.user_id, bob.user_id]) or status["shutdown_room"]["failed_to_kick_users"] != [] \
            or status["shutdown_room"]["new_room_id"] is not None:
        raise TestFailure(f"shutdown_room: {status}")
    by_room = ctx.expect(admin.request("GET", f"/_synapse/admin/v2/rooms/{q(room)}/delete_status"))
    if [r["delete_id"] for r in by_room["results"]] != [delete_id] or by_room["results"][0]["status"] != "complete":
        raise TestFailure(f"by room: {by_room}")

    for table in ROOM_TABLES:
        left = rows(srv, f"SELECT count(*) FROM {table} WHERE room_id = ?", room)[0][0]
        if left:
            raise TestFailure(f"{left} rows of the room are left in {table}")
    # The room is gone for its former members: not in /sync, /messages refused, no alias, no directory.
    sync = ctx.expect(bob.request("GET", "/sync", query={"timeout": "0", "since": since}))
    for section in ("join", "invite", "leave"):
        if room in sync.get("rooms", {}).get(section, {}):
            raise TestFailure(f"the purged room is still in /sync rooms.{section}: {sync['rooms'][section][room]}")
    ctx.expect(bob.request("GET", f"/rooms/{q(room)}/messages", query={"dir": "b"}), 403, "M_FORBIDDEN")
    ctx.expect(bob.request("GET", f"/directory/room/{q('#doomed-' + ctx.run_id + ':' + SERVER_NAME)}"),
               404, "M_NOT_FOUND")
    pub = ctx.expect(bob.request("GET", "/publicRooms"))
    if any(r["room_id"] == room for r in pub["chunk"]):
        raise TestFailure("the purged room is still in the directory")
    ctx.expect(admin.request("GET", f"/_synapse/admin/v1/rooms/{q(room)}"), 404, "M_NOT_FOUND")
    # Not blocked: nothing stops a new room from being made, and the server keeps working.
    ctx.expect(alice.request("POST", "/createRoom", body={}))


def test_delete_members_see_themselves_leave(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{q(room)}", body={}))
    since = ctx.expect(bob.request("GET", "/sync", query={"timeout": "0"}))["next_batch"]
    delete_id = ctx.expect(admin.request("DELETE", f"/_synapse/admin/v2/rooms/{q(room)}",
                                         body={"purge": False, "new_room_user_id": admin.user_id,
                                               "message": "Moved you"}))["delete_id"]
    status = poll(ctx, admin, f"/_synapse/admin/v2/rooms/delete_status/{delete_id}",
                  lambda b: b["status"] in ("complete", "failed"), "the deletion")
    new_room = status["shutdown_room"]["new_room_id"]
    if status["status"] != "complete" or not new_room:
        raise TestFailure(f"status: {status}")
    sync = ctx.expect(bob.request("GET", "/sync", query={"timeout": "0", "since": since}))
    left = sync.get("rooms", {}).get("leave", {}).get(room)
    if not left or not any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id
                           and e["sender"] == bob.user_id and e["content"]["membership"] == "leave"
                           for e in left["timeline"]["events"]):
        raise TestFailure(f"bob does not see himself leave: {sync.get('rooms')}")
    joined = sync.get("rooms", {}).get("join", {}).get(new_room)
    if not joined or not any(e["type"] == "m.room.message" and e["content"]["body"] == "Moved you"
                             for e in joined["timeline"]["events"]):
        raise TestFailure(f"bob is not in the new room with its message: {sync.get('rooms')}")
    # The new room: users_default -10, so the moved users cannot speak.
    pl = ctx.expect(bob.request("GET", f"/rooms/{q(new_room)}/state/m.room.power_levels"))
    if pl.get("users_default") != -10:
        raise TestFailure(f"power levels of the new room: {pl}")
    # purge: false keeps the room's data.
    if not rows(srv, "SELECT 1 FROM events WHERE room_id = ?", room):
        raise TestFailure("purge: false deleted the events")


def test_blocked_purged_room_cannot_be_rejoined(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    delete_id = ctx.expect(admin.request("DELETE", f"/_synapse/admin/v2/rooms/{q(room)}", body={"block": True}))["delete_id"]
    poll(ctx, admin, f"/_synapse/admin/v2/rooms/delete_status/{delete_id}", lambda b: b["status"] == "complete",
         "the deletion")
    ctx.expect(alice.request("POST", f"/join/{q(room)}", body={}), 403, "M_UNKNOWN",
               body={"error": "This room has been blocked on this server"})
    ctx.expect(admin.request("GET", f"/_synapse/admin/v1/rooms/{q(room)}/block"),
               body={"block": True, "user_id": admin.user_id})
    # Restarted, the block holds (it is in the database).
    srv.stop()
    srv.start()
    ctx.expect(alice.request("POST", f"/join/{q(room)}", body={}), 403, "M_UNKNOWN")


def test_delete_of_unknown_room_fails_in_status(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    room = f"!unknown{ctx.run_id}:{SERVER_NAME}"
    delete_id = ctx.expect(admin.request("DELETE", f"/_synapse/admin/v2/rooms/{q(room)}", body={}))["delete_id"]
    status = poll(ctx, admin, f"/_synapse/admin/v2/rooms/delete_status/{delete_id}",
                  lambda b: b["status"] in ("complete", "failed"), "the deletion")
    if status["status"] != "failed" or "error" not in status:
        raise TestFailure(f"status: {status}")


def test_purge_history(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat", "name": "Kept name"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{q(room)}", body={}))
    old = [send(ctx, alice, room, f"old {i}", f"o{i}") for i in range(3)]
    ctx.expect(alice.request("PUT", f"/rooms/{q(room)}/state/m.room.topic", body={"topic": "Kept topic"}))
    point = send(ctx, bob, room, "the point", "p")
    new = send(ctx, alice, room, "new", "n")

    # Local events are kept unless delete_local_events.
    purge_id = ctx.expect(admin.request("POST", f"/_synapse/admin/v1/purge_history/{q(room)}/{q(point)}", body={}),
                          body={"purge_id": "$string"})["purge_id"]
    poll(ctx, admin, f"/_synapse/admin/v1/purge_history_status/{purge_id}", lambda b: b["status"] == "complete", "purge")
    if len(rows(srv, "SELECT 1 FROM events WHERE event_id IN (?, ?, ?)", *old)) != 3:
        raise TestFailure("local events were purged without delete_local_events")

    purge_id = ctx.expect(admin.request("POST", f"/_synapse/admin/v1/purge_history/{q(room)}",
                                        body={"purge_up_to_event_id": point, "delete_local_events": True}))["purge_id"]
    status = poll(ctx, admin, f"/_synapse/admin/v1/purge_history_status/{purge_id}",
                  lambda b: b["status"] in ("complete", "failed"), "purge")
    if status != {"status": "complete"}:
        raise TestFailure(f"purge status: {status}")
    if rows(srv, "SELECT 1 FROM events WHERE event_id IN (?, ?, ?)", *old):
        raise TestFailure("the messages before the point are still stored")
    if rows(srv, "SELECT count(*) FROM event_search WHERE room_id = ? AND value LIKE 'old%'", room)[0][0]:
        raise TestFailure("the search index still holds the purged messages")
    # /messages stops at the point: older messages are gone, state events stay.
    msgs = ctx.expect(bob.request("GET", f"/rooms/{q(room)}/messages", query={"dir": "b", "limit": "50"}))
    bodies = [e["content"].get("body") for e in msgs["chunk"] if e["type"] == "m.room.message"]
    if bodies != ["new", "the point"]:
        raise TestFailure(f"messages after the purge: {bodies}")
    if not any(e["type"] == "m.room.create" for e in msgs["chunk"]) or \
            not any(e["type"] == "m.room.topic" for e in msgs["chunk"]):
        raise TestFailure("state events were purged")
    # The room stays usable.
    ctx.expect(bob.request("GET", f"/rooms/{q(room)}/state/m.room.name"), body={"name": "Kept name"})
    ctx.expect(bob.request("GET", f"/rooms/{q(room)}/state/m.room.topic"), body={"topic": "Kept topic"})
    later = send(ctx, bob, room, "after the purge", "a")
    ctx.expect(alice.request("GET", f"/rooms/{q(room)}/event/{q(later)}"), body={"content": {"body": "after the purge"}})
    ctx.expect(alice.request("GET", f"/rooms/{q(room)}/event/{q(old[0])}"), 404, "M_NOT_FOUND")
    ctx.expect(alice.request("GET", f"/rooms/{q(room)}/event/{q(new)}"))

    # By timestamp: everything before now.
    time.sleep(0.01)
    ts = int(time.time() * 1000) + 1
    purge_id = ctx.expect(admin.request("POST", f"/_synapse/admin/v1/purge_history/{q(room)}",
                                        body={"purge_up_to_ts": ts, "delete_local_events": True}))["purge_id"]
    poll(ctx, admin, f"/_synapse/admin/v1/purge_history_status/{purge_id}", lambda b: b["status"] == "complete", "purge")
    left = [r[0] for r in rows(srv, "SELECT event_id FROM events WHERE room_id = ? AND state_key IS NULL", room)]
    if left != [later]:
        raise TestFailure(f"after purging up to now, the last message (kept, as Synapse) should be alone: {left}")
    ctx.expect(admin.request("GET", "/_synapse/admin/v1/purge_history_status/nope"), 404, "M_NOT_FOUND")
