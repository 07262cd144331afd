"""Bodies the server must refuse: too large, too deep, not JSON, not an object."""

import json

from harness import TestFailure

LIMIT = 16 * 1024


def setup(ctx):
    srv = ctx.server(config={"max_request_body_size": f"{LIMIT // 1024}K"})
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    return srv, alice, room


def nested(depth):
    """A JSON object whose innermost value sits `depth` containers deep."""
    return '{"a":' * depth + "1" + "}" * depth


def test_a_body_over_max_request_body_size_is_413(ctx):
    srv, alice, room = setup(ctx)
    big = json.dumps({"msgtype": "m.text", "body": "x" * (LIMIT + 100)})
    res = alice.request("PUT", f"/rooms/{room}/send/m.room.message/big", raw=big, headers={"Content-Type": "application/json"})
    ctx.expect(res, 413, "M_TOO_LARGE")
    # Just under the limit is fine (the event itself stays below the spec's 64 KiB).
    ok = json.dumps({"msgtype": "m.text", "body": "x" * (LIMIT - 200)})
    ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/fits", raw=ok))
    # The server is still well after refusing.
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})


def test_a_large_body_without_auth_is_413_too(ctx):
    srv, alice, room = setup(ctx)
    res = srv.client().request("POST", "/register", raw="{" + " " * (LIMIT * 4) + "}")
    ctx.expect(res, 413, "M_TOO_LARGE")


def test_an_event_over_64_kib_is_413(ctx):
    srv = ctx.server(config={"max_request_body_size": "1M"})
    alice = ctx.register(srv, "alice")
    room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
    res = alice.request("PUT", f"/rooms/{room}/send/m.room.message/huge", body={"msgtype": "m.text", "body": "y" * 70000})
    ctx.expect(res, 413, "M_TOO_LARGE")


def test_an_inline_filter_may_nest_as_deep_as_an_uploaded_one(ctx):
    srv, alice, room = setup(ctx)
    deep = '{"room":{"timeline":{"limit":1}},"org.example":' + nested(40) + "}"
    fid = ctx.expect(alice.request("POST", f"/user/{alice.user_id}/filter", raw=deep))["filter_id"]
    ctx.expect(alice.request("GET", "/sync", query={"filter": fid}))
    ctx.expect(alice.request("GET", "/sync", query={"filter": deep}))
    ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"filter": deep, "dir": "b"}))


def test_json_nested_deeper_than_64_is_not_json(ctx):
    srv, alice, room = setup(ctx)
    path = f"/user/{alice.user_id}/account_data/org.example.deep"
    ctx.expect(alice.request("PUT", path, raw=nested(64)))
    ctx.expect(alice.request("PUT", path, raw=nested(65)), 400, "M_NOT_JSON")
    ctx.expect(alice.request("PUT", path, raw=nested(2000)), 400, "M_NOT_JSON")
    ctx.expect(alice.request("PUT", path, raw="[" * 6000 + "]" * 6000), 400, "M_NOT_JSON")
    ctx.expect(alice.request("GET", path), body={"a": {"a": "$object"}})


def test_invalid_json_is_not_json(ctx):
    srv, alice, room = setup(ctx)
    for raw in ["{", "{'single': 'quotes'}", "{\"a\": 1,}", "nope", "{\"a\": 1} trailing", "\xff\xfe"]:
        res = alice.request("PUT", f"/rooms/{room}/send/m.room.message/bad", raw=raw.encode("latin-1"))
        try:
            ctx.expect(res, 400, "M_NOT_JSON")
        except TestFailure as e:
            raise TestFailure(f"body {raw!r}:\n{e}") from None


def test_a_json_array_where_an_object_is_expected_is_bad_json(ctx):
    srv, alice, room = setup(ctx)
    for path in [f"/rooms/{room}/send/m.room.message/arr", "/createRoom", f"/user/{alice.user_id}/filter",
                 f"/rooms/{room}/state/m.room.topic"]:
        method = "POST" if path in ("/createRoom", f"/user/{alice.user_id}/filter") else "PUT"
        for raw in ["[]", "[{\"a\": 1}]", "\"a string\"", "42", "null"]:
            try:
                ctx.expect(alice.request(method, path, raw=raw), 400, "M_BAD_JSON")
            except TestFailure as e:
                raise TestFailure(f"{method} {path} with {raw}:\n{e}") from None


def test_malformed_http_is_answered_and_survived(ctx):
    import socket
    srv, alice, room = setup(ctx)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        reply = s.recv(4096)
    if reply and not reply.startswith(b"HTTP/1.1 4"):
        raise TestFailure(f"garbage got {reply[:80]!r}")
    ctx.expect(alice.request("GET", "/account/whoami"), body={"user_id": alice.user_id})


def test_deep_content_that_was_accepted_reads_back(ctx):
    """Whatever nesting a request may carry, the event or account data it stored must come back
    through every read path (not just the one that wrote it)."""
    srv, alice, room = setup(ctx)
    deep = '{"msgtype": "m.text", "body": "deep", "x": ' + nested(60) + "}"
    event_id = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/deep", raw=deep))["event_id"]
    ctx.expect(alice.request("PUT", f"/user/{alice.user_id}/account_data/org.example.deep", raw=nested(63)))
    ctx.expect(alice.request("GET", f"/rooms/{room}/event/{event_id}"), body={"content": {"body": "deep"}})
    ctx.expect(alice.request("GET", f"/rooms/{room}/messages", query={"dir": "b", "limit": 1}),
               body={"chunk": [{"event_id": event_id}]})
    ctx.expect(alice.request("GET", "/sync"), body={
        "rooms": {"join": {room: {"timeline": {"events": {"$contains": [{"event_id": event_id}]}}}}},
        "account_data": {"events": {"$contains": [{"type": "org.example.deep"}]}}})
    ctx.expect(alice.request("GET", f"/user/{alice.user_id}/account_data/org.example.deep"), body={"a": "$object"})
