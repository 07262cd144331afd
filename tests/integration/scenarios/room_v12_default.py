"""Config `default_room_version` (Synapse's key): the version createRoom uses when none is asked
for, shown in /capabilities; an unknown version stops start-up."""

from harness import TestFailure, indent_text, tail


def test_default_room_version_12_from_config(ctx):
    srv = ctx.server(config={"default_room_version": "12"})
    alice = ctx.register(srv, "alice")
    res = alice.request("GET", "/capabilities")
    ctx.expect(res, 200, body={"capabilities": {"m.room_versions": {"default": "12", "available": {"12": "stable"}}}})
    res = alice.request("POST", "/createRoom", body={})
    ctx.expect(res, 200, body={"room_id": "$re:![A-Za-z0-9_-]{43}"})
    room = res.json["room_id"]
    res = alice.request("GET", f"/rooms/{room}/state/m.room.create")
    ctx.expect(res, 200, body={"room_version": "12"})


def test_default_room_version_11_from_config(ctx):
    srv = ctx.server(config={"default_room_version": "11"})
    alice = ctx.register(srv, "alice")
    res = alice.request("GET", "/capabilities")
    ctx.expect(res, 200, body={"capabilities": {"m.room_versions": {"default": "11"}}})
    res = alice.request("POST", "/createRoom", body={})
    ctx.expect(res, 200)
    room = res.json["room_id"]
    res = alice.request("GET", f"/rooms/{room}/state/m.room.create")
    ctx.expect(res, 200, body={"room_version": "11", "creator": "$absent"})


def test_unknown_default_room_version_is_refused(ctx):
    for bad in ("99", "v12"):
        srv = ctx.server(start=False)
        srv.config_overrides = {"default_room_version": bad}
        code, output = srv.run_to_exit()
        if code == 0 or "listening on" in output:
            raise TestFailure(f"default_room_version {bad!r} was accepted:\n{indent_text(tail(output))}")
        if "default_room_version" not in output:
            raise TestFailure(f"the message does not name default_room_version:\n{indent_text(tail(output))}")
