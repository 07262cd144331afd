"""Email 3PIDs, identity servers and third-party invites, against a fake SMTP server and a fake
identity server (plain http; `identity_server_scheme: http`)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from threepid_support import (ID_TOKEN, Ed25519, FakeIdentityServer, FakeSmtp, closed_port_name,  # noqa: E402
                              link_in)


def mail_config(smtp):
    return {"email": {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "notif_from": "Trestle <trestle@localhost>"},
            "identity_server_scheme": "http"}


def validate(ctx, srv, smtp, path, address, secret="s3cret.=_-", token=None):
    """requestToken at `path`, then follow the mailed link. The sid."""
    res = srv.client().request("POST", path, token=token, body={
        "client_secret": secret, "email": address, "send_attempt": 1})
    sid = ctx.expect(res, body={"sid": "$nonempty"})["sid"]
    _, to, data = smtp.wait_for(address)
    if "Content-Type: text/plain" not in data:
        raise TestFailure(f"the mail is not text/plain:\n{data}")
    res = srv.client().request("GET", link_in(data))
    if res.status != 200 or "text/html" not in res.headers.get("content-type", ""):
        raise TestFailure(f"following the link: {res.describe()}")
    return sid


def test_register_and_login_with_email(ctx):
    smtp = FakeSmtp()
    try:
        srv = ctx.server(config=mail_config(smtp))
        c = srv.client()
        name = f"mailuser{ctx.run_id}".lower()
        res = c.request("POST", "/register", body={"username": name, "password": "pw-mail-1"})
        flows = ctx.expect(res, 401)
        if {"stages": ["m.login.email.identity"]} not in flows["flows"]:
            raise TestFailure(f"no single-stage m.login.email.identity flow: {flows}")
        session = flows["session"]

        # A session whose link was not followed does not register.
        res = c.request("POST", "/register/email/requestToken",
                        body={"client_secret": "early", "email": "Early@Example.org", "send_attempt": 1})
        early_sid = ctx.expect(res)["sid"]
        smtp.wait_for("early@example.org")  # the address is lower-cased
        res = c.request("POST", "/register", body={
            "username": name, "password": "pw-mail-1",
            "auth": {"type": "m.login.email.identity", "session": session,
                     "threepid_creds": {"sid": early_sid, "client_secret": "early"}}})
        ctx.expect(res, 401, "M_THREEPID_AUTH_FAILED", body={"flows": "$array"})
        # The same request again (same send_attempt): the same session and no second mail.
        res = c.request("POST", "/register/email/requestToken",
                        body={"client_secret": "early", "email": "early@example.org", "send_attempt": 1})
        ctx.expect(res, body={"sid": early_sid})
        time.sleep(0.2)
        if smtp.count_to("early@example.org") != 1:
            raise TestFailure("a retried requestToken sent a second mail")

        sid = validate(ctx, srv, smtp, "/register/email/requestToken", "mail@example.org", secret="sec1")
        res = c.request("POST", "/register", body={
            "username": name, "password": "pw-mail-1",
            "auth": {"type": "m.login.email.identity", "session": session,
                     "threepid_creds": {"sid": sid, "client_secret": "sec1"}}})
        user_id = ctx.expect(res, body={"user_id": "$string", "access_token": "$string"})["user_id"]
        token = res.json["access_token"]
        ctx.expect(c.request("GET", "/capabilities", token=token),
                   body={"capabilities": {"m.3pid_changes": {"enabled": True}}})
        ctx.expect(c.request("GET", "/account/3pid", token=token),
                   body={"threepids": [{"medium": "email", "address": "mail@example.org",
                                        "validated_at": "$int", "added_at": "$int"}]})

        # Now in use: no second account, no second validation for registration.
        res = c.request("POST", "/register/email/requestToken",
                        body={"client_secret": "sec2", "email": "mail@example.org", "send_attempt": 1})
        ctx.expect(res, 400, "M_THREEPID_IN_USE")

        # Login by address: the identifier, and the deprecated top-level form.
        res = c.request("POST", "/login", body={
            "type": "m.login.password", "password": "pw-mail-1",
            "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "MAIL@example.org"}})
        ctx.expect(res, body={"user_id": user_id, "access_token": "$string"})
        res = c.request("POST", "/login", body={"type": "m.login.password", "medium": "email",
                                                "address": "mail@example.org", "password": "pw-mail-1"})
        ctx.expect(res, body={"user_id": user_id})
        for ident, pw in ((("email", "mail@example.org"), "wrong"), (("email", "nobody@example.org"), "pw-mail-1")):
            res = c.request("POST", "/login", body={
                "type": "m.login.password", "password": pw,
                "identifier": {"type": "m.id.thirdparty", "medium": ident[0], "address": ident[1]}})
            ctx.expect(res, 403, "M_FORBIDDEN")

        # Bad input.
        for body, errcode in (({"client_secret": "bad secret!", "email": "x@example.org", "send_attempt": 1},
                               "M_INVALID_PARAM"),
                              ({"client_secret": "ok", "email": "not-an-address", "send_attempt": 1},
                               "M_INVALID_PARAM"),
                              ({"client_secret": "ok", "email": "x@example.org"}, "M_MISSING_PARAM")):
            ctx.expect(c.request("POST", "/register/email/requestToken", body=body), 400, errcode)
        ctx.expect(c.request("GET", "/_matrix/client/unstable/registration/email/submit_token",
                             query={"sid": sid, "client_secret": "sec1", "token": "forged"}), 400)
        # Password reset: only for a known address.
        res = c.request("POST", "/account/password/email/requestToken",
                        body={"client_secret": "r1", "email": "nobody@example.org", "send_attempt": 1})
        ctx.expect(res, 400, "M_THREEPID_NOT_FOUND")
        # Password reset by email: no access token, the email stage instead.
        ctx.expect(c.request("POST", "/account/password", body={"new_password": "pw-mail-2"}), 401,
                   body={"flows": [{"stages": ["m.login.email.identity"]}]})
        res = c.request("POST", "/account/password/email/requestToken",
                        body={"client_secret": "r2", "email": "other@example.org", "send_attempt": 1})
        ctx.expect(res, 400, "M_THREEPID_NOT_FOUND")
        sid = validate(ctx, srv, smtp, "/account/password/email/requestToken", "mail@example.org", secret="r1")
        wrong = {"type": "m.login.email.identity", "threepid_creds": {"sid": sid, "client_secret": "nope"}}
        ctx.expect(c.request("POST", "/account/password", body={"new_password": "pw-mail-2", "auth": wrong}),
                   401, "M_THREEPID_AUTH_FAILED")
        right = {"type": "m.login.email.identity", "threepid_creds": {"sid": sid, "client_secret": "r1"}}
        ctx.expect(c.request("POST", "/account/password", body={"new_password": "pw-mail-2", "auth": right}))
        ctx.expect(c.request("GET", "/account/whoami", token=token), 401, "M_UNKNOWN_TOKEN")  # logged out
        res = c.request("POST", "/login", body={"type": "m.login.password", "medium": "email",
                                                "address": "mail@example.org", "password": "pw-mail-1"})
        ctx.expect(res, 403, "M_FORBIDDEN")
        res = c.request("POST", "/login", body={"type": "m.login.password", "medium": "email",
                                                "address": "mail@example.org", "password": "pw-mail-2"})
        ctx.expect(res, body={"user_id": user_id})
    finally:
        smtp.close()


def test_email_not_configured(ctx):
    srv = ctx.server()
    c = srv.client()
    res = c.request("POST", "/register", body={"username": f"nomail{ctx.run_id}".lower(), "password": "pw"})
    flows = ctx.expect(res, 401)["flows"]
    if any("m.login.email.identity" in f["stages"] for f in flows):
        raise TestFailure(f"email flow offered without email config: {flows}")
    res = c.request("POST", "/register/email/requestToken",
                    body={"client_secret": "a", "email": "a@example.org", "send_attempt": 1})
    ctx.expect(res, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    ctx.expect(c.request("POST", "/account/password", body={"new_password": "x"}), 401, "M_MISSING_TOKEN")
    user = ctx.register(srv, "plain")
    ctx.expect(user.request("GET", "/capabilities"), body={"capabilities": {"m.3pid_changes": {"enabled": False}}})
    res = c.request("POST", "/account/3pid/msisdn/requestToken",
                    body={"client_secret": "a", "country": "GB", "phone_number": "07700900001", "send_attempt": 1})
    ctx.expect(res, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")


def test_add_list_and_delete_email(ctx):
    smtp = FakeSmtp(ehlo=False)  # a mail server that knows only HELO
    try:
        srv = ctx.server(config=mail_config(smtp))
        alice = ctx.register(srv, "alice")
        bob = ctx.register(srv, "bob")
        sid = validate(ctx, srv, smtp, "/account/3pid/email/requestToken", "alice@example.org", secret="a1")
        # /account/3pid/add is behind user-interactive auth.
        res = alice.request("POST", "/account/3pid/add", body={"sid": sid, "client_secret": "a1"})
        uia = ctx.expect(res, 401, body={"session": "$string"})
        # The wrong secret: refused.
        res = alice.request("POST", "/account/3pid/add", body={
            "sid": sid, "client_secret": "other",
            "auth": {"type": "m.login.password", "session": uia["session"], "password": alice.password,
                     "identifier": {"type": "m.id.user", "user": alice.user_id}}})
        ctx.expect(res, 400, "M_THREEPID_AUTH_FAILED")
        res = alice.request("POST", "/account/3pid/add", body={
            "sid": sid, "client_secret": "a1",
            "auth": {"type": "m.login.password", "password": alice.password,
                     "identifier": {"type": "m.id.user", "user": alice.user_id}}})
        ctx.expect(res)
        ctx.expect(alice.request("GET", "/account/3pid"),
                   body={"threepids": [{"medium": "email", "address": "alice@example.org"}]})
        # Bob cannot take the address with his own session for it.
        res = bob.request("POST", "/account/3pid/email/requestToken",
                          body={"client_secret": "b1", "email": "alice@example.org", "send_attempt": 1})
        ctx.expect(res, 400, "M_THREEPID_IN_USE")
        # The deprecated POST /account/3pid (three_pid_creds), as SyTest uses it.
        sid2 = validate(ctx, srv, smtp, "/account/3pid/email/requestToken", "bob@example.org", secret="b2")
        ctx.expect(bob.request("POST", "/account/3pid", body={"three_pid_creds": {
            "sid": sid2, "client_secret": "b2", "id_server": "id.example.org", "id_access_token": "unused"}}))
        ctx.expect(bob.request("GET", "/account/3pid"), body={"threepids": [{"address": "bob@example.org"}]})
        # Delete: gone from the list, and login by it fails. Never bound anywhere: no-support.
        res = alice.request("POST", "/account/3pid/delete", body={"medium": "email", "address": "alice@example.org"})
        ctx.expect(res, body={"id_server_unbind_result": "no-support"})
        ctx.expect(alice.request("GET", "/account/3pid"), body={"threepids": []})
        res = srv.client().request("POST", "/login", body={
            "type": "m.login.password", "password": alice.password,
            "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"}})
        ctx.expect(res, 403, "M_FORBIDDEN")
        # Deactivation forgets the account's addresses.
        res = bob.request("POST", "/account/deactivate", body={
            "auth": {"type": "m.login.password", "password": bob.password,
                     "identifier": {"type": "m.id.user", "user": bob.user_id}}})
        ctx.expect(res, body={"id_server_unbind_result": "$string"})
        res = srv.client().request("POST", "/login", body={
            "type": "m.login.password", "password": bob.password, "medium": "email", "address": "bob@example.org"})
        ctx.expect(res, 403, "M_FORBIDDEN")
    finally:
        smtp.close()


def test_bind_unbind_and_deactivate(ctx):
    ids = FakeIdentityServer()
    try:
        srv = ctx.server(config={"identity_server_scheme": "http"})
        alice = ctx.register(srv, "alice")

        def bind(address, secret="cs1"):
            sid = ids.validate("email", address)
            res = alice.request("POST", "/account/3pid/bind", body={
                "id_server": ids.name, "id_access_token": ID_TOKEN, "sid": sid, "client_secret": secret})
            ctx.expect(res)
            if ids.bindings.get(("email", address)) != alice.user_id:
                raise TestFailure(f"not bound at the identity server: {ids.bindings}")

        bind("one@example.org")
        call = ids.calls("/_matrix/identity/v2/3pid/bind")[-1]
        if call[2].get("Authorization") != f"Bearer {ID_TOKEN}" or call[3].get("mxid") != alice.user_id:
            raise TestFailure(f"bind request: {call}")
        # The unstable path SyTest uses works the same.
        sid = ids.validate("email", "two@example.org")
        ctx.expect(alice.request("POST", "/_matrix/client/unstable/account/3pid/bind", body={
            "id_server": ids.name, "id_access_token": ID_TOKEN, "sid": sid, "client_secret": "x"}))

        # Unbind without naming the identity server: the one it was bound at through us.
        res = alice.request("POST", "/account/3pid/unbind", body={"medium": "email", "address": "one@example.org"})
        ctx.expect(res, body={"id_server_unbind_result": "success"})
        if ("email", "one@example.org") in ids.bindings:
            raise TestFailure("still bound after /unbind")
        call = ids.calls("/_matrix/identity/v2/3pid/unbind")[-1]
        auth = call[2].get("Authorization", "")
        if not auth.startswith('X-Matrix origin="localhost"') or 'sig="' not in auth:
            raise TestFailure(f"the unbind request is not signed by the homeserver: {auth!r}")
        if call[3] != {"mxid": alice.user_id, "threepid": {"medium": "email", "address": "one@example.org"}}:
            raise TestFailure(f"unbind body: {call[3]}")

        # Bound out of band: delete naming the identity server unbinds there.
        ids.bind_out_of_band("email", "three@example.org", alice.user_id)
        res = alice.request("POST", "/account/3pid/delete",
                            body={"medium": "email", "address": "three@example.org", "id_server": ids.name})
        ctx.expect(res, body={"id_server_unbind_result": "success"})
        if ("email", "three@example.org") in ids.bindings:
            raise TestFailure("still bound after /delete")

        # The identity server refuses the bind: its error is passed on.
        res = alice.request("POST", "/account/3pid/bind", body={
            "id_server": ids.name, "id_access_token": ID_TOKEN, "sid": "unknown", "client_secret": "x"})
        ctx.expect(res, 400, "M_NO_VALID_SESSION")
        # Bad and unreachable identity servers: errors, never a hang.
        res = alice.request("POST", "/account/3pid/bind", body={
            "id_server": "http://evil/", "id_access_token": ID_TOKEN, "sid": "s", "client_secret": "x"})
        ctx.expect(res, 400, "M_INVALID_PARAM")
        started = time.monotonic()
        res = alice.request("POST", "/account/3pid/bind", body={
            "id_server": closed_port_name(), "id_access_token": ID_TOKEN, "sid": "s", "client_secret": "x"})
        ctx.expect(res, 500, "M_UNKNOWN")
        if time.monotonic() - started > 5:
            raise TestFailure("a refused connection to the identity server took more than 5 s")

        # Deactivation unbinds what is still bound through us.
        bind("four@example.org")
        res = alice.request("POST", "/account/deactivate", body={
            "auth": {"type": "m.login.password", "password": alice.password,
                     "identifier": {"type": "m.id.user", "user": alice.user_id}}})
        ctx.expect(res, body={"id_server_unbind_result": "success"})
        left = {k: v for k, v in ids.bindings.items() if v == alice.user_id}
        if left:
            raise TestFailure(f"still bound after deactivation: {left}")
    finally:
        ids.close()


def test_third_party_invites(ctx):
    ids = FakeIdentityServer()
    try:
        srv = ctx.server(config={"identity_server_scheme": "http"})
        alice = ctx.register(srv, "alice")
        bob = ctx.register(srv, "bob")
        carol = ctx.register(srv, "carol")
        dave = ctx.register(srv, "dave")

        def invite_3pid(user, room, address, status=200, errcode=None):
            res = user.request("POST", f"/rooms/{room}/invite", body={
                "id_server": ids.name, "id_access_token": ID_TOKEN, "medium": "email", "address": address})
            return ctx.expect(res, status, errcode)

        # A bound address invites its user (found by the hashed v2 lookup).
        ids.bind_out_of_band("email", "bob@example.org", bob.user_id)
        room = ctx.expect(alice.request("POST", "/createRoom", body={"preset": "private_chat"}))["room_id"]
        invite_3pid(alice, room, "bob@example.org")
        ctx.expect(alice.request("GET", f"/rooms/{room}/state/m.room.member/{bob.user_id}"),
                   body={"membership": "invite"})
        lookup = ids.calls("/_matrix/identity/v2/lookup")[-1][3]
        if lookup["addresses"] != [ids.hash_of("email", "bob@example.org")] or lookup["algorithm"] != "sha256":
            raise TestFailure(f"lookup request: {lookup}")
        # ... and in createRoom's invite_3pid.
        res = alice.request("POST", "/createRoom", body={"invite_3pid": [
            {"id_server": ids.name, "id_access_token": ID_TOKEN, "medium": "email", "address": "bob@example.org"}]})
        room2 = ctx.expect(res)["room_id"]
        ctx.expect(alice.request("GET", f"/rooms/{room2}/state/m.room.member/{bob.user_id}"),
                   body={"membership": "invite"})
        ctx.expect(alice.request("POST", "/createRoom", body={"invite_3pid": [{"medium": "email"}]}),
                   400, "M_MISSING_PARAM")

        # An unbound address: stored at the identity server, recorded in the room.
        ctx.expect(carol.request("POST", f"/join/{room}", body={}), 403)  # not invited yet
        ctx.expect(alice.request("POST", f"/rooms/{room}/invite", body={"user_id": carol.user_id}))
        ctx.expect(carol.request("POST", f"/join/{room}", body={}))
        invite_3pid(alice, room, "Dave@Example.org")
        stored = ids.calls("/_matrix/identity/v2/store-invite")[-1][3]
        if stored["room_id"] != room or stored["sender"] != alice.user_id or stored["address"] != "dave@example.org":
            raise TestFailure(f"store-invite request: {stored}")
        state = ctx.expect(alice.request("GET", f"/rooms/{room}/state"))
        tpi = [e for e in state if e["type"] == "m.room.third_party_invite"]
        if len(tpi) != 1 or tpi[0]["content"].get("display_name") != "Bob" or \
                tpi[0]["content"].get("public_key") != ids.key.public or \
                not tpi[0]["content"].get("public_keys"):
            raise TestFailure(f"m.room.third_party_invite: {tpi}")

        # The inviter leaves; the address is bound later and the identity server calls onbind.
        ctx.expect(alice.request("POST", f"/rooms/{room}/leave", body={}))
        # A forged signature, or a key the identity server no longer vouches for: refused.
        forged = ids.onbind_body("email", "dave@example.org", dave.user_id, key=Ed25519(9))
        ctx.expect(srv.client().request("POST", "/_matrix/federation/v1/3pid/onbind", body=forged), 403, "M_FORBIDDEN")
        ctx.expect(carol.request("GET", f"/rooms/{room}/state/m.room.member/{dave.user_id}"), 404)
        body = ids.onbind_body("email", "dave@example.org", dave.user_id)
        ids.revoked.add(ids.key.public)
        ctx.expect(srv.client().request("POST", "/_matrix/federation/v1/3pid/onbind", body=body), 403, "M_FORBIDDEN")
        ctx.expect(carol.request("GET", f"/rooms/{room}/state/m.room.member/{dave.user_id}"), 404)
        if not ids.calls("/_matrix/identity/v2/pubkey/isvalid"):
            raise TestFailure("the key's validity was not checked")
        ids.revoked.clear()
        ctx.expect(srv.client().request("POST", "/_matrix/federation/v1/3pid/onbind", body=body))
        member = ctx.expect(carol.request("GET", f"/rooms/{room}/state/m.room.member/{dave.user_id}"),
                            body={"membership": "invite", "third_party_invite": {"display_name": "Bob"}})
        if member["third_party_invite"]["signed"]["token"] != tpi[0]["state_key"]:
            raise TestFailure(f"invite does not carry the signed token: {member}")
        sync = ctx.expect(dave.request("GET", "/sync", query={"timeout": "0"}))
        invite_state = sync["rooms"]["invite"][room]["invite_state"]["events"]
        if not [e for e in invite_state if e["type"] == "m.room.member" and e["state_key"] == alice.user_id]:
            raise TestFailure(f"no inviter member event in invite_state: {invite_state}")
        ctx.expect(dave.request("POST", f"/join/{room}", body={}))
        ctx.expect(carol.request("GET", f"/rooms/{room}/state/m.room.member/{dave.user_id}"),
                   body={"membership": "join"})
        # The identity server calling again (a retry) does not turn the member back into an invitee.
        ctx.expect(srv.client().request("POST", "/_matrix/federation/v1/3pid/onbind", body=body))
        ctx.expect(carol.request("GET", f"/rooms/{room}/state/m.room.member/{dave.user_id}"),
                   body={"membership": "join"})

        # Without power to invite: refused, and nothing stored.
        before = len(ids.calls("/_matrix/identity/v2/store-invite"))
        room3 = ctx.expect(carol.request("POST", "/createRoom", body={
            "preset": "private_chat", "power_level_content_override": {"invite": 50}}))["room_id"]
        ctx.expect(carol.request("POST", f"/rooms/{room3}/invite", body={"user_id": dave.user_id}))
        ctx.expect(dave.request("POST", f"/join/{room3}", body={}))
        invite_3pid(dave, room3, "nobody@example.org", 403, "M_FORBIDDEN")
        # Not in the room at all: refused before the identity server is asked.
        invite_3pid(bob, room3, "nobody@example.org", 403, "M_FORBIDDEN")
        if len(ids.calls("/_matrix/identity/v2/store-invite")) != before:
            raise TestFailure("an invite nobody may send was stored at the identity server")
        # Malformed requests.
        res = alice.request("POST", f"/rooms/{room2}/invite", body={"medium": "email", "address": "x@example.org"})
        ctx.expect(res, 400, "M_MISSING_PARAM")
    finally:
        ids.close()


def test_request_token_is_rate_limited(ctx):
    smtp = FakeSmtp()
    try:
        config = mail_config(smtp)
        config["rc_registration"] = {"per_second": 0.001, "burst_count": 2}
        srv = ctx.server(config=config)
        c = srv.client()
        for i in range(2):
            res = c.request("POST", "/account/password/email/requestToken",
                            body={"client_secret": f"s{i}", "email": f"n{i}@example.org", "send_attempt": 1})
            ctx.expect(res, 400, "M_THREEPID_NOT_FOUND")
        res = c.request("POST", "/register/email/requestToken",
                        body={"client_secret": "s3", "email": "n3@example.org", "send_attempt": 1})
        ctx.expect(res, 429, "M_LIMIT_EXCEEDED")
        if smtp.mails:
            raise TestFailure(f"mail sent: {smtp.mails}")
    finally:
        smtp.close()
