"""The HTTP/1.1 transport: keep-alive, chunked bodies, HTTP/1.0, odd request targets."""

import http.client
import json
import socket

from appservice_support import wait_for
from harness import TestFailure, TestSkipped


def test_keep_alive_serves_many_requests_on_one_connection(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        for i in range(20):
            conn.request("GET", "/_matrix/client/v3/account/whoami", headers={"Authorization": f"Bearer {alice.token}"})
            res = conn.getresponse()
            body = json.loads(res.read())
            if res.status != 200 or body.get("user_id") != alice.user_id:
                raise TestFailure(f"request {i} on the kept-alive connection: {res.status} {body}")
            if (res.getheader("Connection") or "").lower() == "close":
                raise TestFailure(f"the server closed a keep-alive connection after request {i}")
        # An error answer keeps the connection usable too.
        conn.request("GET", "/_matrix/client/v3/nope")
        res = conn.getresponse()
        res.read()
        conn.request("GET", "/_matrix/client/versions")
        res = conn.getresponse()
        if res.status != 200:
            raise TestFailure(f"after a 404 the connection answered {res.status}")
        res.read()
    finally:
        conn.close()


def test_a_chunked_request_body(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        parts = iter([b'{"name": ', b'"chunked room"', b"}"])
        conn.request("POST", "/_matrix/client/v3/createRoom", body=parts,
                     headers={"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"},
                     encode_chunked=True)
        res = conn.getresponse()
        body = json.loads(res.read())
        if res.status != 200:
            raise TestFailure(f"chunked createRoom: {res.status} {body}")
    finally:
        conn.close()
    ctx.expect(alice.request("GET", f"/rooms/{body['room_id']}/state/m.room.name"), body={"name": "chunked room"})


def test_http_1_0_gets_an_answer_and_a_close(ctx):
    srv = ctx.server()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /_matrix/client/versions HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
        raise TestFailure(f"HTTP/1.0 request got {head[:60]!r}")
    if b"versions" not in body:
        raise TestFailure(f"HTTP/1.0 body: {body[:100]!r}")


def test_percent_encoded_path_segments(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    # The user ID fully percent-encoded, as some clients send it.
    encoded = "".join(f"%{b:02X}" for b in alice.user_id.encode())
    ctx.expect(srv.client().request("GET", f"/profile/{encoded}/displayname"), body={"displayname": alice.localpart})
    # Query strings with encoded characters.
    ctx.expect(srv.client().request("GET", "/register/available?username=free%2Dname"), body={"available": True})


def test_a_slow_client_does_not_block_others(ctx):
    srv = ctx.server()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as slow:
        slow.sendall(b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        # While that request waits for the rest of its body, others are served.
        res = srv.client().request("GET", "/_matrix/client/versions", timeout=5)
        if res.status != 200:
            raise TestFailure(f"a second client got {res.status} while the first was slow")


def proxied_server(ctx, x_forwarded, config=None):
    """A server whose client listener has Synapse's x_forwarded set as given."""
    srv = ctx.server(config=config, start=False)
    if srv.wants_workers():
        raise TestSkipped("nginx in front appends the test's own address to X-Forwarded-For")
    base = srv.config

    def with_option(port):
        c = base(port)
        c["listeners"] = [dict(lst, x_forwarded=x_forwarded) for lst in c["listeners"]]
        return c

    srv.config = with_option
    srv.start()
    return srv


def last_seen_ip(devices, device_id):
    """The last_seen_ip of one device in a GET /devices answer."""
    return {d["device_id"]: d.get("last_seen_ip") for d in devices.get("devices", [])}.get(device_id)


def test_x_forwarded_takes_the_client_from_the_proxys_header(ctx):
    """Behind a proxy (x_forwarded: true) a request's client is the last address of X-Forwarded-For,
    the one the proxy appended: devices' last_seen_ip, and the per-address login limit, count it.
    Without the option the header is only the client's word: ignored."""
    header = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    for x_forwarded, expected in ((True, "203.0.113.7"), (False, "127.0.0.1")):
        srv = proxied_server(ctx, x_forwarded)
        alice = ctx.register(srv, "alice")
        login = ctx.expect(srv.client().request("POST", "/login", headers=header, body={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.localpart},
            "password": alice.password}))
        devices = ctx.expect(srv.client().request("GET", "/devices", token=login["access_token"], headers=header))
        seen = last_seen_ip(devices, login["device_id"])
        if seen != expected:
            raise TestFailure(f"x_forwarded {x_forwarded}: last_seen_ip {seen}, expected {expected}")
        if x_forwarded:
            # A proxy that adds a header line of its own (HAProxy) rather than appending: its line,
            # the last, names the client; the client's own line does not. A changed address is
            # written after the answer: asked again (with the same lines) a while.
            got = {}

            def seen_behind_two_lines():
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
                try:
                    conn.putrequest("GET", "/_matrix/client/v3/devices")
                    conn.putheader("Authorization", f"Bearer {login['access_token']}")
                    conn.putheader("X-Forwarded-For", "198.51.100.9")
                    conn.putheader("X-Forwarded-For", "203.0.113.8")
                    conn.endheaders()
                    got["ip"] = last_seen_ip(json.loads(conn.getresponse().read()), login["device_id"])
                finally:
                    conn.close()
                return got["ip"] == "203.0.113.8"

            try:
                wait_for(seen_behind_two_lines, 3, "the last X-Forwarded-For line's address", interval=0.05)
            except TestFailure:
                raise TestFailure(f"two X-Forwarded-For lines: last_seen_ip {got.get('ip')}, "
                                  "expected the last line's 203.0.113.8") from None
        srv.stop()
    # Two logins a minute per address: a third from one proxied client is limited, another's is not.
    srv = proxied_server(ctx, True, config={"rc_login": {"address": {"per_second": 0.03, "burst_count": 2}}})
    bob = ctx.register(srv, "bob")

    def login_from(address):
        return srv.client().request("POST", "/login", headers={"X-Forwarded-For": f"10.9.8.7, {address}"}, body={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.localpart},
            "password": bob.password})

    for _ in range(2):
        ctx.expect(login_from("192.0.2.1"))
    ctx.expect(login_from("192.0.2.1"), 429, "M_LIMIT_EXCEEDED")
    ctx.expect(login_from("192.0.2.2"))
    ctx.expect(login_from("2001:db8::1"))
