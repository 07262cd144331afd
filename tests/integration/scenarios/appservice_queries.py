"""Calls the homeserver makes to appservices on demand: user and alias queries (the appservice
creates the entity through the Client-Server API before answering), bounded so they never stall
transactions; ping with the spec's errors; third-party lookups; appservice room directories."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import TestFailure  # noqa: E402
from appservice_support import (AsClient, AsEnv, closed_port_url, registration, send_text,  # noqa: E402
                                wait_for)

SERVER = "localhost"


def test_user_and_alias_queries_create_on_demand(ctx):
    with AsEnv(ctx) as env:
        reg = registration("bridge", None, "_q_bot", users=[(True, "@_q_.*")], aliases=[(True, "#_q_.*")])
        lst = env.listener(reg)
        srv = env.server([reg])
        asc = AsClient(srv, reg)
        created_rooms = {}

        def on_user(rec):
            user_id = rec.path[len("/_matrix/app/v1/users/"):]
            if user_id.startswith("@_q_yes"):
                asc.register(user_id[1:].split(":")[0])
                return 200, {}
            return 404, {"errcode": "M_NOT_FOUND", "error": "no such user on the other side"}

        def on_alias(rec):
            alias = rec.path[len("/_matrix/app/v1/rooms/"):]
            if alias.startswith("#_q_yes"):
                res = asc.request("POST", "/createRoom", body={"preset": "public_chat",
                                                               "room_alias_name": alias[1:].split(":")[0]})
                created_rooms[alias] = ctx.expect(res)["room_id"]
                return 200, {}
            return 404, {"errcode": "M_NOT_FOUND", "error": "no such room on the other side"}

        lst.on_user = on_user
        lst.on_alias = on_alias
        alice = ctx.register(srv, "alice")
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]

        # A user the appservice creates while the homeserver waits: the invite goes through.
        target = f"@_q_yes1:{SERVER}"
        ctx.expect(alice.request("POST", f"/rooms/{room}/invite", body={"user_id": target}))
        queries = [r for r in lst.snapshot() if r.path == f"/_matrix/app/v1/users/{target}"]
        if len(queries) != 1 or queries[0].method != "GET":
            raise TestFailure(f"expected one GET /_matrix/app/v1/users/{target}, got {[r.describe() for r in queries]}")
        ctx.expect(alice.request("GET", f"/rooms/{room}/state/m.room.member/{target}"), body={"membership": "invite"})
        # Known now: no second query.
        ctx.expect(alice.request("GET", f"/profile/{target}"))
        if len([r for r in lst.snapshot() if r.path == f"/_matrix/app/v1/users/{target}"]) != 1:
            raise TestFailure("the appservice was asked again about a user that exists")
        # The appservice does not know the user: the invite fails with 404.
        ctx.expect(alice.request("POST", f"/rooms/{room}/invite", body={"user_id": f"@_q_no1:{SERVER}"}), 404)
        if not [r for r in lst.snapshot() if r.path == f"/_matrix/app/v1/users/@_q_no1:{SERVER}"]:
            raise TestFailure("the appservice was not asked about @_q_no1")
        # Outside every namespace: nobody is asked.
        ctx.expect(alice.request("POST", f"/rooms/{room}/invite", body={"user_id": f"@nobody:{SERVER}"}), 404)
        if [r for r in lst.snapshot() if "nobody" in r.path]:
            raise TestFailure("an appservice was asked about a user outside its namespaces")

        # An alias the appservice creates on demand: joining it works.
        alias = f"#_q_yes_room:{SERVER}"
        joined = ctx.expect(alice.request("POST", f"/join/%23_q_yes_room:{SERVER}", body={}))["room_id"]
        if created_rooms.get(alias) != joined:
            raise TestFailure(f"joined {joined}, the appservice created {created_rooms}")
        if not [r for r in lst.snapshot() if r.method == "GET" and r.path == f"/_matrix/app/v1/rooms/{alias}"]:
            raise TestFailure(f"no GET /_matrix/app/v1/rooms/{alias}")
        ctx.expect(alice.request("GET", "/joined_rooms"), body={"joined_rooms": {"$contains": [joined]}})
        # Resolving through the directory asks too.
        res = alice.request("GET", f"/directory/room/%23_q_yes_dir:{SERVER}")
        ctx.expect(res, body={"room_id": created_rooms.get(f"#_q_yes_dir:{SERVER}", "(not created)")})
        # Unknown to the appservice, or outside every namespace: 404.
        ctx.expect(alice.request("POST", f"/join/%23_q_no_room:{SERVER}", body={}), 404)
        ctx.expect(alice.request("POST", f"/join/%23elsewhere:{SERVER}", body={}), 404)
        if [r for r in lst.snapshot() if "elsewhere" in r.path]:
            raise TestFailure("an appservice was asked about an alias outside its namespaces")
        lst.check_auth()


def test_a_hanging_query_does_not_stall_transactions(ctx):
    with AsEnv(ctx) as env:
        reg = registration("slow", None, "_sl_bot", users=[(True, "@_sl_.*")], rooms=[(False, "!.*")])
        lst = env.listener(reg)

        def on_user(rec):
            lst.released.wait(15)  # never answers in time
            return 404, {"errcode": "M_NOT_FOUND", "error": "too late"}

        lst.on_user = on_user
        srv = env.server([reg])
        alice = ctx.register(srv, "alice")
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        outcome = {}

        def invite():
            started = time.monotonic()
            try:
                outcome["res"] = alice.request("POST", f"/rooms/{room}/invite", body={"user_id": f"@_sl_x:{SERVER}"})
            except Exception as e:  # reported below
                outcome["error"] = e
            outcome["took"] = time.monotonic() - started

        t = threading.Thread(target=invite, daemon=True)
        t.start()
        wait_for(lambda: [r for r in lst.snapshot() if r.path.startswith("/_matrix/app/v1/users/")], 5,
                 "the user query")
        # While the query hangs, the same appservice still gets its transactions, and others
        # can use the server.
        ids = [send_text(alice, room, f"during the query {i}") for i in range(5)]
        lst.wait_delivered(ids, timeout=4)
        if "took" in outcome:
            raise TestFailure("the invite finished before the hanging query was over")
        t.join(15)
        if t.is_alive() or "error" in outcome:
            raise TestFailure(f"the invite did not finish after the query timed out: {outcome}")
        res = outcome["res"]
        # The spec: an unanswered query is retried for a while, then the client gets 408.
        if res.status != 408 or outcome["took"] > 12:
            raise TestFailure(f"invite with a hanging user query: {res.describe()} after {outcome['took']:.1f}s "
                              "(expected 408 within a bounded time)")
        # Delivery carried on afterwards too.
        lst.wait_delivered([send_text(alice, room, "after the query")], timeout=4)


def test_ping(ctx):
    with AsEnv(ctx) as env:
        pinger = registration("pinger", None, "_pi_bot", users=[(True, "@_pi_.*")])
        other = registration("other", None, "_ot_bot", users=[(True, "@_ot_.*")])
        nourl = registration("nourl", None, "_nu_bot", users=[(True, "@_nu_.*")])
        down = registration("down", closed_port_url(), "_dn_bot", users=[(True, "@_dn_.*")])
        broken = registration("broken", None, "_bk_bot", users=[(True, "@_bk_.*")])
        lst = env.listener(pinger)
        env.listener(other)
        broken_lst = env.listener(broken)
        broken_lst.on_ping = lambda rec: (500, {"errcode": "M_UNKNOWN", "error": "bridge on fire"})
        srv = env.server([pinger, other, nourl, down, broken])
        p = AsClient(srv, pinger)

        res = p.ping("meow")
        ctx.expect(res, 200, body={"duration_ms": {"$ge": 0}})
        if not isinstance(res.json["duration_ms"], int):
            raise TestFailure(f"duration_ms is not an integer: {res.json}")
        pings = [r for r in lst.snapshot() if r.path == "/_matrix/app/v1/ping"]
        if len(pings) != 1 or pings[0].method != "POST" or pings[0].json != {"transaction_id": "meow"}:
            raise TestFailure(f"the appservice got {[r.describe() for r in pings]}, expected POST "
                              "/_matrix/app/v1/ping {\"transaction_id\": \"meow\"}")
        ctx.expect(p.ping(), 200, body={"duration_ms": "$int"})
        lst.check_auth()

        # Someone else's id, an unknown id, an ordinary user, no token.
        ctx.expect(p.request("POST", "/_matrix/client/v1/appservice/other/ping", body={}), 403, errcode="M_FORBIDDEN")
        ctx.expect(p.request("POST", "/_matrix/client/v1/appservice/nosuch/ping", body={}), 403, errcode="M_FORBIDDEN")
        alice = ctx.register(srv, "alice")
        ctx.expect(alice.request("POST", "/_matrix/client/v1/appservice/pinger/ping", body={}), 403,
                   errcode="M_FORBIDDEN")
        ctx.expect(srv.client().request("POST", "/_matrix/client/v1/appservice/pinger/ping", body={}), 401,
                   errcode="M_MISSING_TOKEN")
        # No URL, nothing listening, a bad status (with the status and body).
        ctx.expect(AsClient(srv, nourl).ping("x"), 400, errcode="M_URL_NOT_SET")
        ctx.expect(AsClient(srv, down).ping("x"), 502, errcode="M_CONNECTION_FAILED")
        res = AsClient(srv, broken).ping("x")
        ctx.expect(res, 502, errcode="M_BAD_STATUS", body={"status": 500, "body": "$string"})
        if "bridge on fire" not in res.json["body"]:
            raise TestFailure(f"M_BAD_STATUS body is not the appservice's answer: {res.json}")
        # An appservice rejecting our hs_token (the spec's example): M_BAD_STATUS with 403.
        broken_lst.on_ping = lambda rec: (403, {"errcode": "M_FORBIDDEN"})
        ctx.expect(AsClient(srv, broken).ping("y"), 502, errcode="M_BAD_STATUS", body={"status": 403})


def test_third_party_lookups_are_proxied(ctx):
    with AsEnv(ctx) as env:
        gitter = registration("gitter-bridge", None, "_gi_bot", users=[(True, "@_gi_.*")], protocols=["gitter"])
        irc = registration("irc-bridge", None, "_irc_bot", users=[(True, "@_irc_.*")], protocols=["irc"])
        gitter_lst = env.listener(gitter)
        irc_lst = env.listener(irc)
        meta = {
            "gitter": {"user_fields": ["username"], "location_fields": ["room"], "icon": "mxc://example.org/g",
                       "field_types": {"username": {"regexp": "@[a-z]+", "placeholder": "@user"},
                                       "room": {"regexp": "[a-z/]+", "placeholder": "org/room"}},
                       "instances": [{"desc": "Gitter", "network_id": "gitter", "fields": {}}]},
            "irc": {"user_fields": ["network", "nickname"], "location_fields": ["network", "channel"],
                    "icon": "mxc://example.org/i",
                    "field_types": {"network": {"regexp": "[a-z.]+", "placeholder": "irc.example.org"},
                                    "nickname": {"regexp": "[a-z]+", "placeholder": "nick"},
                                    "channel": {"regexp": "#[a-z]+", "placeholder": "#room"}},
                    "instances": [{"desc": "Libera", "network_id": "libera", "fields": {"network": "libera.chat"}},
                                  {"desc": "OFTC", "network_id": "oftc", "fields": {"network": "irc.oftc.net"}}]},
        }

        def answer(protocol):
            def handle(rec):
                path = rec.path[len("/_matrix/app/v1/thirdparty/"):]
                if path == f"protocol/{protocol}":
                    return 200, meta[protocol]
                if path == f"location/{protocol}":
                    return 200, [{"alias": f"#{protocol}_{rec.query.get('room', 'x')}:{SERVER}", "protocol": protocol,
                                  "fields": dict(rec.query)}]
                if path == f"user/{protocol}":
                    return 200, [{"userid": f"@_gi_{rec.query.get('username', 'x')}:{SERVER}", "protocol": protocol,
                                  "fields": dict(rec.query)}]
                return 404, {"errcode": "M_NOT_FOUND", "error": "unknown"}
            return handle

        gitter_lst.on_thirdparty = answer("gitter")
        irc_lst.on_thirdparty = answer("irc")
        srv = env.server([gitter, irc])
        alice = ctx.register(srv, "alice")

        def with_instance_ids(protocol, as_id):
            out = dict(meta[protocol])
            out["instances"] = [dict(i, instance_id="$nonempty") for i in meta[protocol]["instances"]]
            return out

        protocols = ctx.expect(alice.request("GET", "/thirdparty/protocols"),
                               body={"$keys": ["gitter", "irc"], "gitter": with_instance_ids("gitter", "gitter-bridge"),
                                     "irc": with_instance_ids("irc", "irc-bridge")})
        ids = [i["instance_id"] for p in protocols.values() for i in p["instances"]]
        if len(set(ids)) != len(ids):
            raise TestFailure(f"instance_id is not unique: {ids}")
        ctx.expect(alice.request("GET", "/thirdparty/protocol/irc"), body=with_instance_ids("irc", "irc-bridge"))
        ctx.expect(alice.request("GET", "/thirdparty/protocol/unknown"), 404, errcode="M_NOT_FOUND")
        asked = [r.path for r in gitter_lst.snapshot()]
        if any("irc" in p for p in asked) or [r.path for r in irc_lst.snapshot() if "gitter" in r.path]:
            raise TestFailure("a protocol query went to an appservice that does not declare the protocol")
        if "/_matrix/app/v1/thirdparty/protocol/gitter" not in asked:
            raise TestFailure(f"the gitter appservice was not asked for its protocol: {asked}")
        res = alice.request("GET", "/thirdparty/location/gitter", query={"room": "matrix"})
        ctx.expect(res, body=[{"alias": f"#gitter_matrix:{SERVER}", "protocol": "gitter",
                               "fields": {"room": "matrix"}}])
        res = alice.request("GET", "/thirdparty/user/gitter", query={"username": "bob"})
        ctx.expect(res, body=[{"userid": f"@_gi_bob:{SERVER}", "protocol": "gitter", "fields": {"username": "bob"}}])
        # The client's access token never reaches the appservice.
        alice.request("GET", "/thirdparty/location/gitter", query={"room": "q", "access_token": alice.token}, token=None)
        for r in gitter_lst.snapshot():
            if alice.token in r.raw_path or alice.token in str(r.query) or alice.token in str(r.headers):
                raise TestFailure(f"the client's access token was forwarded to the appservice: {r.describe()}")
        gitter_lst.check_auth()
        irc_lst.check_auth()

        # The appservice's room directory: only the appservice may publish there.
        room = ctx.expect(alice.request("POST", "/createRoom", body={}))["room_id"]
        g = AsClient(srv, gitter)
        ctx.expect(g.request("PUT", f"/directory/list/appservice/gitter/{room}", body={"visibility": "public"}), 200)
        ctx.expect(alice.request("PUT", f"/directory/list/appservice/gitter/{room}", body={"visibility": "public"}),
                   403, errcode="M_FORBIDDEN")
        ctx.expect(g.request("PUT", f"/directory/list/appservice/gitter/!nosuch:{SERVER}",
                             body={"visibility": "public"}), 404)
        # A network's rooms stay out of the server's own directory; they are listed per network
        # ("<appservice id>|<network id>") or with include_all_networks.
        def listed(body):
            chunk = ctx.expect(alice.request("POST", "/publicRooms", body=body))["chunk"]
            return [r["room_id"] for r in chunk]
        if room in listed({}):
            raise TestFailure("a room published to an appservice network is in the server's own directory")
        if room not in listed({"include_all_networks": True}):
            raise TestFailure("include_all_networks does not list the appservice network's room")
        if room not in listed({"third_party_instance_id": "gitter-bridge|gitter"}):
            raise TestFailure("third_party_instance_id does not list the network's room")
        if room in listed({"third_party_instance_id": "gitter-bridge|elsewhere"}):
            raise TestFailure("another network lists the room")
        ctx.expect(g.request("PUT", f"/directory/list/appservice/gitter/{room}", body={"visibility": "private"}), 200)
        if room in listed({"include_all_networks": True}):
            raise TestFailure("a room made private is still listed")


def test_protocol_metadata_is_cached_and_instance_ids_need_a_network_id(ctx):
    """As Synapse: each appservice's protocol metadata is asked once and kept (SyTest's "HS can
    provide query metadata on a single protocol" relies on it), and `instance_id` is added only to
    instances that name their `network_id`."""
    with AsEnv(ctx) as env:
        one = registration("ymca-one", None, "_y1_bot", users=[(True, "@_y1_.*")], protocols=["ymca"])
        two = registration("ymca-two", None, "_y2_bot", users=[(True, "@_y2_.*")], protocols=["ymca"])
        lst_one = env.listener(one)
        lst_two = env.listener(two)
        valid = {"one": True}

        def answer(instances):
            def handle(rec):
                if not valid["one"]:
                    return 200, []  # not metadata: would be ignored if asked
                return 200, {"user_fields": ["f1"], "location_fields": ["f2"], "icon": "mxc://x/y",
                             "instances": instances}
            return handle

        lst_one.on_thirdparty = answer([{"desc": "instance 1"}, {"desc": "instance 2", "network_id": "net2",
                                                                  "fields": {}}])
        lst_two.on_thirdparty = answer([{"desc": "instance 3"}])
        srv = env.server([one, two])
        alice = ctx.register(srv, "alice")
        merged = {"user_fields": ["f1"], "location_fields": ["f2"], "icon": "mxc://x/y",
                  "instances": [{"desc": "instance 1", "instance_id": "$absent"},
                                {"desc": "instance 2", "network_id": "net2", "instance_id": "ymca-one|net2"},
                                {"desc": "instance 3", "instance_id": "$absent"}]}
        ctx.expect(alice.request("GET", "/thirdparty/protocols"), body={"$keys": ["ymca"], "ymca": merged})
        valid["one"] = False
        ctx.expect(alice.request("GET", "/thirdparty/protocol/ymca"), body=merged)
        ctx.expect(alice.request("GET", "/thirdparty/protocols"), body={"ymca": merged})
        for lst in (lst_one, lst_two):
            asked = [r.path for r in lst.snapshot() if r.path.startswith("/_matrix/app/v1/thirdparty/protocol/")]
            if len(asked) != 1:
                raise TestFailure(f"expected the protocol asked once per appservice, got {asked}")
