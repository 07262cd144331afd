#!/usr/bin/python3
"""Media repository benchmarks, against a fresh server (trestle_bench.Server):

  download   wrk: GET /_matrix/client/v1/media/download of one 100 KB file (requests/s, latency)
  thumbnail  time to generate a thumbnail (first request: decode + resize + encode + store) of a
             1600x1200 JPEG and PNG, and to serve it again from disk
  upload_rss the server's RSS (VmRSS, VmHWM) before, during and after streaming a 100 MB upload

Usage: /usr/bin/python3 bench/media_bench.py [--binary build/trestle] [--duration 10]
Needs wrk and the `vips` command line tool (libvips-tools) to make the test images.
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trestle_bench as tb  # noqa: E402

HOST = "127.0.0.1"
MEDIA = "/_matrix/client/v1/media"


def rss_kb(pid):
    st = tb.proc_status(pid)
    return st.get("VmRSS"), st.get("VmHWM")


def upload(port, token, data, content_type):
    c = http.client.HTTPConnection(HOST, port, timeout=120)
    c.request("POST", "/_matrix/media/v3/upload", body=data,
              headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        raise tb.BenchError(f"upload: {r.status} {body[:200]!r}")
    return json.loads(body)["content_uri"][len("mxc://"):]


def get(port, token, path):
    c = http.client.HTTPConnection(HOST, port, timeout=120)
    t0 = time.perf_counter()
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t0) * 1000
    c.close()
    if r.status != 200:
        raise tb.BenchError(f"GET {path}: {r.status} {body[:200]!r}")
    return ms, body


def bench_download(srv, token, args, out):
    mp = upload(srv.port, token, os.urandom(100 * 1024), "application/octet-stream")
    url = f"http://{HOST}:{srv.port}{MEDIA}/download/{mp}"
    cmd = ["wrk", "-t", "2", "-c", "16", "-d", f"{args.duration}s", "--latency",
           "-H", f"Authorization: Bearer {token}", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30)
    if p.returncode != 0:
        raise tb.BenchError(p.stderr)
    rps = None
    for line in p.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        if "Non-2xx" in line:
            raise tb.BenchError("wrk saw errors:\n" + p.stdout)
    out["download_100k_rps"] = rps
    out["download_100k_wrk"] = p.stdout
    tb.log(f"download 100 KB: {rps} requests/s")


def bench_thumbnail(srv, token, workdir, out):
    src = os.path.join(workdir, "src.v")
    subprocess.run(["vips", "xyz", src, "1600", "1200"], check=True)
    subprocess.run(["vips", "cast", src, os.path.join(workdir, "u8.v"), "uchar"], check=True)
    for ext, ctype in (("jpg", "image/jpeg"), ("png", "image/png")):
        img = os.path.join(workdir, f"big.{ext}")
        subprocess.run(["vips", "copy", os.path.join(workdir, "u8.v"), img], check=True)
        with open(img, "rb") as f:
            data = f.read()
        firsts, cached = [], []
        for _ in range(5):
            mp = upload(srv.port, token, data, ctype)
            for w, h, m in ((32, 32, "crop"), (320, 240, "scale"), (800, 600, "scale")):
                ms, _ = get(srv.port, token, f"{MEDIA}/thumbnail/{mp}?width={w}&height={h}&method={m}")
                firsts.append(ms)
                ms, _ = get(srv.port, token, f"{MEDIA}/thumbnail/{mp}?width={w}&height={h}&method={m}")
                cached.append(ms)
        firsts.sort()
        cached.sort()
        out[f"thumbnail_{ext}_1600x1200_generate_ms_median"] = firsts[len(firsts) // 2]
        out[f"thumbnail_{ext}_1600x1200_generate_ms_max"] = firsts[-1]
        out[f"thumbnail_{ext}_cached_ms_median"] = cached[len(cached) // 2]
        tb.log(f"thumbnail {ext} 1600x1200 ({len(data)} bytes): generate median {firsts[len(firsts) // 2]:.1f} ms, "
               f"max {firsts[-1]:.1f} ms; cached median {cached[len(cached) // 2]:.2f} ms")


def bench_upload_rss(srv, token, out):
    before = rss_kb(srv.pid)
    size = 100 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_kb(srv.pid)[0])
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    c = http.client.HTTPConnection(HOST, srv.port, timeout=300)
    t0 = time.perf_counter()
    c.putrequest("POST", "/_matrix/media/v3/upload")
    c.putheader("Authorization", f"Bearer {token}")
    c.putheader("Content-Type", "application/octet-stream")
    c.putheader("Content-Length", str(size))
    c.endheaders()
    for _ in range(size // len(block)):
        c.send(block)
    r = c.getresponse()
    body = r.read()
    upload_s = time.perf_counter() - t0
    c.close()
    done.set()
    t.join()
    if r.status != 200:
        raise tb.BenchError(f"100 MB upload: {r.status} {body[:200]!r}")
    mp = json.loads(body)["content_uri"][len("mxc://"):]
    after_upload = rss_kb(srv.pid)
    # And a download of it, read in pieces.
    c = http.client.HTTPConnection(HOST, srv.port, timeout=300)
    t0 = time.perf_counter()
    c.request("GET", f"{MEDIA}/download/{mp}", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    n = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        n += len(chunk)
    download_s = time.perf_counter() - t0
    c.close()
    after_download = rss_kb(srv.pid)
    out.update({
        "upload_100mb_s": upload_s, "download_100mb_s": download_s,
        "rss_kb_before": before[0], "rss_kb_max_during_upload": max(s for s in samples if s),
        "rss_kb_after_upload": after_upload[0], "rss_kb_after_download": after_download[0],
        "hwm_kb_after_download": after_download[1],
    })
    tb.log(f"100 MB upload {upload_s:.2f} s, download {download_s:.2f} s ({n} bytes); RSS KB before {before[0]}, "
           f"max during upload {out['rss_kb_max_during_upload']}, after upload {after_upload[0]}, "
           f"after download {after_download[0]}, peak (VmHWM) {after_download[1]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/trestle")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="trestle-media-bench-")
    srv = tb.Server(args.binary, workdir, "warn")
    with open(srv.config) as f:
        text = f.read()
    with open(srv.config, "w") as f:
        f.write(text.replace("max_upload_size: 50M", "max_upload_size: 200M"))
    out = {}
    try:
        srv.start()
        token, _ = tb.register(srv.port, "mediabench")
        bench_upload_rss(srv, token, out)
        bench_download(srv, token, args, out)
        bench_thumbnail(srv, token, workdir, out)
        srv.check_alive()
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    path = args.out or f"/tmp/trestle-media-bench-{int(time.time())}.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if not k.endswith("_wrk")}, indent=1))


if __name__ == "__main__":
    main()
