"""`trestle backup` while clients keep writing, then `trestle restore` and a fresh server on the
copy: every event acknowledged before the backup began is there, with its media and the same
signing key."""

import json
import os
import subprocess
import threading
import time

from harness import TestFailure, free_port

AUTHED = "/_matrix/client/v1/media"
BACKUP_IS_SQLITE = "trestle backup copies the SQLite file (a PostgreSQL deployment backs up with pg_dump)"


def backup_cmd(ctx, config_path, out_dir):
    return subprocess.run([ctx.binary, "--config", config_path, "backup", out_dir], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def restore_cmd(ctx, config_path, backup_dir):
    return subprocess.run([ctx.binary, "--config", config_path, "restore", backup_dir], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_online_backup_and_restore(ctx):
    ctx.skip_on_postgres(BACKUP_IS_SQLITE)
    srv = ctx.server(start=False)
    srv.config_overrides = {"media_store_path": os.path.join(srv.dir, "media")}
    srv.start()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"name": "backed up", "preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}"))
    image = os.urandom(20000)
    res = alice.request("POST", "/_matrix/media/v3/upload", raw=image, headers={"Content-Type": "image/png"})
    uri = ctx.expect(res)["content_uri"]
    acked = []  # (event_id, time acknowledged)
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/img",
                             body={"msgtype": "m.image", "body": "cat.png", "url": uri}))

    # Two clients keep sending while the backup runs.
    stop = threading.Event()
    errors = []

    def sender(user, tag):
        i = 0
        while not stop.is_set():
            i += 1
            res = user.request("PUT", f"/rooms/{room}/send/m.room.message/{tag}{i}",
                               body={"msgtype": "m.text", "body": f"{tag} {i}"})
            if res.status != 200:
                errors.append(res.describe())
                return
            acked.append((res.json["event_id"], time.monotonic()))

    threads = [threading.Thread(target=sender, args=(u, t)) for u, t in ((alice, "a"), (bob, "b"))]
    for t in threads:
        t.start()
    time.sleep(0.5)
    out = os.path.join(srv.dir, "backup-1")
    began = time.monotonic()
    done = backup_cmd(ctx, srv.config_path, out)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise TestFailure(f"a send failed while the backup ran: {errors[0]}")
    if done.returncode != 0:
        raise TestFailure(f"backup failed ({done.returncode}): {done.stdout} {done.stderr}")
    before = [e for e, at in acked if at < began]
    during = [e for e, at in acked if at >= began]
    if len(before) < 5 or not during:
        raise TestFailure(f"the senders were not busy around the backup: {len(before)} before, {len(during)} during")
    if os.path.exists(out + ".partial"):
        raise TestFailure("the temporary directory was left behind")

    manifest = json.load(open(os.path.join(out, "manifest.json")))
    key_file = os.path.basename(srv.config(0)["signing_key_path"])
    for key, check in (("schema_version", lambda v: isinstance(v, int) and v > 0),
                       ("server_name", lambda v: v == "localhost"),
                       ("counts", lambda v: v["users"] >= 2 and v["events"] >= len(before) and v["local_media"] == 1),
                       ("media", lambda v: v["files"] == 1 and v["bytes"] == len(image) and v["missing"] == []),
                       ("signing_key", lambda v: v["file"] == key_file and v["key_id"].startswith("ed25519:"))):
        if key not in manifest or not check(manifest[key]):
            raise TestFailure(f"manifest {key}: {manifest.get(key)!r}\n{manifest}")

    # A second backup to the same place is refused (never overwritten).
    again = backup_cmd(ctx, srv.config_path, out)
    if again.returncode == 0:
        raise TestFailure("a backup over an existing directory was not refused")

    # Restore into a fresh server's places, and start it there.
    new = ctx.server(start=False)
    new.config_overrides = {"media_store_path": os.path.join(new.dir, "media")}
    os.makedirs(new.data_dir, exist_ok=True)
    new.write_config(free_port())
    done = restore_cmd(ctx, new.config_path, out)
    if done.returncode != 0:
        raise TestFailure(f"restore failed ({done.returncode}): {done.stdout} {done.stderr}")
    refused = restore_cmd(ctx, new.config_path, out)
    if refused.returncode == 0 or "exists" not in refused.stderr:
        raise TestFailure(f"a restore over an existing database was not refused: {refused.stdout} {refused.stderr}")
    new.start()
    res = new.client().request("POST", "/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.localpart},
        "password": alice.password})
    token = ctx.expect(res)["access_token"]
    for event_id in before:
        res = new.client().request("GET", f"/rooms/{room}/event/{event_id}", token=token)
        if res.status != 200:
            raise TestFailure(f"event {event_id}, acknowledged before the backup began, is missing: {res.describe()}")
    res = new.client().request("GET", f"{AUTHED}/download/{uri[len('mxc://'):]}", token=token)
    if res.status != 200 or res.body != image:
        raise TestFailure(f"the media did not come back: {res.status}")
    old_key = open(srv.config(0)["signing_key_path"]).read()
    new_key = open(new.config(0)["signing_key_path"]).read()
    if old_key != new_key:
        raise TestFailure("the restored server has another signing key")
    # The restored server takes new events after the old ones.
    ctx.expect(new.client().request("PUT", f"/rooms/{room}/send/m.room.message/after", token=token,
                                    body={"msgtype": "m.text", "body": "after the restore"}))


def test_restore_checks_the_backup(ctx):
    ctx.skip_on_postgres(BACKUP_IS_SQLITE)
    srv = ctx.server()
    ctx.register(srv, "carol")
    out = os.path.join(srv.dir, "backup")
    done = backup_cmd(ctx, srv.config_path, out)
    if done.returncode != 0:
        raise TestFailure(f"backup failed: {done.stdout} {done.stderr}")
    # A damaged database copy is refused, and nothing is put in place.
    with open(os.path.join(out, "homeserver.db"), "r+b") as f:
        f.seek(200)
        f.write(b"\x00damage")
    new = ctx.server(start=False)
    os.makedirs(new.data_dir, exist_ok=True)
    new.write_config(free_port())
    done = restore_cmd(ctx, new.config_path, out)
    if done.returncode == 0 or "does not match" not in done.stderr:
        raise TestFailure(f"a damaged backup was restored: {done.stdout} {done.stderr}")
    if os.path.exists(new.config(0)["database"]["args"]["database"]):
        raise TestFailure("a database was put in place from a damaged backup")
