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
- the device's memory: the backend never holds more than the plan counts;
  without --gpu-mem, the device's free memory less 5% decides at load what
  streams (the same logits, bit for bit, as --gpu-mem giving the same
  placement); a device too small: exit 1, what it needs;
- each backend operation failing (PINFER_EMUL_FAIL): exit 1 with one line
  that says where, nothing crashes; and again on the ASan build, where a
  leak on those paths fails too.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

from tap import BUILD, MODEL, PINFER, ROOT, end, helper, ok, skip, skip_all

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
        want = 8 if stream else 7
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


def plan_total(path, ngl, extra=()):
    p = run("run", "-m", path, "--plan", "-ngl", str(ngl), "-c", "256", *extra)
    m = re.search(r"GPU total\s+([0-9.]+) MiB", text(p))
    s = re.search(r"GPU streamed .* layers (\d+)-(\d+) copied", text(p))
    return (float(m.group(1)) if m else None, s.group(0) if s else None)


def logits(path, env, mode="--all"):
    e = dict(PINFER_NGL="6", PINFER_CTX="256", **env)
    p = run(*([mode] if mode else []), path, *[str(i) for i in range(1, 101)], env=e,
            exe=helper("print_logits"))
    return p


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
    lim = subprocess.run([PY, os.path.join(ROOT, "tests", "gpu", "compare.py"), "--limit", q4k,
                          "6", PINFER], capture_output=True, text=True,
                         env=dict(os.environ, PINFER_CUDA_LIB=EMUL)).stdout.strip()
    if not ok(lim.isdigit(), f"a GPU memory limit that streams two layers: {lim}"):
        return
    lim = int(lim)
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
    test_cli(q4k)
    test_perplexity()
    test_compare((("q4_k", q4k, True), ("qwen3", qwen3, False), ("qwen2", qwen2, False)))
    subprocess.run(["rm", "-rf", TMP])
    end()


if __name__ == "__main__":
    main()
