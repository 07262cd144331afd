"""Operating Trestle: the access log (Synapse's line, secrets redacted), Prometheus metrics on a
`type: metrics` listener or the `metrics` resource (scraped with python3-prometheus-client's
parser), enable_metrics, and log_config (Python logging YAML with a FileHandler)."""

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure, free_port, to_yaml  # noqa: E402
from appservice_support import AsClient, AsEnv, registration, send_text, wait_for  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

SEND_SERVLET = "/_matrix/client/v3/rooms/{}/send/{}/{}"


def with_metrics_listener(srv, port, enable=True, resource_on_client=False):
    """Adds a metrics listener on 127.0.0.1:port to the server's generated config."""
    base = srv.config

    def config(client_port):
        c = base(client_port)
        c["listeners"] = list(c["listeners"]) + [{"port": port, "type": "metrics", "bind_addresses": ["127.0.0.1"]}]
        if resource_on_client:
            c["listeners"][0] = dict(c["listeners"][0], resources=[{"names": ["client", "metrics"]}])
        c["enable_metrics"] = enable
        return c

    srv.config = config
    return srv


def raw(port, method, path, host="127.0.0.1", headers=None, body=None):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, res.getheader("content-type"), res.read().decode("utf-8", "replace")
    finally:
        conn.close()


def scrape(port, path="/metrics"):
    status, ctype, text = raw(port, "GET", path)
    if status != 200:
        raise TestFailure(f"GET {path} on the metrics port: {status} {text[:300]}")
    if not ctype.startswith("text/plain"):
        raise TestFailure(f"metrics content type {ctype}")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels):
    """Sum over the samples of `name` whose labels include `labels`."""
    out = 0.0
    for (n, ls), v in samples.items():
        d = dict(ls)
        if n == name and all(d.get(k) == v2 for k, v2 in labels.items()):
            out += v
    return out


def test_metrics_listener_counts_what_happens(ctx):
    mport = free_port()
    with AsEnv(ctx) as env:
        bridge = registration("bridge", None, "_bridge_bot", users=[(True, "@_br_.*")])
        lst = env.listener(bridge)
        srv = env.server([bridge], start=False)
        with_metrics_listener(srv, mport)
        srv.start()
        br = AsClient(srv, bridge)
        before = scrape(mport)
        alice = ctx.register(srv, "alice")
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        send_text(alice, room, "hello")
        ctx.expect(alice.request("GET", "/no/such/endpoint"), 404)
        # A long-poll woken by an event.
        since = ctx.expect(alice.request("GET", "/sync", query={"timeout": "0"}))["next_batch"]
        done = {}

        def poll():
            done["res"] = alice.request("GET", "/sync", query={"timeout": "10000", "since": since})

        t = threading.Thread(target=poll)
        t.start()
        wait_for(lambda: value(scrape(mport), "synapse_notifier_listeners") >= 1, 5, "a waiting /sync")
        mid = scrape(mport)
        if value(mid, "trestle_http_long_polls") < 1:
            raise TestFailure("trestle_http_long_polls did not count the waiting /sync")
        send_text(alice, room, "wake up")
        t.join(10)
        ctx.expect(done["res"])
        # The appservice: its own room and message reach it in a transaction.
        broom = ctx.expect(br.request("POST", "/createRoom", body={}))["room_id"]
        ev = send_text(br, broom, "to the bridge")
        lst.wait_delivered([ev])
        after = wait_for(lambda: (lambda s: s if value(s, "synapse_appservice_api_sent_events_total", service="bridge")
                                  >= 1 else None)(scrape(mport)), 5, "the appservice counters")

        def moved(name, **labels):
            a, b = total(before, name, **labels), total(after, name, **labels)
            if b <= a:
                raise TestFailure(f"{name} {labels} did not move: {a} -> {b}")

        moved("synapse_http_server_requests_received_total", method="PUT", servlet=SEND_SERVLET)
        moved("synapse_http_server_responses_total", method="PUT", code="200")
        moved("synapse_http_server_responses_total", method="GET", code="404")
        moved("synapse_http_server_response_time_seconds_count", method="PUT", servlet=SEND_SERVLET, code="200")
        moved("synapse_http_server_response_time_seconds_bucket", method="PUT", servlet=SEND_SERVLET, code="200",
              le="+Inf")
        moved("synapse_storage_events_persisted_events_total")
        moved("trestle_storage_write_group_seconds_count")
        moved("trestle_storage_write_group_size_count")
        moved("trestle_notifier_wakes_total")
        moved("trestle_notifier_wake_latency_seconds_count")
        moved("synapse_appservice_api_sent_transactions_total", service="bridge")
        moved("trestle_appservice_transaction_seconds_count", service="bridge")
        moved("synapse_http_client_requests_total", method="PUT")
        moved("synapse_http_client_responses_total", method="PUT", code="200")
        if total(after, "synapse_storage_events_persisted_events_total") < 3:
            raise TestFailure("events persisted: fewer than the messages sent")
        # Accepted transactions leave the queue with the next write that stores one, or within a
        # second when none comes.
        wait_for(lambda: value(scrape(mport), "trestle_appservice_queued_transactions", service="bridge") == 0, 5,
                 "the bridge's queue to be empty once delivered")
        if value(after, "trestle_appservice_backoff_seconds", service="bridge") != 0:
            raise TestFailure("the bridge is healthy: no backoff")
        # Process metrics and build info.
        for name in ("process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
                     "process_max_fds"):
            if value(after, name) <= 0:
                raise TestFailure(f"{name} is {value(after, name)}")
        if "process_cpu_seconds_total" not in {n for n, _ in after}:
            raise TestFailure("no process_cpu_seconds_total")
        if abs(value(after, "process_start_time_seconds") - time.time()) > 600:
            raise TestFailure(f"process_start_time_seconds {value(after, 'process_start_time_seconds')}")
        # The same version as the admin API's server_version.
        version = srv.client().request("GET", "/_synapse/admin/v1/server_version").json["server_version"]
        if value(after, "trestle_build_info", version=version) != 1:
            builds = [dict(ls) for n, ls in after if n == "trestle_build_info"]
            raise TestFailure(f"trestle_build_info {builds}, server_version {version}")
        # Synapse's path too; others are 404; the client listener serves no metrics.
        scrape(mport, "/_synapse/metrics")
        if raw(mport, "GET", "/_matrix/client/versions")[0] != 404:
            raise TestFailure("the metrics listener answered a client path")
        if raw(srv.port, "GET", "/_synapse/metrics")[0] != 404:
            raise TestFailure("the client listener without the metrics resource served metrics")
        # The metrics listener is bound to 127.0.0.1 only: 127.0.0.2 (loopback too) is refused.
        with socket.socket() as s:
            s.settimeout(2)
            if s.connect_ex(("127.0.0.2", mport)) == 0:
                raise TestFailure("the metrics listener accepted on 127.0.0.2")
        # No access log lines for scrapes.
        if "GET /metrics" in srv.output():
            raise TestFailure("a scrape was access-logged")


def test_metrics_resource_on_http_listener(ctx):
    srv = ctx.server(config={"enable_metrics": True,
                             "listeners": None}, start=False)
    base = srv.config

    def config(port):
        c = base(port)
        c["listeners"] = [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                           "resources": [{"names": ["client", "metrics"]}]}]
        return c

    srv.config = config
    srv.start()
    scrape(srv.port, "/_synapse/metrics")
    ctx.expect(srv.client().request("GET", "/_matrix/client/versions"))


def test_enable_metrics_false_serves_none(ctx):
    mport = free_port()
    srv = with_metrics_listener(ctx.server(start=False), mport, enable=False, resource_on_client=True)
    srv.start()
    with socket.socket() as s:
        s.settimeout(2)
        if s.connect_ex(("127.0.0.1", mport)) == 0:
            raise TestFailure("a metrics listener was bound without enable_metrics")
    if raw(srv.port, "GET", "/_synapse/metrics")[0] != 404:
        raise TestFailure("/_synapse/metrics served without enable_metrics")
    if "enable_metrics" not in srv.output():
        raise TestFailure("no warning naming enable_metrics:\n" + srv.output()[-2000:])


def access_lines(srv):
    return [ln for ln in srv.output().splitlines() if "Processed request" in ln]


def wait_line(srv, pattern, what):
    rx = re.compile(pattern)
    return wait_for(lambda: next((ln for ln in access_lines(srv) if rx.search(ln)), None), 5, what)


def test_access_log_and_redaction(ctx):
    with AsEnv(ctx) as env:
        bridge = registration("bridge", None, "_bridge_bot", users=[(True, "@_br_.*")])
        srv = env.server([bridge], config={"max_request_body_size": 1000, "http_limits": {"header_timeout": 500}})
        br = AsClient(srv, bridge)
        alice = ctx.register(srv, "alice")
        p = srv.port
        ctx.expect(alice.request("GET", "/account/whoami", headers={"User-Agent": "ObserveTest/1.0"}))
        line = wait_line(srv, r"\{@alice[^}]*\} .*\"GET /_matrix/client/v3/account/whoami HTTP/1.1\" \"ObserveTest/1.0\"",
                         "alice's whoami line")
        if not re.search(rf"^.*127\.0\.0\.1 - {p} - \{{{re.escape(alice.user_id)}\}} Processed request: "
                         r"\d+\.\d{3}sec/-?\d+\.\d{3}sec \d+B 200 ", line):
            raise TestFailure("not Synapse's access line: " + line)
        if "synapse.access.http." + str(p) not in line:
            raise TestFailure("the logger is not synapse.access.http.<port>: " + line)
        # A 4xx, unauthenticated: {None}.
        ctx.expect(srv.client().request("GET", "/account/whoami"), 401)
        wait_line(srv, r"\{None\} .* 401 \"GET /_matrix/client/v3/account/whoami", "the 401 line")
        res = alice.request("GET", "/rooms/!nope:localhost/state")
        if not 400 <= res.status < 500:
            raise TestFailure(f"state of an unknown room: {res.status}")
        wait_line(srv, rf"\{{@alice[^}}]*\}} .* {res.status} \"GET /_matrix/client/v3/rooms/", "the 4xx line")
        # The token in the query string, and other secrets there.
        ctx.expect(srv.client().request("GET", "/account/whoami",
                                        query={"access_token": alice.token, "client_secret": "sekrit-cs"}))
        wait_line(srv, r"whoami\?access_token=<redacted>&client_secret=<redacted> ", "the redacted query line")
        # A login with a password (in the body: never logged) and a token login attempt.
        res = srv.client().request("POST", "/login", body={"type": "m.login.password", "password": alice.password,
                                                           "identifier": {"type": "m.id.user", "user": alice.localpart}})
        ctx.expect(res)
        new_token = res.json["access_token"]
        srv.client().request("GET", "/login/sso/redirect", query={"redirectUrl": "http://x/", "loginToken": "lt-secret"})
        # An appservice: as itself, asserting a user, and masquerading a device; token in the query.
        u = br.register("_br_alice")
        ctx.expect(br.request("PUT", "/devices/BRDEV1", user_id=u, body={}), 201)
        ctx.expect(br.request("GET", "/account/whoami", token_in_query=True))
        wait_line(srv, r"\{@_bridge_bot:localhost\} .*whoami\?access_token=<redacted> ", "the appservice's line")
        ctx.expect(br.request("GET", "/account/whoami", user_id=u))
        wait_line(srv, r"\{@_bridge_bot:localhost\|" + re.escape(u) + r"\} .* 200 \"GET ", "the asserted user's line")
        ctx.expect(br.request("GET", "/account/whoami", user_id=u, device_id="BRDEV1"))
        wait_line(srv, r"\{@_bridge_bot:localhost\|" + re.escape(u) + r" \(BRDEV1\)\} .* 200 ", "the masquerade line")
        # A long-poll logs when it answers.
        ctx.expect(alice.request("GET", "/sync", query={"timeout": "300", "since": ctx.expect(
            alice.request("GET", "/sync", query={"timeout": "0"}))["next_batch"]}))
        line = wait_line(srv, r"\"GET /_matrix/client/v3/sync\?timeout=300&", "the long-poll's line")
        secs = float(re.search(r"Processed request: (\d+\.\d+)sec", line).group(1))
        if secs < 0.25:
            raise TestFailure("the long-poll's time does not include its wait: " + line)
        # Refused before routing: a body over max_request_body_size, a malformed header.
        status, _, _ = raw(p, "POST", "/_matrix/client/v3/createRoom?access_token=" + alice.token,
                           headers={"Content-Type": "application/json"}, body=b"{" + b" " * 5000 + b"}")
        if status != 413:
            raise TestFailure(f"oversized body: {status}")
        wait_line(srv, r"\{None\} .* 413 \"POST /_matrix/client/v3/createRoom\?access_token=<redacted> ",
                  "the 413 line")
        with socket.create_connection(("127.0.0.1", p), timeout=5) as s:
            s.sendall(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            s.recv(1000)
        wait_line(srv, r" 400 \"GET /_matrix/client/versions HTTP/1.1\"", "the malformed request's line")
        # A header that never ends: 408! when the header timeout closes the connection.
        with socket.create_connection(("127.0.0.1", p), timeout=5) as s:
            s.sendall(b"GET /_matrix/client/v3/slowpoke?access_token=" + alice.token.encode() + b" HTTP/1.1\r\nHost: x\r\n")
            s.recv(1000)  # the server closes it
        wait_line(srv, r"\{None\} .* 0B 408! \"GET /_matrix/client/v3/slowpoke\?access_token=<redacted> HTTP/1.1\"",
                  "the timed-out request's line")
        # No secret anywhere in the server's output.
        out = srv.output()
        for secret in (alice.token, new_token, alice.password, bridge["as_token"], bridge["hs_token"], "sekrit-cs",
                       "lt-secret"):
            if secret in out:
                raise TestFailure(f"a secret ({secret[:6]}...) is in the server's output")


def test_log_config_file_handler(ctx):
    srv = ctx.server(start=False)
    log_file = os.path.join(srv.dir, "logs", "trestle.log")
    log_config = os.path.join(srv.dir, "log.yaml")
    with open(log_config, "w") as f:
        f.write(to_yaml({
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s - %(name)s - %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "filename": log_file, "formatter": "precise"},
                         "weird": {"class": "logging.handlers.SysLogHandler"}},
            "loggers": {"synapse.access": {"level": "INFO"}},
            "root": {"level": "INFO", "handlers": ["file", "weird"]},
        }))
    srv.config_overrides = {"log_config": log_config, "log_level": "error"}
    srv.start()
    alice = ctx.register(srv, "alice")
    ctx.expect(alice.request("GET", "/account/whoami"))

    def logged():
        try:
            with open(log_file) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return text if "whoami" in text else None

    text = wait_for(logged, 5, "the access line in the log file")
    if not re.search(r" - synapse\.access\.http\.\d+ - .*Processed request: .*GET /_matrix/client/v3/account/whoami",
                     text):
        raise TestFailure("no access line in the FileHandler's file:\n" + text[-2000:])
    if "listening on" not in text:
        raise TestFailure("start-up lines are not in the file:\n" + text[-2000:])
    if "SysLogHandler" not in text:
        raise TestFailure("the unsupported handler was not warned about")
    if "Processed request" in srv.output():
        raise TestFailure("with a log_config and only a FileHandler, nothing goes to stderr")

    # loggers: synapse.access at WARNING turns the access log off, the rest stays.
    srv2 = ctx.server(start=False)
    log_file2 = os.path.join(srv2.dir, "trestle.log")
    with open(os.path.join(srv2.dir, "log.yaml"), "w") as f:
        f.write(to_yaml({"version": 1,
                         "handlers": {"file": {"class": "logging.handlers.RotatingFileHandler",
                                               "filename": "trestle.log", "maxBytes": 1000000, "backupCount": 2}},
                         "loggers": {"synapse.access": {"level": "WARNING"}},
                         "root": {"level": "INFO", "handlers": ["file"]}}))
    srv2.config_overrides = {"log_config": "log.yaml"}
    srv2.start()
    bob = ctx.register(srv2, "bob")
    ctx.expect(bob.request("GET", "/account/whoami"))
    time.sleep(0.3)
    with open(log_file2) as f:
        text2 = f.read()
    if "listening on" not in text2 or "Processed request" in text2:
        raise TestFailure("synapse.access at WARNING should drop access lines only:\n" + text2[-2000:])


def test_generate_config_writes_log_config(ctx):
    d = ctx.server(start=False).dir
    out = os.path.join(d, "gen", "homeserver.yaml")
    os.makedirs(os.path.dirname(out))
    subprocess.run([ctx.binary, "generate-config", "--server-name", "example.org", "--data-dir", "./data",
                    "-o", out], check=True, capture_output=True)
    with open(out) as f:
        text = f.read()
    if '# log_config: "example.org.log.config"' not in text.splitlines():
        raise TestFailure("the generated config does not name its log config:\n" + text)
    with open(os.path.join(d, "gen", "example.org.log.config")) as f:
        lc = f.read()
    if "logging.handlers.RotatingFileHandler" not in lc or "./data/homeserver.log" not in lc:
        raise TestFailure("unexpected log config:\n" + lc)
