#!/usr/bin/env python3
"""nheko (Debian's, unmodified) against the real Trestle binary, seen on screen.

Starts Trestle and a virtual X display (Xvfb), sets up over HTTP a space with a joined and a
not-joined child room and a thread, logs nheko in as a member of the space, then drives it with
xdotool and reads the screen with tesseract OCR (clicks land on text found by OCR, not on fixed
coordinates). It checks that nheko:
  1. opens the space and lists its child rooms, also the one the user has not joined (nheko asks
     /rooms/{roomId}/hierarchy for it);
  2. previews the not-joined room before joining, with its name and topic (nheko 0.11 asks the
     room summary on its unstable im.nheko.summary path; without it: "No preview available");
  3. shows the thread of the joined room (root, and the reply inside the thread view).
Each check saves a screenshot into OUT (default /tmp/nheko-check) and the script exits non-zero
when a check fails, naming it. Not part of CI (it needs X, ~1 minute and the packages below).

Needs (Debian): nheko xvfb xdotool imagemagick tesseract-ocr gnome-keyring dbus-x11
Usage: python3 scripts/nheko_check.py [--binary build/trestle] [--out DIR] [--keep]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402

SPACE, JOINED, OTHER = "Bridges", "Harbour", "Lighthouse"
OTHER_TOPIC = "Signals and beacons"
THREAD_ROOT, THREAD_REPLY = "Root of the tide thread", "Reply inside the tide thread"


class Screen:
    def __init__(self, display, out):
        self.env = dict(os.environ, DISPLAY=display)
        self.out = out
        self.shots = 0

    def shot(self, name):
        self.shots += 1
        path = os.path.join(self.out, f"{self.shots:02d}-{name}.png")
        subprocess.run(["import", "-window", "root", path], env=self.env, check=True)
        return path

    def words(self, name, region=None):
        """OCR of a fresh screenshot (grey, scaled up three times: small UI text reads better): a list of
        (text, left, top, width, height) in screen pixels."""
        path = self.shot(name)
        big = path + ".x2.png"
        left, top, crop = 0, 0, []
        if region:  # (left, top, width, height): OCR only that part, much faster
            left, top = region[0], region[1]
            crop = ["-crop", f"{region[2]}x{region[3]}+{left}+{top}", "+repage"]
        subprocess.run(["convert", path, *crop, "-colorspace", "Gray", "-resize", "300%", big], check=True)
        # --psm 11: sparse text, as a UI is (the default page layout misses tooltips and headers).
        tsv = subprocess.run(["tesseract", big, "-", "--psm", "11", "tsv"], capture_output=True, text=True).stdout
        os.unlink(big)
        found = []
        for line in tsv.splitlines()[1:]:
            cols = line.split("\t")
            if len(cols) == 12 and cols[11].strip():
                found.append((cols[11].strip(), left + int(cols[6]) // 3, top + int(cols[7]) // 3,
                              int(cols[8]) // 3, int(cols[9]) // 3))
        return path, found

    def find(self, phrase, name, timeout=20, region=None):
        """Waits until OCR sees `phrase` (its words in a row); returns (x, y) of its centre."""
        wanted = phrase.lower().split()
        deadline = time.monotonic() + timeout
        while True:
            path, found = self.words(name, region)
            texts = [w[0].lower().strip(".,:;!?'\"()") for w in found]
            for i in range(len(texts) - len(wanted) + 1):
                if texts[i:i + len(wanted)] == wanted:
                    first, last = found[i], found[i + len(wanted) - 1]
                    return (first[1] + last[1] + last[3]) // 2, (first[2] + last[2] + last[4]) // 2
            if time.monotonic() > deadline:
                return None
            time.sleep(1.5)

    def click(self, x, y):
        # Qt wants the pointer to arrive (an enter event) before the press.
        subprocess.run(["xdotool", "mousemove", str(x), str(y)], env=self.env, check=True)
        time.sleep(0.3)
        subprocess.run(["xdotool", "click", "1"], env=self.env, check=True)

    def hover(self, x, y):
        subprocess.run(["xdotool", "mousemove", str(x), str(y)], env=self.env, check=True)

    def size(self):
        """The main window's (width, height)."""
        wid = subprocess.run(["xdotool", "search", "--class", "nheko"], env=self.env, capture_output=True,
                             text=True).stdout.split()[-1]
        geometry = subprocess.run(["xdotool", "getwindowgeometry", wid], env=self.env, capture_output=True,
                                  text=True).stdout
        width, height = geometry.split("Geometry:")[1].split()[0].split("x")
        return int(width), int(height)

    def key(self, *keys):
        subprocess.run(["xdotool", "key", *keys], env=self.env, check=True)


def setup_server(srv):
    c = srv.client()

    def register(name):
        res = c.request("POST", "/register", body={"username": name, "password": f"pw-{name}-nheko",
                                                   "auth": {"type": "m.login.dummy"}})
        harness.expect(res, 200)
        return res.json

    alice, bob = register("alice"), register("bob")

    def call(who, method, path, body=None):
        res = c.request(method, path, token=who["access_token"], body=body)
        harness.expect(res, 200)
        return res.json

    space = call(bob, "POST", "/createRoom", {"name": SPACE, "preset": "public_chat",
                                              "creation_content": {"type": "m.space"}})["room_id"]
    joined = call(bob, "POST", "/createRoom", {"name": JOINED, "preset": "public_chat"})["room_id"]
    other = call(bob, "POST", "/createRoom", {"name": OTHER, "topic": OTHER_TOPIC, "preset": "public_chat"})["room_id"]
    for child in (joined, other):
        call(bob, "PUT", f"/rooms/{space}/state/m.space.child/{child}", {"via": ["localhost"]})
        call(bob, "PUT", f"/rooms/{child}/state/m.space.parent/{space}", {"via": ["localhost"], "canonical": True})
    for room in (space, joined):
        call(alice, "POST", f"/join/{room}", {})
    root = call(bob, "PUT", f"/rooms/{joined}/send/m.room.message/root", {"msgtype": "m.text", "body": THREAD_ROOT})
    call(bob, "PUT", f"/rooms/{joined}/send/m.room.message/reply", {
        "msgtype": "m.text", "body": THREAD_REPLY,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root["event_id"], "is_falling_back": True,
                         "m.in_reply_to": {"event_id": root["event_id"]}}})
    login = c.request("POST", "/login", body={"type": "m.login.password", "password": "pw-alice-nheko",
                                              "identifier": {"type": "m.id.user", "user": "alice"},
                                              "device_id": "NHEKOCHECK"})
    harness.expect(login, 200)
    return login.json


def write_nheko_config(home, base_url, login):
    conf = os.path.join(home, ".config", "nheko")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, "nheko.conf"), "w") as f:
        # QSettings writes a leading '@' as '@@'.
        f.write("[auth]\n"
                f"access_token={login['access_token']}\n"
                f"device_id={login['device_id']}\n"
                f"home_server={base_url}\n"
                f"user_id=@{login['user_id']}\n\n"
                "[user]\nonline_key_backup=false\nspace_notifications=false\ngroup_view=true\n"
                "[window]\nstart_in_tray=false\ntray=false\n")


def start_nheko(display, home, log):
    env = dict(os.environ, DISPLAY=display, HOME=home, XDG_RUNTIME_DIR=os.path.join(home, "run"),
               XDG_DATA_HOME=os.path.join(home, "data"), XDG_CACHE_HOME=os.path.join(home, "cache"))
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    # An unlocked keyring on a private session bus: nheko keeps its encryption secrets there.
    script = ("printf x | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1; "
              "exec nheko -L stderr")
    return subprocess.Popen(["dbus-run-session", "--", "sh", "-c", script], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "build", "trestle"))
    parser.add_argument("--out", default="/tmp/nheko-check")
    parser.add_argument("--display", default=":97")
    parser.add_argument("--room-version", help="the server's default_room_version (default: the server's own)")
    parser.add_argument("--keep", action="store_true", help="leave nheko and the server running at the end")
    args = parser.parse_args()
    for tool in ("nheko", "Xvfb", "xdotool", "import", "tesseract", "gnome-keyring-daemon", "dbus-run-session"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install nheko xvfb xdotool imagemagick tesseract-ocr gnome-keyring dbus-x11")
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    xvfb = subprocess.Popen(["Xvfb", args.display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    overrides = {"default_room_version": args.room_version} if args.room_version else None
    srv = harness.Server(os.path.abspath(args.binary), "nheko", config_overrides=overrides, keep_dir=args.keep)
    home = tempfile.mkdtemp(prefix="nheko-home-")
    nheko = None
    failures = []
    try:
        srv.start()
        login = setup_server(srv)
        write_nheko_config(home, srv.base_url, login)
        log = open(os.path.join(args.out, "nheko.log"), "w")
        nheko = start_nheko(args.display, home, log)
        screen = Screen(args.display, args.out)

        # nheko offers to set up encryption on a new device: decline.
        # nheko offers to set up encryption on a new device: Cancel (bottom right; OCR misses it).
        if screen.find("Setup Encryption", "start", timeout=60, region=(0, 0, 1280, 120)):
            width, height = screen.size()
            screen.click(width - 67, height - 39)
            time.sleep(2)

        # 1. The space and its children, the not-joined one too.
        # The spaces column shows avatars only; hovering one shows its name as a tooltip.
        space = None
        screen.find("alice", "main-window", timeout=30, region=(0, 0, 300, 80))
        for slot in range(6):
            screen.hover(20, 20 + 40 * slot)
            time.sleep(1)
            if screen.find(SPACE, f"space-column-{slot}", timeout=0, region=(0, 0, 300, 400)):
                space = (20, 20 + 40 * slot)
                break
        if not space:
            failures.append(f"the space '{SPACE}' is not in nheko's list")
        else:
            screen.click(*space)
            time.sleep(2)
            if not screen.find(OTHER, "space-children", timeout=15, region=(40, 0, 190, 900)):
                failures.append(f"the space's not-joined child '{OTHER}' is not listed (hierarchy)")

        # 2. The preview of the not-joined room: topic and member count.
        other = screen.find(OTHER, "before-preview", timeout=5, region=(40, 0, 190, 900))
        if other:
            screen.click(*other)
            time.sleep(2)
            pane = (225, 0, 841, 600)
            if not screen.find(OTHER_TOPIC, "preview", timeout=15, region=pane):
                failures.append(f"the preview of '{OTHER}' does not show its topic '{OTHER_TOPIC}' (room summary)")
            if not screen.find(OTHER, "preview-name", timeout=5, region=pane):
                failures.append(f"the preview does not show the room's name '{OTHER}' (room summary)")
        else:
            failures.append(f"no preview of '{OTHER}': it is not listed")

        # 3. The thread in the joined room.
        joined = screen.find(JOINED, "joined-room", timeout=10, region=(40, 0, 190, 900))
        if not joined:
            failures.append(f"the joined room '{JOINED}' is not listed")
        else:
            screen.click(*joined)
            time.sleep(2)
            width, height = screen.size()
            timeline = (225, 60, width - 225, height - 100)
            reply = screen.find(THREAD_REPLY, "timeline", timeout=15, region=timeline)
            if not reply or not screen.find("created and configured", "timeline-state", timeout=0, region=timeline):
                failures.append("the thread's reply or the room's creation is not in the timeline")
            else:
                # The thread icon sits left of the reply's time, at the timeline's right edge.
                screen.click(screen.size()[0] - 68, reply[1])
                time.sleep(2)
                # The thread view shows the root and the reply, and no longer the room's history.
                if not screen.find(THREAD_ROOT, "thread", timeout=10, region=timeline) or \
                        not screen.find(THREAD_REPLY, "thread", timeout=0, region=timeline):
                    failures.append("the thread view does not show the root and its reply")
                elif screen.find("created and configured", "thread-only", timeout=0, region=timeline):
                    failures.append("the thread view was not opened (the room's history is still shown)")
        screen.shot("end")
    finally:
        if args.keep:
            print(f"kept running on DISPLAY={args.display}: {srv.base_url}; Ctrl-C ends it", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        if True:
            if nheko:
                os.killpg(nheko.pid, 15)
                nheko.wait(10)
            srv.stop()
            srv.cleanup()
            xvfb.terminate()
            shutil.rmtree(home, ignore_errors=True)
    for f in failures:
        print("FAIL", f)
    print(f"screenshots in {args.out}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
