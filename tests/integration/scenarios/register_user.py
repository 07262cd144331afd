"""`trestle register-user`: Synapse's register_new_matrix_user against a running server, with its
options and its terminal prompts (driven through a pseudo-terminal)."""

import os
import pty
import select
import subprocess
import time

from harness import TestFailure, indent_text

SECRET = "register-user-secret"


def run_cli(ctx, *args, timeout=30):
    return subprocess.run([ctx.binary, "register-user", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def login(ctx, srv, localpart, password, status=200):
    res = srv.client().request("POST", "/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}, "password": password})
    return ctx.expect(res, status)


def is_admin(srv, token):
    # The spec's /admin/whois of another user is for server admins only.
    if not hasattr(srv, "witness"):
        res = srv.client().request("POST", "/register", body={
            "username": "witness", "password": "witness-pw", "auth": {"type": "m.login.dummy"}})
        srv.witness = res.json["user_id"]
    res = srv.client().request("GET", f"/admin/whois/{srv.witness}", token=token)
    if res.status not in (200, 403):
        raise TestFailure(f"whois answered {res.describe()}")
    return res.status == 200


class Terminal:
    """The command on a pseudo-terminal: expect() waits for text, send() types a line."""

    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        self.seen = b""

    def expect(self, text, timeout=20):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure(f"waited for {text!r}; the terminal showed:\n{indent_text(self.seen.decode(errors='replace'))}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise TestFailure(f"the command ended before {text!r}:\n{indent_text(self.seen.decode(errors='replace'))}")
                self.seen += chunk

    def send(self, line):
        os.write(self.fd, line.encode() + b"\n")

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if ready:
                    chunk = os.read(self.fd, 4096)
                    self.seen += chunk
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                try:
                    while True:
                        chunk = os.read(self.fd, 4096)
                        if not chunk:
                            break
                        self.seen += chunk
                except OSError:
                    pass
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise TestFailure("the command did not exit")


def test_flags_register_an_admin_who_can_log_in(ctx):
    srv = ctx.server(config={"registration_shared_secret": SECRET})
    name = f"op-{ctx.run_id}"
    done = run_cli(ctx, "-c", srv.config_path, "-u", name, "-p", "op-password", "--admin")
    if done.returncode != 0 or "Success!" not in done.stdout:
        raise TestFailure(f"register-user failed ({done.returncode}): {done.stdout} {done.stderr}")
    answer = login(ctx, srv, name, "op-password")
    if answer["user_id"] != f"@{name}:localhost":
        raise TestFailure(f"logged in as {answer['user_id']}")
    if not is_admin(srv, answer["access_token"]):
        raise TestFailure("--admin did not make an admin")


def test_no_admin_with_the_secret_and_url_given(ctx):
    srv = ctx.server(config={"registration_shared_secret": SECRET})
    name = f"plain-{ctx.run_id}"
    done = run_cli(ctx, "-k", SECRET, "-u", name, "-p", "plain-pw", "--no-admin", "-t", "bot", srv.base_url)
    if done.returncode != 0 or "Success!" not in done.stdout:
        raise TestFailure(f"register-user failed ({done.returncode}): {done.stdout} {done.stderr}")
    answer = login(ctx, srv, name, "plain-pw")
    if is_admin(srv, answer["access_token"]):
        raise TestFailure("--no-admin made an admin")
    # Again: the user exists (Synapse's message), unless --exists-ok.
    again = run_cli(ctx, "-k", SECRET, "-u", name, "-p", "plain-pw", "--no-admin", srv.base_url)
    if again.returncode != 1 or "ERROR! Received 400" not in again.stdout or "already taken" not in again.stdout:
        raise TestFailure(f"a second registration: exit {again.returncode}: {again.stdout} {again.stderr}")
    ok = run_cli(ctx, "-k", SECRET, "-u", name, "-p", "plain-pw", "--no-admin", "--exists-ok", srv.base_url)
    if ok.returncode != 0 or "User already exists. Skipping." not in ok.stdout:
        raise TestFailure(f"--exists-ok: exit {ok.returncode}: {ok.stdout} {ok.stderr}")


def test_a_wrong_secret_is_refused(ctx):
    srv = ctx.server(config={"registration_shared_secret": SECRET})
    done = run_cli(ctx, "-k", "not-" + SECRET, "-u", f"x-{ctx.run_id}", "-p", "pw", "--admin", srv.base_url)
    if done.returncode != 1 or "ERROR! Received 403" not in done.stdout or "HMAC incorrect" not in done.stdout:
        raise TestFailure(f"exit {done.returncode}: {done.stdout} {done.stderr}")
    login(ctx, srv, f"x-{ctx.run_id}", "pw", status=403)


def test_a_config_without_a_secret_is_refused_before_asking_anything(ctx):
    srv = ctx.server()
    done = run_cli(ctx, "-c", srv.config_path, "-u", "nobody", "-p", "pw", "--admin")
    if done.returncode != 1 or "registration_shared_secret" not in done.stderr:
        raise TestFailure(f"exit {done.returncode}: {done.stdout} {done.stderr}")


def test_the_prompts_on_a_terminal(ctx):
    srv = ctx.server(config={"registration_shared_secret": SECRET})
    name = f"typed-{ctx.run_id}"
    term = Terminal([ctx.binary, "register-user", "-c", srv.config_path])
    term.expect("New user localpart [")
    term.send(name)
    term.expect("Password: ")
    term.send("typed-secret-pw")
    term.expect("Confirm password: ")
    term.send("typed-secret-pw")
    term.expect("Make admin [no]: ")
    term.send("yes")
    term.expect("Success!")
    code = term.wait()
    if code != 0:
        raise TestFailure(f"exit {code}: {term.seen.decode(errors='replace')}")
    if b"typed-secret-pw" in term.seen:
        raise TestFailure("the password was echoed on the terminal")
    answer = login(ctx, srv, name, "typed-secret-pw")
    if not is_admin(srv, answer["access_token"]):
        raise TestFailure("answering yes did not make an admin")
    # Passwords that differ: nothing is registered.
    term = Terminal([ctx.binary, "register-user", "-c", srv.config_path, "-u", f"typo-{ctx.run_id}"])
    term.expect("Password: ")
    term.send("one")
    term.expect("Confirm password: ")
    term.send("two")
    term.expect("Passwords do not match")
    if term.wait() != 1:
        raise TestFailure("mismatched passwords did not exit 1")
    login(ctx, srv, f"typo-{ctx.run_id}", "one", status=403)
    # The default answer to "Make admin [no]" is no.
    term = Terminal([ctx.binary, "register-user", "-c", srv.config_path, "-u", f"deflt-{ctx.run_id}", "-p", "d-pw"])
    term.expect("Make admin [no]: ")
    term.send("")
    term.expect("Success!")
    term.wait()
    if is_admin(srv, login(ctx, srv, f"deflt-{ctx.run_id}", "d-pw")["access_token"]):
        raise TestFailure("an empty answer made an admin")


def test_the_secret_in_a_file(ctx):
    srv = ctx.server(start=False)
    path = os.path.join(srv.dir, "reg.secret")
    with open(path, "w") as f:
        f.write(SECRET + "\n")
    srv.config_overrides = {"registration_shared_secret_path": path}
    srv.start()
    name = f"file-{ctx.run_id}"
    done = run_cli(ctx, "-c", srv.config_path, "-u", name, "-p", "file-pw", "--no-admin")
    if done.returncode != 0:
        raise TestFailure(f"exit {done.returncode}: {done.stdout} {done.stderr}")
    # The secret, not the file's trailing newline, keys the mac.
    done = run_cli(ctx, "-k", SECRET, "-u", name + "-2", "-p", "file-pw", "--no-admin", srv.base_url)
    if done.returncode != 0:
        raise TestFailure(f"exit {done.returncode}: {done.stdout} {done.stderr}")
    login(ctx, srv, name + "-2", "file-pw")


def test_both_secret_keys_are_refused_at_start(ctx):
    srv = ctx.server(start=False)
    path = os.path.join(srv.dir, "reg.secret")
    with open(path, "w") as f:
        f.write(SECRET)
    srv.config_overrides = {"registration_shared_secret": SECRET, "registration_shared_secret_path": path}
    code, output = srv.run_to_exit()
    if code == 0 or "registration_shared_secret_path" not in output:
        raise TestFailure(f"exit {code}: {output[-2000:]}")


def test_a_generated_config_works_as_it_is(ctx):
    # The issue: a generated config offered registration_shared_secret for a route that did not
    # exist. Now it carries a random secret, and register-user finds it and the listener there.
    srv = ctx.server(start=False)
    text = subprocess.run([ctx.binary, "generate-config", "--server-name", "localhost", "--data-dir", srv.data_dir],
                          capture_output=True, text=True, timeout=30, check=True).stdout
    if "\nregistration_shared_secret: \"" not in text:
        raise TestFailure("the generated config has no registration_shared_secret")
    srv.raw_config = text.replace("- port: 8008", "- port: ${port}")
    srv.start()
    name = f"gen-{ctx.run_id}"
    done = run_cli(ctx, "-c", srv.config_path, "-u", name, "-p", "gen-pw", "-a")
    if done.returncode != 0 or "Success!" not in done.stdout:
        raise TestFailure(f"exit {done.returncode}: {done.stdout} {done.stderr}")
    login(ctx, srv, name, "gen-pw")
