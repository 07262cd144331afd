"""`trestle port-db`: a deployment made on SQLite, copied into PostgreSQL with the server still
running, then once more with it stopped (every run copies every table anew), then served from
PostgreSQL: the same accounts and passwords, rooms, history in order, profiles, account data and
media, and new writes continue the streams and ids. Needs the PostgreSQL run (--database postgres)."""

import os
import subprocess

from harness import TestFailure, TestSkipped


def port(ctx, pg, sqlite_path):
    done = subprocess.run([ctx.binary, "--config", pg.config_path, "port-db", "--from-sqlite", sqlite_path],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise TestFailure(f"port-db exited {done.returncode}: {done.stderr.strip()[-2000:]}\n{done.stdout[-2000:]}")
    rows = {}
    for line in done.stdout.splitlines()[1:]:
        table, copied, source, target = line.split()[:4]
        rows[table] = (int(copied), int(source), int(target))
    return rows


def test_port_an_sqlite_deployment_into_postgres(ctx):
    if not ctx.postgres:
        raise TestSkipped("port-db needs the PostgreSQL run (--database postgres)")
    src = ctx.server(start=False)
    sqlite_path = os.path.join(src.data_dir, "homeserver.db")
    shared = {"media_store_path": os.path.join(src.dir, "media"),
              "signing_key_path": os.path.join(src.dir, "signing.key")}
    src.config_overrides = dict(shared, database={"name": "sqlite3", "args": {"database": sqlite_path}})
    src.start()
    alice = ctx.register(src, "alice")
    bob = ctx.register(src, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"name": "ported", "preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}"))
    ctx.expect(alice.request("PUT", f"/profile/{alice.user_id}/displayname", body={"displayname": "Alice P."}))
    ctx.expect(alice.request("PUT", f"/user/{alice.user_id}/account_data/org.example.setting", body={"on": True}))
    uri = ctx.expect(alice.request("POST", "/_matrix/media/v3/upload", raw=os.urandom(3000),
                                   headers={"Content-Type": "application/octet-stream"}))["content_uri"]
    sent = []
    for i in range(30):
        who = alice if i % 2 == 0 else bob
        sent.append(ctx.expect(who.request("PUT", f"/rooms/{room}/send/m.room.message/p{i}",
                                           body={"msgtype": "m.text", "body": f"before the port {i}"}))["event_id"])

    pg = ctx.server(start=False, empty_database=True)  # port-db fills only an empty database
    pg.config_overrides = dict(shared)
    pg.prepare_database()
    os.makedirs(pg.data_dir, exist_ok=True)
    pg.write_config(0)
    # While the SQLite server still runs and writes; then, stopped, the rest.
    first = port(ctx, pg, sqlite_path)
    if first["events"][0] == 0 or first["users"] != (2, 2, 2):
        raise TestFailure(f"the first port copied {first.get('events')} events, users {first.get('users')}")
    for i in range(30, 35):
        sent.append(ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/p{i}",
                                             body={"msgtype": "m.text", "body": f"before the port {i}"}))["event_id"])
    src.stop()
    second = port(ctx, pg, sqlite_path)
    for table in ("events", "forward_extremities", "room_memberships", "users", "access_tokens"):
        copied, source, target = second[table]
        if not copied == source == target or source == 0:
            raise TestFailure(f"the second port's {table}: copied {copied}, SQLite {source}, PostgreSQL {target}")

    pg.start()
    login = ctx.expect(pg.client().request("POST", "/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.localpart},
        "password": alice.password}))
    token = login["access_token"]
    client = pg.client()
    # The old access token works too (tokens are ported as their hashes).
    ctx.expect(client.request("GET", "/account/whoami", token=bob.token), body={"user_id": bob.user_id})
    history = ctx.expect(client.request("GET", f"/rooms/{room}/messages", token=token,
                                        query={"dir": "b", "limit": "100"}))
    ids = [e["event_id"] for e in history["chunk"] if e["type"] == "m.room.message"]
    if ids != list(reversed(sent)):
        raise TestFailure(f"history on PostgreSQL: {len(ids)} messages, not the {len(sent)} sent in order")
    ctx.expect(client.request("GET", f"/profile/{alice.user_id}/displayname", token=token),
               body={"displayname": "Alice P."})
    ctx.expect(client.request("GET", f"/user/{alice.user_id}/account_data/org.example.setting", token=token),
               body={"on": True})
    media = client.request("GET", "/_matrix/client/v1/media/download/" + uri[len("mxc://"):], token=token)
    if media.status != 200 or len(media.body) != 3000:
        raise TestFailure(f"the uploaded media after the port: {media.describe()}")
    # New writes: the stream goes on after the ported positions (a sync sees them), new rows get
    # new ids.
    new = ctx.expect(client.request("PUT", f"/rooms/{room}/send/m.room.message/after",
                                    token=token, body={"msgtype": "m.text", "body": "after the port"}))["event_id"]
    sync = ctx.expect(client.request("GET", "/sync", token=bob.token))
    timeline = sync["rooms"]["join"][room]["timeline"]["events"]
    if not timeline or timeline[-1]["event_id"] != new:
        raise TestFailure("bob's sync on PostgreSQL does not end with the message sent after the port")
    report = client.request("POST", f"/rooms/{room}/report/{sent[1]}", token=token, body={"reason": "ported"})
    ctx.expect(report)
