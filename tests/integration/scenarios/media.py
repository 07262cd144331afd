"""The media repository: upload (direct and asynchronous), download with the spec's headers,
thumbnails of real images, the size limit while streaming, the legacy endpoints' freeze."""

import http.client
import os
import socket
import struct
import sys
import time
import urllib.parse
import zlib

from harness import TestFailure

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
AUTHED = "/_matrix/client/v1/media"
CSP = ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
       "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")


def png(width, height):
    """An RGB PNG with a gradient, written with the standard library."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
                    for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_size(data):
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise TestFailure(f"not a PNG: {data[:16]!r}")
    return struct.unpack(">II", data[16:24])


def jpeg_size(data):
    if not data.startswith(b"\xff\xd8"):
        raise TestFailure(f"not a JPEG: {data[:16]!r}")
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    raise TestFailure("JPEG without a frame header")


def upload(ctx, user, data, content_type="image/png", filename=None, status=200, errcode=None):
    query = {"filename": filename} if filename else None
    res = user.request("POST", "/_matrix/media/v3/upload", raw=data, query=query,
                       headers={"Content-Type": content_type})
    body = ctx.expect(res, status, errcode)
    return body.get("content_uri") if status == 200 else None


def temp_files(srv):
    """The files in media_store_path/tmp (with several processes, each has a folder there)."""
    tmp = os.path.join(srv.data_dir, "media", "tmp")
    return sorted(os.path.relpath(os.path.join(d, f), tmp) for d, _, files in os.walk(tmp) for f in files)


def media_path(uri):
    assert uri.startswith("mxc://"), uri
    return uri[len("mxc://"):]


def test_upload_and_download_with_the_specs_headers(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    image = png(40, 30)
    uri = upload(ctx, alice, image, filename="cat.png")
    if media_path(uri).split("/")[0] != alice.user_id.split(":", 1)[1]:
        raise TestFailure(f"content_uri {uri} names another server")
    res = alice.request("GET", f"{AUTHED}/download/{media_path(uri)}")
    ctx.expect(res, 200)
    if res.body != image:
        raise TestFailure("downloaded bytes differ from the upload")
    h = res.headers
    expected = {"content-type": "image/png", "content-disposition": 'inline; filename="cat.png"',
                "content-security-policy": CSP, "cross-origin-resource-policy": "cross-origin"}
    for k, v in expected.items():
        if h.get(k) != v:
            raise TestFailure(f"header {k}: {h.get(k)!r}, expected {v!r}")
    # A file name in the path overrides the stored one; non-ASCII per RFC 5987.
    res = alice.request("GET", f"{AUTHED}/download/{media_path(uri)}/" + urllib.parse.quote("na\u00efve file.png"))
    ctx.expect(res, 200)
    if res.headers.get("content-disposition") != "inline; filename*=utf-8''na%C3%AFve%20file.png":
        raise TestFailure(f"content-disposition {res.headers.get('content-disposition')!r}")
    # Types a browser would run are attachments.
    html = upload(ctx, alice, b"<script>alert(1)</script>", content_type="text/html", filename="x.html")
    res = alice.request("GET", f"{AUTHED}/download/{media_path(html)}")
    ctx.expect(res, 200)
    if res.headers.get("content-disposition") != 'attachment; filename="x.html"':
        raise TestFailure(f"content-disposition {res.headers.get('content-disposition')!r}")
    if res.headers.get("content-type") != "text/html":
        raise TestFailure(f"content-type {res.headers.get('content-type')!r}")
    # No content type given: application/octet-stream, and no file name: a bare disposition.
    res = alice.request("POST", "/_matrix/media/v3/upload", raw=b"\x00\x01\x02")
    bare = ctx.expect(res, 200)["content_uri"]
    res = alice.request("GET", f"{AUTHED}/download/{media_path(bare)}")
    ctx.expect(res, 200)
    if res.body != b"\x00\x01\x02" or res.headers.get("content-disposition") != "attachment":
        raise TestFailure(f"bare upload: {res.headers}")
    # Another user downloads it too; an empty upload is fine.
    bob = ctx.register(srv, "bob")
    ctx.expect(bob.request("GET", f"{AUTHED}/download/{media_path(uri)}"), 200)
    empty = upload(ctx, alice, b"", content_type="text/plain")
    res = bob.request("GET", f"{AUTHED}/download/{media_path(empty)}")
    ctx.expect(res, 200)
    if res.body != b"":
        raise TestFailure("empty upload came back non-empty")


def test_a_large_upload_is_streamed_and_served_back(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    data = os.urandom(3 * 1024 * 1024 + 17)
    uri = upload(ctx, alice, data, content_type="application/octet-stream", filename="blob.bin")
    res = alice.request("GET", f"{AUTHED}/download/{media_path(uri)}")
    ctx.expect(res, 200)
    if res.body != data:
        raise TestFailure("large download differs from the upload")
    if res.headers.get("content-length") != str(len(data)):
        raise TestFailure(f"content-length {res.headers.get('content-length')}")


def test_thumbnails_of_png_and_jpeg(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    uri = upload(ctx, alice, png(400, 300))
    path = f"{AUTHED}/thumbnail/{media_path(uri)}"
    res = alice.request("GET", path, query={"width": 32, "height": 32, "method": "crop"})
    ctx.expect(res, 200)
    if res.headers.get("content-type") != "image/png" or png_size(res.body) != (32, 32):
        raise TestFailure(f"crop 32x32: {res.headers.get('content-type')} {png_size(res.body)}")
    # 100x100 scale: the smallest scale size that covers it is 320x240, which fits 400x300 exactly.
    res = alice.request("GET", path, query={"width": 100, "height": 100, "method": "scale"})
    ctx.expect(res, 200)
    if png_size(res.body) != (320, 240):
        raise TestFailure(f"scale 100x100 gave {png_size(res.body)}")
    # Generated once: the same bytes again; method defaults to scale.
    again = alice.request("GET", path, query={"width": 100, "height": 100})
    ctx.expect(again, 200)
    if again.body != res.body:
        raise TestFailure("second thumbnail differs")
    # Larger than every size: the largest (800x600), never enlarged beyond the original.
    res = alice.request("GET", path, query={"width": 2000, "height": 2000})
    ctx.expect(res, 200)
    if png_size(res.body) != (400, 300):
        raise TestFailure(f"large scale gave {png_size(res.body)}")
    res = alice.request("GET", path, query={"width": 90, "height": 90, "method": "crop"})
    ctx.expect(res, 200)
    if png_size(res.body) != (96, 96):
        raise TestFailure(f"crop 90x90 gave {png_size(res.body)}")
    for k in ("content-security-policy", "cross-origin-resource-policy", "content-disposition"):
        if k not in res.headers:
            raise TestFailure(f"thumbnail without {k}")

    with open(os.path.join(FIXTURES, "photo.jpg"), "rb") as f:
        jpeg = f.read()
    uri = upload(ctx, alice, jpeg, content_type="image/jpeg")
    path = f"{AUTHED}/thumbnail/{media_path(uri)}"
    res = alice.request("GET", path, query={"width": 96, "height": 96, "method": "crop"})
    ctx.expect(res, 200)
    if res.headers.get("content-type") != "image/jpeg" or jpeg_size(res.body) != (96, 96):
        raise TestFailure(f"jpeg crop: {res.headers.get('content-type')}")
    res = alice.request("GET", path, query={"width": 320, "height": 240, "method": "scale"})
    ctx.expect(res, 200)
    if jpeg_size(res.body) != (200, 150):
        raise TestFailure(f"jpeg scale gave {jpeg_size(res.body)}")


def test_thumbnail_errors_are_clear_and_the_server_stays_up(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    corrupt = upload(ctx, alice, b"\x89PNG\r\n\x1a\n" + os.urandom(300), content_type="image/png")
    garbage = upload(ctx, alice, b"this is not an image at all", content_type="image/jpeg")
    text = upload(ctx, alice, b"hello", content_type="text/plain")
    truncated = upload(ctx, alice, png(64, 64)[:60], content_type="image/png")
    for uri in (corrupt, garbage, text, truncated):
        for _ in range(2):
            res = alice.request("GET", f"{AUTHED}/thumbnail/{media_path(uri)}",
                                query={"width": 32, "height": 32, "method": "crop"})
            ctx.expect(res, 400, "M_UNKNOWN")
    good = upload(ctx, alice, png(10, 10))
    path = f"{AUTHED}/thumbnail/{media_path(good)}"
    ctx.expect(alice.request("GET", path, query={"width": 0, "height": 32}), 400, "M_INVALID_PARAM")
    ctx.expect(alice.request("GET", path, query={"width": "a", "height": 32}), 400, "M_INVALID_PARAM")
    ctx.expect(alice.request("GET", path, query={"height": 32}), 400, "M_MISSING_PARAM")
    ctx.expect(alice.request("GET", path, query={"width": 32, "height": 32, "method": "zoom"}), 400, "M_INVALID_PARAM")
    ctx.expect(alice.request("GET", path, query={"width": 32, "height": 32}), 200)
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})


def png_bomb(side):
    """A 1-bit PNG declaring side x side pixels that compresses to a few tens of KB."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\x00" * ((side + 7) // 8) for _ in range(side))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_quickly(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bomb = upload(ctx, alice, png_bomb(20000), content_type="image/png")  # 400 megapixels
    start = time.monotonic()
    res = alice.request("GET", f"{AUTHED}/thumbnail/{media_path(bomb)}", query={"width": 32, "height": 32})
    ctx.expect(res, 400, "M_UNKNOWN")
    if time.monotonic() - start > 2:
        raise TestFailure("the oversized image was decoded before being refused")
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})


def test_unknown_media_and_authentication(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    uri = upload(ctx, alice, png(8, 8))
    server_name = media_path(uri).split("/")[0]
    for path in (f"{AUTHED}/download/{server_name}/nosuchmedia", f"{AUTHED}/download/{server_name}/nosuchmedia/x.png",
                 f"{AUTHED}/download/other.example/abc", f"{AUTHED}/download/{server_name}/..%2F..%2Fetc",
                 "/_matrix/media/v3/download/" + server_name + "/nosuchmedia"):
        ctx.expect(alice.request("GET", path), 404, "M_NOT_FOUND")
    ctx.expect(alice.request("GET", f"{AUTHED}/thumbnail/{server_name}/nosuchmedia", query={"width": 32, "height": 32}),
               404, "M_NOT_FOUND")
    anon = srv.client()
    for method, path in (("GET", f"{AUTHED}/download/{media_path(uri)}"),
                         ("GET", f"{AUTHED}/thumbnail/{media_path(uri)}?width=32&height=32"),
                         ("GET", f"{AUTHED}/config"), ("GET", f"{AUTHED}/preview_url?url=https%3A%2F%2Fexample.org"),
                         ("POST", "/_matrix/media/v3/upload"), ("POST", "/_matrix/media/v1/create")):
        ctx.expect(anon.request(method, path, raw=b"x" if method == "POST" else None), 401, "M_MISSING_TOKEN")
    ctx.expect(alice.request("GET", f"{AUTHED}/config"), body={"m.upload.size": 50 * 1024 * 1024})
    ctx.expect(alice.request("GET", "/_matrix/media/v3/config"), body={"m.upload.size": "$int"})
    ctx.expect(alice.request("GET", f"{AUTHED}/preview_url", query={"url": "https://example.org"}), 403, "M_FORBIDDEN")


def test_legacy_endpoints_are_frozen_unless_configured(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    uri = upload(ctx, alice, png(8, 8))
    anon = srv.client()
    ctx.expect(anon.request("GET", f"/_matrix/media/v3/download/{media_path(uri)}"), 404, "M_NOT_FOUND")
    ctx.expect(anon.request("GET", f"/_matrix/media/v3/thumbnail/{media_path(uri)}?width=32&height=32"),
               404, "M_NOT_FOUND")
    open_srv = ctx.server(config={"enable_authenticated_media": False})
    bob = ctx.register(open_srv, "bob")
    image = png(8, 8)
    uri = upload(ctx, bob, image)
    res = open_srv.client().request("GET", f"/_matrix/media/v3/download/{media_path(uri)}")
    ctx.expect(res, 200)
    if res.body != image:
        raise TestFailure("legacy download differs")
    res = open_srv.client().request("GET", f"/_matrix/media/r0/thumbnail/{media_path(uri)}?width=32&height=32&method=crop")
    ctx.expect(res, 200)
    png_size(res.body)


def test_asynchronous_upload(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    created = ctx.expect(alice.request("POST", "/_matrix/media/v1/create"),
                         body={"content_uri": "$re:mxc://[^/]+/[A-Za-z0-9]+", "unused_expires_at": "$int"})
    mp = media_path(created["content_uri"])
    if created["unused_expires_at"] < time.time() * 1000:
        raise TestFailure("unused_expires_at is in the past")
    ctx.expect(alice.request("GET", f"{AUTHED}/download/{mp}"), 504, "M_NOT_YET_UPLOADED")
    image = png(20, 20)
    ctx.expect(bob.request("PUT", f"/_matrix/media/v3/upload/{mp}", raw=image, headers={"Content-Type": "image/png"}),
               403, "M_FORBIDDEN")
    ctx.expect(alice.request("PUT", f"/_matrix/media/v3/upload/{mp}", raw=image,
                             query={"filename": "late.png"}, headers={"Content-Type": "image/png"}), 200, body={})
    ctx.expect(alice.request("PUT", f"/_matrix/media/v3/upload/{mp}", raw=image, headers={"Content-Type": "image/png"}),
               409, "M_CANNOT_OVERWRITE_MEDIA")
    res = bob.request("GET", f"{AUTHED}/download/{mp}")
    ctx.expect(res, 200)
    if res.body != image or res.headers.get("content-disposition") != 'inline; filename="late.png"':
        raise TestFailure(f"async download: {res.headers}")
    server_name = mp.split("/")[0]
    ctx.expect(alice.request("PUT", f"/_matrix/media/v3/upload/{server_name}/nosuchmedia", raw=image), 404, "M_NOT_FOUND")


def raw_exchange(srv, head, body_parts=(), read_timeout=10):
    """Sends `head` (and then each of `body_parts`, ignoring a reset) and returns the status line
    and whole answer text."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=read_timeout)
    try:
        s.sendall(head)
        for part in body_parts:
            try:
                s.sendall(part)
            except OSError:
                break
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def test_the_upload_size_limit(ctx):
    srv = ctx.server(config={"max_upload_size": "64K"})
    alice = ctx.register(srv, "alice")
    ctx.expect(alice.request("GET", f"{AUTHED}/config"), body={"m.upload.size": 65536})
    upload(ctx, alice, b"x" * 65536, content_type="application/octet-stream")
    upload(ctx, alice, b"x" * 65537, content_type="application/octet-stream", status=413, errcode="M_TOO_LARGE")
    # Content-Length over the limit: 413 at once, before any of the body is sent.
    head = (f"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n").encode()
    start = time.monotonic()
    answer = raw_exchange(srv, head)
    if not answer.startswith(b"HTTP/1.1 413"):
        raise TestFailure(f"declared oversize upload: {answer[:200]!r}")
    if time.monotonic() - start > 3:
        raise TestFailure("the 413 waited for the body")
    # Chunked: counted while streaming.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        def chunks():
            for _ in range(40):
                yield b"y" * 4096
        conn.request("POST", "/_matrix/media/v3/upload", body=chunks(), encode_chunked=True,
                     headers={"Authorization": f"Bearer {alice.token}", "Content-Type": "application/octet-stream",
                              "Transfer-Encoding": "chunked"})
        res = conn.getresponse()
        status, payload = res.status, res.read()
    except (ConnectionResetError, BrokenPipeError) as e:
        raise TestFailure(f"chunked oversize upload: connection reset ({e})") from None
    finally:
        conn.close()
    if status != 413 or b"M_TOO_LARGE" not in payload:
        raise TestFailure(f"chunked oversize upload: {status} {payload[:200]!r}")
    # A chunked upload within the limit works, and nothing was left behind in the temp directory.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("POST", "/_matrix/media/v3/upload", body=iter([b"a" * 1000, b"b" * 1000]), encode_chunked=True,
                 headers={"Authorization": f"Bearer {alice.token}", "Transfer-Encoding": "chunked"})
    res = conn.getresponse()
    if res.status != 200:
        raise TestFailure(f"chunked upload: {res.status} {res.read()!r}")
    conn.close()
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})
    left = temp_files(srv)
    if left:
        raise TestFailure(f"temp files left behind: {left}")


def test_an_unauthenticated_upload_is_refused_before_its_body(ctx):
    srv = ctx.server()
    # Headers promise 10 MB that never come: the 401 must not wait for (or store) any of it.
    for auth in ("", "Authorization: Bearer not-a-token\r\n"):
        head = (f"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\n{auth}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {10 * 1024 * 1024}\r\n\r\n").encode()
        start = time.monotonic()
        answer = raw_exchange(srv, head)
        if not answer.startswith(b"HTTP/1.1 401"):
            raise TestFailure(f"unauthenticated upload: {answer[:200]!r}")
        if time.monotonic() - start > 3:
            raise TestFailure("the 401 waited for the body")
    left = temp_files(srv)
    if left:
        raise TestFailure(f"an unauthenticated upload left files: {left}")


def test_an_appservice_uploads_as_a_bridged_user(ctx):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from appservice_support import AsClient, AsEnv, registration

    with AsEnv(ctx) as env:
        bridge = registration("bridge", None, "_bridge_bot", users=[(True, "@_br_.*")])
        srv = env.server([bridge])
        br = AsClient(srv, bridge)
        ghost = br.register("_br_ghost")
        image = png(50, 50)
        res = br.request("POST", "/_matrix/media/v3/upload", user_id=ghost, raw=image,
                         query={"filename": "ghost.png"}, headers={"Content-Type": "image/png"})
        uri = ctx.expect(res, 200)["content_uri"]
        # Asserting a user outside the namespace is refused as for any request.
        res = br.request("POST", "/_matrix/media/v3/upload", user_id="@someone:localhost", raw=image)
        ctx.expect(res, 403, "M_EXCLUSIVE" if res.json and res.json.get("errcode") == "M_EXCLUSIVE" else "M_FORBIDDEN")
        alice = ctx.register(srv, "alice")
        res = alice.request("GET", f"{AUTHED}/download/{media_path(uri)}")
        ctx.expect(res, 200)
        if res.body != image:
            raise TestFailure("bridged upload differs")
        res = alice.request("GET", f"{AUTHED}/thumbnail/{media_path(uri)}", query={"width": 32, "height": 32,
                                                                                   "method": "crop"})
        ctx.expect(res, 200)
        if png_size(res.body) != (32, 32):
            raise TestFailure(f"bridged thumbnail {png_size(res.body)}")
