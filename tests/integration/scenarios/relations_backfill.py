"""The migration that adds event_relations back-fills it from the events stored before: a database
rolled back to the step before it (table dropped, schema version lowered) serves /relations,
/threads and bundled aggregations again after a restart; redacted, malformed and unreadable rows
are skipped without failing the migration."""

import os
import sqlite3

from harness import TestFailure


def _send(ctx, user, room, content, type_="m.room.message"):
    return ctx.expect(user.request("PUT", f"/rooms/{room}/send/{type_}/{os.urandom(6).hex()}", body=content))["event_id"]


def test_migration_back_fills_relations_of_existing_events(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    root = _send(ctx, alice, room, {"msgtype": "m.text", "body": "root"})
    thread = {"rel_type": "m.thread", "event_id": root}
    r1 = _send(ctx, alice, room, {"msgtype": "m.text", "body": "r1", "m.relates_to": thread})
    r2 = _send(ctx, alice, room, {"msgtype": "m.text", "body": "r2", "m.relates_to": thread})
    gone = _send(ctx, alice, room, {"msgtype": "m.text", "body": "redacted", "m.relates_to": thread})
    ctx.expect(alice.request("PUT", f"/rooms/{room}/redact/{gone}/t1", body={}))
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/bad",
                             body={"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": 5, "event_id": root}}))
    damaged = _send(ctx, alice, room, {"msgtype": "m.text", "body": "damaged", "m.relates_to": {"rel_type": "m.reference", "event_id": root}})
    edit = _send(ctx, alice, room, {"msgtype": "m.text", "body": "* r1", "m.new_content": {"msgtype": "m.text", "body": "r1!"},
                                    "m.relates_to": {"rel_type": "m.replace", "event_id": r1}})
    srv.stop()

    with sqlite3.connect(os.path.join(srv.data_dir, "homeserver.db")) as db:
        (version,) = db.execute("SELECT version FROM schema_version").fetchone()
        (rows,) = db.execute("SELECT COUNT(*) FROM event_relations").fetchone()
        if rows != 4:
            raise TestFailure(f"expected 4 relations before the rollback, found {rows}")
        db.execute("DROP TABLE event_relations")
        db.execute("UPDATE schema_version SET version = ?", (version - 1,))
        # A row whose stored JSON no longer parses must not stop the migration.
        db.execute("UPDATE events SET json = '{\"content\": {\"m.relates_to\": ' WHERE event_id = ?", (damaged,))
    srv.start()

    ctx.expect(alice.request("GET", f"/_matrix/client/v1/rooms/{room}/relations/{root}"),
               body={"chunk": [{"event_id": r2}, {"event_id": r1, "unsigned": {"m.relations": {"m.replace": {"event_id": edit}}}}]})
    ctx.expect(alice.request("GET", f"/_matrix/client/v1/rooms/{room}/threads"),
               body={"chunk": [{"event_id": root, "unsigned": {"m.relations": {"m.thread": {
                   "count": 2, "latest_event": {"event_id": r2}, "current_user_participated": True}}}}]})
    with sqlite3.connect(os.path.join(srv.data_dir, "homeserver.db")) as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM event_relations").fetchone()
        (now,) = db.execute("SELECT version FROM schema_version").fetchone()
    if rows != 3 or now != version:
        raise TestFailure(f"after the back-fill: {rows} relations (want 3), schema version {now} (want {version})")
