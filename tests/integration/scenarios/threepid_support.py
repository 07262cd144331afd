"""Fakes for the 3PID scenarios: an SMTP server that keeps the mail it receives, and an identity
server (plain http) that records requests, keeps bindings and stored invites, and signs like
SyTest's (ed25519 through libsodium, as keys.py does)."""

import base64
import ctypes
import ctypes.util
import hashlib
import http.server
import json
import re
import socket
import socketserver
import threading
import time
import urllib.parse

_sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
_sodium.sodium_init()


def b64(raw):
    return base64.b64encode(raw).decode().rstrip("=")


def b64url(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Ed25519:
    def __init__(self, seed_byte):
        self.pk = ctypes.create_string_buffer(32)
        self.sk = ctypes.create_string_buffer(64)
        _sodium.crypto_sign_seed_keypair(self.pk, self.sk, bytes([seed_byte]) * 32)
        self.public = b64(self.pk.raw)

    def sign_json(self, obj, origin, key_id="ed25519:0"):
        to_sign = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        msg = json.dumps(to_sign, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        sig = ctypes.create_string_buffer(64)
        _sodium.crypto_sign_detached(sig, None, msg, ctypes.c_ulonglong(len(msg)), self.sk)
        obj.setdefault("signatures", {}).setdefault(origin, {})[key_id] = b64(sig.raw)
        return obj


class FakeSmtp:
    """Accepts every message; `wait_for(to)` returns (mail_from, rcpt_to, data) of the oldest one to
    `to` it has not returned yet."""

    def __init__(self, ehlo=True):
        self.mails = []
        self.taken = set()  # mails wait_for returned already
        self.cond = threading.Condition()
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                def say(line):
                    self.wfile.write((line + "\r\n").encode())
                say("220 fake ESMTP")
                mail_from, rcpt = None, None
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    cmd = line.decode(errors="replace").rstrip("\r\n")
                    up = cmd.upper()
                    if up.startswith("EHLO") and not ehlo:
                        say("500 Syntax error: unrecognized command")  # as SyTest's mail server
                    elif up.startswith("EHLO") or up.startswith("HELO"):
                        say("250-fake greets you")
                        say("250 8BITMIME")
                    elif up.startswith("MAIL FROM:"):
                        mail_from = cmd[10:].strip().strip("<>")
                        say("250 ok")
                    elif up.startswith("RCPT TO:"):
                        rcpt = cmd[8:].strip().strip("<>")
                        say("250 ok")
                    elif up == "DATA":
                        say("354 go ahead")
                        lines = []
                        while True:
                            dl = self.rfile.readline()
                            if not dl or dl in (b".\r\n", b".\n"):
                                break
                            dl = dl.decode(errors="replace").rstrip("\r\n")
                            lines.append(dl[1:] if dl.startswith("..") else dl)
                        with fake.cond:
                            fake.mails.append((mail_from, rcpt, "\n".join(lines)))
                            fake.cond.notify_all()
                        say("250 queued")
                    elif up == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, to, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, m in enumerate(self.mails):
                    if m[1] == to and i not in self.taken:
                        self.taken.add(i)
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail to {to} within {timeout}s (got {[m[1] for m in self.mails]})")
                self.cond.wait(left)

    def count_to(self, to):
        with self.cond:
            return len([m for m in self.mails if m[1] == to])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def link_in(mail_data):
    """The validation link of a mail, as a path and query on the homeserver."""
    m = re.search(r"(https?://\S+)", mail_data)
    if not m:
        raise AssertionError(f"no link in mail:\n{mail_data}")
    url = m.group(1)
    return url[url.index("/", url.index("//") + 2):]


ID_TOKEN = "id-access-token"


class FakeIdentityServer:
    """The v2 identity service endpoints the homeserver calls. `requests` records
    (method, path, headers, body) of each call."""

    def __init__(self):
        self.key = Ed25519(7)
        self.pepper = "matrixrocks"
        self.bindings = {}      # (medium, address) -> mxid
        self.validated = {}     # sid -> (medium, address)
        self.invites = {}       # (medium, address) -> [invite]
        self.requests = []
        self.revoked = set()    # public keys isvalid denies
        self.lock = threading.Lock()
        self.next_token = 1
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                path = self.path.split("?")[0]
                query = urllib.parse.parse_qs(self.path.partition("?")[2])
                fake.query_key = query.get("public_key", [None])[0]
                with fake.lock:
                    fake.requests.append((method, path, dict(self.headers), body))
                status, answer = fake.answer(method, path, self.headers, body)
                self.reply(status, answer)

            def do_GET(self):
                self.handle_any("GET")

            def do_POST(self):
                self.handle_any("POST")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.name = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def calls(self, path):
        with self.lock:
            return [r for r in self.requests if r[1] == path]

    def hash_of(self, medium, address):
        return b64url(hashlib.sha256(f"{address} {medium} {self.pepper}".encode()).digest())

    def answer(self, method, path, headers, body):
        v2_authed = headers.get("Authorization") == f"Bearer {ID_TOKEN}"
        if path in ("/_matrix/identity/v2/hash_details", "/_matrix/identity/v2/lookup",
                    "/_matrix/identity/v2/3pid/bind", "/_matrix/identity/v2/store-invite") and not v2_authed:
            return 401, {"errcode": "M_UNAUTHORIZED", "error": "bad id access token"}
        if path == "/_matrix/identity/v2/hash_details":
            return 200, {"algorithms": ["none", "sha256"], "lookup_pepper": self.pepper}
        if path == "/_matrix/identity/v2/lookup":
            if body.get("algorithm") != "sha256" or body.get("pepper") != self.pepper:
                return 400, {"errcode": "M_INVALID_PEPPER", "error": "bad"}
            with self.lock:
                by_hash = {self.hash_of(m, a): u for (m, a), u in self.bindings.items()}
            return 200, {"mappings": {h: by_hash[h] for h in body["addresses"] if h in by_hash}}
        if path == "/_matrix/identity/v2/3pid/bind":
            with self.lock:
                if body.get("sid") not in self.validated:
                    return 400, {"errcode": "M_NO_VALID_SESSION", "error": "unknown session"}
                medium, address = self.validated[body["sid"]]
                self.bindings[(medium, address)] = body["mxid"]
            return 200, self.key.sign_json({"medium": medium, "address": address, "mxid": body["mxid"],
                                            "not_before": 0, "not_after": 4582425849161, "ts": 0}, self.name)
        if path == "/_matrix/identity/v2/3pid/unbind":
            key = (body["threepid"]["medium"], body["threepid"]["address"])
            with self.lock:
                if self.bindings.get(key) != body.get("mxid"):
                    return 404, {"errcode": "M_NOT_FOUND", "error": "no such binding"}
                del self.bindings[key]
            return 200, {}
        if path == "/_matrix/identity/v2/store-invite":
            with self.lock:
                token = f"tok{self.next_token}"
                self.next_token += 1
                self.invites.setdefault((body["medium"], body["address"]), []).append(
                    {"medium": body["medium"], "address": body["address"], "room_id": body["room_id"],
                     "sender": body["sender"], "token": token})
            url = f"http://{self.name}/_matrix/identity/v2/pubkey/isvalid"
            return 200, {"token": token, "display_name": "Bob", "public_key": self.key.public,
                         "public_keys": [{"public_key": self.key.public, "key_validity_url": url}]}
        if path == "/_matrix/identity/v2/pubkey/isvalid":
            return 200, {"valid": self.query_key == self.key.public and self.key.public not in self.revoked}
        return 404, {"errcode": "M_UNRECOGNIZED", "error": "unknown path"}

    def validate(self, medium, address):
        with self.lock:
            sid = f"session_{len(self.validated)}"
            self.validated[sid] = (medium, address)
        return sid

    def bind_out_of_band(self, medium, address, mxid):
        with self.lock:
            self.bindings[(medium, address)] = mxid

    def onbind_body(self, medium, address, mxid, key=None):
        """What bind_identity sends the homeserver: the pending invites, each signed (by `key`,
        default this server's own key)."""
        key = key or self.key
        with self.lock:
            self.bindings[(medium, address)] = mxid
            invites = [dict(i) for i in self.invites.get((medium, address), [])]
        for inv in invites:
            inv["mxid"] = mxid
            inv["signed"] = key.sign_json({"mxid": mxid, "token": inv["token"]}, self.name)
        return self.key.sign_json({"medium": medium, "address": address, "mxid": mxid, "invites": invites}, self.name)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_name():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"
