"""Transport limits an attacker (or a careless client) must not get past: unbounded chunk lines and
trailers, slow headers and bodies, too many connections from one address, abandoned or too many
long-polls; and HTTP details: HEAD, absolute-form targets, the Bearer scheme's case, a full disk."""

import json
import os
import resource
import socket
import threading
import time
import urllib.parse

from harness import TestFailure
from media import temp_files

MiB = 1024 * 1024


def rss_kib(srv):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure("no VmRSS in /proc/PID/status")


def fd_count(srv):
    """The server's open TCP sockets (its other descriptors, e.g. per-thread database connections
    opened on first use, SQLite files or PostgreSQL's unix sockets, are not what these tests are
    about)."""
    tcp = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{srv.proc.pid}/net/{table}") as f:
                tcp.update(line.split()[9] for line in list(f)[1:])
        except OSError:
            pass
    count = 0
    for fd in os.listdir(f"/proc/{srv.proc.pid}/fd"):
        try:
            link = os.readlink(f"/proc/{srv.proc.pid}/fd/{fd}")
        except OSError:
            continue
        count += link.startswith("socket:[") and link[8:-1] in tcp
    return count


def wait_until(predicate, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def connect(srv, timeout=10):
    return socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)


class Raw:
    """A raw HTTP/1.1 connection: send() bytes, response() reads the next answer whole."""

    def __init__(self, srv, timeout=10):
        self.sock = connect(srv, timeout)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise TestFailure(f"connection closed before a whole response (have {self.buf[:200]!r})")
        self.buf += chunk

    def response(self, head_only=False):
        """(status, headers with lower-case names, body); a HEAD answer has no body to read."""
        try:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = 0 if head_only else int(headers.get("content-length", "0"))
            self.buf = rest
            while len(self.buf) < length:
                self._fill()
        except (socket.timeout, ConnectionResetError) as e:
            raise TestFailure(f"no whole response ({e!r}); have {self.buf[:200]!r}") from None
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body


def closed_within(sock, seconds):
    """True when the server closes (EOF or reset) the connection within `seconds`; data is read
    and dropped meanwhile."""
    sock.settimeout(0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def flood(srv, head, filler_total):
    """Sends `head`, then `filler_total` bytes of 'a' (no line end), sampling the server's RSS;
    returns the connection (to read the answer from) and the peak RSS in KiB."""
    conn = Raw(srv, timeout=5)

    def send():
        try:
            conn.send(head)
            piece = b"a" * MiB
            for _ in range(filler_total // MiB):
                conn.send(piece)
        except OSError:
            pass  # the server answered and closed: expected

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    peak = 0
    while sender.is_alive():
        peak = max(peak, rss_kib(srv))
        sender.join(0.02)
    settled = time.monotonic() + 0.3  # what is still in socket buffers reaches the server
    while time.monotonic() < settled:
        peak = max(peak, rss_kib(srv))
        time.sleep(0.02)
    return conn, peak


def test_a_chunk_extension_flood_is_refused_with_memory_bounded(ctx):
    srv = ctx.server()
    before = rss_kib(srv)
    head = (b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2;ext=")
    conn, peak = flood(srv, head, 48 * MiB)
    if peak - before > 16 * 1024:
        raise TestFailure(f"the server's RSS grew by {(peak - before) // 1024} MiB during a 48 MiB chunk extension")
    with conn:
        status, _, body = conn.response()
    if status not in (400, 413, 431):
        raise TestFailure(f"a 48 MiB chunk extension got {status} {body[:200]!r}")
    ctx.expect(srv.client().request("GET", "/_matrix/client/versions"))


def test_a_trailer_flood_is_refused_with_memory_bounded(ctx):
    srv = ctx.server()
    before = rss_kib(srv)
    head = (b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: ")
    conn, peak = flood(srv, head, 48 * MiB)
    if peak - before > 16 * 1024:
        raise TestFailure(f"the server's RSS grew by {(peak - before) // 1024} MiB during a 48 MiB trailer")
    with conn:
        status, _, body = conn.response()
    if status not in (400, 413, 431):
        raise TestFailure(f"a 48 MiB trailer field got {status} {body[:200]!r}")
    # Small extensions and trailers are fine.
    with Raw(srv) as conn:
        conn.send(b"POST /_matrix/client/v3/user_directory/search HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n2;name=value\r\n{}\r\n0\r\nX-Checksum: abc\r\n\r\n")
        status, _, body = conn.response()
        if status != 401:  # parsed whole and routed: the search wants a token
            raise TestFailure(f"a small chunk extension and trailer got {status} {body[:200]!r}")


def trickle(conn, byte, seconds):
    """Sends `byte` every 200 ms until the server closes the connection; returns the seconds
    it took (`seconds` when it never closed)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            conn.send(byte)
        except OSError:
            break
        if closed_within(conn.sock, 0.2):
            break
    return time.monotonic() - start


def test_a_slow_header_is_cut_off(ctx):
    srv = ctx.server(config={"http_limits": {"header_timeout": "1s"}})
    with Raw(srv) as conn:
        conn.send(b"GET /_matrix/client/versions HTTP/1.1\r\n")
        took = trickle(conn, b"X", 4)
    if took > 3:
        raise TestFailure(f"a header trickling in for {took:.1f}s was not cut off (header_timeout 1s)")
    ctx.expect(srv.client().request("GET", "/_matrix/client/versions"))


def test_a_slow_body_is_cut_off_but_a_slow_upload_at_a_fair_rate_arrives(ctx):
    srv = ctx.server(config={"http_limits": {"body_timeout": "1s", "upload_min_rate": "1K"}})
    with Raw(srv) as conn:
        conn.send(b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{")
        took = trickle(conn, b" ", 4)
    if took > 3:
        raise TestFailure(f"a body trickling in for {took:.1f}s was not cut off (body_timeout 1s)")
    # An upload at ~20 KiB/s for 2.5 s (longer than body_timeout) earns its time and arrives.
    alice = ctx.register(srv, "alice")
    data = os.urandom(50 * 1024)
    with Raw(srv) as conn:
        conn.send(f"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n"
                  f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n")
        for i in range(0, len(data), 2048):
            conn.send(data[i:i + 2048])
            time.sleep(0.1)
        status, _, body = conn.response()
    if status != 200 or "content_uri" not in json.loads(body):
        raise TestFailure(f"a slow but steady upload got {status} {body[:200]!r}")


def settled_fd_count(srv, quiet=0.3, limit=3.0):
    """The server's descriptor count once it has not changed for `quiet` seconds."""
    deadline = time.monotonic() + limit
    last, since = fd_count(srv), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = fd_count(srv)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def test_connections_per_address_are_capped(ctx):
    cap = 5
    srv = ctx.server(config={"http_limits": {"max_connections_per_address": cap}})
    # The harness's start-up probe connection counts until the server has seen it close: wait
    # until the server's descriptors settle, or it could free a place in the middle of the test.
    fds_before = settled_fd_count(srv)
    held = [Raw(srv) for _ in range(cap)]
    refused = []
    try:
        # Each of these is answered 429 and closed at once, without holding a descriptor.
        for i in range(40):
            conn = Raw(srv, timeout=3)
            refused.append(conn)
            status, _, body = conn.response()
            if status != 429 or json.loads(body).get("errcode") != "M_LIMIT_EXCEEDED":
                raise TestFailure(f"connection {cap + 1 + i} got {status} {body[:200]!r}")
        # (A refused socket may still be closing as its 429 is read: allow a moment.)
        if not wait_until(lambda: fd_count(srv) <= fds_before + cap, 1):
            raise TestFailure(f"the server holds {fd_count(srv)} sockets ({fds_before} before, cap {cap})")
        # A connection held under the cap works; closing one frees its place.
        held[0].send(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        if held[0].response()[0] != 200:
            raise TestFailure("a connection under the cap was not served")
        held.pop(0).sock.close()

        def served():
            try:
                return srv.client().request("GET", "/_matrix/client/versions", timeout=2).status == 200
            except Exception:
                return False

        if not wait_until(served, 2):
            raise TestFailure("closing a connection did not free its place under the cap")
    finally:
        for conn in held + refused:
            conn.sock.close()


def sync_since(user):
    res = user.request("GET", "/sync", query={"timeout": 0})
    if res.status != 200:
        raise TestFailure(f"initial sync: {res.describe()}")
    return res.json["next_batch"]


def open_long_poll(srv, user, since, timeout_ms=30000):
    conn = Raw(srv)
    conn.send(f"GET /_matrix/client/v3/sync?since={urllib.parse.quote(since)}&timeout={timeout_ms} HTTP/1.1\r\n"
              f"Host: x\r\nAuthorization: Bearer {user.token}\r\n\r\n")
    return conn


def test_abandoned_long_polls_free_their_connections(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    since = sync_since(alice)
    time.sleep(0.2)
    fds_before = fd_count(srv)
    n = 60
    polls = [open_long_poll(srv, alice, since) for _ in range(n)]
    if not wait_until(lambda: fd_count(srv) >= fds_before + n, 5):
        raise TestFailure(f"the server holds {fd_count(srv)} fds with {n} long-polls ({fds_before} before)")
    for conn in polls:
        conn.sock.close()
    start = time.monotonic()
    if not wait_until(lambda: fd_count(srv) <= fds_before, 2):
        raise TestFailure(f"{n} long-polls closed by their clients: the server still holds {fd_count(srv)} fds "
                          f"after {time.monotonic() - start:.1f}s ({fds_before} before)")
    # A request pipelined while a long-poll waits is kept, and answered after it.
    with open_long_poll(srv, alice, since, timeout_ms=1500) as conn:
        time.sleep(0.3)
        conn.send(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = conn.response()
        if status != 200 or "next_batch" not in json.loads(body):
            raise TestFailure(f"the long-poll with a pipelined request behind it got {status} {body[:200]!r}")
        status, _, body = conn.response()
        if status != 200 or "versions" not in json.loads(body):
            raise TestFailure(f"the request pipelined behind a long-poll got {status} {body[:200]!r}")


def test_long_polls_per_user_are_capped_the_oldest_answers_early(ctx):
    cap = 3
    srv = ctx.server(config={"http_limits": {"max_long_polls_per_user": cap}})
    alice = ctx.register(srv, "alice")
    since = sync_since(alice)
    polls = []

    def quiet(conn, seconds):
        conn.sock.settimeout(seconds)
        try:
            data = conn.sock.recv(100)
            return False if data else True
        except socket.timeout:
            return True
        finally:
            conn.sock.settimeout(5)

    try:
        for _ in range(cap):
            polls.append(open_long_poll(srv, alice, since))
            time.sleep(0.1)
        time.sleep(0.3)
        if not all(quiet(conn, 0.05) for conn in polls):
            raise TestFailure("a long-poll under the cap answered early")
        started = time.monotonic()
        polls.append(open_long_poll(srv, alice, since))
        status, _, body = polls[0].response()
        took = time.monotonic() - started
        if status != 200 or "next_batch" not in json.loads(body):
            raise TestFailure(f"the oldest long-poll over the cap got {status} {body[:200]!r}")
        if took > 2:
            raise TestFailure(f"the oldest long-poll answered {took:.1f}s after one over the cap arrived")
        if not all(quiet(conn, 0.2) for conn in polls[1:]):
            raise TestFailure("a newer long-poll answered early too")
        # Another user's long-polls are not affected by alice's.
        bob = ctx.register(srv, "bob")
        with open_long_poll(srv, bob, sync_since(bob)) as other:
            if not quiet(other, 0.3):
                raise TestFailure("bob's long-poll answered early")
    finally:
        for conn in polls:
            conn.sock.close()


def test_head_answers_the_get_headers_without_a_body(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    with Raw(srv) as conn:
        conn.send(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        _, get_headers, get_body = conn.response()
        # HEAD, then GET, on the same kept-alive connection, sent together.
        conn.send(b"HEAD /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = conn.response(head_only=True)
        if status != 200:
            raise TestFailure(f"HEAD on a GET route got {status}")
        if headers.get("content-length") != get_headers.get("content-length") or \
                headers.get("content-type") != get_headers.get("content-type"):
            raise TestFailure(f"HEAD's headers {headers} differ from the GET's {get_headers}")
        status, _, body = conn.response()
        if status != 200 or body != get_body:
            raise TestFailure(f"the GET after a HEAD got {status} {body[:200]!r}")
    # HEAD on an authenticated GET route, and on a route without GET: headers only either way.
    with Raw(srv) as conn:
        conn.send(f"HEAD /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {alice.token}\r\n\r\n"
                  "HEAD /_matrix/client/v3/createRoom HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        statuses = [conn.response(head_only=True)[0], conn.response(head_only=True)[0]]
        status, _, body = conn.response()
        if statuses != [200, 405] or status != 200 or body != get_body:
            raise TestFailure(f"HEAD whoami, HEAD createRoom, GET versions: {statuses + [status]} {body[:200]!r}")
    # A streamed file: its size, no bytes.
    data = os.urandom(3000)
    res = alice.request("POST", "/_matrix/media/v3/upload", raw=data, headers={"Content-Type": "application/octet-stream"})
    media = ctx.expect(res)["content_uri"][len("mxc://"):]
    with Raw(srv) as conn:
        for method in ["HEAD", "GET"]:
            conn.send(f"{method} /_matrix/client/v1/media/download/{media} HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {alice.token}\r\n\r\n")
        status, headers, _ = conn.response(head_only=True)
        if status != 200 or headers.get("content-length") != str(len(data)):
            raise TestFailure(f"HEAD on a download: {status} {headers}")
        status, _, body = conn.response()
        if status != 200 or body != data:
            raise TestFailure(f"the download after its HEAD got {status}, {len(body)} bytes")


def test_an_absolute_form_request_target_is_served(ctx):
    srv = ctx.server()
    with Raw(srv) as conn:
        conn.send(f"GET http://127.0.0.1:{srv.port}/_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n"
                  f"GET http://localhost/_matrix/client/v3/register/available?username=free-{os.getpid()} HTTP/1.1\r\n"
                  "Host: x\r\n\r\n")
        status, _, body = conn.response()
        if status != 200 or "versions" not in json.loads(body):
            raise TestFailure(f"absolute-form GET /versions got {status} {body[:200]!r}")
        status, _, body = conn.response()
        if status != 200 or json.loads(body) != {"available": True}:
            raise TestFailure(f"absolute-form GET with a query got {status} {body[:200]!r}")


def test_the_bearer_scheme_is_case_insensitive(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"]:
        res = srv.client().request("GET", "/account/whoami", headers={"Authorization": f"{scheme} {alice.token}"})
        try:
            ctx.expect(res, body={"user_id": alice.user_id})
        except TestFailure as e:
            raise TestFailure(f"Authorization: {scheme} <token>:\n{e}") from None
    for header in [f"Basic {alice.token}", "Bearer", "Bearer ", f"Bearerx {alice.token}"]:
        res = srv.client().request("GET", "/account/whoami", headers={"Authorization": header})
        try:
            ctx.expect(res, 401, "M_MISSING_TOKEN")
        except TestFailure as e:
            raise TestFailure(f"Authorization: {header!r}:\n{e}") from None


def test_an_upload_on_a_full_disk_is_answered_and_leaves_no_temp_file(ctx):
    """RLIMIT_FSIZE on the server makes its writes past the limit fail (EFBIG), as a full disk
    makes them fail with ENOSPC: the server must answer, not drop the connection (or die)."""
    srv = ctx.server(config={"max_upload_size": "16M"})
    alice = ctx.register(srv, "alice")
    media = srv.media_process()  # main, or the media worker
    soft, hard = resource.prlimit(media.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(media.pid, resource.RLIMIT_FSIZE, (4 * MiB, hard))
    data = os.urandom(8 * MiB)
    try:
        try:
            res = alice.request("POST", "/_matrix/media/v3/upload", raw=data,
                                headers={"Content-Type": "application/octet-stream"}, timeout=20)
        except Exception as e:
            raise TestFailure(f"an upload that cannot be stored got no answer: {e!r}") from None
        ctx.expect(res, 500, "M_UNKNOWN")
        if not wait_until(lambda: not temp_files(srv), 2):
            raise TestFailure(f"the failed upload left {temp_files(srv)} in media/tmp")
    finally:
        if srv.alive():
            resource.prlimit(media.pid, resource.RLIMIT_FSIZE, (soft, hard))
    # With space again, uploads work.
    res = alice.request("POST", "/_matrix/media/v3/upload", raw=data[:MiB], headers={"Content-Type": "application/octet-stream"})
    ctx.expect(res, 200, body={"content_uri": "$string"})
