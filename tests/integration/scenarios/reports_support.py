"""Content reports (stored for admins, rate limited by rc_reports) and /.well-known/matrix/support
(from admin_contact and the support section; 404 when neither is configured)."""

import os

from harness import TestFailure

SLOW = {"per_second": 0.01, "burst_count": 2}


def rows(srv, sql):
    return srv.sql(sql)


def test_reports_are_stored_for_admins(ctx):
    srv = ctx.server()
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/join/{room}", body={}))
    ev = ctx.expect(alice.request("PUT", f"/rooms/{room}/send/m.room.message/t1",
                                  body={"msgtype": "m.text", "body": "spam"}))["event_id"]
    ctx.expect(bob.request("POST", f"/rooms/{room}/report/{ev}", body={"reason": "spam!", "score": -50}))
    ctx.expect(bob.request("POST", f"/rooms/{room}/report", body={"reason": "bad room"}))
    ctx.expect(bob.request("POST", f"/users/{alice.user_id}/report", body={"reason": "spammer"}))
    ctx.expect(bob.request("POST", "/users/@nobody:localhost/report", body={"reason": "x"}))
    events = rows(srv, "SELECT room_id, event_id, user_id, reason, content, received_ts FROM event_reports")
    if [r[:4] for r in events] != [(room, ev, bob.user_id, "spam!")] or '"score":-50' not in events[0][4] or events[0][5] <= 0:
        raise TestFailure(f"event_reports: {events}")
    rooms = rows(srv, "SELECT room_id, user_id, reason FROM room_reports")
    if rooms != [(room, bob.user_id, "bad room")]:
        raise TestFailure(f"room_reports: {rooms}")
    users = rows(srv, "SELECT target_user_id, user_id, reason FROM user_reports")
    if users != [(alice.user_id, bob.user_id, "spammer")]:
        raise TestFailure(f"user_reports (an unknown user is not stored): {users}")


def test_reports_are_rate_limited_per_reporter(ctx):
    srv = ctx.server(config={"rc_reports": SLOW})
    alice = ctx.register(srv, "alice")
    bob = ctx.register(srv, "bob")
    room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "public_chat"}))["room_id"]
    ctx.expect(bob.request("POST", f"/rooms/{room}/report", body={"reason": "1"}))
    ctx.expect(bob.request("POST", f"/users/{alice.user_id}/report", body={"reason": "2"}))
    body = ctx.expect(bob.request("POST", f"/rooms/{room}/report", body={"reason": "3"}), 429, "M_LIMIT_EXCEEDED")
    if body.get("retry_after_ms", 0) <= 0:
        raise TestFailure(f"retry_after_ms: {body}")
    ctx.expect(bob.request("POST", f"/users/{alice.user_id}/report", body={"reason": "4"}), 429, "M_LIMIT_EXCEEDED")
    # Another reporter has a burst of their own.
    ctx.expect(alice.request("POST", f"/rooms/{room}/report", body={"reason": "5"}))
    if len(rows(srv, "SELECT id FROM room_reports")) != 2:
        raise TestFailure("a rate-limited report was stored")


def test_support_from_config(ctx):
    srv = ctx.server(config={
        "admin_contact": "mailto:admin@example.org",
        "support": {"support_page": "https://example.org/help",
                    "contacts": [{"matrix_id": "@security:example.org", "role": "m.role.security"},
                                 {"email_address": "ops@example.org"}]}})
    res = srv.client().request("GET", "/.well-known/matrix/support", headers={"Origin": "https://app.example"})
    ctx.expect(res, 200, body={"$eq": {
        "contacts": [{"email_address": "admin@example.org", "role": "m.role.admin"},
                     {"matrix_id": "@security:example.org", "role": "m.role.security"},
                     {"email_address": "ops@example.org", "role": "m.role.admin"}],
        "support_page": "https://example.org/help"}})
    if res.headers.get("access-control-allow-origin") != "*":
        raise TestFailure(f"CORS: {res.headers}")


def test_support_page_alone(ctx):
    srv = ctx.server(config={"support": {"support_page": "https://example.org/help"}})
    ctx.expect(srv.client().request("GET", "/.well-known/matrix/support"), 200,
               body={"$eq": {"support_page": "https://example.org/help"}})


def test_support_not_configured_is_404(ctx):
    srv = ctx.server()
    ctx.expect(srv.client().request("GET", "/.well-known/matrix/support"), 404, "M_NOT_FOUND")


def test_support_contact_needs_an_address(ctx):
    srv = ctx.server(config={"support": {"contacts": [{"role": "m.role.admin"}]}}, start=False)
    code, out = srv.run_to_exit()
    if code == 0 or "support.contacts[0]" not in out:
        raise TestFailure(f"a contact without matrix_id or email_address was accepted: {code} {out}")
