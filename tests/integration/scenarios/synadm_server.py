"""Debian's synadm against the server's own admin routes: `synadm version`."""

from harness import TestFailure


def test_synadm_version(ctx):
    srv = ctx.server()
    admin = ctx.register(srv, "admin", admin=True)
    out = ctx.synadm(srv, admin).run("version")
    if not isinstance(out, dict) or not isinstance(out.get("server_version"), str) or not out["server_version"]:
        raise TestFailure(f"synadm version printed {out!r}")
    # The same answer the route gives without a token (as Synapse's does).
    res = srv.client().request("GET", "/_synapse/admin/v1/server_version")
    ctx.expect(res, 200, body={"server_version": out["server_version"]})
