"""Appservice registration files: a bad one stops start-up naming the file and the field; good
ones (both spellings of receive_ephemeral, url null) start, and the sender user exists at once."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure, indent_text, tail  # noqa: E402
from appservice_support import AsClient, AsEnv, registration  # noqa: E402


def refused(env, regs, field, file_index=-1):
    """Start-up must fail, naming the registration file (by default the last) and the field."""
    srv = env.server(regs, start=False)
    code, output = srv.run_to_exit()
    path = srv.config_overrides["app_service_config_files"][file_index]
    if code == 0:
        raise TestFailure(f"the server accepted the registration and exited 0:\n{indent_text(tail(output))}")
    if "listening on" in output:
        raise TestFailure("the server started listening before refusing the registration")
    missing = [text for text in (path, field) if text not in output]
    if missing:
        raise TestFailure(f"exit status {code}, but the message does not name {missing}:\n{indent_text(tail(output))}")


def good(sender="_bot", users=((True, "@_as_.*"),), **extra):
    return registration("bridge", None, sender, users=users, **extra)


def test_bad_registration_files_stop_start_up_naming_file_and_field(ctx):
    with AsEnv(ctx) as env:
        cases = []
        bad_regex = good(users=((True, "@_as_(.*"),))
        cases.append(("invalid user regex", [bad_regex], "namespaces.users[0].regex"))
        bad_alias_regex = good(aliases=((True, "#_as_[.*"),))
        cases.append(("invalid alias regex", [bad_alias_regex], "namespaces.aliases[0].regex"))
        first = good()
        dup_id = registration("bridge", None, "_other", users=((True, "@_other_.*"),))
        cases.append(("duplicate id in two files", [first, dup_id], "'id'"))
        first2 = good()
        dup_token = registration("second", None, "_other", users=((True, "@_other_.*"),))
        dup_token["as_token"] = first2["as_token"]
        cases.append(("duplicate as_token in two files", [first2, dup_token], "as_token"))
        cases.append(("invalid sender_localpart", [good(sender="Bad Bot!")], "sender_localpart"))
        no_token = good()
        del no_token["as_token"]
        cases.append(("missing as_token", [no_token], "as_token"))
        no_hs_token = good()
        del no_hs_token["hs_token"]
        cases.append(("missing hs_token", [no_hs_token], "hs_token"))
        no_namespaces = good()
        del no_namespaces["namespaces"]
        cases.append(("missing namespaces (required by the spec)", [no_namespaces], "namespaces"))
        cases.append(("protocols not strings", [good(protocols=[{"name": "irc"}])], "protocols"))
        cases.append(("not YAML", ["id: [unclosed\n"], ""))
        failures = []
        for label, regs, field in cases:
            try:
                refused(env, regs, field)
            except TestFailure as e:
                failures.append(f"{label}: {e}")
        if failures:
            raise TestFailure("\n".join(failures))


def test_both_ephemeral_flags_and_the_sender_user_exists_from_the_first_start(ctx):
    with AsEnv(ctx) as env:
        reg = good(receive_ephemeral=True, **{"de.sorunome.msc2409.push_ephemeral": True,
                                               "org.matrix.msc3202": True, "io.element.msc4190": True,
                                               "rate_limited": False, "protocols": ["irc"]})
        other = registration("nothing", None, "_nothing_bot", users=((False, "@_nothing_.*"),),
                             **{"de.sorunome.msc2409.push_ephemeral": True})
        srv = env.server([reg, other])
        for r in (reg, other):
            asc = AsClient(srv, r)
            res = asc.request("GET", "/account/whoami")
            body = ctx.expect(res, 200, body={"user_id": asc.sender, "device_id": "$absent"})
            if body.get("is_guest") not in (None, False):
                raise TestFailure(f"the appservice sender is a guest: {body}")
            ctx.expect(asc.request("GET", f"/profile/{asc.sender}"), 200)
        # The sender exists in the database too: it survives a restart and cannot be registered.
        srv.stop()
        srv.start()
        asc = AsClient(srv, reg)
        ctx.expect(asc.request("GET", "/account/whoami"), 200, body={"user_id": asc.sender})
        ctx.expect(asc.request("POST", "/register", body={"type": "m.login.application_service",
                                                          "username": "_bot", "inhibit_login": True}),
                   400, errcode="M_USER_IN_USE")
