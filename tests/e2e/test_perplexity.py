# SPDX-License-Identifier: MIT
"""pinfer perplexity on the real SmolLM2-135M-Instruct Q4_1 and the text
that ships for it (tests/reference/alice-ch1.txt):

- the convention (chunks from an empty context, the second half of each
  scored) and the model's math, against the independent numpy reference
  (tests/reference/llama_ref.py) computing the same chunks itself: the
  reference mode (--exact) within 0.05%; the 8-bit path within the limit
  llama.cpp's own llama-perplexity sets on the same file, text and chunks
  (LLAMA_CPP below: its distance from the same reference, measured by
  bench/perplexity.sh), on this CPU's kernels and the AVX2 and scalar paths;
- against llama.cpp's own llama-perplexity on the long text
  (tests/reference/genesis-kjv.txt, -c 512, 24990 tokens scored): the
  8-bit paths (this CPU's, AVX2) within 0.1% of its figure for the same
  file (LLAMA_CPP_GENESIS below, with its attention in f32 as pinfer's);
- --save-base / --kl-divergence-base: a model against its own base (KL 0,
  the same top token everywhere), and pinfer quantize's Q4_0 against the
  Q4_1 base, the tool's mean KL and top-1 agreement against the same
  figures computed here from both models' logits of every position (the
  chunks fed as one batch, as the tool feeds them: print_logits --all),
  and the paired mean ln(PPL / base) with its standard error;
- bad input: no text, a missing file, a text too short for two chunks, a
  chunk longer than the model's context, both base options, a base of
  another -c or text or not a base at all, an unwritable base: one clear
  error each, the right exit code, no base file left half-written.
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from tap import MODEL, PINFER, ROOT, end, helper, ok, skip_all  # noqa: E402

try:
    from kld import log_softmax
    from llama_ref import LlamaRef
except ImportError:
    skip_all("the gguf package is not installed (make venv)")
if not os.path.exists(MODEL):
    skip_all(f"{MODEL} missing (make model)")

TEXT = os.path.join(ROOT, "tests", "reference", "alice-ch1.txt")
CTX, CHUNKS = 128, 3
# llama.cpp 0.3.36's llama-perplexity -c 128 --chunks 3 on this file and
# text (bench/perplexity.sh): its distance from the numpy reference's
# figure for the same chunks sets the 8-bit path's limit (twice it).
LLAMA_CPP_PPL = 26.2148
GENESIS = os.path.join(ROOT, "tests", "reference", "genesis-kjv.txt")
# llama.cpp 0.3.36's llama-perplexity -c 512 on this file and the whole
# Genesis text (bench/perplexity.sh -f tests/reference/genesis-kjv.txt -c
# 512, 2026-12-06): with -fa off -ctk f32 -ctv f32 (attention in f32, as
# pinfer computes it), and its default (fp16 attention), for the message.
LLAMA_CPP_GENESIS, LLAMA_CPP_GENESIS_DEFAULT = 13.5987, 13.5867


def tokens():
    with open(TEXT, "rb") as f:
        data = f.read()
    with tempfile.NamedTemporaryFile() as f:
        f.write(data + b"\0")
        f.flush()
        out = subprocess.run([helper("print_tokens"), MODEL, f.name], capture_output=True, check=True)
    return [int(x) for x in out.stdout.decode().split("\t")[0].split()]


def run(*args, env=None):
    return subprocess.run([PINFER, "perplexity"] + list(args), capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def ppl_of(p):
    m = re.search(r"PPL = ([0-9.]+) \+/- ([0-9.]+)", p.stdout)
    return float(m.group(1)) if m else None


def reference_ppl(ids, ctx, chunks):
    """llama-perplexity's convention, computed here from the reference's logits."""
    ref = LlamaRef(MODEL)
    nll, first = [], ctx // 2
    for c in range(chunks):
        chunk = ids[c * ctx:(c + 1) * ctx]	# SmolLM2 wants no BOS
        lp = log_softmax(ref.forward(chunk))
        nll += [-lp[j, chunk[j + 1]] for j in range(first, ctx - 1)]
    return float(np.exp(np.mean(nll))), len(nll)


def cpu_has(flag):
    with open("/proc/cpuinfo") as f:
        return f" {flag}" in f.read()


def test_reference(ids):
    want, n = reference_ppl(ids, CTX, CHUNKS)
    p = run("-f", TEXT, "-c", str(CTX), "--chunks", str(CHUNKS), "--exact", "-q")
    got = ppl_of(p)
    ok(p.returncode == 0 and got is not None and abs(got / want - 1) < 5e-4 and
       f"({n} tokens scored" in p.stdout,
       f"reference mode: PPL {got} against the numpy reference's {want:.4f} over {n} tokens "
       f"(limit 0.05%)", p.stdout + p.stderr)
    limit = 2 * abs(LLAMA_CPP_PPL / want - 1)
    paths = [None] + (["avx2"] if cpu_has("avx2") else []) + ["scalar"]
    for cpu in paths:
        p = run("-f", TEXT, "-c", str(CTX), "--chunks", str(CHUNKS), "-q",
                env={"PINFER_CPU": cpu} if cpu else None)
        got = ppl_of(p)
        ok(p.returncode == 0 and got is not None and abs(got / want - 1) <= limit,
           f"8-bit path ({cpu or 'this CPU'}): PPL {got}, {100 * abs((got or 0) / want - 1):.3f}% "
           f"from the reference (limit {100 * limit:.3f}%: twice llama.cpp's "
           f"{LLAMA_CPP_PPL} against {want:.4f})", p.stdout + p.stderr)


def test_llama_cpp():
    """The 8-bit paths against llama-perplexity's figure on the long text
    (the float-activation scalar path is the more exact one: it has no
    llama.cpp counterpart, and the short-text check above covers it)."""
    for cpu in [None] + (["avx2"] if cpu_has("avx512_vnni") else []):
        p = run("-f", GENESIS, "-c", "512", "-q", env={"PINFER_CPU": cpu} if cpu else None)
        got = ppl_of(p)
        off = abs((got or 0) / LLAMA_CPP_GENESIS - 1)
        ok(p.returncode == 0 and got is not None and off <= 1e-3 and
           "(24990 tokens scored" in p.stdout,
           f"Genesis, -c 512, {cpu or 'this CPU'}: PPL {got}, {100 * off:.3f}% from llama-perplexity's "
           f"{LLAMA_CPP_GENESIS} with f32 attention (limit 0.1%; its default gives "
           f"{LLAMA_CPP_GENESIS_DEFAULT})", p.stdout + p.stderr)


def all_logits(model, ids):
    """Every position's logits, the ids fed as one batch as the tool feeds a chunk."""
    out = subprocess.run([helper("print_logits"), "--all", model] + [str(t) for t in ids],
                         capture_output=True, check=True, env=dict(os.environ, PINFER_EXACT="0"))
    return np.frombuffer(out.stdout, np.float32).reshape(len(ids), -1)


def test_base(ids, tmp):
    ctx, chunks = 64, 2
    base = os.path.join(tmp, "base.kl")
    p = run("-f", TEXT, "-c", str(ctx), "--chunks", str(chunks), "-q", "--save-base", base)
    ppl = ppl_of(p)
    v = 49152
    size = 24 + 4 * ctx * chunks + 2 * v * chunks * (ctx - 1 - ctx // 2)
    ok(p.returncode == 0 and os.path.getsize(base) == size,
       f"--save-base: {os.path.getsize(base) if os.path.exists(base) else 0} bytes "
       f"(header, tokens, {chunks * (ctx - 1 - ctx // 2)} positions of fp16 log-probabilities)",
       p.stderr)
    p = run("-f", TEXT, "-c", str(ctx), "--chunks", str(chunks), "-q", "--kl-divergence-base", base)
    kl = re.search(r"mean KL divergence = ([0-9.e-]+)", p.stdout)
    same = re.search(r"same top token = ([0-9.]+)%", p.stdout)
    ok(p.returncode == 0 and kl and float(kl.group(1)) < 1e-4 and same and
       float(same.group(1)) == 100.0 and abs(ppl_of(p) / ppl - 1) < 1e-9,
       f"the model against its own base: KL {kl and kl.group(1)}, same top "
       f"{same and same.group(1)}% (fp16 storage only)", p.stdout + p.stderr)

    q4 = os.path.join(tmp, "q4_0.gguf")
    subprocess.run([PINFER, "quantize", MODEL, q4, "q4_0"], capture_output=True, check=True)
    p = run("-m", q4, "-f", TEXT, "-c", str(ctx), "--chunks", str(chunks), "-q",
            "--kl-divergence-base", base)
    kl = re.search(r"mean KL divergence = ([0-9.e-]+)", p.stdout)
    same = re.search(r"same top token = ([0-9.]+)%", p.stdout)
    kls, tops, dl = [], [], []
    for c in range(chunks):
        chunk = ids[c * ctx:(c + 1) * ctx]
        a, b = log_softmax(all_logits(MODEL, chunk)), log_softmax(all_logits(q4, chunk))
        for j in range(ctx // 2, ctx - 1):
            kls.append(float(np.sum(np.exp(a[j]) * (a[j] - b[j]))))
            tops.append(a[j].argmax() == b[j].argmax())
            # the base's log-probability as stored (fp16) minus the model's
            dl.append(float(np.float16(a[j][chunk[j + 1]])) - float(b[j][chunk[j + 1]]))
    want_kl, want_top = np.mean(kls), 100 * np.mean(tops)
    # the base holds fp16 log-probabilities: KL within 0.5%, a top token may flip at a tie
    ok(p.returncode == 0 and kl and abs(float(kl.group(1)) / want_kl - 1) < 5e-3 and
       same and abs(float(same.group(1)) - want_top) <= 100 / len(tops) + 1e-6 and want_kl > 1e-3,
       f"Q4_0 against the Q4_1 base: KL {kl and kl.group(1)}, same top "
       f"{same and same.group(1)}%; from the engine's logits here {want_kl:.6f}, "
       f"{want_top:.2f}%", p.stdout + p.stderr)
    lr = re.search(r"mean ln\(PPL / base\) = ([-+0-9.e]+) \+/- ([0-9.e-]+)", p.stdout)
    want_lr, want_se = np.mean(dl), np.std(dl, ddof=1) / np.sqrt(len(dl))
    ok(p.returncode == 0 and lr and abs(float(lr.group(1)) - want_lr) < 2e-4 and
       abs(float(lr.group(2)) / want_se - 1) < 0.01 and want_se > 1e-3,
       f"Q4_0 against the Q4_1 base: mean ln(PPL / base) {lr and lr.group(1)} +/- "
       f"{lr and lr.group(2)}; from the engine's logits here {want_lr:+.6f} +/- {want_se:.6f}",
       p.stdout + p.stderr)


def test_errors(tmp):
    base = os.path.join(tmp, "b.kl")
    short = os.path.join(tmp, "short.txt")
    with open(short, "w") as f:
        f.write("Too short for two chunks.\n")
    other = os.path.join(tmp, "other.txt")
    with open(TEXT) as f:
        text = f.read()
    with open(other, "w") as f:
        f.write(text.replace("Alice", "Alicia"))
    junk = os.path.join(tmp, "junk.kl")
    with open(junk, "wb") as f:
        f.write(b"not a base at all" * 10)
    run("-f", TEXT, "-c", "64", "--chunks", "2", "-q", "--save-base", base)
    cases = [
        ([], 2, "-f TEXT is required"),
        (["-f", os.path.join(tmp, "nope.txt")], 1, "No such file"),
        (["-f", short, "-c", "64"], 1, "needs at least 128"),
        (["-f", TEXT, "-c", "99999"], 2, "more than the model's context"),
        (["-f", TEXT, "--save-base", base, "--kl-divergence-base", base], 2, "do not go together"),
        (["-f", TEXT, "-c", "32", "--chunks", "2", "--kl-divergence-base", base], 1, "the same -c"),
        (["-f", other, "-c", "64", "--chunks", "2", "--kl-divergence-base", base], 1, "another text"),
        (["-f", TEXT, "-c", "64", "--kl-divergence-base", junk], 1, "not a base"),
        (["-f", TEXT, "-c", "64", "--save-base", "/nonexistent/dir/b.kl"], 1, "No such file"),
        (["-f", TEXT, "-c", "0"], 2, "-c"),
    ]
    for args, code, msg in cases:
        p = run(*args)
        ok(p.returncode == code and msg in p.stderr and "Traceback" not in p.stderr,
           f"perplexity {' '.join(a if '/' not in a else os.path.basename(a) for a in args)}: "
           f"exit {p.returncode}, says '{msg}'", p.stderr)
    left = os.path.join(tmp, "left.kl")
    p = run("-f", short, "-c", "64", "--save-base", left)
    ok(p.returncode == 1 and not os.path.exists(left), "a failed --save-base leaves no file",
       p.stderr)
    p = subprocess.run([PINFER, "perplexity", "--help"], capture_output=True, text=True)
    ok(p.returncode == 0 and "usage: pinfer perplexity" in p.stdout and "alice-ch1.txt" in p.stdout,
       "perplexity --help", p.stderr)


def main():
    ids = tokens()
    with tempfile.TemporaryDirectory() as tmp:
        test_reference(ids)
        test_llama_cpp()
        test_base(ids, tmp)
        test_errors(tmp)
    end()


main()
