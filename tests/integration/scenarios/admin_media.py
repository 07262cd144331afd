"""Synapse's media admin API, what data cases cannot see: deletion removes the files (original and
thumbnails) from media_store_path; quarantine stops downloads and thumbnails on the authenticated
and the legacy paths; media_retention deletes media nobody used within local_media_lifetime but
keeps recently used media and avatars."""

import os
import struct
import time
import zlib

from harness import TestFailure

ADMIN = "/_synapse/admin/v1"
AUTHED = "/_matrix/client/v1/media"
LEGACY = "/_matrix/media/v3"


def png(width, height):
    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
                    for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def upload(ctx, user, data, content_type="image/png"):
    res = user.request("POST", "/_matrix/media/v3/upload", raw=data, headers={"Content-Type": content_type})
    uri = ctx.expect(res, 200)["content_uri"]
    return uri[len("mxc://"):].split("/", 1)  # server name, media id


def files_of(srv, media_id):
    """The media's file and its thumbnails under media_store_path (the server's layout)."""
    root = os.path.join(srv.data_dir, "media")
    sub = os.path.join(media_id[:2], media_id[2:4], media_id[4:])
    original = os.path.join(root, "local", sub)
    thumbs = os.path.join(root, "thumbnails", sub)
    found = [original] if os.path.exists(original) else []
    if os.path.isdir(thumbs):
        found += [os.path.join(thumbs, f) for f in os.listdir(thumbs)]
    return found


def thumbnail(user, base, server, media_id):
    return user.request("GET", f"{base}/thumbnail/{server}/{media_id}", query={"width": 32, "height": 32,
                                                                               "method": "crop"})


def test_delete_removes_the_files_and_their_thumbnails(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    server, mid = upload(ctx, alice, png(64, 48))
    ctx.expect(thumbnail(alice, AUTHED, server, mid), 200)
    before = files_of(srv, mid)
    if len(before) != 2:
        raise TestFailure(f"expected the original and one thumbnail on disk, found {before}")
    res = admin.request("DELETE", f"{ADMIN}/media/{server}/{mid}")
    ctx.expect(res, 200, body={"deleted_media": [mid], "total": 1})
    left = [p for p in before if os.path.exists(p)] + files_of(srv, mid)
    if left:
        raise TestFailure(f"files left after delete: {left}")
    ctx.expect(alice.request("GET", f"{AUTHED}/download/{server}/{mid}"), 404, "M_NOT_FOUND")
    ctx.expect(thumbnail(alice, AUTHED, server, mid), 404, "M_NOT_FOUND")

    # A user's media, and media by size: the same.
    _, a = upload(ctx, alice, png(20, 20))
    _, b = upload(ctx, alice, png(30, 30))
    ctx.expect(thumbnail(alice, AUTHED, server, a), 200)
    res = admin.request("POST", f"{ADMIN}/media/delete",
                        query={"before_ts": int(time.time() * 1000) + 60000, "size_gt": len(png(20, 20))})
    ctx.expect(res, 200, body={"deleted_media": [b], "total": 1})
    if files_of(srv, b):
        raise TestFailure(f"files of {b} left after delete by size")
    res = admin.request("DELETE", f"{ADMIN}/users/{alice.user_id}/media")
    ctx.expect(res, 200, body={"deleted_media": [a], "total": 1})
    if files_of(srv, a):
        raise TestFailure(f"files of {a} left after deleting the user's media")


def test_quarantined_media_is_not_served_anywhere(ctx):
    srv = ctx.server(config={"enable_authenticated_media": False})
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    image = png(64, 48)
    server, mid = upload(ctx, alice, image)
    _, twin = upload(ctx, alice, image)  # the same bytes under another id
    for base in (AUTHED, LEGACY):
        ctx.expect(alice.request("GET", f"{base}/download/{server}/{mid}"), 200)
        ctx.expect(thumbnail(alice, base, server, mid), 200)
    ctx.expect(admin.request("POST", f"{ADMIN}/media/quarantine/{server}/{mid}", body={}), 200, body={})
    for base in (AUTHED, LEGACY):
        for media_id in (mid, twin):
            ctx.expect(alice.request("GET", f"{base}/download/{server}/{media_id}"), 404, "M_NOT_FOUND")
            ctx.expect(alice.request("GET", f"{base}/download/{server}/{media_id}/name.png"), 404, "M_NOT_FOUND")
            # The thumbnail already on disk is not served either.
            ctx.expect(thumbnail(alice, base, server, media_id), 404, "M_NOT_FOUND")
    if len(files_of(srv, mid)) != 2:
        raise TestFailure("quarantine removed files; it only hides them")
    # Kept across a restart; released, served again.
    srv.stop()
    srv.start()
    ctx.expect(alice.request("GET", f"{AUTHED}/download/{server}/{mid}"), 404, "M_NOT_FOUND")
    ctx.expect(admin.request("POST", f"{ADMIN}/media/unquarantine/{server}/{mid}", body={}), 200, body={})
    res = alice.request("GET", f"{AUTHED}/download/{server}/{twin}")
    ctx.expect(res, 200)
    if res.body != image:
        raise TestFailure("released media came back different")
    ctx.expect(thumbnail(alice, LEGACY, server, mid), 200)


def test_media_retention_deletes_unused_media_but_keeps_used_and_avatars(ctx):
    lifetime_s = 4
    srv = ctx.server(config={"media_retention": {"local_media_lifetime": f"{lifetime_s}s",
                                                 "remote_media_lifetime": "14d", "check_interval": "200ms"}})
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    started = time.monotonic()
    server, unused = upload(ctx, alice, b"nobody downloads this", "text/plain")
    _, used = upload(ctx, alice, b"downloaded later", "text/plain")
    _, avatar = upload(ctx, alice, png(16, 16))
    _, room_avatar = upload(ctx, alice, png(17, 17))
    ctx.expect(alice.request("PUT", f"/profile/{alice.user_id}/avatar_url",
                             body={"avatar_url": f"mxc://{server}/{avatar}"}), 200)
    room = ctx.expect(alice.request("POST", "/createRoom", body={}), 200)["room_id"]
    ctx.expect(alice.request("PUT", f"/rooms/{room}/state/m.room.avatar",
                             body={"url": f"mxc://{server}/{room_avatar}"}), 200)
    # Halfway through its lifetime, `used` is downloaded: its lifetime starts again.
    time.sleep(max(0.0, lifetime_s / 2 - (time.monotonic() - started)))
    ctx.expect(alice.request("GET", f"{AUTHED}/download/{server}/{used}"), 200)
    used_at = time.monotonic()
    listed = ctx.expect(admin.request("GET", f"{ADMIN}/users/{alice.user_id}/media",
                                      query={"order_by": "last_access_ts", "dir": "b"}), 200)
    if listed["media"][0]["media_id"] != used or not isinstance(listed["media"][0]["last_access_ts"], int):
        raise TestFailure(f"the download did not record last_access_ts: {listed}")
    # `unused` goes once it is lifetime_s old (the job runs every 200 ms). Watched through the admin
    # API: a download would count as a use.
    deadline = time.monotonic() + lifetime_s + 5
    while True:
        res = admin.request("GET", f"{ADMIN}/media/{server}/{unused}")
        if res.status == 404:
            break
        if time.monotonic() > deadline:
            raise TestFailure("media_retention did not delete media unused for its lifetime")
        time.sleep(0.1)
    ctx.expect(res, 404, "M_NOT_FOUND")
    if files_of(srv, unused):
        raise TestFailure("media_retention left the file on disk")
    # Downloaded about 2 s ago: kept (it goes 4 s after that download); avatars are always kept.
    # (On a machine so loaded that `unused` went late, `used` may be due too: then only the avatars
    # are judged.)
    kept = [avatar, room_avatar] + ([used] if time.monotonic() - used_at < lifetime_s - 1 else [])
    listed = ctx.expect(admin.request("GET", f"{ADMIN}/users/{alice.user_id}/media"), 200)
    if not set(kept) <= {m["media_id"] for m in listed["media"]} or unused in {m["media_id"] for m in listed["media"]}:
        raise TestFailure(f"after retention, expected {kept} kept: {listed}")
    for media_id in kept:
        ctx.expect(alice.request("GET", f"{AUTHED}/download/{server}/{media_id}"), 200)
    # The avatars stay however long it runs.
    time.sleep(0.5)
    for media_id in (avatar, room_avatar):
        ctx.expect(admin.request("GET", f"{ADMIN}/media/{server}/{media_id}"), 200)
