"""The media repository as a role (Synapse's enable_media_repo and media worker): a process with
`enable_media_repo: false` does not serve media (404 M_UNRECOGNIZED, as Synapse) but keeps the
admin API's media statistics; under --topology workers, reader2 is the media worker (main serves
no media): nginx sends every media request there, a kill -9 of it loses no acknowledged upload,
and each process receives uploads in a temp folder of its own, which only it clears."""

import os

from harness import MEDIA, Client, TestFailure, TestSkipped
from media import media_path, png, png_size, upload
from workers_topology import expect_served

AUTHED = "/_matrix/client/v1/media"


def test_enable_media_repo_false_serves_no_media(ctx):
    # One process standing beside an external media repository (Synapse's use of the key).
    srv = ctx.server(config={"enable_media_repo": False})
    if srv.multi:
        raise TestSkipped("a single process (the topology's own media worker would serve media)")
    admin = ctx.register(srv, "admin", admin=True)
    for method, path in (("POST", "/_matrix/media/v3/upload"), ("GET", f"{AUTHED}/config"),
                         ("GET", f"{AUTHED}/download/{srv.name}/abcdefghij"),
                         ("GET", "/_matrix/media/v3/download/x/abcdefghij"),
                         ("GET", f"/_synapse/admin/v1/users/{admin.user_id}/media"),
                         ("POST", "/_synapse/admin/v1/media/delete")):
        ctx.expect(admin.request(method, path, raw=b"x" if method == "POST" else None), 404, "M_UNRECOGNIZED")
    # The statistics read the database alone: Synapse's main serves them, so does Trestle's.
    ctx.expect(admin.request("GET", "/_synapse/admin/v1/statistics/users/media"), body={"users": [], "total": 0})


def media_server(ctx):
    if not ctx.workers or "main" in MEDIA:
        raise TestSkipped("needs --topology workers (reader2 is the media worker, main serves no media)")
    return ctx.server()


def test_media_goes_to_the_media_worker(ctx):
    srv = media_server(ctx)
    admin = ctx.register(srv, "admin", admin=True)
    image = png(400, 300)
    uri = upload(ctx, admin, image, filename="cat.png")
    res = admin.request("GET", f"{AUTHED}/download/{media_path(uri)}")
    if res.status != 200 or res.body != image:
        raise TestFailure(f"download through the media worker: {res.status} {len(res.body)} bytes")
    res = admin.request("GET", f"{AUTHED}/thumbnail/{media_path(uri)}", query={"width": 32, "height": 32,
                                                                                 "method": "crop"})
    if res.status != 200 or png_size(res.body) != (32, 32):
        raise TestFailure(f"thumbnail through the media worker: {res.status}")
    ctx.expect(admin.request("GET", f"{AUTHED}/config"))
    listed = ctx.expect(admin.request("GET", f"/_synapse/admin/v1/users/{admin.user_id}/media"))
    if [m["media_id"] for m in listed["media"]] != [uri.rsplit("/", 1)[1]]:
        raise TestFailure(f"the admin media list: {listed}")
    media = MEDIA[0]
    expect_served(srv, "POST", "/_matrix/media/v3/upload", media)
    expect_served(srv, "GET", f"{AUTHED}/download/", media)
    expect_served(srv, "GET", f"{AUTHED}/thumbnail/", media)
    expect_served(srv, "GET", f"/_synapse/admin/v1/users/{admin.user_id}/media", media)
    # Main does not serve media: asked directly, the paths are not its own.
    main = Client(f"http://127.0.0.1:{srv.main_port}")
    ctx.expect(main.request("GET", f"{AUTHED}/download/{media_path(uri)}", token=admin.token), 404, "M_UNRECOGNIZED")
    ctx.expect(main.request("POST", "/_matrix/media/v3/upload", token=admin.token, raw=b"x",
                            headers={"Content-Type": "text/plain"}), 404, "M_UNRECOGNIZED")
    # ... but its statistics count what the media worker stored.
    stats = ctx.expect(main.request("GET", "/_synapse/admin/v1/statistics/users/media", token=admin.token))
    if [(u["user_id"], u["media_count"], u["media_length"]) for u in stats["users"]] != [(admin.user_id, 1, len(image))]:
        raise TestFailure(f"main's media statistics: {stats}")


def test_a_killed_media_worker_loses_no_upload(ctx):
    srv = media_server(ctx)
    alice = ctx.register(srv, "alice")
    media = MEDIA[0]
    stored = [upload(ctx, alice, png(20 + i, 10), filename=f"{i}.png") for i in range(5)]
    # Each process receives uploads in a folder of its own under media_store_path/tmp, and clears
    # only that one when it starts: a restart never cuts another process's upload short.
    tmp = os.path.join(srv.data_dir, "media", "tmp")
    planted = {name: os.path.join(tmp, name, "an-upload-in-flight") for name in ("main", media)}
    for path in planted.values():
        if not os.path.isdir(os.path.dirname(path)):
            raise TestFailure(f"no temp folder {os.path.dirname(path)} (have {sorted(os.listdir(tmp))})")
        with open(path, "wb") as f:
            f.write(b"partial")
    srv.kill_process(media)
    # While it is down the rest of the server serves; media requests fail (nginx has no media worker).
    ctx.expect(alice.request("GET", "/account/whoami"))
    res = alice.request("GET", f"{AUTHED}/download/{media_path(stored[0])}")
    if res.status < 500:
        raise TestFailure(f"a download with the media worker down answered {res.status}")
    srv.start_process(media)
    if not os.path.exists(planted["main"]):
        raise TestFailure("the media worker's start removed main's upload in flight")
    if os.path.exists(planted[media]):
        raise TestFailure("the media worker left its own cut-short upload in its temp folder")
    os.remove(planted["main"])
    for i, uri in enumerate(stored):
        res = alice.request("GET", f"{AUTHED}/download/{media_path(uri)}")
        if res.status != 200 or res.body != png(20 + i, 10):
            raise TestFailure(f"upload {i} after the kill: {res.status}")
