#!/usr/bin/python3
"""Integration tests: the real trestle binary on loopback, driven over HTTP.

    /usr/bin/python3 tests/integration/run.py --binary build/trestle [--filter TEXT] [--verbose] [--keep]
        [--database sqlite|postgres] [--topology single|workers|writers]

Runs every case file in cases/*.json (one server per file) and every test_* function in
scenarios/*.py, prints one PASS/FAIL (or SKIP) line per case, and ends with "N passed, N failed"
(", N skipped" when a scenario could not run on this engine or machine). With --database postgres
(the default when TRESTLE_TEST_PG names a private cluster's socket directory, as
`scripts/postgres.sh run` sets it) every server gets a PostgreSQL database of its own. With
--topology workers (PostgreSQL only) every server is three processes behind nginx, as Synapse
deploys workers: main (it writes every stream), reader1 (also the appservice sender) and reader2,
with deploy/nginx/trestle-workers.conf routing the read endpoints to the readers; the few
scenarios that cannot run so are skipped (WORKERS_SKIPS below says why), and a run of the whole
suite fails if nginx passed no request to one of the processes. With --topology writers (PostgreSQL only) every server is main
and writer1, both event writers (stream_writers: {events: [main, writer1]}: rooms sharded over
them), and reader1 (the reads, the appservice sender) behind the same nginx config, which sends the
room writes that create events round-robin to main and writer1; WORKERS_SKIPS and WRITERS_SKIPS
apply, and the same check of the routing.
The exit status is non-zero if anything failed, a server crashed, or a sanitizer reported.
See README.md next to this file for the case file format.
"""

import argparse
import atexit
import importlib.util
import inspect
import json
import os
import secrets
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import CaseRunner, ScenarioContext, Server, TestFailure, TestSkipped, indent_text  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# With --topology workers: scenarios (by "suite: name" prefix) that test one process's own
# machinery, which nginx or the split into processes takes out of the picture, and why.
WORKERS_SKIPS = {
    # Trestle's own HTTP transport limits: nginx holds the client's connection here, so these would
    # test nginx (its own timeouts and limits apply; Trestle sees only nginx's well-formed requests).
    "http_hardening: a chunk extension flood": "nginx, not Trestle, parses the client's chunked body",
    "http_hardening: a trailer flood": "nginx, not Trestle, parses the client's chunked body",
    "http_hardening: a slow header is cut off": "nginx, not Trestle, reads the client's header",
    "http_hardening: connections per address are capped": "every connection reaches Trestle from nginx",
    "http_hardening: abandoned long polls free their connections": "nginx holds the client's connections; "
                                                                    "it counts main's descriptors, the polls are on readers",
    # One process's own counters and descriptors, while the requests they count go to readers.
    "observability: metrics listener counts what happens": "metrics are per process: the /sync it waits "
                                                           "to see counted is on a reader, the metrics listener on main",
    "observability: access log and redaction": "the access line names the listener's port (a reader's or "
                                               "main's), not the port the client used (nginx's)",
    "resource_exhaustion: out of file descriptors": "it limits main's descriptors; the reads it checks are "
                                                    "served by readers",
    # Per-process resources, which several processes multiply (the lead decides whether they must
    # become deployment-wide): outbound keep-alive pools and the appservice query limit.
    "outbound_tls: https appservice trusted by custom ca reuses one connection":
        "keep-alive pools are per process: the transactions (reader1), the user query (a reader) and the "
        "ping (main) come from up to three processes, one connection each",
    "appservice_resilience: a hung appservice starves nobody":
        "the limit of 4 queries at once per appservice is per process: the profile lookups go to the "
        "readers and the alias lookups to main, so three processes each hold up to 4",
    # The appservice sender is reader1 here (notify_appservices_from_worker): what only the process
    # writing the events can do, or what one sender counts, is another process's.
    "appservice_push: a caught up appservice": "a transaction is built in the events' own commit only by the "
                                               "process that writes them (main); reader1 builds after the commit",
    "appservice_resilience: an unreadable event is skipped": "skip counters are the sending process's memory; "
                                                             "across the test's restart the lease moves",
    # Typing reaches the readers milliseconds after main answered the PUT (LISTEN/NOTIFY): a read
    # at once on a reader may not show it yet (issue 13's note: not read-your-writes for typing).
    "legacy: GET /events streams messages, receipts, typing": "typing set on main reaches a reader's /events "
                                                              "asynchronously; the test reads at once",
}


# With --topology writers, besides WORKERS_SKIPS (nginx in front and reader1 the appservice sender
# hold there too): what cannot hold when two processes write a deployment's events.
WRITERS_SKIPS = {
    # rc_message counts in each process's memory (as Synapse's ratelimiter on each event writer), and
    # nginx hands a user's sends to main and writer1 in turn: each sees half of them.
    "rate_limits: the third message is rate limited": "the message rate limiter is per process; the three "
                                                      "sends are spread over the two event writers",
    "admin_users: ratelimit override lifts rc message": "the message rate limiter is per process; the sends "
                                                        "it expects limited are spread over the two event writers",
}


def workers_skip(name):
    """Why the scenario or case `name` is skipped in this run's topology; None when it runs."""
    skips = {"workers": [WORKERS_SKIPS], "writers": [WORKERS_SKIPS, WRITERS_SKIPS]}.get(harness.TOPOLOGY, [])
    for table in skips:
        for prefix, why in table.items():
            if name.startswith(prefix):
                return f"with {harness.TOPOLOGY} behind nginx: {why}"
    return None


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []  # (name, error): repeated at the end, where a truncated log keeps them

    def skip(self, name, why, seconds):
        self.skipped += 1
        print(f"SKIP {name} ({seconds:.2f}s): {why}", flush=True)

    def record(self, name, error, seconds):
        if error is None:
            self.passed += 1
            print(f"PASS {name} ({seconds:.2f}s)", flush=True)
        else:
            self.failed += 1
            self.failures.append((name, error))
            print(f"FAIL {name} ({seconds:.2f}s)\n{indent_text(error, '    ')}", flush=True)


def wanted(name, filters, exact=None):
    if exact is not None:
        return name in exact
    return not filters or any(f in name for f in filters)


def run_case_file(path, args, shapes, run_id, results):
    suite = os.path.splitext(os.path.basename(path))[0]
    with open(path) as f:
        try:
            data = json.load(f)
        except ValueError as e:
            results.record(f"{suite}: (file)", f"{path} is not valid JSON: {e}", 0)
            return
    cases = data.get("cases", {})
    selected = [(name, steps) for name, steps in cases.items() if wanted(f"{suite}: {name}", args.filter, args.exact)]
    for name, _ in selected:
        if workers_skip(f"{suite}: {name}"):
            results.skip(f"{suite}: {name}", workers_skip(f"{suite}: {name}"), 0)
    selected = [(name, steps) for name, steps in selected if not workers_skip(f"{suite}: {name}")]
    if not selected:
        return
    server = Server(args.binary, suite, config_overrides=dict(data.get("config") or {}), keep_dir=args.keep)
    if data.get("appservices"):  # registration files written beside the config
        paths = []
        for i, reg in enumerate(data["appservices"]):
            paths.append(os.path.join(server.dir, f"appservice-{i}.yaml"))
            with open(paths[-1], "w") as f:
                f.write(harness.to_yaml(reg))
        server.config_overrides["app_service_config_files"] = paths
    try:
        started = time.monotonic()
        try:
            server.start()
            runner = CaseRunner(server, shapes, run_id, verbose=args.verbose)
            setup_vars = runner.base_vars()
            runner.run_steps(data.get("setup", []), setup_vars)
            setup_error = None
        except TestFailure as e:
            setup_error = f"setup failed: {e}"
        for name, steps in selected:
            started = time.monotonic()
            if setup_error:
                results.record(f"{suite}: {name}", setup_error, 0)
                continue
            error = None
            try:
                runner.run_steps(steps, dict(setup_vars))
            except TestFailure as e:
                error = str(e)
            except Exception:  # a bug in the harness or the case file: report it, carry on
                error = traceback.format_exc()
            if error and not server.alive():
                error += "\nthe server is no longer running:\n" + indent_text(harness.tail(server.output()))
            results.record(f"{suite}: {name}", error, time.monotonic() - started)
    finally:
        if server.proc is not None:
            server.stop()
        if server.problems:
            results.record(f"{suite}: server health", "\n".join(server.problems) + f"\n(files in {server.dir})", 0)
        server.cleanup()


def scenario_functions(module):
    funcs = [f for name, f in inspect.getmembers(module, inspect.isfunction)
             if name.startswith("test_") and f.__module__ == module.__name__]
    return sorted(funcs, key=lambda f: f.__code__.co_firstlineno)


def run_scenario_file(path, args, shapes, run_id, results):
    suite = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"scenario_{suite}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception:
        results.record(f"{suite}: (import)", traceback.format_exc(), 0)
        return
    for func in scenario_functions(module):
        name = f"{suite}: {func.__name__[5:].replace('_', ' ')}"
        if not wanted(name, args.filter, args.exact):
            continue
        if workers_skip(name):
            results.skip(name, workers_skip(name), 0)
            continue
        ctx = ScenarioContext(args.binary, shapes, run_id, suite, keep_dirs=args.keep)
        started = time.monotonic()
        error = None
        skipped = None
        try:
            func(ctx)
        except TestSkipped as e:
            skipped = str(e)
        except (TestFailure, AssertionError) as e:
            error = str(e) or traceback.format_exc()
        except Exception:
            error = traceback.format_exc()
        finally:
            problems = ctx.close()
        if problems:
            error = "\n".join(([error] if error else []) + problems)
        if skipped is not None and error is None:
            results.skip(name, skipped, time.monotonic() - started)
        else:
            results.record(name, error, time.monotonic() - started)


def run_all(args, shapes, run_id, results):
    for name in sorted(os.listdir(os.path.join(HERE, "cases"))):
        if name.endswith(".json"):
            run_case_file(os.path.join(HERE, "cases", name), args, shapes, run_id, results)
    for name in sorted(os.listdir(os.path.join(HERE, "scenarios"))):
        if name.endswith(".py") and not name.startswith("_"):
            run_scenario_file(os.path.join(HERE, "scenarios", name), args, shapes, run_id, results)


def kill_leftover_servers():
    for srv in Server.all_started:
        for _, proc in srv.processes():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if srv.nginx is not None:
            srv.nginx.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="path to the trestle binary")
    parser.add_argument("--filter", action="append", default=[],
                        help="only cases whose 'suite: name' contains this text (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="print every request and answer")
    parser.add_argument("--keep", action="store_true",
                        help="keep the servers' temporary directories (and PostgreSQL databases)")
    parser.add_argument("--database", choices=["sqlite", "postgres"],
                        default="postgres" if os.environ.get("TRESTLE_TEST_PG") else "sqlite",
                        help="the servers' database engine; postgres needs TRESTLE_TEST_PG, the socket directory "
                             "of a private cluster (scripts/postgres.sh run ... sets it); default: postgres when "
                             "that is set")
    parser.add_argument("--pg-empty-databases", action="store_true",
                        help="on PostgreSQL, give every server an empty database that its first start fills, "
                             "instead of a copy of a template database the server made once at the run's start")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run each failed case once more at the end; one that passes then is reported as "
                             "FLAKY with its first failure, and does not fail the run (a sanitizer report or a "
                             "server health problem is never retried)")
    parser.add_argument("--topology", choices=["single", "workers", "writers"], default="single",
                        help="single: one trestle process per server; workers (PostgreSQL only): main, reader1 and "
                             "reader2 (the media worker too) behind nginx; writers (PostgreSQL only): main and writer1, the event writers, "
                             "and reader1 behind nginx")
    args = parser.parse_args()
    args.exact = None
    if args.topology != "single" and args.database != "postgres":
        print(f"--topology {args.topology} needs --database postgres (workers refuse SQLite)")
        print("0 passed, 1 failed")
        return 1
    harness.use_topology(args.topology)
    args.binary = os.path.abspath(args.binary)
    if not os.access(args.binary, os.X_OK):
        print(f"not an executable: {args.binary}")
        print("0 passed, 1 failed")
        return 1

    if args.database == "postgres":
        socket_dir = os.environ.get("TRESTLE_TEST_PG")
        if not socket_dir or not os.path.isdir(socket_dir):
            print("--database postgres needs TRESTLE_TEST_PG, the socket directory of a private PostgreSQL: run\n"
                  "  bash scripts/postgres.sh run /usr/bin/python3 tests/integration/run.py --binary build/trestle "
                  "--database postgres")
            print("0 passed, 1 failed")
            return 1
        harness.use_postgres(socket_dir, os.environ.get("TRESTLE_TEST_PG_USER", "postgres"),
                             disposable=os.environ.get("TRESTLE_TEST_PG_DISPOSABLE") == "1",
                             use_template=not args.pg_empty_databases)
        try:
            harness.psql("SELECT 1")
        except TestFailure as e:
            print(f"PostgreSQL at {socket_dir} does not answer: {e}")
            print("0 passed, 1 failed")
            return 1
        print(f"database: PostgreSQL at {socket_dir}" + (
            f", topology {args.topology}: main + " + " + ".join(harness.WORKERS) + " behind nginx, events written by "
            + " and ".join(harness.EVENT_WRITERS) + ", media served by " + " and ".join(harness.MEDIA)
            if args.topology != "single" else ""), flush=True)
        if not args.keep:
            atexit.register(harness.drop_postgres_databases)  # runs after the servers are killed
    atexit.register(kill_leftover_servers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    shapes = harness.load_shapes(os.path.join(HERE, "shapes.json"))
    run_id = secrets.token_hex(3)
    results = Results()
    started = time.monotonic()
    run_all(args, shapes, run_id, results)
    flaky = []
    retryable = [(n, e) for n, e in results.failures
                 if not n.endswith((": server health", ": (import)", ": (file)")) and "Sanitizer" not in e]
    if args.retry_failed and retryable and len(retryable) <= 5:
        print(f"\nRetrying {len(retryable)} failed case(s) once:", flush=True)
        args.exact = {n for n, _ in retryable}
        retry = Results()
        run_all(args, shapes, run_id, retry)
        failed_again = {n for n, _ in retry.failures}
        for name, error in retryable:
            if name not in failed_again and not any(r.startswith(name.split(":")[0] + ": server") for r in failed_again):
                flaky.append((name, error))
        flaky_names = {n for n, _ in flaky}
        results.failures = [(n, e) for n, e in results.failures if n not in flaky_names]
        results.failed -= len(flaky)
        results.passed += len(flaky)
    print(f"(took {time.monotonic() - started:.1f}s)")
    if args.topology != "single":
        routed = ", ".join(f"{who} {n}" for who, n in sorted(harness.ROUTED.items()))
        print(f"nginx routed requests to: {routed or 'nothing'}")
        # Every process serves some of a whole run (a filtered run may touch only some).
        idle = [p for p in ("main",) + harness.WORKERS if not harness.ROUTED.get(p)]
        if results.passed and idle and not args.filter:
            results.record(f"{args.topology} topology: routing", f"nginx passed no request to {', '.join(idle)} "
                           f"(routed: {routed or 'nothing'}): deploy/nginx/trestle-workers.conf routes nothing there", 0)
    if flaky:
        print("\nFLAKY (failed, then passed when run again; fix these):")
        for name, error in flaky:
            print(f"FLAKY {name}\n{indent_text(error, '    ')}")
    if results.failures:
        print("\nFailed:")
        for name, error in results.failures:
            print(f"FAIL {name}\n{indent_text(error, '    ')}")
    print(f"{results.passed} passed, {results.failed} failed" + (f", {results.skipped} skipped" if results.skipped else ""))
    return 1 if results.failed or not results.passed else 0


if __name__ == "__main__":
    sys.exit(main())
