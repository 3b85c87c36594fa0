# SPDX-License-Identifier: MIT
"""pinfer synth and the streaming options of pinfer run, from the command
line: synth writes the shapes of its presets (read back by the PyPI gguf
package, an independent reader), deterministically, and refuses bad
shapes; run --plan adds up; a streamed run answers exactly as the resident
one; a budget below the minimum is an error that states the minimum, and
the minimum itself runs."""
import os
import re
import subprocess
import tempfile

import sys

import gguf
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from answer import follows_reference, prompt_ids  # noqa: E402
from tap import MODEL, PINFER, ROOT, end, ok, skip_all  # noqa: E402

if not os.path.exists(MODEL):
    skip_all(f"{MODEL} missing (make model)")

TMP = tempfile.mkdtemp(prefix="pinfer-stream-", dir=os.environ.get("PINFER_TEST_DIR", "/var/tmp"))


def run(*args, text=True):
    p = subprocess.run([PINFER, *args], capture_output=True, cwd=ROOT)
    if not text:
        return p.returncode, p.stdout, p.stderr
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_synth():
    out = os.path.join(TMP, "s.gguf")
    rc, _, err = run("synth", "--arch", "llama", "--params", "135M", "--type", "q8_0",
                     "--vocab", "300", "-o", out)
    ok(rc == 0 and os.path.exists(out), "synth --params 135M --type q8_0 writes a file", err)
    r = gguf.GGUFReader(out)
    f = {k: r.fields[k].contents() for k in r.fields}
    ok(f["general.architecture"] == "llama" and f["llama.embedding_length"] == 576 and
       f["llama.block_count"] == 30 and f["llama.feed_forward_length"] == 1536 and
       f["llama.attention.head_count"] == 9 and f["llama.attention.head_count_kv"] == 3,
       "the gguf package reads SmolLM2-135M's shapes from it")
    t = {x.name: x for x in r.tensors}
    ok(len(t) == 3 + 30 * 9 and t["blk.7.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
       and list(t["blk.7.ffn_down.weight"].shape) == [1536, 576]
       and list(t["token_embd.weight"].shape) == [576, 300],
       "every tensor, with the type and shape asked for")
    w = gguf.dequantize(t["blk.3.attn_q.weight"].data, t["blk.3.attn_q.weight"].tensor_type)
    w2 = gguf.dequantize(t["blk.4.attn_q.weight"].data, t["blk.4.attn_q.weight"].tensor_type)
    rms = float(np.sqrt((w.astype(np.float64) ** 2).mean()) * np.sqrt(576))
    ok(0.7 < rms < 1.3 and not np.array_equal(w, w2),
       f"weights are random, of RMS about 1/sqrt(cols) ({rms:.2f}), and layers differ")
    norm = t["blk.0.attn_norm.weight"].data
    ok(np.all(np.abs(norm - 1) <= 0.1), "norm weights are near 1")
    out2 = os.path.join(TMP, "s2.gguf")
    run("synth", "--params", "135M", "--type", "q8_0", "--vocab", "300", "-o", out2, "-t", "1")
    ok(open(out, "rb").read() == open(out2, "rb").read(),
       "the same file with 1 thread as with the default (deterministic for a seed)")
    os.unlink(out2)
    rc, _, err = run("synth", "--embd", "256", "--layers", "2", "--ff", "512", "--heads", "4",
                     "--type", "q6_k", "-o", out2)
    r = gguf.GGUFReader(out2)
    t = {x.name: x for x in r.tensors}
    w = gguf.dequantize(t["blk.1.ffn_up.weight"].data, t["blk.1.ffn_up.weight"].tensor_type)
    ok(rc == 0 and t["blk.1.ffn_up.weight"].tensor_type == gguf.GGMLQuantizationType.Q6_K and
       np.all(np.isfinite(w)) and 0.5 < float(np.sqrt((w ** 2).mean()) * 16) < 2,
       "custom shapes in Q6_K: finite weights of about the intended scale", err)
    rc, _, err = run("synth", "--arch", "qwen2", "--params", "0.5B", "--layers", "2",
                     "--type", "q4_1", "-o", out2)
    r = gguf.GGUFReader(out2)
    names = {x.name for x in r.tensors}
    ok(rc == 0 and "blk.1.attn_q.bias" in names and len(names) == 3 + 2 * 12,
       "qwen2 preset with --layers 2: the bias tensors are there", err)
    rc2, ans, err2 = run("run", "-m", out2, "-p", "hi", "-n", "8", "--temp", "0",
                         "--verbose-prompt", text=False)
    ids = prompt_ids(err2.decode())
    steps, ties, bad = follows_reference(out2, ids, ans, 8) if ids else (0, [], "no prompt ids")
    ok(rc2 == 0 and bad is None and steps > 0,
       f"pinfer run on the synthetic qwen2 model: its greedy (random) text is the reference's "
       f"{steps} tokens" + (f", near ties at {ties}" if ties else ""), f"{bad}\n{err2.decode()}")
    cases = [
        (("synth", "--params", "135M"), 2, "no output file"),
        (("synth", "--params", "9000B", "-o", out2), 2, "no preset"),
        (("synth", "--arch", "gpt9", "--params", "1B", "-o", out2), 2, "not one of llama, qwen2"),
        (("synth", "--params", "135M", "--type", "q4_k", "-o", out2), 2, "not whole blocks"),
        (("synth", "--params", "135M", "--type", "q3_k", "-o", out2), 2, "--type q3_k"),
        (("synth", "--embd", "64", "-o", out2), 2, "give --params"),
        (("synth", "--params", "135M", "--vocab", "10", "-o", out2), 2, "at least 260"),
        (("synth", "--params", "135M", "-o", "/nonexistent/dir/x.gguf"), 1, "No such file"),
    ]
    for args, want_rc, msg in cases:
        rc, _, err = run(*args)
        ok(rc == want_rc and msg in err and err.count("\n") <= 12,
           f"synth {' '.join(args[1:3])}...: exit {want_rc}: {err.strip().splitlines()[0] if err else ''}",
           err)
    rc, out, _ = run("synth", "--help")
    ok(rc == 0 and "--params" in out and "Llama-3-8B" in out, "synth --help lists the presets")


def plan(*args):
    rc, out, err = run("run", "-m", MODEL, "--plan", "--ctx", "256", *args)
    nums = {}
    for key in ("budget", "resident", "ring", "KV cache, buffers", "total", "streamed",
                "minimum budget"):
        m = re.search(r"^  " + key + r" +([0-9.]+) MiB", out, re.M)
        nums[key] = float(m.group(1)) if m else None
    m = re.search(r"minimum budget .*\((\d+) bytes\)", out)
    nums["min_bytes"] = int(m.group(1)) if m else None
    m = re.search(r"\((\d+) of (\d+) layers\)", out)
    nums["layers"] = (int(m.group(1)), int(m.group(2))) if m else None
    return rc, out, err, nums


def test_plan_and_run():
    rc, out, err, p = plan()
    ok(rc == 0 and p["layers"] == (30, 30) and p["streamed"] == 0 and p["ring"] == 0 and
       "whole model is resident" in out, "--plan without --mem: everything resident", out + err)
    rc, out, err, p = plan("--mem", "60M")
    ok(rc == 0 and p["layers"] and 0 < p["layers"][0] < 30 and p["total"] <= 60.0 and
       p["streamed"] > 0 and "floor" in out,
       f"--plan --mem 60M: {p['layers']} layers resident, {p['streamed']} MiB streamed per token, "
       f"total {p['total']} MiB within the budget", out + err)
    ok(abs(p["resident"] + p["ring"] + p["KV cache, buffers"] - p["total"]) < 0.2 and
       p["total"] <= p["budget"],
       f"--plan: resident {p['resident']} + ring {p['ring']} + KV and buffers "
       f"{p['KV cache, buffers']} MiB = total {p['total']} MiB, within the budget")

    q = "Name the three primary colors."
    base = run("run", "-m", MODEL, "-p", q, "-n", "24", "--temp", "0", "--ctx", "256")
    streamed = run("run", "-m", MODEL, "-p", q, "-n", "24", "--temp", "0", "--ctx", "256",
                   "--mem", "60M")
    ok(base[0] == 0 and streamed[0] == 0 and streamed[1] == base[1] and base[1],
       "a run with --mem 60M (layers streamed) answers exactly as the resident run",
       streamed[2])
    ok("streaming: layers" in streamed[2] and re.search(r"streamed [0-9.]+ MiB in \d+ layer reads",
                                                       streamed[2]),
       "stderr says what streams and how much was read")
    tiny = run("run", "-m", MODEL, "-p", q, "-n", "4", "--ctx", "256", "--mem", "1M")
    ok(tiny[0] == 1 and "below this model's minimum" in tiny[2] and "bytes" in tiny[2],
       f"--mem 1M: exit 1 stating the minimum: {tiny[2].strip()}")
    m = re.search(r"minimum of [0-9.]+ MiB \((\d+) bytes\)", tiny[2])
    minimum = int(m.group(1)) if m else 0
    rc, out, err, p = plan("--mem", str(minimum))
    ok(rc == 0 and p["min_bytes"] == minimum and p["layers"][0] == 0,
       f"the stated minimum ({minimum} bytes) is accepted: every layer streams", out + err)
    rc, _, err, _ = plan("--mem", str(minimum - 1))
    ok(rc == 1 and "below this model's minimum" in err, "one byte less is not")
    at_min = run("run", "-m", MODEL, "-p", q, "-n", "24", "--temp", "0", "--ctx", "256",
                 "--mem", str(minimum))
    ok(at_min[0] == 0 and at_min[1] == base[1],
       "at the minimum budget (every layer streamed, ring of 2) the answer is the same", at_min[2])
    for args, msg in ((("--mem", "lots"), "not a size"), (("--ring", "-1"), "--ring -1: not a whole number from 0 to 1024")):
        rc, _, err = run("run", "-m", MODEL, "-p", q, *args)
        ok(rc == 2 and msg in err, f"run {' '.join(args)}: exit 2: {err.strip()}")


test_synth()
test_plan_and_run()
for f in os.listdir(TMP):
    os.unlink(os.path.join(TMP, f))
os.rmdir(TMP)
end()
