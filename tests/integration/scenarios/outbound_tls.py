"""Outbound https and the keep-alive pool, through appservices: a local https appservice whose
certificate comes from a throwaway CA made here with the `openssl` command.

- trusted through `federation_custom_ca_list`: transactions, user queries and ping work, SNI names
  the host, and several transactions share one kept-alive connection;
- an untrusted certificate is refused (a log line says why) unless
  `use_insecure_ssl_client_just_for_testing_do_not_use`;
- a certificate for another host name is refused;
- a pooled connection the appservice closed is replaced at once, without a failed transaction.
"""

import os
import ssl
import subprocess
import tempfile
import time

from appservice_support import AsClient, AsEnv, registration, send_text, wait_for
from harness import TestFailure, expect


def openssl(*args, cwd):
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise TestFailure(f"openssl {' '.join(args)} failed: {res.stderr}")


class Pki:
    """A CA and server certificates it signs, in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="trestle-tls-")
        self.ca = os.path.join(self.dir, "ca.pem")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                "-days", "2", "-subj", "/CN=Trestle test CA", cwd=self.dir)

    def server_cert(self, name, sans):
        """(cert, key) paths for a certificate with these subjectAltNames ("DNS:x", "IP:y")."""
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=self.dir)
        with open(os.path.join(self.dir, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={','.join(sans)}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=self.dir)
        return os.path.join(self.dir, f"{name}.pem"), os.path.join(self.dir, f"{name}.key")

    def context(self, name, sans):
        cert, key = self.server_cert(name, sans)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx


_pki = None


def pki():
    global _pki
    if _pki is None:
        _pki = Pki()
    return _pki


def bridge(prefix):
    return registration(prefix, None, f"{prefix}_bot", users=[(True, f"@{prefix}_.*")])


def room_with_bridge(ctx, srv, reg):
    """A room of a user with the bridge's bot in it; returns (user, room)."""
    alice = ctx.register(srv, "alice")
    room = expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    expect(AsClient(srv, reg).request("POST", f"/join/{room}"))
    return alice, room


def test_https_appservice_trusted_by_custom_ca_reuses_one_connection(ctx):
    with AsEnv(ctx) as env:
        reg = bridge("tlsok")
        # "localhost": a name, so SNI and DNS host-name checks apply.
        lst = env.listener(reg, tls_context=pki().context("localhost", ["DNS:localhost", "IP:127.0.0.1"]),
                           keep_alive=True, host="localhost")
        srv = env.server([reg], config={"federation_custom_ca_list": [pki().ca]})
        alice, room = room_with_bridge(ctx, srv, reg)
        ids = []
        for i in range(5):  # one at a time: five transactions
            ids.append(send_text(alice, room, f"over tls {i}"))
            lst.wait_delivered(ids)
        txns = {r.txn_id for r in lst.accepted_txns()}
        if len(txns) < 5:
            raise TestFailure(f"expected at least 5 transactions, got {len(txns)}")
        # A user query and a ping take the same road.
        lst.on_user = lambda rec: (200, {})
        expect(AsClient(srv, reg).request("GET", "/profile/@tlsok_ghost:localhost"), 404)  # queried, no profile
        if not any(r.path.startswith("/_matrix/app/v1/users/") for r in lst.snapshot()):
            raise TestFailure("the user query did not reach the https appservice")
        expect(AsClient(srv, reg).ping(), 200, body={"duration_ms": "$int"})
        lst.check_auth()
        if lst.tls_failures:
            raise TestFailure(f"TLS handshakes failed: {lst.tls_failures}")
        if "localhost" not in lst.sni_names:
            raise TestFailure(f"SNI did not name the host: {lst.sni_names}")
        served = len(lst.snapshot())
        if lst.connections > 2:
            raise TestFailure(f"{served} requests used {lst.connections} connections: kept-alive connections "
                              "are not reused")


def test_plain_http_appservice_reuses_one_connection(ctx):
    with AsEnv(ctx) as env:
        reg = bridge("plainka")
        lst = env.listener(reg, keep_alive=True)
        srv = env.server([reg])
        alice, room = room_with_bridge(ctx, srv, reg)
        ids = []
        for i in range(5):
            ids.append(send_text(alice, room, f"kept alive {i}"))
            lst.wait_delivered(ids)
        # A kept-alive request costs no delayed ACK (40 ms) even though this peer (Python's
        # http.server) writes its head and body apart: the median ping stays far below it.
        durations = sorted(expect(AsClient(srv, reg).ping(), 200)["duration_ms"] for _ in range(15))
        if durations[7] >= 25:
            raise TestFailure(f"pings over a kept-alive connection take {durations} ms (median >= 25)")
        if lst.connections > 2:
            raise TestFailure(f"{len(lst.snapshot())} requests used {lst.connections} connections: kept-alive "
                              "connections are not reused")


def test_untrusted_certificate_refused_then_insecure_switch_accepts(ctx):
    with AsEnv(ctx) as env:
        reg = bridge("tlsbad")
        # Signed by the test CA, which this server does not trust.
        lst = env.listener(reg, tls_context=pki().context("untrusted", ["IP:127.0.0.1"]))
        srv = env.server([reg])
        alice, room = room_with_bridge(ctx, srv, reg)
        send_text(alice, room, "never delivered")
        wait_for(lambda: lst.tls_failures, 10, "a refused TLS handshake")
        status = wait_for(lambda: (s := AsClient(srv, reg).status())["last_error"] and s, 10,
                          "last_error in the delivery status")
        if "certificate" not in status["last_error"]:
            raise TestFailure(f"last_error does not name the certificate: {status['last_error']}")
        if lst.accepted_txns():
            raise TestFailure("a transaction went over an untrusted connection")
        log = [line for line in srv.output().splitlines() if "not accepted" in line and "certificate" in line]
        if not log:
            raise TestFailure("no log line says the certificate was refused")
        expect(AsClient(srv, reg).ping(), 502)

    with AsEnv(ctx) as env:
        reg = bridge("tlsinsecure")
        lst = env.listener(reg, tls_context=pki().context("untrusted2", ["IP:127.0.0.1"]))
        srv = env.server([reg], config={"use_insecure_ssl_client_just_for_testing_do_not_use": True})
        alice, room = room_with_bridge(ctx, srv, reg)
        lst.wait_delivered([send_text(alice, room, "delivered without verification")])


def test_certificate_for_another_host_refused(ctx):
    with AsEnv(ctx) as env:
        reg = bridge("tlsname")
        lst = env.listener(reg, tls_context=pki().context("other", ["DNS:other.example"]))
        srv = env.server([reg], config={"federation_custom_ca_list": [pki().ca]})
        alice, room = room_with_bridge(ctx, srv, reg)
        send_text(alice, room, "never delivered")
        status = wait_for(lambda: (s := AsClient(srv, reg).status())["last_error"] and s, 10,
                          "last_error in the delivery status")
        if "mismatch" not in status["last_error"]:
            raise TestFailure(f"last_error does not say the name does not match: {status['last_error']}")
        if lst.accepted_txns():
            raise TestFailure("a transaction went to a server with another host's certificate")


def test_closed_pooled_connection_replaced_at_once(ctx):
    with AsEnv(ctx) as env:
        reg = bridge("tlsstale")
        lst = env.listener(reg, tls_context=pki().context("stale", ["IP:127.0.0.1"]), keep_alive=True)
        srv = env.server([reg], config={"federation_custom_ca_list": [pki().ca]})
        alice, room = room_with_bridge(ctx, srv, reg)
        first = send_text(alice, room, "opens the connection")
        lst.wait_delivered([first])
        # The appservice closes the idle connection: the next transaction must open a new one.
        lst.drop_connections()
        time.sleep(0.1)
        second = send_text(alice, room, "after the peer closed it")
        lst.wait_delivered([second], timeout=5)
        # The peer drops the next request arriving on a reused connection, unanswered: the client
        # sends it again at once on a fresh connection (the sender's own retry would wait >= 1 s).
        lst.drop_next_reused = True
        third = send_text(alice, room, "dropped once")
        lst.wait_delivered([third], timeout=5)
        arrivals = [r for r in lst.txn_requests() if third in [e.get("event_id") for e in (r.json or {}).get("events", [])]]
        if len(arrivals) != 2 or arrivals[0].status != "dropped":
            raise TestFailure(f"expected the transaction dropped once then resent: {[a.describe() for a in arrivals]}")
        gap = arrivals[1].time - arrivals[0].time
        if gap > 0.5:
            raise TestFailure(f"the resend came {gap:.2f} s after the drop: not the pool's immediate retry")
        if arrivals[0].connection == arrivals[1].connection:
            raise TestFailure("the resend used the closed connection")


def test_bad_custom_ca_list_refused_at_start_naming_the_key(ctx):
    from config_errors import refused
    missing = os.path.join(pki().dir, "no-such-ca.pem")
    refused(ctx, {"federation_custom_ca_list": [missing]}, must_mention=["federation_custom_ca_list", missing])
    not_pem = os.path.join(pki().dir, "not-a-cert.pem")
    with open(not_pem, "w") as f:
        f.write("hello\n")
    refused(ctx, {"federation_custom_ca_list": [not_pem]}, must_mention=["federation_custom_ca_list", not_pem])
    refused(ctx, {"use_insecure_ssl_client_just_for_testing_do_not_use": "maybe"},
            must_mention=["use_insecure_ssl_client_just_for_testing_do_not_use"])
