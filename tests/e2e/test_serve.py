# SPDX-License-Identifier: MIT
"""pinfer serve, started and stopped here on loopback, through the real
`openai` client and raw sockets:

- chat and completions, streamed and not: a greedy answer equals
  `pinfer run --temp 0`'s; the streamed deltas add up to the whole answer;
  stop strings, max_tokens, seeds; usage counts equal an independent
  tokenizer's (Hugging Face `tokenizers` on the model's vocabulary, the
  template rendered by jinja2);
- 16 concurrent greedy streams, each equal to the same request alone; a
  shared system prompt found in the prefix cache;
- abuse: malformed, truncated and mistyped JSON, unknown fields, a body
  over the limit, missing and wrong API keys, 1000 connections opened and
  dropped, a client reading one byte a second, disconnects mid-stream, a
  prompt longer than the context: each answered or dropped, the others
  served, the slots freed, the memory back to where it was;
- SIGTERM with a stream running: it ends cleanly, the process exits 0;
- `serve --plan`: the server's KV cache as serve allocates it.

Then the abuse and concurrency again on the ASan build (build/asan/pinfer,
from `make SAN=1 tests`): no report, no leak at exit."""
import atexit
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tap import BUILD, MODEL, PINFER, ROOT, end, ok, serve_port, skip, skip_all  # noqa: E402

try:
    import openai
    from test_chat import model_template, render
    from test_tokenizer import hf_tokenizer
except ImportError as e:
    skip_all(f"a test package is missing ({e}): make venv")
if not os.path.exists(MODEL):
    skip_all(f"{MODEL} missing (make model)")

KEY = "test-key-0123456789"
CTX = 512
MIB = 1048576.0


SERVERS = []


@atexit.register
def _kill_servers():
    for s in SERVERS:
        if s.p.poll() is None:
            s.p.kill()


class Server:
    def __init__(self, binary, *args, key=KEY):
        self.key = key
        cmd = [binary, "serve", "-m", MODEL, "--port", "0", "--ctx", str(CTX),
               "--parallel", "16", "--grace", "20"] + list(args)
        if key:
            cmd += ["--api-key", key]
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
        self.p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=self.log, env=env)
        SERVERS.append(self)
        self.err_lines = []
        self.port = serve_port(self.p, self.err_lines)
        threading.Thread(target=self._drain, daemon=True).start()
        if self.port is None:
            return
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key or "x",
                                    max_retries=0, timeout=300)

    def _drain(self):
        for line in self.p.stderr:
            self.err_lines.append(line.decode(errors="replace"))

    def stderr(self):
        return "".join(self.err_lines)

    def raw(self, method, path, body=None, headers=None, key=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        h = dict(headers or {})
        if key and self.key:
            h["Authorization"] = f"Bearer {self.key}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def metrics(self):
        st, data = self.raw("GET", "/metrics")
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=120):
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        time.sleep(0.2)
        return rc


def chat(srv, content, **kw):
    kw.setdefault("temperature", 0)
    return srv.client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}], **kw)


def stream_text(srv, content, on_delta=None, **kw):
    """The deltas of a streamed chat answer, the finish reason, the usage chunk
    (@on_delta called after each delta)."""
    kw.setdefault("temperature", 0)
    parts, finish, usage = [], None, None
    for ch in srv.client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": content}], stream=True, **kw):
        if ch.usage:
            usage = ch.usage
        for c in ch.choices:
            if c.delta.content:
                parts.append(c.delta.content)
                if on_delta:
                    on_delta()
            if c.finish_reason:
                finish = c.finish_reason
    return parts, finish, usage


def cli_answer(prompt, n):
    p = subprocess.run([PINFER, "run", "-m", MODEL, "-p", prompt, "-n", str(n), "--temp", "0"],
                       capture_output=True)
    return p.stdout.decode()


def api(srv):
    tk = hf_tokenizer()
    system = None
    tmpl = model_template()

    # the model's template, rendered independently: the prompt's token count
    def chat_tokens(msgs):
        text = render(tmpl, "<|im_start|>", "<|im_end|>", msgs)
        return len(tk.encode(text).ids)

    ok(srv.raw("GET", "/health", key=False) == (200, b'{"status":"ok"}'), "GET /health: ok, no key needed")
    ids = [m.id for m in srv.client.models.list().data]
    ok(ids == [os.path.basename(MODEL)], f"GET /v1/models: the model ({ids})")

    q = "Name the three primary colors."
    r = chat(srv, q, max_tokens=40)
    text = r.choices[0].message.content
    want = cli_answer(q, 40)
    ok(text == want.rstrip("\n") or text == want,
       "chat, greedy: the answer of `pinfer run --temp 0` on the same prompt", f"{text!r}\n{want!r}")
    # the template's default system prompt comes first, as jinja2 renders it
    out = subprocess.run([PINFER, "run", "-m", MODEL, "-p", q, "-n", "1", "--verbose-prompt", "--temp", "0"],
                         capture_output=True).stderr.decode()
    m = re.search(r"prompt tokens: ([0-9 ]+)", out)
    n_cli = len(m.group(1).split()) if m else -1
    ok(r.usage.prompt_tokens == n_cli, f"chat: usage.prompt_tokens {r.usage.prompt_tokens} = the CLI's prompt ({n_cli})")
    msgs = [{"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "Four."},
            {"role": "user", "content": "And 3+3?"}]
    r2 = srv.client.chat.completions.create(model="m", messages=msgs, max_tokens=8, temperature=0)
    ok(r2.usage.prompt_tokens == chat_tokens(msgs),
       f"chat, 4 messages: usage.prompt_tokens {r2.usage.prompt_tokens} = the jinja2 template's text "
       f"through the reference tokenizer ({chat_tokens(msgs)})")
    ok(r2.usage.total_tokens == r2.usage.prompt_tokens + r2.usage.completion_tokens and
       r2.choices[0].finish_reason in ("stop", "length"), "chat: total_tokens adds up; a finish_reason")

    r = chat(srv, "Write a poem about the sea.", max_tokens=7)
    ok(r.usage.completion_tokens == 7 and r.choices[0].finish_reason == "length",
       f"max_tokens 7: 7 tokens, finish_reason length ({r.usage.completion_tokens}, {r.choices[0].finish_reason})")

    whole = chat(srv, "Tell me about Paris.", max_tokens=48).choices[0].message.content
    parts, finish, usage = stream_text(srv, "Tell me about Paris.", max_tokens=48,
                                       stream_options={"include_usage": True})
    ok(len(parts) > 5 and "".join(parts) == whole,
       f"streamed: {len(parts)} deltas that add up to the unstreamed answer", f"{''.join(parts)!r}\n{whole!r}")
    ok(finish in ("stop", "length") and usage is not None and usage.completion_tokens > 0,
       f"streamed: a finish_reason ({finish}) and, with include_usage, the usage ({usage})")

    # completions: a raw prompt; usage against the reference tokenizer
    prompt = "The capital of France is Paris. The capital of Italy is"
    c = srv.client.completions.create(model="m", prompt=prompt, max_tokens=24, temperature=0)
    ok(c.usage.prompt_tokens == len(tk.encode(prompt).ids),
       f"completions: usage.prompt_tokens {c.usage.prompt_tokens} = the reference tokenizer's "
       f"{len(tk.encode(prompt).ids)}")
    full = c.choices[0].text
    cut = full.find(".")
    cs = srv.client.completions.create(model="m", prompt=prompt, max_tokens=24, temperature=0,
                                       stop=["."])
    ok(cut > 0 and cs.choices[0].text == full[:cut] and cs.choices[0].finish_reason == "stop",
       f"stop ['.']: the text up to the first '.' ({cs.choices[0].text!r} of {full!r}), finish_reason stop")
    two = full[cut - 3:cut + 1] if cut > 3 else "zz"
    cs2 = srv.client.completions.create(model="m", prompt=prompt, max_tokens=24, temperature=0,
                                        stop=["nothing like it", two])
    ok(cs2.choices[0].text == full[:full.find(two)], f"a stop string across tokens ({two!r}): cut where it begins")
    st = [ch.choices[0].text for ch in srv.client.completions.create(
        model="m", prompt=prompt, max_tokens=24, temperature=0, stop=["."], stream=True) if ch.choices]
    ok("".join(st) == full[:cut], "completions streamed with a stop string: the same text, nothing of the stop string")

    # sampling: the same seed, the same answer
    a = [chat(srv, "Invent a name for a cat.", temperature=1.0, seed=s, max_tokens=16).choices[0].message.content
         for s in (7, 7, 8, 9)]
    ok(a[0] == a[1], "temperature 1, seed 7 twice: the same answer", a)
    ok(len(set(a[1:])) > 1, "seeds 7, 8, 9: not all the same answer", a)

    # prefix cache: a long shared system prompt is found the second time
    sysmsg = "You are a careful assistant. " * 12
    before = srv.metrics()
    for u in ("Hi!", "Hello!"):
        srv.client.chat.completions.create(model="m", max_tokens=4, temperature=0, messages=[
            {"role": "system", "content": sysmsg}, {"role": "user", "content": u}])
    after = srv.metrics()
    hit = after["pinfer_prompt_tokens_cached_total"] - before["pinfer_prompt_tokens_cached_total"]
    ok(hit >= 64, f"a shared system prompt: {hit:.0f} prompt tokens from the prefix cache the second time")


def concurrency(srv, n=16, max_tokens=32):
    prompts = [f"Question {i}: what is {i} times {i + 3}? Explain." for i in range(n)]
    alone = [stream_text(srv, p, max_tokens=max_tokens)[0] for p in prompts]
    got = [None] * n

    def one(i):
        got[i] = stream_text(srv, prompts[i], max_tokens=max_tokens)[0]
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    peak = [0]

    def watch():
        while any(t.is_alive() for t in ts):
            peak[0] = max(peak[0], srv.metrics().get("pinfer_slots_active", 0))
            time.sleep(0.05)
    for t in ts:
        t.start()
    w = threading.Thread(target=watch)
    w.start()
    for t in ts:
        t.join()
    w.join()
    same = [i for i in range(n) if "".join(got[i]) == "".join(alone[i])]
    ok(len(same) == n, f"{n} concurrent greedy streams: each equals the same request alone ({len(same)} of {n})",
       "\n".join(f"{i}: {''.join(alone[i])!r} != {''.join(got[i] or [])!r}" for i in range(n) if i not in same))
    ok(peak[0] >= n // 2, f"they ran together (at most {peak[0]:.0f} slots active at once)")


def sock_send(port, data, read=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(data)
    out = b""
    if read:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    s.close()
    return out


def post_req(path, body, key=KEY, extra=""):
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d+)", resp)
    return int(m.group(1)) if m else None


def abuse(srv, tag=""):
    port = srv.port
    good = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}
    cases = [
        ("malformed JSON", b'{"messages": [', 400, None),
        ("truncated body (Content-Length says more)", None, None, None),
        ("not an object", b'[1, 2]', 400, None),
        ("messages a string", json.dumps({"messages": "hi"}).encode(), 400, "messages"),
        ("max_tokens a string", json.dumps(dict(good, max_tokens="5")).encode(), 400, "max_tokens"),
        ("temperature a string", json.dumps(dict(good, temperature="hot")).encode(), 400, "temperature"),
        ("stop a number", json.dumps(dict(good, stop=5)).encode(), 400, "stop"),
        ("a role that is not one", json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "messages"),
        ("n = 2", json.dumps(dict(good, n=2)).encode(), 400, "n"),
        ("unknown fields (ignored)", json.dumps(dict(good, frobnicate={"a": 1}, logit_bias={})).encode(), 200, None),
    ]
    for what, body, want, param in cases:
        if body is None:   # says 1000 bytes, sends 10, closes: dropped, nothing run
            before = srv.metrics()
            raw = post_req("/v1/chat/completions", b"x" * 1000)
            sock_send(port, raw[:-990])
            time.sleep(0.3)
            after = srv.metrics()
            ok(after["pinfer_requests_total"] == before["pinfer_requests_total"] and
               after["pinfer_queue_length"] == 0 and after["pinfer_slots_active"] == 0 and
               srv.raw("GET", "/health", key=False)[0] == 200,
               f"{tag}{what}: dropped, no request run, the server healthy")
            continue
        resp = sock_send(port, post_req("/v1/chat/completions", body), read=True)
        st = status_of(resp)
        payload = resp.split(b"\r\n\r\n", 1)[-1]
        detail = ""
        if st != 200:
            try:
                err = json.loads(payload)["error"]
                detail = err.get("param")
                good_err = isinstance(err["message"], str) and err["message"]
            except (ValueError, KeyError, TypeError):
                good_err = False
        else:
            good_err = True
        ok(st == want and good_err and (param is None or detail == param),
           f"{tag}{what}: {want}" + (f", param {param}" if param else ""), resp[:400])
    # a body over the limit: with Content-Length, and chunked
    big = b'{"messages": "' + b"a" * (2 << 20) + b'"}'
    try:
        resp = sock_send(port, post_req("/v1/chat/completions", big), read=True)
    except (BrokenPipeError, ConnectionResetError):
        resp = b"HTTP/1.1 413 (connection reset while sending)"
    ok(status_of(resp) == 413, f"{tag}a body of 2 MiB (Content-Length): 413", resp[:300])
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
               b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    for _ in range(24):
        chunked += b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
    chunked += b"0\r\n\r\n"
    try:
        resp = sock_send(port, chunked, read=True)
    except (BrokenPipeError, ConnectionResetError):
        resp = b"HTTP/1.1 413 (connection reset while sending)"
    ok(status_of(resp) == 413, f"{tag}a chunked body of 1.5 MiB: 413", resp[:300])
    # keys
    for what, key in (("no API key", None), ("a wrong API key", "nope"), ("a key one byte longer", KEY + "x")):
        resp = sock_send(port, post_req("/v1/chat/completions", json.dumps(good).encode(), key=key), read=True)
        ok(status_of(resp) == 401 and b"invalid_api_key" in resp, f"{tag}{what}: 401", resp[:300])
    st, _ = srv.raw("GET", "/metrics", key=False)
    ok(st == 401, f"{tag}/metrics without the key: 401")
    st, _ = srv.raw("GET", "/v1/nothing")
    ok(st == 404, f"{tag}an unknown path: 404")
    # longer than the context
    long_text = "word " * (CTX + 50)
    st, data = srv.raw("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": long_text}]})
    ok(st == 400 and b"context_length_exceeded" in data, f"{tag}a prompt longer than the context: 400 context_length_exceeded", data[:300])
    # 1000 connections opened and dropped (some with half a request line)
    for i in range(1000):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 3 == 1:
            s.sendall(b"POST /v1/chat/comp")
        elif i % 3 == 2:
            s.sendall(post_req("/v1/chat/completions", json.dumps(good).encode())[:40])
        s.close()
    r = srv.client.chat.completions.create(model="m", **good)
    ok(r.choices[0].message.content is not None, f"{tag}1000 connections opened and dropped: still serving")

    # a slow reader (one byte a second) while another client is served
    body = json.dumps({"messages": [{"role": "user", "content": "Tell a long story."}],
                       "max_tokens": 64, "stream": True}).encode()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    slow.connect(("127.0.0.1", port))
    slow.sendall(post_req("/v1/chat/completions", body))
    got = b""
    t0 = time.time()
    done = threading.Event()
    served = []

    def other():
        served.append(srv.client.chat.completions.create(model="m", **good).choices[0].message.content)
        done.set()
    threading.Thread(target=other).start()
    while time.time() - t0 < 4:
        got += slow.recv(1)
        time.sleep(1)
    ok(done.wait(60) and served and len(got) >= 3 and b"HTTP/1.1 200".startswith(got),
       f"{tag}a client reading a byte a second ({len(got)} bytes in 4 s): another is served meanwhile")
    slow.close()

    # disconnects mid-stream: the slots come free at once
    def started_stream():
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        b = json.dumps({"messages": [{"role": "user", "content": "Count to a thousand."}],
                        "max_tokens": 400, "stream": True, "ignore_eos": True}).encode()
        s.sendall(post_req("/v1/chat/completions", b))
        buf = b""
        while buf.count(b"data:") < 3:
            buf += s.recv(4096)
        return s
    before = srv.metrics()
    socks = [started_stream() for _ in range(4)]
    busy = srv.metrics()["pinfer_slots_active"]
    for s in socks:
        s.close()
    t0 = time.time()
    while time.time() - t0 < 5 and srv.metrics()["pinfer_slots_active"] > 0:
        time.sleep(0.05)
    m = srv.metrics()
    ok(busy >= 4 and m["pinfer_slots_active"] == 0 and m["pinfer_kv_blocks{state=\"used\"}"] == 0,
       f"{tag}4 clients gone mid-stream: their slots and blocks freed in {time.time() - t0:.2f} s "
       f"(active {busy:.0f} -> {m['pinfer_slots_active']:.0f})")
    ok(m["pinfer_client_disconnects_total"] - before["pinfer_client_disconnects_total"] >= 4,
       f"{tag}... and counted in /metrics")
    r = srv.client.chat.completions.create(model="m", **good)
    ok(r.choices[0].finish_reason in ("stop", "length"), f"{tag}and the server goes on serving")


def sigterm(srv):
    """A stream running at SIGTERM ends cleanly; the process exits 0. The signal
    goes once the stream's first delta is here; the rest of its 100 tokens
    fit well within the grace of 20 s, even on a loaded machine."""
    res = {}
    started = threading.Event()

    def run():
        try:
            parts, finish, _ = stream_text(srv, "Tell a very long story about dragons.",
                                           on_delta=started.set, max_tokens=100)
            res["ok"] = (parts, finish)
        except Exception as e:  # noqa: BLE001
            res["err"] = repr(e)
    t = threading.Thread(target=run)
    t.start()
    started.wait(60)
    rc = srv.stop()
    t.join(30)
    ok(rc == 0, f"SIGTERM: exit status 0 ({rc})", srv.stderr()[-2000:])
    ok("ok" in res and res["ok"][1] in ("stop", "length"),
       f"SIGTERM: the running stream ended cleanly ({res.get('ok', (0, res.get('err')))[1]})")
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        ok(False, "after SIGTERM: nothing listens")
    except OSError:
        ok(True, "after SIGTERM: nothing listens")


def memory_settles(srv, base, tag=""):
    t0 = time.time()
    rss = srv.rss_kib()
    while time.time() - t0 < 5 and rss > base + 32 * 1024:
        time.sleep(0.5)
        rss = srv.rss_kib()
    ok(rss <= base + 32 * 1024, f"{tag}resident memory back near the baseline: {base // 1024} MiB -> {rss // 1024} MiB")


def main():
    r = subprocess.run([PINFER, "serve", "--help"], capture_output=True)
    ok(r.returncode == 0 and b"--parallel" in r.stdout, "pinfer serve --help")
    r = subprocess.run([PINFER, "serve", "--parallel", "0"], capture_output=True)
    ok(r.returncode == 2 and b"--parallel" in r.stderr, "--parallel 0: exit 2, the option named")
    r = subprocess.run([PINFER, "serve", "--api-key-file", "/nonexistent"], capture_output=True)
    ok(r.returncode == 2 and b"api-key-file" in r.stderr, "--api-key-file missing: exit 2")
    r = subprocess.run([PINFER, "serve", "-m", "/nonexistent.gguf", "--port", "0"], capture_output=True, timeout=60)
    ok(r.returncode == 1 and b"nonexistent" in r.stderr, "a missing model: exit 1, the file named")

    srv = Server(PINFER)
    if not ok(srv.port, "pinfer serve starts and says its port", srv.stderr()):
        srv.p.kill()
        return
    plan = subprocess.run([PINFER, "serve", "--plan", "-m", MODEL, "--ctx", str(CTX),
                           "--parallel", "16"], capture_output=True, text=True, timeout=60)
    kv = re.search(r"server KV cache\s+([0-9.]+) MiB: 16 requests of (\d+) positions", plan.stdout)
    held = re.search(r"\(KV cache ([0-9.]+) MiB\)", srv.stderr())
    # The region serve allocated, rounded up to its page size (at most 2 MiB);
    # the plan prints MiB to one decimal.
    region = [v for k, v in srv.metrics().items()
              if k.startswith('pinfer_memory_bytes{region="kv"')]
    planned = float(kv.group(1)) * MIB if kv else -1
    ok(plan.returncode == 0 and kv and held and kv.group(1) == held.group(1) and
       int(kv.group(2)) == CTX and re.search(r"^  total ", plan.stdout, re.M) and
       len(region) == 1 and planned - 0.05 * MIB <= region[0] < planned + 2.05 * MIB,
       f"serve --plan: the weights' placement, and the server's KV cache of 16 x {CTX} positions "
       f"as serve allocates it ({held and held.group(1)} MiB, the region "
       f"{region[0] / MIB if region else '?'} MiB); exit 0",
       plan.stdout + plan.stderr)
    api(srv)
    concurrency(srv)
    base = srv.rss_kib()
    abuse(srv)
    memory_settles(srv, base)
    sigterm(srv)

    asan = os.path.join(ROOT, "build", "asan", "pinfer")
    if not os.path.exists(asan) or BUILD.rstrip("/").endswith("asan"):
        skip("the ASan build: build/asan/pinfer missing (make SAN=1 tests)")
        return
    srv = Server(asan)
    if not ok(srv.port, "ASan: pinfer serve starts", srv.stderr()):
        srv.p.kill()
        return
    concurrency(srv, n=16, max_tokens=8)
    abuse(srv, "ASan: ")
    rc = srv.stop()
    err = srv.stderr()
    ok(rc == 0 and "Sanitizer" not in err and "runtime error" not in err,
       f"ASan: exit 0 after SIGTERM, no sanitizer report, no leak ({rc})", err[-3000:])


main()
end()
