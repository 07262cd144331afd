"""Shared pieces for the appservice scenarios (appservice_*.py); it has no test functions itself.

- AppServiceListener: a real appservice HTTP endpoint on 127.0.0.1 (http.server in a thread) that
  records every request (method, path, query, headers, JSON body, time) and answers under the
  test's control: failing transactions, user/alias query handlers, ping answers, third party.
- registration(): a registration file's content; AsEnv writes the files into the server's
  directory and lists them in app_service_config_files.
- AsClient: Client-Server requests with an as_token and identity assertion (user_id, device_id).
"""

import http.client
import http.server
import json
import os
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import Response, TestFailure, expect, free_port, show, to_yaml  # noqa: E402

SERVER_NAME = "localhost"
TXN_PREFIX = "/_matrix/app/v1/transactions/"


def wait_for(predicate, timeout, what, interval=0.02):
    """Polls `predicate` until it returns something truthy; TestFailure naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestFailure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Recorded:
    """One request the appservice received."""

    def __init__(self, method, target, headers, raw):
        parsed = urllib.parse.urlsplit(target)
        self.method = method
        self.raw_path = parsed.path
        self.path = urllib.parse.unquote(parsed.path)
        self.query = dict(urllib.parse.parse_qsl(parsed.query))
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None
        self.time = time.monotonic()
        self.status = None  # what we answered

    @property
    def is_txn(self):
        return self.method == "PUT" and self.path.startswith(TXN_PREFIX)

    @property
    def txn_id(self):
        return self.path[len(TXN_PREFIX):] if self.is_txn else None

    def describe(self):
        return f"{self.method} {self.path} -> {self.status} {show(self.json)}"


class AppServiceListener:
    """An appservice's HTTP side. Transactions get 200 {} unless `on_txn` answers, or `fail_txns`
    (a count of attempts still to fail) or `failing` (fail while True) say otherwise. `on_user`,
    `on_alias`, `on_ping`, `on_thirdparty` are functions (Recorded) -> (status, json) for the other
    endpoints. Requests are recorded on arrival; `status` is filled in once answered (a 200 is
    recorded just before the homeserver reads it: poll the server for what follows from it)."""

    def __init__(self, hs_token, tls_context=None, keep_alive=False, host="127.0.0.1"):
        self.hs_token = hs_token
        self.port = free_port()
        self.tls_context = tls_context  # an ssl.SSLContext (server side): the listener speaks https
        self.keep_alive = keep_alive    # answer without "Connection: close", serve more on the connection
        self.host = host                # the host name in `url`
        self.connections = 0            # TCP connections accepted
        self.tls_failures = []          # handshakes that failed (str of the error)
        self.sni_names = []             # server names the client sent (SNI), None for none
        self.drop_next_reused = False   # close a connection at its next 2nd-or-later request, unanswered
        self.open_sockets = set()
        self.requests = []
        self.cond = threading.Condition()
        self.fail_txns = 0
        self.failing = False
        self.fail_status = 500
        self.on_user = None
        self.on_alias = None
        self.on_ping = None
        self.on_thirdparty = None
        self.on_txn = None  # (Recorded) -> (status, json), or None for the default answer
        self.released = threading.Event()  # set at stop(): handlers that hang must return
        self.bad_auth = []  # requests whose Authorization was not the hs_token
        self.connections_seen = 0  # numbers the connections requests arrive on
        self.httpd = None
        self.thread = None

    @property
    def url(self):
        return f"{'https' if self.tls_context else 'http'}://{self.host}:{self.port}"

    def start(self):
        listener = self
        self.released.clear()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                rec = Recorded(self.command, self.path, dict(self.headers.items()), raw)
                self.served = getattr(self, "served", 0) + 1
                if not hasattr(self, "connection_no"):  # id(self) can be reused once a handler is freed
                    with listener.cond:
                        listener.connections_seen += 1
                        self.connection_no = listener.connections_seen
                rec.connection = self.connection_no
                rec.nth_on_connection = self.served
                with listener.cond:
                    drop = listener.drop_next_reused and self.served > 1
                    if drop:
                        listener.drop_next_reused = False
                if drop:  # as a peer that closed an idle connection just as the request came
                    rec.status = "dropped"
                    with listener.cond:
                        listener.requests.append(rec)
                    self.close_connection = True
                    return
                with listener.cond:  # recorded on arrival (status None while being answered)
                    listener.requests.append(rec)
                try:
                    status, body = listener.answer(rec)
                except Exception as e:  # a bug in a test handler: answer 500, keep the record
                    status, body = 500, {"errcode": "M_UNKNOWN", "error": f"test handler failed: {e!r}"}
                with listener.cond:
                    rec.status = status
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if not listener.keep_alive:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the homeserver gave up (timeout) before we answered
                if not listener.keep_alive:
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = _handle

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self):
                sock, addr = super().get_request()
                with listener.cond:
                    listener.connections += 1
                return sock, addr

            def finish_request(self, request, client_address):
                # TLS in the connection's own thread: a failing handshake never blocks accept().
                if listener.tls_context is not None:
                    request.settimeout(10)
                    try:
                        request = listener.tls_context.wrap_socket(request, server_side=True)
                    except (ssl.SSLError, OSError) as e:
                        with listener.cond:
                            listener.tls_failures.append(str(e))
                        return
                with listener.cond:
                    listener.open_sockets.add(request)
                try:
                    super().finish_request(request, client_address)
                finally:
                    with listener.cond:
                        listener.open_sockets.discard(request)

            def handle_error(self, request, client_address):
                pass  # the homeserver closed a connection: not a test failure

        if self.tls_context is not None:
            def on_sni(sslobj, name, ctx):
                with listener.cond:
                    listener.sni_names.append(name)
            self.tls_context.sni_callback = on_sni
        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Closes the socket: the homeserver's connections are refused until start() again."""
        self.released.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.drop_connections()
            self.httpd.server_close()
            self.thread.join(5)
            self.httpd = None

    def drop_connections(self):
        """Closes every open (kept-alive) connection, as a peer restarting or timing out idle ones."""
        with self.cond:
            socks = list(self.open_sockets)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def answer(self, rec):
        if rec.headers.get("authorization") != f"Bearer {self.hs_token}":
            self.bad_auth.append(rec)
            return 403, {"errcode": "M_FORBIDDEN", "error": "bad hs_token"}
        if rec.is_txn:
            if self.on_txn:
                answer = self.on_txn(rec)
                if answer is not None:
                    return answer
            with self.cond:
                if self.failing:
                    return self.fail_status, {"errcode": "M_UNKNOWN", "error": "failing on purpose"}
                if self.fail_txns > 0:
                    self.fail_txns -= 1
                    return self.fail_status, {"errcode": "M_UNKNOWN", "error": "failing on purpose"}
            return 200, {}
        if rec.path.startswith("/_matrix/app/v1/users/"):
            return self.on_user(rec) if self.on_user else (404, {"errcode": "M_NOT_FOUND", "error": "no"})
        if rec.path.startswith("/_matrix/app/v1/rooms/"):
            return self.on_alias(rec) if self.on_alias else (404, {"errcode": "M_NOT_FOUND", "error": "no"})
        if rec.path == "/_matrix/app/v1/ping":
            return self.on_ping(rec) if self.on_ping else (200, {})
        if rec.path.startswith("/_matrix/app/v1/thirdparty/"):
            return self.on_thirdparty(rec) if self.on_thirdparty else (404, {"errcode": "M_NOT_FOUND", "error": "no"})
        return 404, {"errcode": "M_UNRECOGNIZED", "error": "unknown endpoint"}

    # -- what was received -----------------------------------------------------------------

    def snapshot(self):
        with self.cond:
            return list(self.requests)

    def txn_requests(self):
        return [r for r in self.snapshot() if r.is_txn]

    def accepted_txns(self):
        """Transactions answered 200, in the order they arrived (a txn id at most once)."""
        out, seen = [], set()
        for r in self.txn_requests():
            if r.status == 200 and r.txn_id not in seen:
                seen.add(r.txn_id)
                out.append(r)
        return out

    def delivered_events(self):
        return [e for r in self.accepted_txns() for e in (r.json or {}).get("events", [])]

    def delivered_ids(self):
        return [e.get("event_id") for e in self.delivered_events()]

    def wait_delivered(self, event_ids, timeout=10):
        want = set(event_ids)
        wait_for(lambda: want <= set(self.delivered_ids()), timeout,
                 f"{len(want - set(self.delivered_ids()))} of {len(want)} events to be delivered")

    def check_auth(self):
        if self.bad_auth:
            raise TestFailure(f"{len(self.bad_auth)} requests without 'Authorization: Bearer <hs_token>', e.g. "
                              f"{self.bad_auth[0].method} {self.bad_auth[0].path} {self.bad_auth[0].headers}")


def registration(as_id, url, sender, users=(), aliases=(), rooms=(), **extra):
    """A registration as a dict. Namespaces are lists of (exclusive, regex); tokens are random."""
    reg = {
        "id": as_id,
        "url": url,
        "as_token": f"as-{as_id}-{secrets.token_hex(8)}",
        "hs_token": f"hs-{as_id}-{secrets.token_hex(8)}",
        "sender_localpart": sender,
        "namespaces": {
            "users": [{"exclusive": ex, "regex": rx} for ex, rx in users],
            "aliases": [{"exclusive": ex, "regex": rx} for ex, rx in aliases],
            "rooms": [{"exclusive": ex, "regex": rx} for ex, rx in rooms],
        },
    }
    reg.update(extra)
    return reg


class AsClient:
    """Client-Server requests as an appservice: `user_id` / `device_id` for identity assertion."""

    def __init__(self, server, reg):
        self.server = server
        self.reg = reg
        self.token = reg["as_token"]
        self.sender = f"@{reg['sender_localpart']}:{SERVER_NAME}"

    def request(self, method, path, user_id=None, device_id=None, query=None, token_in_query=False, **kwargs):
        q = dict(query or {})
        if user_id is not None:
            q["user_id"] = user_id
        if device_id is not None:
            q["device_id"] = device_id
        if token_in_query:
            q["access_token"] = self.token
        else:
            kwargs.setdefault("token", self.token)
        return self.server.client().request(method, path, query=q or None, **kwargs)

    def register(self, localpart, inhibit_login=True, **extra):
        body = {"type": "m.login.application_service", "username": localpart, "inhibit_login": inhibit_login}
        body.update(extra)
        res = self.request("POST", "/register", body=body)
        expect(res, 200)
        return res.json["user_id"]

    def ping(self, txn_id=None):
        body = {} if txn_id is None else {"transaction_id": txn_id}
        return self.request("POST", f"/_matrix/client/v1/appservice/{urllib.parse.quote(self.reg['id'])}/ping",
                            body=body)

    def status(self, token=None):
        """Trestle's delivery status (not under /_matrix, so not through harness.Client)."""
        path = f"/_trestle/admin/v1/appservices/{urllib.parse.quote(self.reg['id'])}/status"
        return expect(raw_request(self.server, "GET", path, token or self.token))


def raw_request(server, method, path, token=None, timeout=30):
    """A request to a path outside /_matrix, which harness.Client would prefix."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        start = time.monotonic()
        conn.request(method, path, headers=headers)
        res = conn.getresponse()
        payload = res.read()
        return Response(res.status, {k.lower(): v for k, v in res.getheaders()}, payload, time.monotonic() - start)
    except (OSError, http.client.HTTPException) as e:
        raise TestFailure(f"{method} {path}: no answer ({type(e).__name__}: {e})") from None
    finally:
        conn.close()


class AsEnv:
    """Per test: listeners and registration files; closes the listeners whatever happened.

        with AsEnv(ctx) as env:
            lst = env.listener(reg)        # started, answering with reg's hs_token
            srv = env.server([reg], config={...})
    """

    def __init__(self, ctx):
        self.ctx = ctx
        self.listeners = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for lst in self.listeners:
            try:
                lst.stop()
            except Exception:
                pass
        return False

    def listener(self, reg, **options):
        lst = AppServiceListener(reg["hs_token"], **options)
        reg["url"] = lst.url
        self.listeners.append(lst)
        return lst.start()

    def write_registrations(self, srv, regs):
        paths = []
        for i, reg in enumerate(regs):
            path = os.path.join(srv.dir, f"appservice-{i}.yaml")
            with open(path, "w") as f:
                f.write(reg if isinstance(reg, str) else to_yaml(reg))
            paths.append(path)
        return paths

    def server(self, regs, config=None, start=True):
        srv = self.ctx.server(start=False)
        overrides = dict(config or {})
        overrides["app_service_config_files"] = self.write_registrations(srv, regs)
        srv.config_overrides = overrides
        if start:
            srv.start()
        return srv


def closed_port_url():
    """An http URL nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def send_text(sender, room, text, txn=None, **kwargs):
    """PUT a text message as `sender` (a harness User or an AsClient); returns the event id."""
    txn = txn or f"t{secrets.token_hex(6)}"
    res = sender.request("PUT", f"/rooms/{room}/send/m.room.message/{txn}",
                         body={"msgtype": "m.text", "body": text}, **kwargs)
    return expect(res)["event_id"]
