"""Debian's synadm (Synapse's admin CLI, unchanged) drives the media admin API: `media list` by
room and by user, `media quarantine` (by id, room and user), `media protect`, `media delete` (by id,
and by date and size, with and without --delete-profiles) and `media purge`; each checks the
answer's content and its effect on downloads."""

import time

from harness import TestFailure

AUTHED = "/_matrix/client/v1/media"
FUTURE_MS = 99999999999999


def upload(ctx, user, data, content_type="text/plain"):
    res = user.request("POST", "/_matrix/media/v3/upload", raw=data, headers={"Content-Type": content_type})
    return ctx.expect(res, 200)["content_uri"]


def media_id(uri):
    return uri.rsplit("/", 1)[1]


def served(user, uri):
    return user.request("GET", f"{AUTHED}/download/{uri[len('mxc://'):]}").status == 200


def check(cond, what, got):
    if not cond:
        raise TestFailure(f"{what}: {got}")


def test_synadm_media_list_by_room_and_user(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    sa = ctx.synadm(srv, admin)
    pic = upload(ctx, alice, b"a picture", "image/png")
    doc = upload(ctx, alice, b"a longer document", "application/pdf")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}), 200)["room_id"]
    for i, content in enumerate([{"msgtype": "m.image", "body": "p", "url": pic,
                                  "info": {"thumbnail_url": "mxc://remote.example/Thumb1"}},
                                 {"msgtype": "m.file", "body": "d", "url": doc}]):
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/t{i}", body=content), 200)

    listed = sa.run("media", "list", "--room-id", room)
    check(sorted(listed.get("local", [])) == sorted([pic, doc]) and listed.get("remote") == ["mxc://remote.example/Thumb1"],
          "media list --room-id", listed)

    listed = sa.run("media", "list", "--user-id", alice.user_id, "--timestamp", "--sort", "media_length")
    check(listed.get("total") == 2, "media list --user-id total", listed)
    check([m["media_id"] for m in listed["media"]] == [media_id(pic), media_id(doc)], "sorted by length", listed)
    first = listed["media"][0]
    check(first["media_type"] == "image/png" and first["media_length"] == 9 and isinstance(first["created_ts"], int)
          and first["quarantined_by"] is None and first["safe_from_quarantine"] is False, "media entry", first)
    # --reverse, paging, and the default human-readable dates.
    listed = sa.run("media", "list", "-u", alice.user_id, "--sort", "media_length", "--reverse", "--limit", "1")
    check([m["media_id"] for m in listed["media"]] == [media_id(doc)] and listed.get("next_token") == 1,
          "reverse, limit 1", listed)
    check(isinstance(listed["media"][0]["created_ts"], str), "readable created_ts", listed)
    listed = sa.run("user", "media", alice.user_id, "--from", "1", "--ts")
    check(listed.get("total") == 2 and len(listed["media"]) == 1 and "next_token" not in listed, "from 1", listed)


def test_synadm_media_quarantine_and_protect(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    sa = ctx.synadm(srv, admin)

    one = upload(ctx, alice, b"quarantine me by id")
    check(sa.run("media", "quarantine", "--media-id", media_id(one)) == {}, "quarantine by id", "not {}")
    check(not served(bob, one), "quarantined media still served", one)
    listed = sa.run("media", "list", "-u", alice.user_id, "--ts")
    check(listed["media"][0]["quarantined_by"] == admin.user_id, "quarantined_by", listed)

    # A room's media; a protected media (a sticker, say) is left alone.
    in_room = upload(ctx, alice, b"posted in the room")
    sticker = upload(ctx, alice, b"a shared sticker")
    check(sa.run("media", "protect", media_id(sticker)) == {}, "protect", "not {}")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}), 200)["room_id"]
    for i, uri in enumerate([in_room, sticker]):
        ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/q{i}",
                                 body={"msgtype": "m.file", "body": "f", "url": uri}), 200)
    res = sa.run("media", "quarantine", "--room-id", room)
    check(res == {"num_quarantined": 1}, "quarantine --room-id", res)
    check(not served(bob, in_room) and served(bob, sticker), "room quarantine effect", (in_room, sticker))

    # A user's media: everything not yet quarantined and not protected.
    b1 = upload(ctx, bob, b"bob's first")
    b2 = upload(ctx, bob, b"bob's second")
    res = sa.run("media", "quarantine", "--user-id", bob.user_id)
    check(res == {"num_quarantined": 2}, "quarantine --user-id", res)
    check(not served(alice, b1) and not served(alice, b2), "user quarantine effect", (b1, b2))
    res = sa.run("media", "quarantine", "--user-id", alice.user_id)
    check(res == {"num_quarantined": 0}, "alice's media: quarantined or protected already", res)
    check(served(bob, sticker), "protected media was quarantined", sticker)


def test_synadm_media_delete_and_purge(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    alice = ctx.register(srv, "alice")
    sa = ctx.synadm(srv, admin)

    gone = upload(ctx, alice, b"delete me")
    res = sa.run("media", "delete", "--media-id", media_id(gone))
    check(res == {"deleted_media": [media_id(gone)], "total": 1}, "delete --media-id", res)
    check(not served(alice, gone), "deleted media still served", gone)
    sa.run("media", "delete", "--media-id", media_id(gone), expect_failure=True)

    small = upload(ctx, alice, b"s")
    big = upload(ctx, alice, b"b" * 3000)
    avatar = upload(ctx, alice, b"a" * 3000, "image/png")
    ctx.expect(alice.request("PUT", f"/profile/{alice.user_id}/avatar_url", body={"avatar_url": avatar}), 200)
    # Nothing was used before 2001.
    res = sa.run("media", "delete", "--before", "2001-01-01")
    check(res == {"deleted_media": [], "total": 0}, "delete --before 2001", res)
    # Larger than 2 KiB, used before now (+1 min): the big one; the avatar is kept.
    now = int(time.time() * 1000) + 60000
    res = sa.run("media", "delete", "--before-ts", now, "--size", 2)
    check(res == {"deleted_media": [media_id(big)], "total": 1}, "delete --before-ts --size", res)
    check(not served(alice, big) and served(alice, small) and served(alice, avatar), "delete by size effect",
          (big, small, avatar))
    res = sa.run("media", "delete", "--before-ts", FUTURE_MS, "--size", 2, "--delete-profiles")
    check(res == {"deleted_media": [media_id(avatar)], "total": 1}, "delete --delete-profiles", res)
    check(not served(alice, avatar), "deleted avatar still served", avatar)

    res = sa.run("media", "purge", "--before-days", 30)
    check(res == {"deleted": 0}, "media purge (no remote media cache)", res)
    res = sa.run("media", "purge", "--before-ts", FUTURE_MS)
    check(res == {"deleted": 0}, "media purge --before-ts", res)
    check(served(alice, small), "purge deleted local media", small)
