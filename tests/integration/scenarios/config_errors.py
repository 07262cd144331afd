"""Start-up with a bad configuration: exit non-zero naming the key; unknown keys only warn."""

import os
import subprocess

from harness import TestFailure, indent_text, tail


def refused(ctx, overrides=None, raw=None, must_mention=()):
    """Runs the binary on a config it must refuse; checks the exit status and the message."""
    srv = ctx.server(start=False)
    if raw is not None:
        srv.raw_config = raw
    else:
        srv.config_overrides = overrides
    code, output = srv.run_to_exit()
    if code == 0:
        raise TestFailure(f"the server accepted the config and exited 0:\n{indent_text(tail(output))}")
    for text in must_mention:
        if text not in output:
            raise TestFailure(f"exit status {code}, but the message does not name {text!r}:\n{indent_text(tail(output))}")
    if "listening on" in output:
        raise TestFailure("the server started listening before refusing its config")
    return output


def test_a_port_that_is_not_a_number(ctx):
    srv_config = {"listeners": [{"port": "abc", "bind_addresses": ["127.0.0.1"], "type": "http"}]}
    refused(ctx, srv_config, must_mention=["listeners[0].port"])


def test_a_port_out_of_range(ctx):
    refused(ctx, {"listeners": [{"port": 70000, "bind_addresses": ["127.0.0.1"], "type": "http"}]},
            must_mention=["listeners[0].port"])


def test_open_registration_needs_the_no_verification_flag(ctx):
    refused(ctx, {"enable_registration": True, "enable_registration_without_verification": None},
            must_mention=["enable_registration"])


def test_bad_database_values_name_their_key(ctx):
    cases = [
        ({"name": "mysql"}, "database.name"),
        ({"name": "psycopg2", "args": {"database": "synapse", "port": 70000}}, "database.args.port"),
        ({"name": "psycopg2", "args": {"database": "synapse", "cp_min": 20, "cp_max": 10}}, "database.args.cp_min"),
    ]
    for database, key in cases:
        try:
            refused(ctx, {"database": database}, must_mention=[key])
        except TestFailure as e:
            raise TestFailure(f"with database {database}:\n{e}") from None


def test_other_bad_values_name_their_key(ctx):
    cases = [
        ({"log_level": "loud"}, "log_level"),
        ({"max_request_body_size": "lots"}, "max_request_body_size"),
        ({"rc_message": {"per_second": -1, "burst_count": 2}}, "rc_message"),
        ({"rc_message": {"per_second": "fast"}}, "rc_message.per_second"),
        ({"rc_to_device": {"per_second": -1}}, "rc_to_device"),
        ({"max_to_device_queue": 0}, "max_to_device_queue"),
        ({"max_to_device_queue": "many"}, "max_to_device_queue"),
        ({"max_to_device_queue": -1}, "max_to_device_queue"),
        ({"server_name": "not a valid name!"}, "server_name"),
        ({"server_name": None}, "server_name"),
        ({"enable_registration": "maybe"}, "enable_registration"),
        ({"listeners": [{"port": 8008, "type": "manhole"}]}, "listeners[0].type"),  # metrics listeners exist now
    ]
    for overrides, key in cases:
        try:
            refused(ctx, overrides, must_mention=[key])
        except TestFailure as e:
            raise TestFailure(f"with {overrides}:\n{e}") from None


def test_a_config_that_is_not_yaml(ctx):
    refused(ctx, raw="server_name: [unclosed\n  listeners: {", must_mention=["YAML"])


def test_a_missing_config_file(ctx):
    srv = ctx.server(start=False)
    code, output = srv.run_to_exit(config_path=os.path.join(srv.dir, "does-not-exist.yaml"))
    if code == 0 or "does-not-exist.yaml" not in output:
        raise TestFailure(f"exit status {code}, output:\n{indent_text(tail(output))}")


def test_unknown_keys_warn_but_start(ctx):
    srv = ctx.server(config={"some_unknown_key": 42, "report_stats": False})
    ctx.expect(srv.client().request("GET", "/_matrix/client/versions"))
    output = srv.output()
    if "some_unknown_key" not in output:
        raise TestFailure(f"no warning naming the unknown key:\n{indent_text(tail(output))}")
    if "report_stats" in output:
        raise TestFailure("a key Synapse configs commonly carry was warned about")


def test_the_generated_config_starts(ctx):
    """`trestle generate-config` writes a config the server accepts as it is (but for the port)."""
    srv = ctx.server(start=False)
    path = os.path.join(srv.dir, "generated.yaml")
    subprocess.run([ctx.binary, "generate-config", "--server-name", "localhost", "--data-dir", srv.data_dir, "-o", path],
                   check=True, capture_output=True, timeout=30)
    with open(path) as f:
        text = f.read()
    if "port: 8008" not in text:
        raise TestFailure("generate-config output has no 'port: 8008' listener")
    if "enable_authenticated_media: true" not in text or "v1.11" not in text:
        raise TestFailure("generate-config does not explain enable_authenticated_media for clients older than v1.11")
    srv.raw_config = text.replace("port: 8008", "port: ${port}")
    srv.start()
    ctx.expect(srv.client().request("GET", "/_matrix/client/versions"))
    if "warn" in srv.output().lower():
        raise TestFailure(f"the generated config gives warnings:\n{indent_text(tail(srv.output()))}")


def test_bad_http_limits_are_refused_naming_the_key(ctx):
    refused(ctx, {"http_limits": {"body_timeout": "soon"}}, must_mention=["http_limits.body_timeout"])
    refused(ctx, {"http_limits": {"header_timeout": 0}}, must_mention=["http_limits.header_timeout"])
    refused(ctx, {"http_limits": {"max_connections_per_address": -1}},
            must_mention=["http_limits.max_connections_per_address"])
    refused(ctx, {"http_limits": {"upload_min_rate": "0"}}, must_mention=["http_limits.upload_min_rate"])
    refused(ctx, {"http_limits": "fast"}, must_mention=["http_limits"])
