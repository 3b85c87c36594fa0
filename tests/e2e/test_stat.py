# SPDX-License-Identifier: MIT
"""pinfer stat on the host, without pinfer.ko (tests/unit/test_stat.c reads
the module's sysfs and debugfs files inside the VM, with regions and loads
of its own), against a real pinfer serve on loopback:

- no /dev/pinfer and no --serve: nothing to show, exit 1, modprobe named;
- --serve, --json: the server's figures equal what its /metrics says
  (requests, tokens, slots = --parallel, pinned bytes), the module shown
  as not loaded; while a long request decodes, a view shows its slot busy
  and tokens/s above 0;
- the text view: tokens/s, slots, requests;
- a URL that is not pinfer serve (its /health), a 404, a server that has
  stopped: the reason on stderr, exit 1;
- --help; a wrong command line: exit 2.
"""
import http.client
import json
import os
import re
import subprocess
import tempfile
import threading
import time

from tap import MODEL, PINFER, end, ok, serve_port, skip


def stat(*args, timeout=120):
    return subprocess.run([PINFER, "stat"] + list(args), capture_output=True, text=True,
                          timeout=timeout)


# Tokens of the long request. The server's tokens/s is over windows of 2 s
# of decoding, so the request must outlast one: 600 tokens took 1.8 s here
# once generation got faster, and the rate stayed 0 while its slot was busy.
LONG = 4000


def views(p):
    out = []
    for line in p.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            return None
    return out


class Server:
    def __init__(self):
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen([PINFER, "serve", "-m", MODEL, "--port", "0", "--parallel", "2",
                                   "-c", str(LONG + 96)],
                                  stderr=subprocess.PIPE, stdout=self.log)
        self.port = serve_port(self.p)
        threading.Thread(target=lambda: self.p.stderr.read(), daemon=True).start()
        self.url = f"127.0.0.1:{self.port}"

    def request(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        c.request(method, path, body=json.dumps(body) if body else None,
                  headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def complete(self, max_tokens):
        return self.request("POST", "/v1/completions",
                            {"prompt": "Once upon a time", "max_tokens": max_tokens,
                             "ignore_eos": True, "temperature": 0})

    def metrics(self):
        out = {}
        for line in self.request("GET", "/metrics")[1].decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def test_no_module():
    if os.path.exists("/dev/pinfer"):
        skip("/dev/pinfer exists on this host: the module's absence is tested elsewhere")
        return
    p = stat("--once", "-i", "0.1")
    ok(p.returncode == 1 and not p.stdout and "not loaded" in p.stderr and
       "modprobe pinfer" in p.stderr,
       "no module, no --serve: nothing to show, exit 1, modprobe named", p.stdout + p.stderr)


def test_serve():
    srv = Server()
    if srv.port is None:
        ok(False, "pinfer serve starts")
        srv.stop()
        return
    st, _ = srv.complete(8)
    ok(st == 200, "a completion before stat", st)
    p = stat("--once", "-i", "0.2", "--json", "-s", srv.url)
    v = views(p)
    m = srv.metrics()
    s = v[0]["serve"] if v and len(v) == 1 else {}
    ok(p.returncode == 0 and s.get("requests_total") == m["pinfer_requests_total"] == 1 and
       s.get("generated_tokens_total") == m["pinfer_generated_tokens_total"] == 8 and
       s.get("prompt_tokens_total") == m["pinfer_prompt_tokens_total"] and
       s.get("slots_total") == m["pinfer_slots_total"] == 2 and s.get("slots_active") == 0 and
       s.get("queued") == 0 and s.get("pinned_bytes") == m["pinfer_memory_pinned_bytes"] and
       s.get("url") == srv.url,
       "--json --serve: the server's figures as its /metrics has them", p.stdout + p.stderr)
    if not os.path.exists("/dev/pinfer"):
        ok(v and v[0]["module"] == {"loaded": False} and 0.15 < v[0]["interval_s"] < 5,
           "--json: the module not loaded, the interval measured", p.stdout)

    # a long request decoding while stat watches
    done = []
    t = threading.Thread(target=lambda: done.append(srv.complete(LONG)))
    t.start()
    busy = []
    t0 = time.time()
    while t.is_alive() and time.time() - t0 < 300 and not busy:
        p = stat("-n", "2", "-i", "0.3", "--json", "-s", srv.url)
        busy = [x for x in views(p) or [] if x["serve"].get("slots_active", 0) >= 1 and
                (x["serve"].get("tokens_per_second") or 0) > 0]
    t.join()
    ok(busy and done and done[0][0] == 200,
       "while a long request decodes: its slot busy, tokens/s above 0 "
       f"({busy[0]['serve']['tokens_per_second'] if busy else '?'} t/s)")

    p = stat("--once", "-i", "0.1", "-s", f"http://{srv.url}")
    ok(p.returncode == 0 and re.search(r"[\d.]+ tokens/s, \d of 2 slots decoding, 0 queued", p.stdout)
       and "since starting 2 requests" in p.stdout,
       "the text view: tokens/s, slots, requests", p.stdout + p.stderr)
    for path, why in (("/health", "no pinfer figures"), ("/nope", "HTTP status 404")):
        p = stat("--once", "-i", "0.1", "-s", srv.url + path)
        ok(p.returncode == 1 and why in p.stderr, f"--serve URL{path}: '{why}', exit 1",
           p.stdout + p.stderr)
    srv.stop()
    p = stat("--once", "-i", "0.1", "-s", srv.url)
    ok(p.returncode == 1 and "cannot connect" in p.stderr,
       "the server stopped: cannot connect, exit 1", p.stderr)


def test_command_line():
    p = stat("--help")
    ok(p.returncode == 0 and p.stdout.startswith("usage: pinfer stat"), "--help", p.stdout)
    for args in (["-i", "0"], ["-i", "x"], ["-n", "0"], ["--bogus"], ["extra"], ["-s"]):
        p = stat(*args)
        ok(p.returncode == 2 and p.stderr, f"stat {' '.join(args)}: exit 2 with a reason",
           p.stdout + p.stderr)


test_no_module()
test_serve()
test_command_line()
end()
