"""Debian's nginx in front of Trestle's processes, configured by trestle-workers.conf beside this
file: what the integration tests (tests/integration/harness.py, --topology workers) and
bench/workers.py run. Standard library only.

    ngx = Nginx(main="127.0.0.1:8008", readers=["127.0.0.1:8101", "127.0.0.1:8102"])
    # or with events sharded over main and writer1 (stream_writers: {events: [main, writer1]}):
    ngx = Nginx(main="127.0.0.1:8008", readers=["127.0.0.1:8101"],
                event_writers=["127.0.0.1:8008", "127.0.0.1:8201"])
    ngx.start()           # listens on 127.0.0.1:<ngx.port>; raises NginxError if it cannot
    ...
    ngx.routed()          # {"127.0.0.1:8101": 12, ...}: requests answered per upstream address
    ngx.stop()
    ngx.cleanup()

nginx runs in a directory of its own (config, pid, temp files, logs) and, when we are root, as
`nobody` (master and workers), never as root; it is stopped with its parent's death too.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

NGINX = "/usr/sbin/nginx"
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trestle-workers.conf")


class NginxError(Exception):
    pass


def error_log_tail(directory):
    """The end of the error.log nginx writes in `directory` ("" when there is none)."""
    try:
        with open(os.path.join(directory, "error.log"), errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return ""


def process_tree(proc):
    """An nginx master's pid and its workers' (for CPU accounting)."""
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            return [proc.pid] + [int(p) for p in f.read().split()]
    except OSError:
        return [proc.pid]


def render(listen, main, readers, max_body="51M", appservice_sender=None, event_writers=None, template=TEMPLATE,
           media=None):
    """The template with its placeholders filled; the @READER@ line repeated for each reader, the
    @EVENT_WRITER@ line for each event writer and the @MEDIA@ line for each media worker (main
    alone unless named); the appservice sender is main unless named (all host:port)."""
    if not readers:
        raise NginxError("at least one reader")
    repeated = {"@READER@": list(readers), "@EVENT_WRITER@": list(event_writers or [main]),
                "@MEDIA@": list(media or [main])}
    with open(template) as f:
        text = f.read()
    out = []
    for line in text.splitlines(keepends=True):
        name = next((n for n in repeated if n in line), None)
        if name and not line.lstrip().startswith("#"):
            out += [line.replace(name, r) for r in repeated[name]]
        else:
            out.append(line)
    text = "".join(out)
    for name, value in (("@LISTEN@", listen), ("@MAIN@", main), ("@MAX_BODY@", max_body),
                        ("@APPSERVICE_SENDER@", appservice_sender or main)):
        text = text.replace(name, str(value))
    left = sorted(set(re.findall(r"^[^#\n]*(@[A-Z_]+@)", text, re.M)))
    if left:
        raise NginxError(f"placeholders left in {template}: {left}")
    return text


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Nginx:
    def __init__(self, main, readers, port=None, max_body="51M", appservice_sender=None, worker_processes=1,
                 access_log=True, prefix="trestle-nginx-", event_writers=None, media=None):
        if not os.access(NGINX, os.X_OK):
            raise NginxError(f"no {NGINX}: install Debian's nginx (scripts/install-deps.sh)")
        self.main = main
        self.readers = list(readers)
        self.event_writers = list(event_writers or [main])
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.proc = None
        self.access_log = os.path.join(self.dir, "access.log") if access_log else None
        with open(os.path.join(self.dir, "trestle.conf"), "w") as f:
            f.write(render(f"127.0.0.1:{self.port}", main, self.readers, max_body, appservice_sender,
                           self.event_writers, media=media))
        # $uri, not $request_uri: no access_token query parameter in the log.
        log = (f"log_format trestle '$request_method $uri $status $upstream_addr';\n"
               f"  access_log {self.access_log} trestle;") if access_log else "access_log off;"
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(f"""daemon off;
master_process on;
worker_processes {worker_processes};
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  {log}
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  include {self.dir}/trestle.conf;
}}
""")

    def start(self, timeout=10):
        kw = {}
        if os.geteuid() == 0:  # never as root: master and workers run as nobody
            for path in [self.dir] + [os.path.join(self.dir, n) for n in os.listdir(self.dir)]:
                shutil.chown(path, "nobody")
            kw = {"user": "nobody", "group": "nogroup", "extra_groups": []}
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf, "-e", f"{self.dir}/error.log"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent, **kw)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NginxError(f"nginx exited with {self.proc.returncode}: {self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NginxError(f"nginx did not listen on {self.port} within {timeout}s: {self.error_log()}")

    def error_log(self):
        return error_log_tail(self.dir)

    def pids(self):
        """The master and its workers."""
        return process_tree(self.proc)

    def requests(self):
        """(method, path, status, upstream address that answered: the last one tried) of each
        request in the access log so far (nginx writes a line when the answer is complete)."""
        out = []
        if not self.access_log:
            return out
        try:
            with open(self.access_log, errors="replace") as f:
                for line in f:
                    method, path, status, upstreams = (line.rstrip("\n").split(" ", 3) + ["", "", ""])[:4]
                    out.append((method, path, status, upstreams.split(", ")[-1]))
        except OSError:
            pass
        return out

    def routed(self):
        """Requests per upstream address that answered them, from the access log."""
        counts = {}
        for _, _, _, addr in self.requests():
            counts[addr] = counts.get(addr, 0) + 1
        return counts

    def stop(self, timeout=10):
        """SIGTERM (nginx's fast shutdown: open long-polls are cut), then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
