"""The machinery shared by the integration runner, its JSON case files and its Python scenarios.

Standard library only: the suite runs under /usr/bin/python3 with nothing installed.

- Server: one trestle process on 127.0.0.1 with its own temporary directory, config and database
  (an SQLite file, or with --database postgres a PostgreSQL database of its own in the private
  cluster at TRESTLE_TEST_PG); started, stopped, killed and restarted; its output scanned for
  sanitizer reports. Server.sql() reads and writes its database on either engine. With the
  workers topology (--topology workers, PostgreSQL only) a Server is three processes, main and the
  readers reader1 and reader2, behind one nginx (deploy/nginx/trestle-workers.conf); with the
  writers topology (--topology writers) main and writer1, the event writers, and the reader
  reader1. Its port is nginx's, and starting, stopping and killing it act on all of them.
- Client: plain HTTP requests (a fresh connection each), answers parsed as JSON.
- Matcher: compares an answer with an expected JSON subset written with matchers ("$string",
  {"$contains": [...]}, ...); see tests/integration/README.md for the list.
- CaseRunner: runs the steps of a case file against a server, with ${var} substitution, `save`,
  and macros (register, create_room, send, sync, ...).
- ScenarioContext: what a Python scenario gets: servers it may start, kill and restart.
"""

import ctypes
import http.client
import itertools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

SERVER_NAME = "localhost"
CLIENT_PREFIX = "/_matrix/client/v3"
# Requests can be slow under AddressSanitizer (argon2 password hashing above all).
DEFAULT_TIMEOUT_S = 60
STARTUP_TIMEOUT_S = 60
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")

RELAXED_RATE = {"per_second": 1000, "burst_count": 1000}


class TestFailure(Exception):
    """A check that did not hold; the message is what the report shows."""


class TestSkipped(Exception):
    """Raised by a scenario that cannot run here (the message says why): reported as SKIP."""


# ---------------------------------------------------------------------------------------------
# The database engine the servers use: "sqlite" (a file in each server's directory) or "postgres"
# (a database per server in the private cluster whose socket directory is POSTGRES["host"], made
# by scripts/postgres.sh; the runner sets it from --database / TRESTLE_TEST_PG).

DATABASE = "sqlite"
# disposable: the cluster goes when the run ends (scripts/postgres.sh run), so nothing is dropped
# (each DROP DATABASE costs a checkpoint). template: see template_database().
POSTGRES = {"host": None, "user": "postgres", "disposable": False, "use_template": True, "template": None}
_pg_databases = set()  # made and not dropped yet

# The processes behind each server: "single" (one trestle process), "workers" (main, the READERS
# and nginx in front; reader2 is also the media worker, MEDIA, and main serves no media) or
# "writers" (main and writer1, the EVENT_WRITERS, the reader reader1, nginx in front; main serves
# media); the runner sets it from --topology. WORKERS: every process but main. ROUTED counts, over
# the run, the requests nginx passed to each process (by instance name), read from its access log
# when a server stops.
TOPOLOGY = "single"
TOPOLOGIES = {  # topology -> (readers, event writers: stream_writers.events, media: enable_media_repo)
    "single": ((), ("main",), ("main",)),
    "workers": (("reader1", "reader2"), ("main",), ("reader2",)),
    "writers": (("reader1",), ("main", "writer1"), ("main",)),
}
READERS = ("reader1", "reader2")
EVENT_WRITERS = ("main",)
MEDIA = ("main",)
WORKERS = READERS
APPSERVICE_SENDER = "reader1"  # notify_appservices_from_worker: the appservice sender on a reader
ROUTED = {}


def use_postgres(socket_dir, user="postgres", disposable=False, use_template=True):
    global DATABASE
    DATABASE = "postgres"
    POSTGRES.update(host=socket_dir, user=user, disposable=disposable, use_template=use_template)


def use_topology(name):
    global TOPOLOGY, READERS, EVENT_WRITERS, MEDIA, WORKERS
    TOPOLOGY = name
    if name != "single":
        READERS, EVENT_WRITERS, MEDIA = TOPOLOGIES[name]
        WORKERS = tuple(w for w in EVENT_WRITERS if w != "main") + READERS


def _nginx_module():
    """deploy/nginx/trestle_nginx.py: runs nginx with the repository's config (bench/workers.py too)."""
    import sys
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "nginx")
    if path not in sys.path:
        sys.path.insert(0, path)
    import trestle_nginx
    return trestle_nginx


def postgres_database_name(data_dir):
    """A server's database name, from its directory (unique: mkdtemp's random tail is kept)."""
    base = os.path.basename(os.path.dirname(os.path.abspath(data_dir))).lower()
    base = re.sub(r"[^a-z0-9_]", "_", base.removeprefix("trestle-it-"))
    return "it_" + base[-60:]


def psql(sql, database="postgres", rows=False, host=None):
    """Runs SQL with psql in the private cluster (or the one whose socket directory is `host`);
    with rows=True, the output lines."""
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host or POSTGRES["host"], "-U",
           POSTGRES["user"], "-d", database, "-f", "-"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, input=sql + ";\n")
    if done.returncode != 0:
        raise TestFailure(f"psql failed ({done.returncode}) on {shorten(sql)}:\n{done.stderr.strip()}")
    return done.stdout.splitlines() if rows else None


def create_postgres_database(name, template=None):
    if name not in _pg_databases:
        psql(f"DROP DATABASE IF EXISTS {name}")
        psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        _pg_databases.add(name)


def drop_postgres_database(name):
    if not POSTGRES["disposable"]:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _pg_databases.discard(name)


def template_database(binary):
    """A database that the server made at its first start (its schema, nothing else that a
    second start would not write too), made once per run: the servers' databases are copies of it
    (CREATE DATABASE ... TEMPLATE), which spares each server the schema script (~0.7 s of start-up
    on PostgreSQL, ~0.2 s on SQLite's). A scenario that needs an empty database asks for one:
    ctx.server(empty_database=True)."""
    if POSTGRES["template"] is None:
        srv = Server(binary, "template", empty_database=True, workers=False)
        try:
            srv.start()
            srv.stop()
        finally:
            srv.cleanup(keep_database=True)
        if srv.problems:
            raise TestFailure("the template database's server: " + "; ".join(srv.problems))
        POSTGRES["template"] = srv.postgres_database
    return POSTGRES["template"]


def drop_postgres_databases():
    """At the runner's exit: every database a server made and did not drop."""
    for name in sorted(_pg_databases):
        try:
            drop_postgres_database(name)
        except TestFailure as e:
            print(f"could not drop {name}: {e}")


class OwnCluster:
    """A PostgreSQL cluster of one scenario's own, for a scenario that stops and starts it (the
    run's cluster is shared by every server of the run): made and started by scripts/postgres.sh
    in a new directory under /tmp, which is also its socket directory. server() gives a Server
    whose database is in it; close() stops the cluster and removes it."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "postgres.sh")

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="trestle-pgown.", dir="/tmp")  # short: the socket path
        os.chmod(self.dir, 0o755)  # the cluster's owner (nobody, as root) must reach it
        self.start()

    def _script(self, *args):
        done = subprocess.run(["bash", self.SCRIPT, *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise TestFailure(f"postgres.sh {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self):
        self._script("start", self.dir)

    def stop(self, mode="fast"):
        """pg_ctl stop -m MODE: fast (sessions ended, a shutdown checkpoint) or immediate (a crash)."""
        self._script("stop", self.dir, mode)

    def psql(self, sql, database="postgres", rows=False):
        return psql(sql, database, rows, host=self.dir)

    def server(self, ctx, config=None, database="trestle"):
        """A server of the scenario (not started) on an empty database `database` of this cluster."""
        self.psql(f"CREATE DATABASE {database}")
        section = {"database": {"name": "psycopg2", "args": {"user": POSTGRES["user"], "host": self.dir,
                                                             "database": database}}}
        srv = ctx.server(config=merge_config(config or {}, section), start=False)
        srv.prepare_database = lambda: None  # its database is here, not in the run's cluster
        return srv

    def close(self):
        try:
            self._script("stop", self.dir, "immediate")
        finally:
            subprocess.run(["rm", "-rf", self.dir], check=False)


def sql_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"  # standard_conforming_strings: \ is literal


def bind_literals(sql, params):
    """sqlite3's `?` placeholders (outside quotes) replaced by the params as SQL literals."""
    out, quoted, it = [], False, iter(params)
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        out.append(sql_literal(next(it)) if ch == "?" and not quoted else ch)
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Configuration


def database_config(data_dir):
    """The `database:` section for a server whose files are in data_dir, on the runner's engine."""
    if DATABASE == "postgres":
        return {"name": "psycopg2", "args": {"user": POSTGRES["user"], "host": POSTGRES["host"],
                                             "database": postgres_database_name(data_dir)}}
    return {"name": "sqlite3", "args": {"database": os.path.join(data_dir, "homeserver.db")}}


def default_config(data_dir, port):
    config = {
        "server_name": SERVER_NAME,
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                       "resources": [{"names": ["client"]}]}],
        "database": database_config(data_dir),
        "signing_key_path": os.path.join(data_dir, SERVER_NAME + ".signing.key"),
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "rc_message": dict(RELAXED_RATE),
        "rc_registration": dict(RELAXED_RATE),
        "rc_login": {"address": dict(RELAXED_RATE)},
        "log_level": "info",
    }
    if DATABASE == "postgres":  # media where SQLite's default puts them: beside the database file
        config["media_store_path"] = os.path.join(data_dir, "media")
    return config


def merge_config(base, overrides):
    """Deep-merges `overrides` into a copy of `base`; a None value removes the key."""
    out = dict(base)
    for key, value in (overrides or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def to_yaml(value, indent=0):
    """Block-style YAML for dicts, lists and scalars (scalars as JSON, which YAML reads too)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = ""
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{pad}{k}:\n" + to_yaml(v, indent + 1)
            else:
                out += f"{pad}{k}: {json.dumps(v)}\n"
        return out
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = ""
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = to_yaml(item, indent + 1)
                out += f"{pad}- " + nested[len(pad) + 2:]
            else:
                out += f"{pad}- {json.dumps(item)}\n"
        return out
    return pad + json.dumps(value) + "\n"


# ---------------------------------------------------------------------------------------------
# Server process


def _die_with_parent():
    """Runs in the child before exec: the kernel kills it if the runner dies (ctest timeout)."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n different free ports: each socket stays bound until all are picked (the kernel may hand
    out a port again once its probe socket is closed)."""
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            socks[-1].bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_SANITIZED = {}


def _is_sanitized(binary):
    """Whether the binary was built with AddressSanitizer (its symbol table names __asan_init)."""
    if binary not in _SANITIZED:
        try:
            with open(binary, "rb") as f:
                _SANITIZED[binary] = b"__asan_init" in f.read()
        except OSError:
            _SANITIZED[binary] = False
    return _SANITIZED[binary]


class Server:
    """A trestle process with its own directory. start() again after stop()/kill() reuses the
    same database and signing key (on a new port).

    With the workers or writers topology (and a PostgreSQL database) the Server is main plus the
    WORKERS, each `trestle -c homeserver.yaml -c <worker>.yaml`, and an nginx in front: `port` and
    `base_url` are nginx's, `proc` is main's; stop(), kill(), alive(), output() and the sanitizer
    checks cover every process, and a restart starts them all again (on new ports). Every process
    has a second listener with the `replication` resource, which instance_map names."""

    all_started = []  # every Server created, so the runner can kill leftovers at exit

    def __init__(self, binary, name, config_overrides=None, keep_dir=False, raw_config=None, empty_database=False,
                 workers=None):
        self.binary = binary
        self.empty_database = empty_database  # on PostgreSQL: not a copy of the template
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"trestle-it-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}-")
        self.data_dir = os.path.join(self.dir, "data")
        self.config_overrides = config_overrides or {}
        self.raw_config = raw_config
        self.keep_dir = keep_dir
        self.proc = None
        self.port = None
        self.runs = 0
        self.problems = []  # crashes, sanitizer reports, unexpected exit codes
        # The workers topology: wanted (the runner's topology unless told), and whether the
        # current run has it (not on SQLite, where workers refuse to start).
        self.workers_wanted = TOPOLOGY != "single" if workers is None else workers
        self.multi = False
        self.main_port = None
        self.worker_ports = {}  # worker name -> port of its client listener
        self.replication_ports = {}  # process name (main too) -> port of its replication listener
        self.workers = {}  # worker name -> Popen
        self.nginx = None
        self.nginx_port = None
        self.replication_secret = secrets.token_hex(16)  # worker_replication_secret, kept across restarts
        Server.all_started.append(self)

    @property
    def config_path(self):
        return os.path.join(self.dir, "homeserver.yaml")

    def worker_config_path(self, reader):
        return os.path.join(self.dir, f"{reader}.yaml")

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def log_paths(self, run=None, process="main"):
        run = self.runs if run is None else run
        prefix = "" if process == "main" else process + "."
        return (os.path.join(self.dir, f"{prefix}stdout.{run}.log"), os.path.join(self.dir, f"{prefix}stderr.{run}.log"))

    def config(self, port):
        base = default_config(self.data_dir, port)
        database = self.config_overrides.get("database")
        if isinstance(database, dict) and database.get("name", base["database"]["name"]) != base["database"]["name"]:
            base.pop("database")  # another engine than the runner's: its own section, not merged
        return merge_config(base, self.config_overrides)

    def shared_worker_config(self, port):
        """What the workers and writers topologies add to homeserver.yaml: every process in
        instance_map at its replication listener (main's client listener when a raw config's
        listeners could not be given one), the appservice sender on a reader, the event writers,
        the media workers (main then serves no media), the replication secret (a scenario's own
        values for these keys win)."""
        instances = {name: {"host": "127.0.0.1", "port": self.replication_ports.get(name, port)}
                     for name in ("main",) + WORKERS}
        shared = {"instance_map": instances, "notify_appservices_from_worker": APPSERVICE_SENDER,
                  "worker_replication_secret": self.replication_secret}
        if EVENT_WRITERS != ("main",):
            shared["stream_writers"] = {"events": list(EVENT_WRITERS)}
        if "main" not in MEDIA:
            shared["enable_media_repo"] = False
            shared["media_instance_running_background_jobs"] = MEDIA[0]
        return shared

    @staticmethod
    def replication_listener(port):
        return {"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "resources": [{"names": ["replication"]}]}

    def wants_workers(self):
        """The workers topology for this server's next start: asked for, on PostgreSQL (a scenario
        may give a server an SQLite database of its own), and not a server whose scenario builds
        its own deployment (its config names an instance_map: it runs main alone, as asked)."""
        if not self.workers_wanted:
            return False
        if self.raw_config is not None:  # (a generated config names psycopg2 in a comment)
            return (re.search(r"^\s+name:\s*[\"']?psycopg2", self.raw_config, re.M) is not None
                    and not re.search(r"^instance_map:", self.raw_config, re.M))
        return self.config(0)["database"].get("name") == "psycopg2" and "instance_map" not in self.config_overrides

    @property
    def postgres_database(self):
        """This server's PostgreSQL database name (when the runner uses PostgreSQL)."""
        return postgres_database_name(self.data_dir) if DATABASE == "postgres" else None

    def prepare_database(self):
        """On PostgreSQL: this server's own database, made once (restarts reuse it): a copy of the
        run's template, or empty."""
        if DATABASE == "postgres" and self.postgres_database not in _pg_databases:
            use_template = POSTGRES["use_template"] and not self.empty_database
            create_postgres_database(self.postgres_database, template_database(self.binary) if use_template else None)

    def sql(self, query, *params):
        """Runs one SQL statement on this server's database, sqlite3-style (`?` placeholders):
        a SELECT answers its rows as tuples (integers as int, text as str, NULL as None), other
        statements are committed and answer []. For checks and for planting what an older binary
        or a broken disk left; the SQL must be valid on both engines."""
        is_select = query.lstrip().upper().startswith(("SELECT", "WITH"))
        if DATABASE == "postgres":
            bound = bind_literals(query, params)
            if not is_select:
                psql(bound, self.postgres_database)
                return []
            lines = psql(f"SELECT row_to_json(t) FROM ({bound}) AS t", self.postgres_database, rows=True)
            return [tuple(json.loads(line).values()) for line in lines if line]
        import sqlite3
        db = sqlite3.connect(os.path.join(self.data_dir, "homeserver.db"))
        try:
            found = db.execute(query, params).fetchall()
            db.commit()
            return found
        finally:
            db.close()

    def write_config(self, port, workers=False):
        """The runner's config with this server's overrides, or the raw text given (its "${port}"
        replaced by the port); workers=True adds the shared worker keys (instance_map, ...), main's
        replication listener and the workers' configs."""
        if self.raw_config is not None:
            text = self.raw_config
            if workers:  # the public URL is where clients reach the server: nginx
                text = re.sub(r"^(public_baseurl:.*)\$\{port\}", rf"\g<1>{self.nginx_port}", text, flags=re.M)
                # The replication listener goes first in a block list of listeners; none otherwise.
                item = re.search(r"^listeners:[ \t]*\n(?:[ \t]*#.*\n)*([ \t]*)- ", text, re.M)
                if item:
                    pad = item.group(1)
                    text = (text[:item.start(1)] + f"{pad}- port: {self.replication_ports['main']}\n"
                            f"{pad}  bind_addresses: [\"127.0.0.1\"]\n{pad}  type: http\n"
                            f"{pad}  resources: [{{names: [replication]}}]\n" + text[item.start(1):])
                else:
                    self.replication_ports.pop("main", None)
            text = text.replace("${port}", str(port))
            extra = self.shared_worker_config(port) if workers else {}
            missing = {k: v for k, v in extra.items() if not re.search(rf"^{k}:", text, re.M)}
            text += "\n" + to_yaml(missing) if missing else ""
        else:
            config = merge_config(self.shared_worker_config(port) if workers else {}, self.config(port))
            if workers:
                # Behind nginx: the client listeners read the client's address from X-Forwarded-For.
                config["listeners"] = [dict(lst, x_forwarded=True) for lst in config["listeners"]] + [
                    self.replication_listener(self.replication_ports["main"])]
            text = to_yaml(config)
        with open(self.config_path, "w") as f:
            f.write(text)
        for worker, worker_port in (self.worker_ports.items() if workers else ()):
            own = {"worker_app": "synapse.app.generic_worker",
                   "worker_name": worker,
                   "worker_listeners": [{"port": worker_port, "bind_addresses": ["127.0.0.1"], "type": "http",
                                         "x_forwarded": True,
                                         "resources": [{"names": ["client", "media"] if worker in MEDIA else ["client"]}]},
                                        self.replication_listener(self.replication_ports[worker])]}
            if worker in MEDIA:
                own["enable_media_repo"] = True  # Synapse's media worker: on here, off in the shared file
            with open(self.worker_config_path(worker), "w") as f:
                f.write(to_yaml(own))

    def _popen(self, args, process="main", append=False):
        out_path, err_path = self.log_paths(process=process)
        mode = "ab" if append else "wb"
        with open(out_path, mode) as out, open(err_path, mode) as err:
            return subprocess.Popen([self.binary] + args, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    cwd=self.dir, preexec_fn=_die_with_parent)

    def spawn(self, config_path=None):
        """Starts the binary (main) on the config without waiting; returns the Popen."""
        self.runs += 1
        self.proc = self._popen(["--config", config_path or self.config_path])
        return self.proc

    def make_admin(self, user_id, admin=True):
        """Gives a user the server-admin flag with `trestle set-admin` (safe while serving)."""
        args = [self.binary, "--config", self.config_path, "set-admin", user_id] + ([] if admin else ["--revoke"])
        done = subprocess.run(args, capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S)
        if done.returncode != 0:
            raise TestFailure(f"set-admin {user_id} failed ({done.returncode}): {done.stderr.strip()}")

    @staticmethod
    def _wait_listening(proc, port, deadline):
        """True once the port accepts; False when the process exited first or the deadline passed."""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        self.prepare_database()
        self.multi = self.wants_workers()
        for attempt in range(3):
            # main's client port, then (with workers) each worker's, each process's replication
            # port and nginx's: all different.
            ports = free_ports(2 + 2 * len(WORKERS) + 1 if self.multi else 1)
            port = ports.pop(0)
            self.worker_ports = {w: ports.pop(0) for w in WORKERS} if self.multi else {}
            self.replication_ports = {w: ports.pop(0) for w in ("main",) + WORKERS} if self.multi else {}
            self.nginx_port = ports.pop(0) if self.multi else None
            self.write_config(port, workers=self.multi)
            self.spawn()
            self.port = self.main_port = port
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            listening = self._wait_listening(self.proc, port, deadline)
            failed = None if listening else ("main", self.proc)
            if listening and self.multi:
                self.workers = {w: self._popen(["-c", self.config_path, "-c", self.worker_config_path(w)], process=w)
                                for w in WORKERS}
                for worker, proc in self.workers.items():
                    if not self._wait_listening(proc, self.worker_ports[worker], deadline):
                        failed = (worker, proc)
                        break
                if failed is None:
                    self._start_nginx()
                    return self
            elif listening:
                return self
            name, proc = failed
            if proc.poll() is None:
                self.kill()
                raise TestFailure(f"server {self.name} ({name}) did not accept connections within {STARTUP_TIMEOUT_S}s")
            err = self.output()
            self.kill()
            if "cannot listen" in err and attempt < 2:
                continue  # someone took the free port between our probe and the bind: try another
            raise TestFailure(f"server {self.name} ({name}) exited at start-up with status {proc.returncode}:\n"
                              + indent_text(tail(err)))

    def _start_nginx(self):
        ngx = _nginx_module()
        config = self.config(self.main_port) if self.raw_config is None else {}
        sizes = [parse_size(config.get(k)) for k in ("max_upload_size", "max_request_body_size")]
        max_body = max([50 * 1024 * 1024] + [s for s in sizes if s]) + 1024 * 1024  # Trestle answers the excess
        address = {name: f"127.0.0.1:{p}" for name, p in self.worker_ports.items()}
        address["main"] = f"127.0.0.1:{self.main_port}"
        self.nginx = ngx.Nginx(address["main"], [address[r] for r in READERS],
                               port=self.nginx_port, max_body=str(max_body),
                               appservice_sender=address[APPSERVICE_SENDER],
                               event_writers=[address[w] for w in EVENT_WRITERS],
                               media=[address[w] for w in MEDIA],
                               prefix="trestle-it-nginx-")
        try:
            self.nginx.start()
        except ngx.NginxError as e:
            self.kill()
            raise TestFailure(f"server {self.name}: {e}") from None
        self.port = self.nginx.port

    def _stop_nginx(self):
        """Stops nginx, counting what it routed where into ROUTED; its directory goes too."""
        if self.nginx is None:
            return
        self.nginx.stop()
        names = self.process_names()
        for addr, count in self.nginx.routed().items():
            who = names.get(addr, "none (no upstream answered)")
            ROUTED[who] = ROUTED.get(who, 0) + count
        if self.keep_dir:
            print(f"(nginx of {self.name} kept in {self.nginx.dir})")
        else:
            self.nginx.cleanup()
        self.nginx = None

    def process_names(self):
        """Upstream address -> process name (main, reader1, ...)."""
        names = {f"127.0.0.1:{p}": w for w, p in self.worker_ports.items()}
        names[f"127.0.0.1:{self.main_port}"] = "main"
        return names

    def routes(self):
        """With workers: (method, path, status, process) of each request nginx answered so far."""
        names = self.process_names()
        return [(m, p, st, names.get(a, a)) for m, p, st, a in (self.nginx.requests() if self.nginx else [])]

    def kill_process(self, name):
        """With workers: SIGKILL of one process, "main" or a worker; nginx and the others stay.
        start_process(name) starts it again on the same port, or start() the whole server."""
        proc = self.proc if name == "main" else self.workers.pop(name)
        proc.kill()
        proc.wait()
        if name == "main":
            self.proc = None

    def start_process(self, name):
        """Starts again one process that kill_process() ended, on its port, its output appended
        to this run's log; waits until it listens."""
        if name == "main":
            self.proc = self._popen(["--config", self.config_path], append=True)
            proc, port = self.proc, self.main_port
        else:
            proc = self.workers[name] = self._popen(["-c", self.config_path, "-c", self.worker_config_path(name)],
                                                    process=name, append=True)
            port = self.worker_ports[name]
        if not self._wait_listening(proc, port, time.monotonic() + STARTUP_TIMEOUT_S):
            raise TestFailure(f"{name} did not start again: exit status {proc.poll()}\n" + indent_text(tail(self.output())))

    def media_process(self):
        """The Popen of the process that serves media: MEDIA's first with workers, else main."""
        return self.workers[MEDIA[0]] if self.multi and MEDIA[0] != "main" else self.proc

    def processes(self):
        """(name, Popen) of every trestle process of this server that was started, main first."""
        return ([("main", self.proc)] if self.proc is not None else []) + list(self.workers.items())

    def output(self, run=None):
        """The current run's output (stdout, stderr) of main, then of each worker."""
        text = ""
        for process in ["main"] + list(WORKERS if self.multi else ()):
            for path in self.log_paths(run, process):
                try:
                    with open(path, "rb") as f:
                        text += f.read().decode("utf-8", "replace")
                except FileNotFoundError:
                    pass
        return text

    def check_output(self):
        """Records a sanitizer report in the current run's output as a problem."""
        text = self.output()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                at = text.index(marker)
                self.problems.append(f"sanitizer report ({marker}) in run {self.runs}:\n"
                                     + indent_text(text[max(0, at - 200):at + 3000]))
                return

    def alive(self):
        return self.proc is not None and all(p.poll() is None for _, p in self.processes())

    def stop(self, timeout=30):
        """SIGTERM and wait (nginx, then the workers, then main); a crash before the stop or an
        unclean exit is recorded as a problem. Returns main's exit status."""
        if self.proc is None and not self.workers:
            return None
        self._stop_nginx()
        procs = list(reversed(self.processes()))  # all at once; the workers are waited for first
        for name, proc in procs:
            label = "server" if name == "main" else f"worker {name}"
            if proc.poll() is not None:
                self.problems.append(f"{label} exited by itself with status {proc.returncode} (crash?)")
            else:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs:
            label = "server" if name == "main" else f"worker {name}"
            if proc.returncode is not None:
                continue
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.problems.append(f"{label} did not stop within {timeout}s of SIGTERM")
            if proc.returncode != 0:
                self.problems.append(f"{label} exited with status {proc.returncode} after SIGTERM")
        self.check_output()
        code = self.proc.returncode if self.proc is not None else None
        self.proc = None
        self.workers = {}
        return code

    def run_to_exit(self, timeout=STARTUP_TIMEOUT_S, config_path=None):
        """Runs the binary (one process) until it exits by itself (a config it must refuse);
        returns (exit status, output). Without `config_path` the config is written as for start()."""
        os.makedirs(self.data_dir, exist_ok=True)
        self.prepare_database()
        self.multi = False
        if config_path is None:
            self.write_config(free_port())
        proc = self.spawn(config_path)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.proc = None
            raise TestFailure(f"server did not exit within {timeout}s; output:\n" + indent_text(tail(self.output())))
        self.proc = None
        self.check_output()
        return proc.returncode, self.output()

    def kill(self):
        """SIGKILL of every process, as a crash would: nothing gets to flush."""
        if self.proc is None and not self.workers:
            return
        self._stop_nginx()
        for _, proc in self.processes():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.check_output()
        self.proc = None
        self.workers = {}

    def cleanup(self, keep_database=False):
        for _, proc in self.processes():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._stop_nginx()
        self.proc = None
        self.workers = {}
        if not self.keep_dir and not self.problems:
            subprocess.run(["rm", "-rf", self.dir], check=False)
            if self.postgres_database in _pg_databases and not keep_database:
                drop_postgres_database(self.postgres_database)

    def client(self):
        return Client(self.base_url)


def parse_size(value):
    """A Synapse size ("50M", "1K", 1024) in bytes; None when absent or unreadable."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)B?\s*", str(value or ""), re.I)
    if not m:
        return None
    return int(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_")


# ---------------------------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body
        self.elapsed = elapsed
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def describe(self):
        text = json.dumps(self.json, sort_keys=True) if self.json is not None else self.body.decode("utf-8", "replace")
        return f"HTTP {self.status} {shorten(text)}"


def client_path(path):
    """Paths that do not start with "/_" (/_matrix, /_trestle, ...) or "/.well-known" are
    Client-Server v3 paths."""
    if path.startswith("/_") or path.startswith("/.well-known"):
        return path
    return CLIENT_PREFIX + path


class Client:
    def __init__(self, base_url):
        parsed = urllib.parse.urlsplit(base_url)
        self.host = parsed.hostname
        self.port = parsed.port

    def request(self, method, path, token=None, body=None, raw=None, query=None, headers=None,
                timeout=DEFAULT_TIMEOUT_S):
        target = client_path(path)
        if query:
            pairs = []
            for k, v in query.items():
                if isinstance(v, (dict, list)):
                    v = json.dumps(v)
                elif isinstance(v, bool):
                    v = "true" if v else "false"
                pairs.append((k, str(v)))
            target += ("&" if "?" in target else "?") + urllib.parse.urlencode(pairs)
        send_headers = {}
        data = None
        if raw is not None:
            data = raw.encode() if isinstance(raw, str) else raw
        elif body is not None:
            data = json.dumps(body).encode()
            send_headers["Content-Type"] = "application/json"
        if token is not None:
            send_headers["Authorization"] = f"Bearer {token}"
        send_headers.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        start = time.monotonic()
        try:
            conn.request(method, target, body=data, headers=send_headers)
            res = conn.getresponse()
            payload = res.read()
            return Response(res.status, {k.lower(): v for k, v in res.getheaders()}, payload,
                            time.monotonic() - start)
        except (OSError, http.client.HTTPException) as e:
            raise TestFailure(f"{method} {target}: no answer ({type(e).__name__}: {e})") from None
        finally:
            conn.close()


# ---------------------------------------------------------------------------------------------
# Matching


def load_shapes(path):
    with open(path) as f:
        shapes = json.load(f)
    return {k: v for k, v in shapes.items() if not k.startswith("//")}


_SIMPLE_MATCHERS = {
    "$any": lambda v: True,
    "$string": lambda v: isinstance(v, str),
    "$nonempty": lambda v: isinstance(v, str) and v != "",
    "$int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "$number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "$bool": lambda v: isinstance(v, bool),
    "$object": lambda v: isinstance(v, dict),
    "$array": lambda v: isinstance(v, list),
    "$null": lambda v: v is None,
}
_MATCHER_NAME = re.compile(r"^\$[a-z_]+(:.*)?$", re.S)
_VAR = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")
_OPERATOR = re.compile(r"^\$[a-z_]+$")
ABSENT = object()


def type_name(v):
    if v is ABSENT:
        return "absent"
    return {dict: "object", list: "array", str: "string", bool: "bool", int: "int", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)


def shorten(text, limit=600):
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def show(v):
    return "<absent>" if v is ABSENT else shorten(json.dumps(v, sort_keys=True), 300)


def is_operator_dict(v):
    return isinstance(v, dict) and bool(v) and all(_OPERATOR.match(k) for k in v)


class Matcher:
    """Compares actual JSON with an expectation; `vars` fills ${name}; `shapes` names reusable
    expectations ("$shape:client_event")."""

    def __init__(self, vars, shapes):
        self.vars = vars
        self.shapes = shapes

    def match(self, expected, actual, where="body"):
        errors = []
        self._match(expected, actual, where, errors)
        return errors

    def _match(self, exp, act, where, errors):
        if isinstance(exp, str) and _MATCHER_NAME.match(exp):
            self._match_named(exp, act, where, errors)
        elif isinstance(exp, str):
            want = substitute(exp, self.vars)
            if act != want:
                errors.append(f"{where}: expected {show(want)}, got {show(act)}")
        elif is_operator_dict(exp):
            self._match_operators(exp, act, where, errors)
        elif isinstance(exp, dict):
            if not isinstance(act, dict):
                errors.append(f"{where}: expected an object, got {type_name(act)} {show(act)}")
                return
            operators = {k: v for k, v in exp.items() if _OPERATOR.match(k)}
            if operators:  # {"$keys": [...], "name": ...}: checks on the object itself, then its keys
                self._match_operators(operators, act, where, errors)
            for key, sub in exp.items():
                if key in operators:
                    continue
                key = substitute(key, self.vars)
                optional = key.endswith("?")  # "key?": may be absent, must match when present
                key = key.rstrip("?")
                if key in act:
                    self._match(sub, act[key], f"{where}.{key}", errors)
                elif optional:
                    continue
                elif (isinstance(sub, str) and _MATCHER_NAME.match(sub)) or is_operator_dict(sub):
                    self._match(sub, ABSENT, f"{where}.{key}", errors)  # "$absent", {"$one_of": [...]}
                else:
                    errors.append(f"{where}.{key}: missing (expected {show(sub)})")
        elif isinstance(exp, list):
            if not isinstance(act, list):
                errors.append(f"{where}: expected an array, got {type_name(act)} {show(act)}")
                return
            if len(exp) != len(act):
                errors.append(f"{where}: expected {len(exp)} items, got {len(act)}: {show(act)}")
                return
            for i, (e, a) in enumerate(zip(exp, act)):
                self._match(e, a, f"{where}[{i}]", errors)
        else:
            want = substitute(exp, self.vars)
            if act != want or type_name(act) != type_name(want):
                errors.append(f"{where}: expected {show(want)}, got {show(act)}")

    def _match_named(self, name, act, where, errors):
        if name in _SIMPLE_MATCHERS:
            if act is ABSENT or not _SIMPLE_MATCHERS[name](act):
                errors.append(f"{where}: expected {name[1:]}, got {type_name(act)} {show(act)}")
        elif name == "$absent":
            if act is not ABSENT:
                errors.append(f"{where}: expected absent, got {show(act)}")
        elif name.startswith("$re:"):
            pattern = _VAR.sub(lambda m: re.escape(str(lookup_var(self.vars, m.group(1)))), name[4:])
            if not isinstance(act, str) or not re.fullmatch(pattern, act, re.S):
                errors.append(f"{where}: expected a string matching /{pattern}/, got {show(act)}")
        elif name.startswith("$shape:"):
            shape = name[7:]
            if shape not in self.shapes:
                raise TestFailure(f"unknown shape '{shape}' (shapes.json)")
            self._match(self.shapes[shape], act, where, errors)
        else:
            raise TestFailure(f"unknown matcher '{name}'")

    def _match_operators(self, ops, act, where, errors):
        for op, arg in ops.items():
            if op == "$contains":
                if not isinstance(act, list):
                    errors.append(f"{where}: expected an array containing items, got {type_name(act)}")
                    continue
                for item in arg:
                    if not any(not self.match(item, a, where) for a in act):
                        errors.append(f"{where}: no item matches {show(item)}; items: {show(act)}")
            elif op == "$not_contains":
                if not isinstance(act, list):
                    errors.append(f"{where}: expected an array, got {type_name(act)}")
                    continue
                for item in arg:
                    hits = [a for a in act if not self.match(item, a, where)]
                    if hits:
                        errors.append(f"{where}: expected no item matching {show(item)}, found {show(hits[0])}")
            elif op == "$starts_with":
                if not isinstance(act, list) or len(act) < len(arg):
                    errors.append(f"{where}: expected an array starting with {len(arg)} given items, got {show(act)}")
                    continue
                for i, item in enumerate(arg):
                    self._match(item, act[i], f"{where}[{i}]", errors)
            elif op == "$each":
                if not isinstance(act, list):
                    errors.append(f"{where}: expected an array, got {type_name(act)}")
                    continue
                for i, a in enumerate(act):
                    self._match(arg, a, f"{where}[{i}]", errors)
            elif op == "$values":
                if not isinstance(act, dict):
                    errors.append(f"{where}: expected an object, got {type_name(act)}")
                    continue
                for k, a in act.items():
                    self._match(arg, a, f"{where}.{k}", errors)
            elif op == "$keys":
                want = sorted(substitute(k, self.vars) for k in arg)
                if not isinstance(act, dict) or sorted(act) != want:
                    errors.append(f"{where}: expected exactly the keys {want}, got "
                                  f"{sorted(act) if isinstance(act, dict) else type_name(act)}")
            elif op in ("$len", "$min_len"):
                if not isinstance(act, (list, dict, str)):
                    errors.append(f"{where}: expected something with a length, got {type_name(act)}")
                elif (op == "$len" and len(act) != arg) or (op == "$min_len" and len(act) < arg):
                    errors.append(f"{where}: expected {'length' if op == '$len' else 'length at least'} {arg}, "
                                  f"got {len(act)}: {show(act)}")
            elif op in ("$ge", "$le", "$gt", "$lt"):
                bound = substitute(arg, self.vars)
                ok = isinstance(act, (int, float)) and not isinstance(act, bool) and {
                    "$ge": lambda: act >= bound, "$le": lambda: act <= bound,
                    "$gt": lambda: act > bound, "$lt": lambda: act < bound}[op]()
                if not ok:
                    errors.append(f"{where}: expected {op[1:]} {bound}, got {show(act)}")
            elif op == "$eq":
                want = substitute(arg, self.vars)
                if act != want:
                    errors.append(f"{where}: expected exactly {show(want)}, got {show(act)}")
            elif op == "$ne":
                want = substitute(arg, self.vars)
                if act == want:
                    errors.append(f"{where}: expected anything but {show(want)}")
            elif op == "$one_of":
                if all(self.match(option, act, where) for option in arg):
                    errors.append(f"{where}: matches none of {show(arg)}, got {show(act)}")
            elif op == "$not":
                if not self.match(arg, act, where):
                    errors.append(f"{where}: expected not to match {show(arg)}, got {show(act)}")
            elif op == "$all":
                for option in arg:
                    self._match(option, act, where, errors)
            else:
                raise TestFailure(f"unknown matcher operator '{op}'")


# ---------------------------------------------------------------------------------------------
# Variables


_unique = itertools.count(1)


def lookup_var(vars, name):
    if name == "uniq":
        return f"u{next(_unique)}"
    if name not in vars:
        raise TestFailure(f"variable ${{{name}}} is not set (known: {', '.join(sorted(vars))})")
    return vars[name]


def substitute(value, vars, encode=None):
    """Fills ${name} in strings, recursively through lists and objects. A string that is exactly
    "${name}" takes the variable's own JSON type. `encode` transforms each inserted text (paths
    percent-encode what they insert)."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole and encode is None:
            return lookup_var(vars, whole.group(1))
        def fill(m):
            v = lookup_var(vars, m.group(1))
            text = v if isinstance(v, str) else json.dumps(v)
            return encode(text) if encode else text
        return _VAR.sub(fill, value)
    if isinstance(value, list):
        return [substitute(v, vars, encode) for v in value]
    if isinstance(value, dict):
        return {substitute(k, vars, encode): substitute(v, vars, encode) for k, v in value.items()}
    return value


def encode_path_part(text):
    # Keeps the characters Matrix identifiers use that are legal in a path segment (! $ : @ +);
    # '#' (aliases), '/', '?' and '%' must be escaped.
    return urllib.parse.quote(text, safe="!$:@+=,;&'()*~")


def dig(value, path, vars):
    """Follows a dotted path ("rooms.join.${room}.timeline.events.-1.event_id") or a JSON pointer
    ("/capabilities/m.room_versions/default") into `value`."""
    path = substitute(path, vars)
    if path.startswith("/"):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    else:
        parts = path.split(".") if path else []
    cur = value
    for part in parts:
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                raise TestFailure(f"cannot follow '{path}': no item {part} in {show(cur)}") from None
        elif isinstance(cur, dict):
            if part not in cur:
                raise TestFailure(f"cannot follow '{path}': no key '{part}' in {show(cur)}")
            cur = cur[part]
        else:
            raise TestFailure(f"cannot follow '{path}': {show(cur)} has no '{part}'")
    return cur


def indent_text(text, prefix="      "):
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def tail(text, lines=40):
    return "\n".join(text.rstrip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Case steps


HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")
MACROS = ("register", "login", "create_room", "join", "invite", "send", "sync", "sleep_ms")
STEP_KEYS = set(HTTP_METHODS) | set(MACROS) | {
    "name", "method", "path", "as", "token", "query", "body", "raw", "headers", "status", "errcode",
    "expect", "expect_headers", "save", "password", "user", "type", "txn", "save_as", "max_ms", "min_ms",
    "timeout_s", "hmac_sha1", "key", "parts", "admin", "eventually_ms"}


class StepError(TestFailure):
    pass


class CaseRunner:
    """Runs case steps against one server. `vars` persists across the steps of a case."""

    def __init__(self, server, shapes, run_id, verbose=False):
        self.server = server
        self.client = server.client()
        self.shapes = shapes
        self.run_id = run_id
        self.verbose = verbose

    def base_vars(self):
        return {"server": SERVER_NAME, "run": self.run_id}

    def run_steps(self, steps, vars):
        for index, step in enumerate(steps, 1):
            unknown = set(step) - STEP_KEYS
            if unknown:
                raise StepError(f"step {index}: unknown keys {sorted(unknown)}")
            try:
                self.run_step(step, vars)
            except TestFailure as e:
                label = step.get("name") or describe_step(step)
                raise StepError(f"step {index} ({label}):\n{indent_text(str(e), '    ')}") from None

    def token_for(self, req, vars):
        if "token" in req:
            return substitute(req["token"], vars)
        if "as" in req:
            return lookup_var(vars, substitute(req["as"], vars) + "_token")
        return None

    def run_step(self, step, vars):
        if "sleep_ms" in step:
            time.sleep(step["sleep_ms"] / 1000)
            return
        if "hmac_sha1" in step:
            # Saves the hex HMAC-SHA1 keyed by `key` over `parts` joined by NULs (the mac of
            # shared-secret registration).
            import hashlib, hmac
            message = b"\x00".join(str(substitute(p, vars)).encode() for p in step["parts"])
            vars[step["hmac_sha1"]] = hmac.new(substitute(step["key"], vars).encode(), message,
                                               hashlib.sha1).hexdigest()
            return
        req = self.expand(step, vars)
        path = substitute(req["path"].replace("#", "%23"), vars, encode=encode_path_part)
        query = substitute(req.get("query"), vars) if req.get("query") else None
        body = substitute(req["body"], vars) if "body" in req else None
        raw = substitute(req["raw"], vars) if "raw" in req else None
        headers = substitute(req.get("headers"), vars) if req.get("headers") else None
        # eventually_ms: the read may lag the write it checks by design (typing and presence are
        # the main process's memory, reaching the readers over NOTIFY a few ms after main answered;
        # not read-your-writes, as in Synapse): asked again every 50 ms until it matches or the
        # time is up, as a client sees it on its next poll.
        deadline = time.monotonic() + step.get("eventually_ms", 0) / 1000
        while True:
            res = self.client.request(req["method"], path, token=self.token_for(req, vars), body=body, raw=raw,
                                      query=query, headers=headers, timeout=step.get("timeout_s", DEFAULT_TIMEOUT_S))
            if self.verbose:
                print(f"    {req['method']} {path} -> {res.describe()}")
            try:
                self.check(step, req, res, vars)
                break
            except TestFailure:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        # What a macro saves (a new user's token, a room ID) only exists in a success answer.
        saves = dict(req["macro_save"]) if res.status < 300 else {}
        saves.update(req.get("save") or {})
        for name, source in saves.items():
            vars[name] = dig(res.json, source, vars)
        if "register" in step and step.get("admin") and res.status < 300:
            self.server.make_admin(res.json["user_id"])

    def expand(self, step, vars):
        """Turns a macro step into a plain request step (method, path, body, save)."""
        req = {k: step[k] for k in ("body", "raw", "query", "headers", "save", "as", "token") if k in step}
        req["macro_save"] = {}
        for method in HTTP_METHODS:
            if method in step:
                req["method"], req["path"] = method, step[method]
        if "method" in step:
            req["method"], req["path"] = step["method"], step["path"]
        if "register" in step:
            name = step["register"]
            localpart = f"{name}-{next(_unique)}-{self.run_id}".lower()
            password = step.get("password", f"pw-{name}-{self.run_id}")
            vars[f"{name}_localpart"] = localpart
            vars[f"{name}_password"] = password
            req.update(method="POST", path="/register")
            req.setdefault("body", {"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}})
            req["macro_save"].update({name: "user_id", f"{name}_token": "access_token", f"{name}_device": "device_id"})
        elif "login" in step:
            name = step["login"]
            as_name = step.get("save_as", name)
            req.update(method="POST", path="/login")
            req.setdefault("body", {"type": "m.login.password",
                                    "identifier": {"type": "m.id.user", "user": f"${{{name}_localpart}}"},
                                    "password": f"${{{name}_password}}"})
            req["macro_save"].update({as_name: "user_id", f"{as_name}_token": "access_token",
                                      f"{as_name}_device": "device_id"})
        elif "create_room" in step:
            req.update(method="POST", path="/createRoom")
            req.setdefault("body", {})
            req["macro_save"][step["create_room"]] = "room_id"
        elif "join" in step:
            req.update(method="POST", path=f"/join/${{{step['join']}}}")
        elif "invite" in step:
            req.update(method="POST", path=f"/rooms/${{{step['invite']}}}/invite")
            req.setdefault("body", {"user_id": f"${{{step['user']}}}"})
        elif "send" in step:
            txn = step.get("txn", "${uniq}")
            req.update(method="PUT",
                       path=f"/rooms/${{{step['send']}}}/send/{step.get('type', 'm.room.message')}/{txn}")
            req.setdefault("body", {"msgtype": "m.text", "body": "hello"})
        elif "sync" in step:
            # Incremental from the user's last sync when there was one; saves the new position.
            name = step["sync"]
            req.update(method="GET", path="/sync")
            query = {"timeout": "0"}
            if f"{name}_since" in vars:
                query["since"] = f"${{{name}_since}}"
            query.update(step.get("query") or {})
            req["query"] = query
            req["macro_save"][f"{name}_since"] = "next_batch"
            req.setdefault("as", name)
        if "method" not in req:
            raise TestFailure(f"step has no request: {show(step)}")
        return req

    def check(self, step, req, res, vars):
        errors = []
        want_status = step.get("status", 200)
        if res.status != want_status:
            errors.append(f"status: expected {want_status}, got {res.status}")
        if "errcode" in step:
            got = res.json.get("errcode") if isinstance(res.json, dict) else None
            if got != step["errcode"]:
                errors.append(f"errcode: expected {step['errcode']}, got {got}")
        is_uia = res.status == 401 and isinstance(res.json, dict) and "flows" in res.json
        if want_status >= 400 and res.status == want_status and not is_uia:
            # Every error answer is the spec's standard error object (a user-interactive auth
            # answer carries errcode only after a failed stage).
            errors += Matcher(vars, self.shapes).match("$shape:error", res.json)
        if "expect" in step:
            errors += Matcher(vars, self.shapes).match(step["expect"], res.json if res.json is not None else ABSENT)
        if "expect_headers" in step:
            errors += Matcher(vars, self.shapes).match(step["expect_headers"], res.headers, "headers")
        if "max_ms" in step and res.elapsed * 1000 > step["max_ms"]:
            errors.append(f"took {res.elapsed * 1000:.0f} ms, expected at most {step['max_ms']} ms")
        if "min_ms" in step and res.elapsed * 1000 < step["min_ms"]:
            errors.append(f"took {res.elapsed * 1000:.0f} ms, expected at least {step['min_ms']} ms")
        if errors:
            raise TestFailure("\n".join(errors) + f"\nanswer: {res.describe()}")


def describe_step(step):
    for method in HTTP_METHODS:
        if method in step:
            return f"{method} {step[method]}"
    if "method" in step:
        return f"{step['method']} {step['path']}"
    for macro in MACROS:
        if macro in step:
            return f"{macro} {step[macro]}"
    return "?"


def expect(res, status=200, errcode=None, body=None, vars=None, shapes=None):
    """For scenarios: the same checks as a case step, raising TestFailure with a readable diff."""
    errors = []
    if res.status != status:
        errors.append(f"status: expected {status}, got {res.status}")
    if errcode is not None:
        got = res.json.get("errcode") if isinstance(res.json, dict) else None
        if got != errcode:
            errors.append(f"errcode: expected {errcode}, got {got}")
    if body is not None:
        errors += Matcher(vars or {}, shapes or {}).match(body, res.json if res.json is not None else ABSENT)
    if errors:
        raise TestFailure("\n".join(errors) + f"\nanswer: {res.describe()}")
    return res.json


# ---------------------------------------------------------------------------------------------
# Scenarios


class User:
    """A registered account on one server; request() sends with its access token."""

    def __init__(self, server, localpart, password, answer):
        self.server = server
        self.localpart = localpart
        self.password = password
        self.user_id = answer["user_id"]
        self.token = answer["access_token"]
        self.device_id = answer["device_id"]

    def request(self, method, path, **kwargs):
        kwargs.setdefault("token", self.token)
        return self.server.client().request(method, path, **kwargs)


class ScenarioContext:
    """What a scenario test function gets: servers it starts are stopped (and checked for crashes
    and sanitizer reports) when the test ends, whatever happened."""

    def __init__(self, binary, shapes, run_id, name, keep_dirs=False):
        self.binary = binary
        self.postgres = DATABASE == "postgres"  # the servers' database engine
        self.workers = TOPOLOGY == "workers"  # each server: main + READERS behind nginx
        self.writers = TOPOLOGY == "writers"  # each server: main + writer1 (EVENT_WRITERS) + reader1 behind nginx
        # AddressSanitizer keeps freed memory in quarantine: RSS bounds mean nothing there.
        self.sanitized = _is_sanitized(binary)
        self.shapes = shapes
        self.run_id = run_id
        self.name = name
        self.keep_dirs = keep_dirs
        self.servers = []
        self._users = itertools.count(1)

    def server(self, config=None, raw_config=None, start=True, empty_database=False):
        """A server of this scenario; empty_database=True: on PostgreSQL an empty database rather
        than a copy of the run's template (one the server's first start fills)."""
        srv = Server(self.binary, self.name, config_overrides=config, keep_dir=self.keep_dirs, raw_config=raw_config,
                     empty_database=empty_database)
        self.servers.append(srv)
        if start:
            srv.start()
        return srv

    def register(self, server, name, password=None, admin=False):
        """A new account; admin=True also makes it a server admin (for /_synapse/admin)."""
        localpart = f"{name}-{next(self._users)}-{self.run_id}".lower()
        password = password or f"pw-{localpart}"
        res = server.client().request("POST", "/register", body={
            "username": localpart, "password": password, "auth": {"type": "m.login.dummy"}})
        expect(res, 200)
        if admin:
            server.make_admin(res.json["user_id"])
        return User(server, localpart, password, res.json)

    def synadm(self, server, admin):
        """Debian's synadm (Synapse's admin CLI, a client we did not write) configured to speak to
        `server` with `admin`'s token; see Synadm.run."""
        return Synadm(server, admin)

    def expect(self, res, status=200, errcode=None, body=None, vars=None):
        return expect(res, status, errcode, body, vars, self.shapes)

    def skip_on_postgres(self, why):
        """Ends a scenario that is about SQLite only, as SKIP, when the servers use PostgreSQL."""
        if self.postgres:
            raise TestSkipped(f"on PostgreSQL: {why}")

    def close(self):
        """Stops every server; returns the problems they showed."""
        problems = []
        for srv in self.servers:
            if srv.proc is not None:
                srv.stop()
            problems += [f"server {srv.name} (in {srv.dir}): {p}" for p in srv.problems]
            srv.cleanup()
        return problems


class Synadm:
    """Runs Debian's `synadm` against a server as an admin user, in batch mode with JSON output.
    run() returns the parsed JSON it printed (None when it printed nothing); a non-zero exit or
    output that is not JSON fails the test, showing what synadm printed."""

    def __init__(self, server, admin):
        self.server = server
        self.admin = admin
        self.config_file = os.path.join(server.dir, "synadm.yaml")

    def _write_config(self):
        # Rewritten before each run: a restarted server listens on a new port.
        with open(self.config_file, "w") as f:
            f.write(to_yaml({"user": self.admin.user_id, "token": self.admin.token,
                             "base_url": self.server.base_url, "admin_path": "/_synapse/admin",
                             "matrix_path": "/_matrix", "timeout": 30, "ssl_verify": True,  # synadm refuses any falsy entry; plain http here anyway
                             "homeserver": self.admin.user_id.split(":", 1)[1], "format": "json"}))

    def run(self, *args, expect_failure=False, timeout=60):
        """synadm exits 0 even when the server answered an error: it prints the error's JSON and
        warns "Synapse returned status code N" on stderr, so either counts as a failure here.
        With expect_failure=True the CompletedProcess is returned and a success fails the test."""
        self._write_config()
        cmd = ["synadm", "--batch", "-o", "json", "-c", self.config_file] + [str(a) for a in args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        shown = f"{' '.join(cmd[6:])}: exit {done.returncode}\nstdout: {tail(done.stdout)}\nstderr: {tail(done.stderr)}"
        out = done.stdout.strip()
        try:
            parsed = json.loads(out) if out else None
        except ValueError:
            parsed = ValueError
        failed = (done.returncode != 0 or "returned status code" in done.stderr or " ERROR " in f" {done.stderr}"
                  or (isinstance(parsed, dict) and "errcode" in parsed))
        if expect_failure:
            if not failed:
                raise TestFailure(f"synadm was expected to fail: {shown}")
            return done
        if failed:
            raise TestFailure(f"synadm failed: {shown}")
        if parsed is ValueError:
            raise TestFailure(f"synadm printed no JSON: {shown}")
        return parsed
