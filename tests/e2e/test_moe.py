# SPDX-License-Identifier: MIT
"""Qwen3 (dense), Qwen3-MoE and Mixtral (llama with experts) against the
independent numpy reference (tests/reference/llama_ref.py, which implements
the per-head q/k norms and the routing itself), on synthetic models that
pinfer synth writes in those layouts:

- synth: the 30B-A3B and 8x7B presets' keys and tensor shapes as the PyPI
  gguf package reads them; --skew scales each router row as documented;
- reference mode: the logits of every position within 0.5% of the range
  (as test_forward.py), and 16 greedy tokens identical, on each architecture
  and several weight types (the packed GEMM's and the dot kernels');
- the 8-bit path: over 256 random ids, the mean KL divergence from the
  reference and the top-1 agreement within limits from llama.cpp's own
  figures on the same files and ids (bench/moe-accuracy.sh), on this CPU's
  kernels, AVX2 and scalar;
- the expert cache: logits bit for bit as resident, whatever its size
  (from one token's experts to all) and policy, batch or one by one;
- a batch (under 32 tokens: no sgemm) gives the last position's logits bit
  for bit as one by one; a run whose layers stream (--mem at the minimum)
  answers exactly as the resident one;
- pinfer serve at its minimum budget: answers through the expert cache, and
  /metrics counts the experts (real HTTP on loopback);
- quantize keeps the router's type (llama.cpp's rule);
- bad files: one clear error naming the key or tensor, exit 1.
"""
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from tap import PINFER, end, helper, ok, patched, skip_all  # noqa: E402

try:
    import gguf
    from kld import kld
    from llama_ref import LlamaRef
except ImportError:
    skip_all("the gguf package is not installed (make venv)")

HELPER = helper("print_logits")
TMP = tempfile.mkdtemp(prefix="pinfer-moe-", dir=os.environ.get("PINFER_TEST_DIR", "/var/tmp"))
SMALL = ["--embd", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--vocab", "300"]
# name: synth arguments (small shapes of each architecture)
MODELS = {
    "qwen3": ["--arch", "qwen3", "--ff", "512", "--head-dim", "96"],
    "qwen3moe": ["--arch", "qwen3moe", "--ff", "256", "--head-dim", "64", "--experts", "16",
                 "--experts-used", "4", "--skew", "0.5"],
    "mixtral": ["--arch", "llama", "--ff", "256", "--experts", "8", "--experts-used", "2"],
}
TYPES = {"qwen3": ("f16", "q8_0"), "qwen3moe": ("q8_0", "q4_k", "q6_k"), "mixtral": ("q4_0", "q4_1")}
PROMPTS = [[256, 257, 72, 101, 108, 108, 111, 10, 258, 257, 200, 33],
           [17, 250, 3, 99, 140, 299, 64, 64, 12, 180, 270, 5, 6, 7, 8, 9, 100, 101]]


def run(*args):
    p = subprocess.run([PINFER, *args], capture_output=True)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def synth(name, qtype, extra=()):
    path = os.path.join(TMP, f"{name}.{qtype}.gguf")
    if not os.path.exists(path):
        rc, _, err = run("synth", *SMALL, *MODELS[name], *extra, "--type", qtype, "-o", path)
        if rc:
            raise RuntimeError(err)
    return path


def engine(model, tokens, exact=False, greedy=0, batch=False, env=None):
    env = dict(os.environ, PINFER_EXACT="1" if exact else "0", **(env or {}))
    args = [HELPER] + (["--greedy", str(greedy)] if greedy else []) + \
        (["--batch"] if batch else []) + [model] + [str(t) for t in tokens]
    return subprocess.run(args, capture_output=True, env=env)


def fields(path):
    r = gguf.GGUFReader(path)
    return r, {k: r.fields[k].contents() for k in r.fields}, {t.name: t for t in r.tensors}


def test_synth_presets():
    out = os.path.join(TMP, "a3b.gguf")
    rc, _, err = run("synth", "--arch", "qwen3moe", "--params", "30B-A3B", "--layers", "1",
                     "-o", out)
    _, f, t = fields(out) if rc == 0 else (None, {}, {})
    ok(rc == 0 and f.get("general.architecture") == "qwen3moe" and
       f.get("qwen3moe.embedding_length") == 2048 and f.get("qwen3moe.expert_count") == 128 and
       f.get("qwen3moe.expert_used_count") == 8 and
       f.get("qwen3moe.expert_feed_forward_length") == 768 and
       f.get("qwen3moe.attention.key_length") == 128 and
       f.get("qwen3moe.attention.head_count") == 32 and
       f.get("qwen3moe.attention.head_count_kv") == 4,
       "synth --params 30B-A3B: Qwen3-30B-A3B's keys (128 experts, 8 used, of 768; heads of 128)",
       err)
    shapes = {n: (list(map(int, t[n].shape)), t[n].tensor_type.name) for n in t if n.startswith("blk.0.")}
    want = {"blk.0.ffn_gate_exps.weight": ([2048, 768, 128], "Q4_0"),
            "blk.0.ffn_up_exps.weight": ([2048, 768, 128], "Q4_0"),
            "blk.0.ffn_down_exps.weight": ([768, 2048, 128], "Q4_0"),
            "blk.0.ffn_gate_inp.weight": ([2048, 128], "F32"),
            "blk.0.attn_q.weight": ([2048, 4096], "Q4_0"),
            "blk.0.attn_k.weight": ([2048, 512], "Q4_0"),
            "blk.0.attn_output.weight": ([4096, 2048], "Q4_0"),
            "blk.0.attn_q_norm.weight": ([128], "F32"),
            "blk.0.attn_k_norm.weight": ([128], "F32")}
    ok(all(shapes.get(n) == w for n, w in want.items()) and "blk.0.ffn_gate.weight" not in shapes,
       "its experts stacked in 3-D tensors, the router F32, per-head q/k norms", str(shapes))
    os.unlink(out)
    rc, _, err = run("synth", "--params", "8x7B", "--layers", "1", "--ff", "256", "-o", out)
    _, f, t = fields(out) if rc == 0 else (None, {}, {})
    ok(rc == 0 and f.get("general.architecture") == "llama" and f.get("llama.expert_count") == 8
       and f.get("llama.expert_used_count") == 2 and f.get("llama.embedding_length") == 4096 and
       list(map(int, t["blk.0.ffn_down_exps.weight"].shape)) == [256, 4096, 8],
       "synth --params 8x7B: Mixtral's layout (llama, 8 experts, 2 used)", err)
    os.unlink(out)
    for args, msg in ((("--arch", "qwen3moe", "--embd", "256", "--layers", "1", "--ff", "256",
                        "--heads", "4"), "needs --experts"),
                      (("--embd", "256", "--layers", "1", "--ff", "256", "--heads", "4",
                        "--skew", "1"), "need --experts"),
                      (("--arch", "qwen3moe", "--params", "30B-A3B", "--experts-used", "200"),
                       "inconsistent shapes")):
        rc, _, err = run("synth", *args, "-o", out)
        ok(rc == 2 and msg in err and not os.path.exists(out),
           f"synth {' '.join(args[:4])}...: exit 2: {err.strip()}")


def test_skew():
    """Router row e of a layer is scaled by (1 + rank)^-skew, ranks a random order per layer."""
    path = synth("qwen3moe", "q8_0")
    _, _, t = fields(path)
    orders = []
    good = True
    for layer in (0, 1):
        w = t[f"blk.{layer}.ffn_gate_inp.weight"].data.astype(np.float64)
        rms = np.sqrt((w ** 2).mean(axis=1))
        order = np.argsort(-rms)
        ratio = rms[order] / rms[order[0]]
        want = (1.0 + np.arange(16)) ** -0.5
        good = good and np.all(np.abs(ratio / want - 1) < 0.2)
        orders.append(list(order))
    ok(good and orders[0] != orders[1],
       "--skew 0.5: router rows' RMS fall as (1 + rank)^-0.5 within 20%, in another order per layer",
       str(orders))


def test_reference():
    for name, types in TYPES.items():
        for qtype in types:
            path = synth(name, qtype)
            ref = LlamaRef(path)
            for i, toks in enumerate(PROMPTS):
                want = ref.forward(toks)
                p = engine(path, toks, exact=True)
                got = np.frombuffer(p.stdout, np.float32)
                good = p.returncode == 0 and got.size == want.size
                rel = (np.abs(got.reshape(want.shape) - want).max(axis=1) /
                       (want.max(axis=1) - want.min(axis=1))).max() if good else 1
                ok(good and rel < 0.005,
                   f"{name} {qtype}, prompt {i} ({len(toks)} tokens), reference mode: max |diff| "
                   f"{100 * rel:.4f}% of the logit range (limit 0.5%)", p.stderr.decode())
            want = ref.greedy(PROMPTS[0], 16)
            p = engine(path, PROMPTS[0], exact=True, greedy=16)
            got = list(np.frombuffer(p.stdout, np.int32))
            ok(p.returncode == 0 and got == want,
               f"{name} {qtype}: 16 greedy tokens in reference mode are the reference's",
               f"engine {got}\nreference {want}\n{p.stderr.decode()}")


# llama.cpp (llama-cpp-python 0.3.36, 2 threads) against the reference on
# the same files and ids: (mean KL, top-1); bench/moe-accuracy.sh. Its batch
# and one-by-one runs differ by far less (its rows' arithmetic is the same
# in both); pinfer rounds differently, and a router's near tie then picks
# another expert, so pinfer is held to llama.cpp's distance from the
# reference, with test_forward.py's headroom.
LLAMA_CPP = {"qwen3.q8_0": (0.000021, 0.996), "qwen3moe.q8_0": (0.000071, 0.977),
             "qwen3moe.q4_k": (0.000361, 0.969), "mixtral.q4_0": (0.000061, 0.992)}
KL_HEADROOM, TOP1_HEADROOM = 1.5, 0.04


def cpu_paths():
    flags = open("/proc/cpuinfo").read()
    return [None] + (["avx2"] if "avx512bw" in flags and " avx2" in flags else []) + ["scalar"]


def test_kld():
    ids = [int(t) for t in np.random.default_rng(5).integers(0, 300, 256)]
    for key, (base_kl, base_top1) in LLAMA_CPP.items():
        name, qtype = key.split(".")
        path = synth(name, qtype)
        want = LlamaRef(path).forward(ids)
        for cpu in cpu_paths():
            env = dict(os.environ, PINFER_EXACT="0")
            if cpu:
                env["PINFER_CPU"] = cpu
            p = subprocess.run([HELPER, path, *map(str, ids)], capture_output=True, env=env)
            got = np.frombuffer(p.stdout, np.float32)
            if not ok(p.returncode == 0 and got.size == want.size,
                      f"{key}: the engine's logits ({cpu or 'native'})", p.stderr.decode()):
                continue
            mean, p99, top1 = kld(want, got.reshape(want.shape))
            ok(mean < KL_HEADROOM * base_kl and top1 >= base_top1 - TOP1_HEADROOM,
               f"{key}, 8-bit activations, {cpu or 'native'} kernels, {len(ids)} positions: mean KL "
               f"{mean:.6f} (limit {KL_HEADROOM * base_kl:.6f}; llama.cpp {base_kl:.6f}), top-1 "
               f"{100 * top1:.1f}% (limit {100 * (base_top1 - TOP1_HEADROOM):.1f}%; llama.cpp "
               f"{100 * base_top1:.1f}%)")


def test_expert_cache():
    """Experts through caches of every size: the resident run's bits."""
    toks = list(range(40, 70))
    for name, qtype in (("qwen3moe", "q8_0"), ("qwen3moe", "q4_k"), ("mixtral", "q4_0")):
        path = synth(name, qtype)
        base = engine(path, toks)
        used = 4 if name == "qwen3moe" else 2
        for slots, policy in ((used, "lru"), (used + 1, "lfu"), (2 * used, "lru"), (9, "lfu"),
                              (1000, "lru")):
            env = {"PINFER_EXPERT_SLOTS": str(slots), "PINFER_EXPERT_POLICY": policy}
            one = engine(path, toks, env=env)
            batch = engine(path, toks, env=env, batch=True)
            words = one.stderr.decode().split("experts:")[-1].split() if b"experts:" in one.stderr else []
            st = {words[i + 1]: int(words[i]) for i in range(0, len(words) - 1, 2)}
            ok(one.returncode == 0 and one.stdout == base.stdout and
               batch.stdout == base.stdout[-len(batch.stdout):] and
               st.get("misses", 0) > 0 and st["hits"] + st["misses"] > 0,
               f"{name} {qtype}, a cache of {slots} experts ({policy}): {len(toks)} tokens one by one "
               f"and as a batch, the resident logits bit for bit ({st.get('hits')} hits, "
               f"{st.get('misses')} misses, {st.get('prefetched')} read ahead)", one.stderr.decode())


def test_batch_and_stream():
    toks = list(range(20, 44))
    for name, qtype in (("qwen3moe", "q8_0"), ("qwen3moe", "q4_k"), ("mixtral", "q4_0"),
                        ("qwen3", "q8_0")):
        path = synth(name, qtype)
        one = engine(path, toks)
        batch = engine(path, toks, batch=True)
        v = len(batch.stdout)
        ok(one.returncode == 0 and batch.returncode == 0 and v > 0 and
           one.stdout[-v:] == batch.stdout,
           f"{name} {qtype}: {len(toks)} tokens as one batch: the last logits bit for bit as one by one",
           batch.stderr.decode())
        q = ("run", "-m", path, "-p", "Name the three primary colors.", "-n", "24", "--temp", "0",
             "--ctx", "256")
        base = run(*q)
        streamed = run(*q, "--stream-layers", "2", "--ring", "2")
        ok(base[0] == 0 and streamed[0] == 0 and streamed[1] == base[1] and
           "streaming: layers 0-1" in streamed[2],
           f"{name} {qtype}: both layers streamed through a ring of 2: the same answer as resident",
           streamed[2])


def test_serve():
    """pinfer serve on a MoE model through its expert cache: answers, and /metrics counts it."""
    import socket
    import time
    import urllib.request
    path = synth("qwen3moe", "q4_k")
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    rc, _, err = run("run", "-m", path, "--plan", "--mem", "1", "-c", "512")  # serve's plan
    m = re.search(r"minimum of [0-9.]+ MiB \((\d+) bytes\)", err)
    srv = subprocess.Popen([PINFER, "serve", "-m", path, "--port", str(port), "--ctx", "512",
                            "--parallel", "2", "--mem", m.group(1) if m else "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body, metrics = None, ""
        for _ in range(100):
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                             data=b'{"prompt": "hello there", "max_tokens": 8, "temperature": 0}',
                                             headers={"Content-Type": "application/json"})
                body = urllib.request.urlopen(req, timeout=30).read().decode()
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        found = dict(re.findall(r'pinfer_experts_total\{found="(\w+)"\} (\d+)', metrics))
        ok(body and '"completion_tokens"' in body and len(found) == 3 and
           sum(map(int, found.values())) > 0 and int(found.get("missed", 0)) > 0 and
           re.search(r"pinfer_expert_bytes_total [1-9]", metrics),
           f"serve at its minimum budget (an expert cache): answers, and /metrics counts the experts {found}",
           (body or "") + metrics[-400:])
    finally:
        srv.terminate()
        srv.wait(timeout=30)


def test_quantize():
    src = synth("qwen3moe", "f32")
    out = os.path.join(TMP, "quant.gguf")
    rc, _, err = run("quantize", src, out, "q4_0")
    _, _, t = fields(out) if rc == 0 else (None, None, {})
    ok(rc == 0 and t["blk.1.ffn_gate_inp.weight"].tensor_type.name == "F32" and
       t["blk.1.ffn_up_exps.weight"].tensor_type.name == "Q4_0" and
       list(map(int, t["blk.1.ffn_up_exps.weight"].shape)) == [256, 256, 16],
       "quantize q4_0: experts to Q4_0 (3-D shape kept), the router stays F32", err)
    rc, _, err = run("run", "-m", out, "-p", "hi", "-n", "4")
    ok(rc == 0, "and the quantized model runs", err)


def kv_value_off(path, key):
    r = gguf.GGUFReader(path)
    f = r.fields[key]
    return f.offset + 8 + len(key) + 4     # its value (a u32)


def tensor_fields(path, name):
    r = gguf.GGUFReader(path)
    t = next(x for x in r.tensors if x.name == name)
    return t.field.offset + 8, t.field.offset + 8 + len(name) + 4   # its name, dims[0]


def separate_experts(src, dst):
    """@src rewritten with each expert of the stacked tensors as a 2-D tensor of its own
    (the old GGUF layout: blk.N.ffn_gate.E.weight)."""
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY and not len(f.data):
            continue    # empty (the merges): the writer refuses them; the model loads first
        if vt == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, f.contents(), vt, sub_type=f.types[-1])
        else:
            w.add_key_value(k, f.contents(), vt)
    for t in r.tensors:
        if "_exps" not in t.name:
            w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
            continue
        kind = t.name.split(".")[2].replace("_exps", "")
        for e in range(t.data.shape[0]):
            w.add_tensor(t.name.replace(f"{kind}_exps", f"{kind}.{e}"), np.ascontiguousarray(t.data[e]),
                         raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


def test_bad_input():
    moe, mix, q3 = synth("qwen3moe", "q8_0"), synth("mixtral", "q4_0"), synth("qwen3", "q8_0")
    name_off, dims_off = tensor_fields(moe, "blk.1.ffn_up_exps.weight")
    kname = gguf.GGUFReader(moe).fields["qwen3moe.expert_count"].offset + 8
    norm_name, _ = tensor_fields(q3, "blk.0.attn_k_norm.weight")
    cases = [
        ("qwen3moe without expert_count", patched(TMP, "b1.gguf", [(kname + len("qwen3moe.expert_coun"), b"x")], moe),
         "metadata key qwen3moe.expert_count is missing"),
        ("expert_used_count above expert_count",
         patched(TMP, "b2.gguf", [(kv_value_off(moe, "qwen3moe.expert_used_count"), struct.pack("<I", 17))], moe),
         "need 1 <= used <= count"),
        ("an expert tensor of 15 experts", patched(TMP, "b3.gguf", [(dims_off + 16, struct.pack("<Q", 15))], moe),
         "tensor blk.1.ffn_up_exps.weight has 3 dimensions of 256 x 256 x 15, expected 256 x 256 x 16"),
        ("a missing expert tensor", patched(TMP, "b4.gguf", [(name_off + len("blk.1.ffn_up_ex"), b"q")], moe),
         "tensor blk.1.ffn_up_exps.weight is missing"),
        ("qwen3 with value_length unlike key_length",
         patched(TMP, "b5.gguf", [(kv_value_off(q3, "qwen3.attention.value_length"), struct.pack("<I", 64))], q3),
         "heads must be equal"),
        ("qwen3 without attn_k_norm", patched(TMP, "b6.gguf", [(norm_name + len("blk.0.attn_k_nor"), b"x")], q3),
         "tensor blk.0.attn_k_norm.weight is missing"),
        ("Mixtral's experts as separate tensors", separate_experts(mix, os.path.join(TMP, "b7.gguf")),
         "experts as separate tensors"),
    ]
    for what, path, msg in cases:
        rc, out, err = run("run", "-m", path, "-p", "hi", "-n", "2")
        if "separate" in what:     # no merges: the engine alone (the model loads first)
            p = engine(path, [1, 2])
            rc, out, err = p.returncode, p.stdout.decode(), p.stderr.decode()
        ok(rc == 1 and msg in err and err.count("\n") <= 3 and not out,
           f"{what}: exit 1, one line: {err.strip().splitlines()[-1] if err.strip() else ''}", err)
        os.unlink(path)


test_synth_presets()
test_skew()
test_reference()
test_kld()
test_expert_cache()
test_batch_and_stream()
test_serve()
test_quantize()
test_bad_input()
for f in os.listdir(TMP):
    os.unlink(os.path.join(TMP, f))
os.rmdir(TMP)
end()
