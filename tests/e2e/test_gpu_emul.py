# SPDX-License-Identifier: MIT
"""GPU layers (-ngl) end to end on a machine without a GPU: the engine with
the CUDA backend's contract carried out on the CPU (tests/gpu/emul.c, built
as build/tests/libpinfer-cuda-emul.so, loaded through $PINFER_CUDA_LIB). It
tests the engine's side of -ngl and the GPU script's own checks; the
backend's kernels run only on a GPU (tests/gpu/run.sh).

- tests/gpu/compare.py, the GPU script's checks with their limits from the
  CPU's own figures, on synthetic Q4_K (layers streamed through a GPU
  memory limit too), qwen3 (q/k norms, 128-dimension heads) and qwen2
  (biases) models;
- SmolLM2 (its tied output layer and vocabulary): `perplexity -ngl` at all
  and at half of the layers, KL divergence from the CPU's reference mode
  within compare.py's limit (1.5x the CPU 8-bit path's own, + 1e-5), top
  token within 3 points of the CPU's;
- run, chat (two turns: the GPU's KV cache kept between them) and bench
  with -ngl;
- `serve -ngl 10` (the GPU's KV cache paged, its blocks the CPU's): a
  greedy answer equals `run -ngl 10`'s; 4 concurrent requests each equal
  the same request alone; a request again, its prompt's blocks now from
  the prefix cache: the same answer; a failing step is that request's HTTP
  500 and the next is served; on the ASan build, two requests at once and
  SIGTERM: no report, no leak;
- `serve --plan -ngl 10 --stream-layers 4 --gpu-mem 44M`: the server's KV
  cache, layers 26-29 to the GPU from the drive at each step; serve holds the GPU memory it states; a
  streamed layer's copy failing part way through a step (fill:2): that
  request's 500, then the next two answered as with every layer resident
  (the host's ring back in order: llm_stream_end_pass);
- layers the budget streams from the drive (--stream-layers), read into
  the host's ring and copied on to the GPU's: the logits of every layer
  resident bit for bit (the output layer on the CPU in both), one by one
  and as a batch: with them read once at load and kept (the GPU keeping
  every layer, none is held in host memory: 6 fetches in all),
  with some kept and the rest from the drive at each call, with all
  of them from the drive at each call (4 per call), and with some
  of the GPU's streamed layers from memory and the rest from the drive;
  run with them kept: the answer of every layer resident, no host stream
  after the load; on the ASan build too;
- the budget streaming a CPU layer too (-ngl 5 --stream-layers 6 --ring 2),
  in room for some of the GPU's: layers 1-b kept after one read, the host's
  2 slots cycling over 0 and b+1-5 (b fetches at load, 5-b per token): the
  resident logits bit for bit; on the ASan build too;
- the device's memory: the backend never holds more than the plan counts;
  without --gpu-mem, the device's free memory less 5% decides at load what
  streams (the same logits, bit for bit, as --gpu-mem giving the same
  placement); a device too small: exit 1, what it needs;
- each backend operation failing (PINFER_EMUL_FAIL): exit 1 with one line
  that says where, nothing crashes; and again on the ASan build, where a
  leak on those paths fails too.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading

from tap import BUILD, MODEL, PINFER, ROOT, end, helper, ok, serve_port, skip, skip_all

EMUL = os.path.join(BUILD, "tests", "libpinfer-cuda-emul.so")
PY = sys.executable
TEXT = os.path.join(ROOT, "tests", "reference", "alice-ch1.txt")
TMP = tempfile.mkdtemp(prefix="pinfer-gpu-emul-",
                       dir=os.environ.get("PINFER_TEST_DIR", "/var/tmp"))
MIB = 1048576.0

if not os.path.exists(EMUL):
    skip_all(f"{EMUL} missing (make tests)")
try:
    import numpy  # noqa: F401  (compare.py's)
except ImportError:
    skip_all("numpy is not installed (make venv)")


def run(*args, env=None, stdin=None, exe=PINFER, emul=EMUL):
    e = dict(os.environ, PINFER_CUDA_LIB=emul, PINFER_THREADS="2")
    e.pop("PINFER_EMUL_FAIL", None)
    e.update(env or {})
    return subprocess.run([exe, *args], capture_output=True, timeout=900, env=e, input=stdin)


def text(p):
    return p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


SMALL = ["--embd", "512", "--layers", "6", "--heads", "8", "--kv-heads", "2", "--ff", "1536",
         "--vocab", "1000", "-q"]


def synth(name, *args):
    path = os.path.join(TMP, name + ".gguf")
    p = run("synth", *SMALL, *args, "-o", path)
    return path if ok(p.returncode == 0, f"synth {name}", text(p)) else None


def test_compare(models):
    """The GPU script's checks (tests/gpu/compare.py), each of its lines a case."""
    for name, path, stream in models:
        if not path:
            continue
        args = [PY, os.path.join(ROOT, "tests", "gpu", "compare.py"), helper("print_logits"),
                path, "6"] + ([PINFER] if stream else [])
        e = dict(os.environ, PINFER_CUDA_LIB=EMUL, PINFER_THREADS="2")
        p = subprocess.run(args, capture_output=True, text=True, timeout=900, env=e)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith(("ok: ", "FAIL: "))]
        for ln in lines:
            ok(ln.startswith("ok: "), f"compare.py {ln.split(': ', 1)[1]}", p.stderr)
        want = 12 if stream else 7
        ok(p.returncode == 0 and len(lines) == want,
           f"compare.py on {name}: exit 0, {want} checks", p.stdout + p.stderr)


def kl_of(out):
    m = re.search(r"mean KL divergence = ([0-9.]+)", out)
    t = re.search(r"same top token = ([0-9.]+)%", out)
    return (float(m.group(1)), float(t.group(1)) / 100) if m and t else (None, None)


def test_perplexity():
    base = os.path.join(TMP, "alice.base")
    common = ["-m", MODEL, "-f", TEXT, "-c", "128", "--chunks", "2", "-q"]
    p = run("perplexity", *common, "--exact", "--save-base", base)
    if not ok(p.returncode == 0, "perplexity --exact --save-base: the CPU's reference", text(p)):
        return
    cpu = run("perplexity", *common, "--kl-divergence-base", base)
    kl_c, top_c = kl_of(text(cpu))
    if not ok(cpu.returncode == 0 and kl_c is not None, "perplexity: the CPU 8-bit path's KL",
              text(cpu)):
        return
    for ngl in (30, 15):
        g = run("perplexity", *common, "-ngl", str(ngl), "--kl-divergence-base", base)
        kl_g, top_g = kl_of(text(g))
        ok(g.returncode == 0 and kl_g is not None and kl_g <= 1.5 * kl_c + 1e-5 and
           top_g >= top_c - 0.03,
           f"perplexity -ngl {ngl} on SmolLM2: mean KL {kl_g} (CPU {kl_c:.6f}, limit "
           f"{1.5 * kl_c + 1e-5:.6f}), top-1 {100 * (top_g or 0):.1f}% (CPU {100 * top_c:.1f}%)",
           text(g))


def test_cli(q4k):
    p = run("run", "-m", MODEL, "-ngl", "999", "-p", "Name a color.", "-n", "12", "--temp", "0")
    ok(p.returncode == 0 and p.stdout.strip(), "run -ngl 999: an answer, exit 0", text(p))
    p = run("chat", "-m", MODEL, "-ngl", "10", "-n", "8", "--temp", "0", "--verbose-prompt",
            stdin=b"Name a color.\nAnd another one?\n")
    turns = re.findall(r"prompt tokens: ([\d ]+)", p.stderr.decode(errors="replace"))
    answers = [ln for ln in p.stdout.decode(errors="replace").splitlines() if ln.strip()]
    ok(p.returncode == 0 and len(turns) == 2 and len(answers) == 2,
       "chat -ngl 10: two turns (the second fed after the first's KV cache), two answers, "
       "exit 0", text(p))
    if q4k:
        p = run("bench", "-m", q4k, "-ngl", "999", "-p", "32", "-n", "4", "-r", "1", "--json")
        rows = [json.loads(ln) for ln in p.stdout.decode().splitlines() if ln.startswith("{")]
        ok(p.returncode == 0 and [r["test"] for r in rows] == ["pp32", "tg4"] and
           all(r["backend"].startswith("CUDA 6/6 layers") and r["t_s"] > 0 for r in rows),
           "bench -ngl 999 -p 32 -n 4: pp32 and tg4 rows, backend 'CUDA 6/6 layers', exit 0",
           text(p))


def post(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if r.status == 200 else data


def metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


SERVE = ("-m", MODEL, "--ctx", "512", "--parallel", "4", "-t", "2", "-ngl", "10")


def start_serve(env=None, exe=PINFER, emul=EMUL, args=()):
    """`pinfer serve -ngl 10` on SmolLM2 with the emulation: (Popen, port, its stderr lines)."""
    e = dict(os.environ, PINFER_CUDA_LIB=emul, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
             **(env or {}))
    p = subprocess.Popen([exe, "serve", "--port", "0", *SERVE, *args],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=e)
    lines = []
    port = serve_port(p, lines)
    threading.Thread(target=lambda: [lines.append(ln.decode(errors="replace"))
                                     for ln in p.stderr], daemon=True).start()
    return p, port, lines


def chat_answer(port, q, n=24):
    st, r = post(port, "/v1/chat/completions",
                 {"messages": [{"role": "user", "content": q}], "max_tokens": n,
                  "temperature": 0})
    return r["choices"][0]["message"]["content"] if st == 200 else f"HTTP {st}: {r}"


def fails_then(port, q, expect, what, n=1):
    """A request that the backend's injected error fails: HTTP 500 with @expect in the body;
    then @n more, their answers."""
    st, body = post(port, "/v1/chat/completions",
                    {"messages": [{"role": "user", "content": q}], "max_tokens": 24,
                     "temperature": 0}) if port else (None, b"")
    ok(st == 500 and expect in body, f"{what}: HTTP {st}, the backend's message", body)
    return [chat_answer(port, q) if port else None for _ in range(n)]


def test_serve():
    q = "Name the three primary colors."
    want = run("run", "-m", MODEL, "-ngl", "10", "-p", q, "-n", "24", "--temp", "0")
    want = want.stdout.decode().rstrip("\n")
    p, port, lines = start_serve()
    try:
        if not ok(port is not None and any("GPU (CPU emulation" in ln and "layers 20-29 and the "
                                           "output layer" in ln for ln in lines),
                  "serve -ngl 10: listening, layers 20-29 and the output layer on the GPU",
                  "".join(lines)):
            return
        got = chat_answer(port, q)
        ok(got == want, "serve -ngl 10: a greedy answer equals `run -ngl 10 --temp 0`'s",
           f"{got!r}\n{want!r}")
        qs = [f"Question {i}: what is {i} times {i + 3}? Explain." for i in range(4)]
        alone = [chat_answer(port, x) for x in qs]
        together = [None] * 4

        def one(i):
            together[i] = chat_answer(port, qs[i])
        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        ok(together == alone and all(a and not a.startswith("HTTP") for a in alone),
           "serve -ngl 10: 4 concurrent greedy requests each equal the same request alone",
           "\n".join(f"{a!r} / {b!r}" for a, b in zip(alone, together)))
        before = metric(port, "pinfer_prompt_tokens_cached_total") or 0
        again = chat_answer(port, qs[0])
        hit = (metric(port, "pinfer_prompt_tokens_cached_total") or 0) - before
        ok(again == alone[0] and hit >= 16,
           f"serve -ngl 10: a request again, {hit:.0f} of its prompt's tokens from the prefix "
           "cache (the GPU's blocks too): the same answer", f"{again!r} / {alone[0]!r}")
    finally:
        p.terminate()
        ok(p.wait(timeout=60) == 0, "serve -ngl 10: SIGTERM, exit 0", "".join(lines))

    # the backend failing in a step: that request's error, the next one served
    p, port, lines = start_serve({"PINFER_EMUL_FAIL": "layers:2"})
    try:
        got = fails_then(port, q, b"layers: an error injected",
                         "serve -ngl 10, the GPU's second step failing")
        ok(got == [want], "serve -ngl 10: the next request served, the same answer", repr(got))
    finally:
        p.terminate()
        ok(p.wait(timeout=60) == 0, "serve -ngl 10 after the failure: SIGTERM, exit 0",
           "".join(lines))

    # layers 26-29 from the drive, through the host's ring to the GPU's: --plan says so, and
    # what serve then holds on the GPU; a streamed layer's copy failing part way through a
    # step is that request's 500, and the next is served from the ring in order again
    drive = ("--stream-layers", "4", "--gpu-mem", "44M")    # too little to keep any
    plan = run("serve", "--plan", *SERVE, *drive)
    gpu = re.search(r"GPU total\s+([0-9.]+) MiB", text(plan))
    ok(plan.returncode == 0 and gpu and re.search(r"server KV cache .* 4 requests of 512 "
                                                  r"positions", text(plan)) and
       re.search(r"layers 26-29 read from the drive first", text(plan)),
       "serve --plan -ngl 10 --stream-layers 4 --gpu-mem 44M: the server's KV cache, layers "
       "26-29 to the GPU from the drive each step", text(plan))
    p, port, lines = start_serve({"PINFER_EMUL_FAIL": "fill:2"}, args=drive)
    try:
        held = re.search(r"([0-9.]+) MiB of its memory", "".join(lines))
        ok(gpu and held and held.group(1) == gpu.group(1),
           f"serve with them: the GPU memory --plan states ({gpu and gpu.group(1)} MiB)",
           "".join(lines))
        got = fails_then(port, q, b"fill: an error injected",
                         "serve, the second streamed layer's copy failing", 2)
        ok(got == [want, want], "serve: the next requests served from the drive's ring in "
           "order, the same answer as every layer resident", repr(got))
    finally:
        p.terminate()
        ok(p.wait(timeout=60) == 0, "serve with layers from the drive: SIGTERM, exit 0",
           "".join(lines))
    p = run("serve", "-m", MODEL, "--port", "0", "-ngl", "10",
            env={"PINFER_EMUL_MEM": str(4 << 20)})
    ok(p.returncode == 1 and b"hold not even" in p.stderr,
       "serve -ngl 10 on a device of 4 MiB: exit 1, says what it needs", p.stderr)

    # the ASan build: two requests at once over the GPU's paged cache, then SIGTERM
    asan = os.path.join(ROOT, "build", "asan")
    if not os.path.exists(os.path.join(asan, "tests", "libpinfer-cuda-emul.so")):
        skip("serve -ngl on the ASan build: build/asan missing (make SAN=1 tests)")
        return
    p, port, lines = start_serve(exe=os.path.join(asan, "pinfer"),
                                 emul=os.path.join(asan, "tests", "libpinfer-cuda-emul.so"))
    got = [None, None]
    try:
        if port:
            ts = [threading.Thread(target=lambda i=i: got.__setitem__(i, chat_answer(port, x, 8)))
                  for i, x in enumerate((q, "Name a color."))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
    finally:
        p.terminate()
        rc = p.wait(timeout=120)
    err = "".join(lines)
    ok(port and all(g and not g.startswith("HTTP") for g in got) and rc == 0 and
       "Sanitizer" not in err and "runtime error" not in err,
       "serve -ngl 10 on the ASan build: two requests at once answered; SIGTERM: exit 0, no "
       "sanitizer report, no leak", f"{got}\n{err[-3000:]}")


def plan_total(path, ngl, extra=()):
    p = run("run", "-m", path, "--plan", "-ngl", str(ngl), "-c", "256", *extra)
    m = re.search(r"GPU total\s+([0-9.]+) MiB", text(p))
    s = re.search(r"GPU streamed .* layers (\d+)-(\d+) copied", text(p))
    return (float(m.group(1)) if m else None, s.group(0) if s else None)


def logits(path, env, mode="--all"):
    e = dict(PINFER_NGL="6", PINFER_CTX="256")
    e.update(env)
    p = run(*([mode] if mode else []), path, *[str(i) for i in range(1, 101)], env=e,
            exe=helper("print_logits"))
    return p


def compare_limit(q4k, which, *extra):
    p = subprocess.run([PY, os.path.join(ROOT, "tests", "gpu", "compare.py"), which, q4k, "6",
                        PINFER, *extra], capture_output=True, text=True,
                       env=dict(os.environ, PINFER_CUDA_LIB=EMUL))
    lim = p.stdout.strip()
    return int(lim) if lim.isdigit() else None


def test_drive(q4k):
    if not q4k:
        return
    res, lim = compare_limit(q4k, "--resident-limit"), compare_limit(q4k, "--limit")
    lim4 = compare_limit(q4k, "--limit", "4")
    if not ok(res and lim and lim4, f"GPU memory limits: every layer resident, the output layer "
              f"on the CPU ({res}); two layers streamed ({lim}); four ({lim4})"):
        return

    def plan(mem):
        return text(run("run", "-m", q4k, "--plan", "-ngl", "6", "-c", "256", "--stream-layers",
                        "4", "--gpu-mem", str(mem)))
    def slots(p):
        m = re.search(r"^  ring .*: (\d+) slots? of", p, re.M)
        return int(m.group(1)) if m else None
    p = plan(lim4)
    ok(re.search(r"GPU streamed .* layers 2-5 copied through a ring .*, layers 2-5 read from the "
                 r"drive first", p) and "GPU from drive" not in p and slots(p) == 4,
       "--stream-layers 4 -ngl 6 in room for 2 layers: the plan copies layers 2-5 to the GPU "
       "from the drive's ring of 4 host slots at every call", p)
    p = plan(lim)
    kept = re.search(r"GPU from drive +layers 2-(\d), .* once", p)
    b = int(kept.group(1)) if kept else 9
    ok(b < 5 and re.search(rf"GPU streamed .* layers {b + 1}-5 copied through a ring .*, layers "
                           rf"{b + 1}-5 read from the drive first", p) and
       re.search(rf"^  streamed .* layers {b + 1}-5", p, re.M) and slots(p) == 5 - b,
       f"in room for {b + 1} layers: layers 2-{b} read from the drive once, at load, and kept; "
       f"{b + 1}-5 from the drive's ring at every call, the host streaming only those "
       f"through {5 - b} slots", p)
    p = plan(res)
    ok(re.search(r"GPU from drive +layers 0-5, .* once, at load", p) and "GPU streamed" not in p and
       slots(p) == 1 and "to stage the GPU's reads at load" in p and
       re.search(r"^  resident .*\(0 of 6 layers\)", p, re.M),
       "in room for all: layers 0-5 read from the drive once, at load, through one host slot, "
       "none held in host memory", p)
    want = {m: logits(q4k, {"PINFER_GPU_MEM": str(res)}, m) for m in (None, "--all")}
    log = os.path.join(TMP, "fetches.log")
    for what, env, fetches in (
            ("layers 0-5 read from the drive once, at load, and kept",
             {"PINFER_STREAM_LAYERS": "4", "PINFER_GPU_MEM": str(res)}, lambda n: n == 6),
            (f"layers 2-{b} kept, {b + 1}-5 from the drive at each call",
             {"PINFER_STREAM_LAYERS": "4", "PINFER_GPU_MEM": str(lim)},
             lambda n: n == b - 1 + (5 - b) * 100),
            ("layers 2-5 from the drive at each call",
             {"PINFER_STREAM_LAYERS": "4", "PINFER_GPU_MEM": str(lim4)}, lambda n: n == 4 * 100),
            ("layer 5 from the drive, the other streamed ones from memory",
             {"PINFER_STREAM_LAYERS": "1", "PINFER_GPU_MEM": str(lim)}, lambda n: n == 100)):
        if os.path.exists(log):
            os.remove(log)
        got = {m: logits(q4k, dict(env, PINFER_EMUL_LOG=log), m) for m in (None, "--all")}
        with open(log) as f:
            n = int(f.readline().split()[1])      # one by one's: "fetches N peak BYTES"
        ok(all(got[m].returncode == 0 and got[m].stdout == want[m].stdout and want[m].stdout
               for m in got) and fetches(n),
           f"-ngl 6, {what}: the resident logits bit for bit, one by one and as a batch; "
           f"{n} layers fetched from the drive over 100 tokens one by one",
           "".join(text(got[m]) for m in got))
    asan = os.path.join(ROOT, "build", "asan", "tests")
    for what, layers, mem in (("layer 5 from the drive", "1", lim), ("layers 0-5 kept", "4", res),
                              (f"layers 2-{b} kept, {b + 1}-5 from the drive", "4", lim)):
        if not os.path.exists(os.path.join(asan, "print_logits")):
            break
        e = {"PINFER_STREAM_LAYERS": layers, "PINFER_GPU_MEM": str(mem), "PINFER_NGL": "6",
             "PINFER_CTX": "256"}
        a = run("--all", q4k, *[str(i) for i in range(1, 101)], env=e,
                exe=os.path.join(asan, "print_logits"),
                emul=os.path.join(asan, "libpinfer-cuda-emul.so"))
        ok(a.returncode == 0 and a.stdout == want["--all"].stdout and b"Sanitizer" not in a.stderr,
           f"{what}, on the ASan build: the same bits, no report, no leak", text(a))
    a = run("run", "-m", MODEL, "-ngl", "10", "-p", "Name a color.", "-n", "12", "--temp", "0")
    p = run("run", "-m", MODEL, "-ngl", "10", "--stream-layers", "4", "-p", "Name a color.",
            "-n", "12", "--temp", "0")
    ok(p.returncode == 0 and p.stdout.strip() and p.stdout == a.stdout and
       "10 read from the drive once" in text(p) and "streaming:" not in text(p),
       "run -ngl 10 --stream-layers 4 on SmolLM2: layers 20-29 read once for the GPU, none "
       "held in host memory, the host streams nothing after; the answer of -ngl 10", text(p))


def test_drive_cpu(q4k):
    """-ngl 5 --stream-layers 6 --ring 2: the budget streams every layer, the
    CPU's 0 and the GPU's 1-5. In room for some of the GPU's, the GPU keeps
    the first ones after one read at load; the host's ring of 2 slots cycles
    over 0 and the rest, reading them again at every token."""
    if not q4k:
        return

    def plan(mem):
        p = run("run", "-m", q4k, "--plan", "-ngl", "5", "-c", "256", "--stream-layers", "6",
                "--ring", "2", "--gpu-mem", str(mem))
        m = re.search(r"GPU streamed .* layers (\d)-5 copied", text(p))
        return text(p), None if p.returncode else 6 - int(m.group(1)) if m else 0

    lo, hi = 1 << 20, 1 << 34      # the largest limit at which 2 or more stream (or none fits)
    while hi - lo > 4096:
        mid = (lo + hi) // 2
        n = plan(mid)[1]
        lo, hi = (lo, mid) if n is not None and n < 2 else (mid, hi)
    p, n = plan(lo)
    kept = re.search(r"GPU from drive +layers 1-(\d), .* once", p)
    b = int(kept.group(1)) if kept else 9
    slots = re.search(r"^  ring .*: (\d+) slots? of", p, re.M)
    ok(b < 5 and n == 5 - b and re.search(rf"^  streamed .* layers 0-0, {b + 1}-5$", p, re.M) and
       slots and int(slots.group(1)) == 2,
       f"--stream-layers 6 -ngl 5 --ring 2 in room for {b} of the GPU's layers: layers 1-{b} "
       f"read from the drive once, at load, and kept; the host streams 0 and {b + 1}-5 "
       f"through 2 slots at every token", p)
    if b >= 5:
        return
    log = os.path.join(TMP, "fetches.log")
    want = {m: logits(q4k, {"PINFER_NGL": "5", "PINFER_GPU_MEM": str(lo)}, m)
            for m in (None, "--all")}
    if os.path.exists(log):
        os.remove(log)
    env = {"PINFER_NGL": "5", "PINFER_STREAM_LAYERS": "6", "PINFER_RING": "2",
           "PINFER_GPU_MEM": str(lo), "PINFER_EMUL_LOG": log}
    got = {m: logits(q4k, env, m) for m in (None, "--all")}
    with open(log) as f:
        n = int(f.readline().split()[1])      # one by one's: "fetches N peak BYTES"
    ok(all(got[m].returncode == 0 and got[m].stdout == want[m].stdout and want[m].stdout
           for m in got) and n == b + (5 - b) * 100,
       f"-ngl 5, layer 0 streamed for the CPU, 1-{b} kept, {b + 1}-5 from the drive at each "
       f"call: the resident logits bit for bit, one by one and as a batch; {n} layers fetched "
       f"from the drive over 100 tokens one by one ({b} at load, {5 - b} per token)",
       "".join(text(got[m]) for m in got))
    asan = os.path.join(ROOT, "build", "asan", "tests")
    if os.path.exists(os.path.join(asan, "print_logits")):
        e = {"PINFER_STREAM_LAYERS": "6", "PINFER_RING": "2", "PINFER_GPU_MEM": str(lo),
             "PINFER_NGL": "5", "PINFER_CTX": "256"}
        a = run("--all", q4k, *[str(i) for i in range(1, 101)], env=e,
                exe=os.path.join(asan, "print_logits"),
                emul=os.path.join(asan, "libpinfer-cuda-emul.so"))
        ok(a.returncode == 0 and a.stdout == want["--all"].stdout and b"Sanitizer" not in a.stderr,
           f"layers 0 and {b + 1}-5 streamed, 1-{b} kept, on the ASan build: the same bits, no "
           f"report, no leak", text(a))


def test_memory(q4k):
    if not q4k:
        return
    log = os.path.join(TMP, "peak.log")
    total, _ = plan_total(q4k, 6)
    p = logits(q4k, {"PINFER_EMUL_LOG": log})
    peak = None
    if os.path.exists(log):
        with open(log) as f:
            peak = int(f.read().split()[-1])
    ok(p.returncode == 0 and total and peak and peak <= total * MIB + 0.05 * MIB,
       f"every layer and the output: the backend held at most {peak} bytes, within the plan's "
       f"{total} MiB", text(p))

    # a limit that streams layers, given as the device's free memory and as --gpu-mem
    lim = compare_limit(q4k, "--limit")
    if not ok(lim, f"a GPU memory limit that streams two layers: {lim}"):
        return
    free = lim * 20 // 19 + 20     # the load's limit: the free memory less 5%
    os.remove(log)
    a = logits(q4k, {"PINFER_EMUL_MEM": str(free), "PINFER_EMUL_LOG": log})
    b = logits(q4k, {"PINFER_GPU_MEM": str(lim)})
    with open(log) as f:
        peak = int(f.read().split()[-1])
    _, streamed = plan_total(q4k, 6, ("--gpu-mem", str(lim)))
    ok(a.returncode == 0 and b.returncode == 0 and a.stdout == b.stdout and peak <= free,
       f"a device of {free} bytes: at load, the same placement ({streamed}) and logits bit for "
       f"bit as --gpu-mem {lim}; the backend held {peak} bytes", text(a) + text(b))
    p = logits(q4k, {"PINFER_EMUL_MEM": str(4 << 20)})
    ok(p.returncode == 1 and "hold not even the KV cache" in text(p) and not p.stdout,
       "a device of 4 MiB: exit 1, says what -ngl 6 needs", text(p))


FAILS = (("model_create:1", "-ngl"), ("ctx_create:1", "session on the GPU"),
         ("layers:1", "GPU layers"), ("layers:4", "GPU layers"), ("logits:2", "GPU output layer"))


def test_failures(exe, emul, what):
    for inject, where in FAILS:
        p = run("run", "-m", MODEL, "-ngl", "3", "-p", "Name a color.", "-n", "8", "--temp", "0",
                env={"PINFER_EMUL_FAIL": inject}, exe=exe, emul=emul)
        err = p.stderr.decode(errors="replace")
        lines = [ln for ln in err.splitlines() if "injected" in ln]
        ok(p.returncode == 1 and len(lines) == 1 and where in lines[0] and
           "Sanitizer" not in err and "runtime error" not in err,
           f"{what}: the backend's {inject.split(':')[0]} failing (call {inject.split(':')[1]}): "
           f"exit 1, one line from '{where}'", err)


def main():
    if not os.path.exists(MODEL):
        skip_all("no default model (make model)")
    q4k = synth("q4_k", "--type", "q4_k")
    qwen3 = synth("qwen3", "--arch", "qwen3", "--head-dim", "128", "--type", "q4_0")
    qwen2 = synth("qwen2", "--arch", "qwen2", "--type", "q8_0")
    test_failures(PINFER, EMUL, "build")
    asan = os.path.join(ROOT, "build", "asan")
    if os.path.exists(os.path.join(asan, "pinfer")) and \
            os.path.exists(os.path.join(asan, "tests", "libpinfer-cuda-emul.so")):
        test_failures(os.path.join(asan, "pinfer"),
                      os.path.join(asan, "tests", "libpinfer-cuda-emul.so"), "ASan")
    else:
        skip("the ASan build: build/asan missing (make SAN=1 tests)")
    test_memory(q4k)
    test_drive(q4k)
    test_drive_cpu(q4k)
    test_cli(q4k)
    test_serve()
    test_perplexity()
    test_compare((("q4_k", q4k, True), ("qwen3", qwen3, False), ("qwen2", qwen2, False)))
    subprocess.run(["rm", "-rf", TMP])
    end()


if __name__ == "__main__":
    main()
