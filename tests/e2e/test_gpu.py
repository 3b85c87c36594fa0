# SPDX-License-Identifier: MIT
"""GPU layers (-ngl), what a machine without a GPU can check (the GPU's own
checks are tests/gpu/run.sh):

- the CUDA backend is built whenever nvcc is there (a compile failure fails
  `make`), exports its table of operations with cuda_api.h's ABI, and, loaded with
  ctypes, sizes each matrix as the device layout of Documentation/cuda.md
  says (computed here from the table, independently of blocks.h), and its
  probe says why there is no GPU instead of failing;
- `run --plan -ngl N`: the last N layers and the output layer, their device
  bytes equal to the sum over the file's tensors (read with the gguf
  package), the KV cache's bytes as the formula says, N past the model's
  layers meaning all of them;
- `--gpu-mem`: what stays resident, whether the output layer goes, which
  layers stream through the ring and the total, as cuda.md's policy says
  (computed here from the file's tensors), from all resident down to a
  limit that holds not even the ring (exit 1);
- failures: no GPU (exit 1, the reason), no backend or a library that is
  not one, a mixture-of-experts model, a tensor type without a GPU kernel,
  bad numbers (exit 2); nothing crashes;
- layers the budget streams from the drive: with room on the GPU, read
  once at load and kept there, the host streaming nothing per token;
  without, the GPU streams them through its ring from the host's (the
  others stay resident there), the output layer on the CPU; with room for
  some, the first kept and the rest streamed;
- -ngl 0 answers exactly as without it.
"""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tap import BUILD, MODEL, PINFER, ROOT, end, ok, skip, skip_all

try:
    import gguf
except ImportError:
    skip_all("the gguf package is not installed (make venv)")

LIB = os.path.join(BUILD, "libpinfer-cuda.so")
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
TMP = tempfile.mkdtemp(prefix="pinfer-gpu-", dir=os.environ.get("PINFER_TEST_DIR", "/var/tmp"))
MIB = 1048576.0

# The device layout (Documentation/cuda.md): elements per block, quant bytes,
# scale bytes; F16 and F32 rows as they are.
LAYOUT = {"Q4_0": (32, 16, 2), "Q4_1": (32, 16, 4), "Q5_0": (32, 20, 2), "Q5_1": (32, 20, 4),
          "Q8_0": (32, 32, 2), "Q4_K": (256, 128, 16), "Q5_K": (256, 160, 16),
          "Q6_K": (256, 192, 20)}
TYPE_NO = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8,
           "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30, "Q3_K": 11}


def dev_bytes(tname, rows, cols):
    if tname == "F32":
        return rows * cols * 4
    if tname == "F16":
        return rows * cols * 2
    if tname not in LAYOUT or cols % LAYOUT[tname][0]:
        return 0
    e, qb, mb = LAYOUT[tname]
    return rows * (cols // e) * (qb + mb)


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([PINFER, *args], capture_output=True, text=True, timeout=600, env=e)


class Api(ctypes.Structure):
    _fields_ = [("abi", ctypes.c_uint32),
                ("probe", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                           ctypes.c_size_t)),
                ("mat_bytes", ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint64,
                                               ctypes.c_uint64))]


def test_library():
    if not NVCC:
        skip("no nvcc on this machine: the CUDA backend is not built")
        return None
    if not ok(os.path.exists(LIB), f"nvcc is here ({NVCC}), so make built {LIB}"):
        return None
    lib = ctypes.CDLL(LIB)
    fn = lib.pinfer_cuda_api
    fn.restype = ctypes.POINTER(Api)
    api = fn().contents
    with open(os.path.join(ROOT, "engine", "cuda", "cuda_api.h")) as f:
        want = int(re.search(r"^#define PCU_ABI (\d+)$", f.read(), re.M).group(1))
    ok(api.abi == want, f"pinfer_cuda_api(): ABI {api.abi}, cuda_api.h's PCU_ABI ({want})")
    bad = []
    for name, (e, qb, mb) in LAYOUT.items():
        for rows, cols in ((1, e), (576, 1536), (49152, 576 if e == 32 else 512)):
            want = dev_bytes(name, rows, cols)
            got = api.mat_bytes(TYPE_NO[name], rows, cols)
            if got != want:
                bad.append((name, rows, cols, got, want))
    for name, rows, cols, want in (("F32", 3, 5, 60), ("F16", 3, 5, 30), ("Q4_0", 2, 48, 0),
                                   ("BF16", 4, 64, 0), ("Q3_K", 4, 256, 0)):
        got = api.mat_bytes(TYPE_NO[name], rows, cols)
        if got != want:
            bad.append((name, rows, cols, got, want))
    ok(not bad, "mat_bytes: the device layout's size for every type (0 for types and shapes without a kernel)",
       bad)
    dev = ctypes.create_string_buffer(512)
    msg = ctypes.create_string_buffer(256)
    r = api.probe(ctypes.cast(dev, ctypes.c_void_p), msg, 256)
    if r == 0:
        name = dev.raw.split(b"\0")[0].decode(errors="replace")
        skip(f"this machine has a GPU ({name}): no 'no GPU' case")
        return True
    ok(r == -1 and msg.value.startswith(b"no NVIDIA GPU"),
       f"probe without a GPU: -1 and why ({msg.value.decode()})")
    return False


def gemm_scratch(r, first):
    """The fp16 copy of the largest quantized matrix of layers first.. (cuBLAS's)."""
    most = 0
    for t in r.tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m and int(m.group(1)) >= first and t.tensor_type.name in LAYOUT and len(t.shape) > 1:
            most = max(most, int(t.shape[0]) * int(t.shape[1]) * 2)
    return most


def plan_lines(out):
    gl = re.search(r"GPU layers\s+([\d.]+) MiB: layers (\d+)-(\d+)( and the output layer)? "
                   r"\((\d+) of (\d+)\)", out)
    kv = re.search(r"GPU KV, buffers\s+([\d.]+) MiB", out)
    return gl, kv


def test_plan(have_gpu):
    r = gguf.GGUFReader(MODEL)
    fields = {f.name: f for f in r.fields.values()}
    n_layer = int(fields["llama.block_count"].parts[-1][0])
    n_embd = int(fields["llama.embedding_length"].parts[-1][0])
    n_head = int(fields["llama.attention.head_count"].parts[-1][0])
    n_kv = int(fields["llama.attention.head_count_kv"].parts[-1][0])
    n_ff = int(fields["llama.feed_forward_length"].parts[-1][0])
    hd = n_embd // n_head
    tensors = {t.name: t for t in r.tensors}
    out_t = tensors.get("output.weight", tensors["token_embd.weight"])
    vocab = int(out_t.shape[1])
    for ngl, want in ((4, 4), (n_layer, n_layer), (1000, n_layer)):
        p = run("run", "-m", MODEL, "--plan", "-ngl", str(ngl), "-c", "1024")
        gl, kv = plan_lines(p.stdout)
        if not ok(p.returncode == 0 and gl and kv, f"--plan -ngl {ngl}: the GPU's lines",
                  p.stdout + p.stderr):
            continue
        first = n_layer - want
        total = 0
        for t in r.tensors:
            m = re.match(r"blk\.(\d+)\.", t.name)
            if not m or int(m.group(1)) < first:
                continue
            cols, rows = int(t.shape[0]), int(t.shape[1]) if len(t.shape) > 1 else 1
            total += dev_bytes(t.tensor_type.name, rows, cols)
        total += dev_bytes(out_t.tensor_type.name, vocab, n_embd) + 4 * n_embd
        total += gemm_scratch(r, first)
        ok((int(gl.group(2)), int(gl.group(3)), int(gl.group(5))) == (first, n_layer - 1, want)
           and gl.group(4), f"-ngl {ngl}: layers {first}-{n_layer - 1} and the output layer",
           gl.group(0))
        ok(abs(float(gl.group(1)) - total / MIB) < 0.051,
           f"-ngl {ngl}: {gl.group(1)} MiB of weights = the file's tensors in the device layout "
           f"and cuBLAS's fp16 matrix ({total / MIB:.2f} MiB)")
        kvd = n_kv * hd
        B = 256
        wide = max(n_embd, n_head * hd, n_ff)
        sess = (4 * want * 1024 * kvd + 6 + B * 4 * (2 * n_embd + wide + 2 * n_head * hd + 2 * kvd
                                                 + 2 * n_ff + hd) + B * wide + B * wide // 32 * 8
                + B * wide * 2 + 4 * 32 * n_head * (1024 // 128 + 1) * (hd + 2) + 32 * 4 * vocab
                + 8 * B + 4 * B * (1024 // 1024 + 1))   # positions, tables' offsets, tables
        ok(abs(float(kv.group(1)) - sess / MIB) < 0.051,
           f"-ngl {ngl}: KV cache (fp16, 1024 positions) and buffers {kv.group(1)} MiB")
        ok(have_gpu or "no GPU here" in p.stdout, "--plan says there is no GPU here, and why")
    # chat and bench plan as run does: the same GPU lines for the same context
    gpu = [ln for ln in run("run", "-m", MODEL, "--plan", "-ngl", "4", "-c", "513").stdout
           .splitlines() if ln.startswith("  GPU ")]
    for cmd, args in (("chat", ("-c", "513")), ("bench", ("-p", "512"))):
        p = run(cmd, "-m", MODEL, "--plan", "-ngl", "4", *args)
        got = [ln for ln in p.stdout.splitlines() if ln.startswith("  GPU ")]
        ok(p.returncode == 0 and gpu and got == gpu and "context 513" in p.stdout,
           f"{cmd} --plan -ngl 4: nothing loaded, run --plan's GPU lines for a context of 513",
           p.stdout + p.stderr)


def model_shapes():
    r = gguf.GGUFReader(MODEL)
    fields = {f.name: f for f in r.fields.values()}
    cfg = {k: int(fields[f"llama.{k}"].parts[-1][0]) for k in
           ("block_count", "embedding_length", "attention.head_count",
            "attention.head_count_kv", "feed_forward_length")}
    return r, cfg


def align(x):
    return (x + 255) // 256 * 256


def test_gpu_mem():
    """cuda.md's placement policy under a GPU memory limit, computed here."""
    r, cfg = model_shapes()
    n_layer, E = cfg["block_count"], cfg["embedding_length"]
    n_head, n_kv, F = cfg["attention.head_count"], cfg["attention.head_count_kv"], cfg["feed_forward_length"]
    hd, ctx, B = E // n_head, 1024, 256
    tensors = {t.name: t for t in r.tensors}
    out_t = tensors.get("output.weight", tensors["token_embd.weight"])
    vocab = int(out_t.shape[1])
    mats, vecs, slots, stages = [0] * n_layer, [0] * n_layer, [0] * n_layer, [0] * n_layer
    for t in r.tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        if not m:
            continue
        l = int(m.group(1))
        cols, rows = int(t.shape[0]), int(t.shape[1]) if len(t.shape) > 1 else 1
        b = dev_bytes(t.tensor_type.name, rows, cols)
        if rows == 1:
            vecs[l] += b
        else:
            mats[l] += b
            slots[l] += align(b)
            if t.tensor_type.name in LAYOUT:
                stages[l] = max(stages[l], int(t.n_bytes))
    out = dev_bytes(out_t.tensor_type.name, vocab, E) + 4 * E
    wide = max(E, n_head * hd, F)

    def sess(output):   # the buffers a context allocates (K and V 1 byte more each, the angles 4)
        return (4 * n_layer * ctx * n_kv * hd + 6 + B * 4 * (2 * E + wide + 2 * n_head * hd + 2 * n_kv * hd
                                                          + 2 * F + hd)
                + B * wide + B * wide // 32 * 8 + B * wide * 2
                + 4 * 32 * n_head * (ctx // 128 + 1) * (hd + 2) + (32 * 4 * vocab if output else 0)
                + 8 * B + 4 * B * (ctx // ctx + 1))    # positions, tables' offsets, one block's table

    ring = 2 * max(slots) + max(stages)
    lay, vec = sum(mats), sum(vecs) + gemm_scratch(r, 0)

    def want(limit):
        """(output layer, layers streamed, total bytes), or None for refused."""
        if lay + vec + out + sess(True) <= limit:
            return True, 0, lay + vec + out + sess(True)
        if lay + vec + sess(False) <= limit:
            return False, 0, lay + vec + sess(False)
        output, fixed = False, vec + sess(False) + ring
        if fixed > limit:
            return None
        k = 0
        while k < n_layer and fixed + sum(mats[:k + 1]) <= limit:
            k += 1
        return output, n_layer - k, fixed + sum(mats[:k])

    full = lay + vec + out + sess(True)
    limits = [full + 100, full - 1, lay + vec + sess(False), lay + vec + sess(False) - 1,
              vec + out + sess(True) + ring + 3 * max(mats), vec + sess(False) + ring + max(mats),
              vec + sess(False) + ring, vec + sess(False) + ring - 1]
    seen = set()
    for limit in limits:
        w = want(limit)
        p = run("run", "-m", MODEL, "--plan", "-ngl", str(n_layer), "-c", str(ctx),
                "--gpu-mem", str(limit))
        if w is None:
            ok(p.returncode == 1 and "hold not even" in p.stderr,
               f"--gpu-mem {limit}: below the ring and buffers: exit 1, says what it needs", p.stderr)
            seen.add("refused")
            continue
        gl, _ = plan_lines(p.stdout)
        st = re.search(r"GPU streamed\s+[\d.]+ MiB per call: layers (\d+)-(\d+) copied", p.stdout)
        tot = re.search(r"GPU total\s+([\d.]+) MiB", p.stdout)
        got = (bool(gl and gl.group(4)), int(st.group(2)) - int(st.group(1)) + 1 if st else 0,
               float(tot.group(1)) if tot else -1)
        ok(p.returncode == 0 and got[:2] == w[:2] and abs(got[2] - w[2] / MIB) < 0.051,
           f"--gpu-mem {limit}: output layer {'on the GPU' if w[0] else 'on the CPU'}, "
           f"{w[1]} layers streamed, {w[2] / MIB:.1f} MiB in all", p.stdout + p.stderr)
        seen.add(("out" if w[0] else "no-out") + ("+stream" if w[1] else ""))
    ok({"out", "no-out", "no-out+stream", "refused"} <= seen,
       "the limits covered every case of the policy", seen)
    p = run("run", "-m", MODEL, "--plan", "-ngl", "4", "--gpu-mem", "lots")
    ok(p.returncode == 2 and "--gpu-mem" in p.stderr, "--gpu-mem not a size: exit 2", p.stderr)


def test_errors(have_gpu):
    if not have_gpu:
        why = "no NVIDIA GPU" if os.path.exists(LIB) else "no CUDA backend"
        p = run("run", "-m", MODEL, "-p", "hi", "-n", "4", "-ngl", "2")
        ok(p.returncode == 1 and why in p.stderr and not p.stdout,
           f"run -ngl 2 without a GPU: exit 1, the reason on stderr ({why})", p.stderr)
        p = run("bench", "-m", MODEL, "-p", "8", "-n", "8", "-r", "1", "-ngl", "99")
        ok(p.returncode == 1 and why in p.stderr, "bench -ngl 99 without a GPU: exit 1", p.stderr)
        text = os.path.join(os.path.dirname(MODEL), "..", "tests", "reference", "alice-ch1.txt")
        p = run("perplexity", "-m", MODEL, "-f", text, "-c", "128", "--chunks", "1", "-ngl", "2")
        ok(p.returncode == 1 and why in p.stderr, "perplexity -ngl 2 without a GPU: exit 1",
           p.stderr)
    p = run("run", "-m", MODEL, "-p", "hi", "-n", "4", "-ngl", "2",
            env={"PINFER_CUDA_LIB": os.path.join(TMP, "none.so")})
    ok(p.returncode == 1 and "no CUDA backend" in p.stderr and "make cuda" in p.stderr,
       "no backend library: exit 1, says how to build it", p.stderr)
    p = run("run", "-m", MODEL, "-p", "hi", "-n", "4", "-ngl", "2",
            env={"PINFER_CUDA_LIB": "libm.so.6"})
    ok(p.returncode == 1 and "not a CUDA backend" in p.stderr,
       "a library that is not the backend: exit 1", p.stderr)
    p = run("run", "-m", MODEL, "--raw", "-n", "2", "--temp", "0", "-p", "-ngl")
    ok(p.returncode == 0 and "GPU" not in p.stderr and "backend" not in p.stderr,
       "-p -ngl: the prompt '-ngl', not the option", p.stderr)
    p = run("run", "-m", MODEL, "--plan", "-t2", "-ngl", "3")
    ok(p.returncode == 0 and "layers 27-29" in p.stdout, "-t2 -ngl 3: the option after a cluster",
       p.stdout + p.stderr)
    for args, what in ((["-ngl", "x"], "not a number"), (["-ngl", "-1"], "negative"),
                       (["--gpu-layers"], "no value")):
        p = run("run", "-m", MODEL, "-p", "hi", *args)
        ok(p.returncode == 2 and p.stderr, f"-ngl {what}: exit 2", p.stderr)
    for args, what in ((["-ngl", "x"], "-ngl not a number"), (["--gpu-mem", "lots"],
                                                               "--gpu-mem not a size")):
        p = run("serve", "-m", MODEL, "--port", "0", *args)
        ok(p.returncode == 2 and ("--gpu" in p.stderr), f"serve {what}: exit 2", p.stderr)

    moe = os.path.join(TMP, "moe.gguf")
    bf16 = os.path.join(TMP, "bf16.gguf")
    small = ["--embd", "256", "--layers", "2", "--heads", "4", "--ff", "512", "--vocab", "300",
             "-q"]
    s1 = run("synth", "--arch", "qwen3moe", *small, "--experts", "4", "-o", moe)
    s2 = run("synth", "--type", "bf16", *small, "-o", bf16)
    if ok(s1.returncode == 0 and s2.returncode == 0, "synth: an MoE model and a BF16 one",
          s1.stderr + s2.stderr):
        p = run("run", "-m", moe, "--plan", "-ngl", "1")
        ok(p.returncode == 1 and "mixture-of-experts" in p.stderr,
           "-ngl on a mixture-of-experts model: exit 1, says why", p.stderr)
        p = run("run", "-m", bf16, "--plan", "-ngl", "1")
        ok(p.returncode == 1 and re.search(r"blk\.1\.\w+\.weight is BF16, which has no GPU kernel",
                                           p.stderr),
           "-ngl over a BF16 matrix: exit 1, names the tensor and its type", p.stderr)
        p = run("run", "-m", bf16, "--plan", "-ngl", "0")
        ok(p.returncode == 0 and "GPU" not in p.stdout, "-ngl 0: no GPU part in the plan")
    p = run("run", "-m", MODEL, "--plan", "--stream-layers", "2", "-ngl", "4")
    ok(p.returncode == 0 and
       re.search(r"GPU layers .* layers 26-29 and the output layer \(4 of 30\)", p.stdout) and
       re.search(r"GPU from drive +layers 26-29, read from the drive once, at load", p.stdout)
       and re.search(r"^  streamed .* none", p.stdout, re.M) and "GPU streamed" not in p.stdout
       and re.search(r"^  resident .* \+ layers 0-25 \(26 of 30 layers\)", p.stdout, re.M),
       "-ngl 4 over 2 layers streamed from the drive, GPU memory enough: every GPU layer "
       "resident there, 26-29 read from the drive once at load and not held in host memory, "
       "the host streams nothing per token", p.stdout + p.stderr)
    # the host's KV cache holds the CPU's layers only: -ngl 10 takes 10 layers' K and V
    # (fp16, computed here from the file's shapes) off the host's session
    _, cfg = model_shapes()
    kv = 2 * 2048 * cfg["attention.head_count_kv"] * (cfg["embedding_length"] //
                                                      cfg["attention.head_count"]) * 2
    sess = [re.search(r"^  KV cache, buffers +([0-9.]+) MiB", run("run", "-m", MODEL, "--plan", "-c",
                                                               "2048", *a).stdout, re.M)
            for a in ((), ("-ngl", "10"))]
    ok(all(sess) and abs(float(sess[0].group(1)) - float(sess[1].group(1)) - 10 * kv / 2**20) < 0.15,
       f"-ngl 10 -c 2048: the host's KV cache less by 10 layers' K and V ({10 * kv / 2**20:.1f} MiB): "
       f"{sess[0] and sess[0].group(1)} -> {sess[1] and sess[1].group(1)} MiB")
    # the server's KV region too: 4 requests of 1024 positions of the CPU's 20 layers; none at all
    # when every layer is on the GPU
    want = 4 * 1024 * 20 * kv / 2048 / 2**20
    srv = [run("serve", "--plan", "-m", MODEL, "--parallel", "4", "--ctx", "1024", "-ngl", n).stdout
           for n in ("10", "999")]
    got = re.search(r"^  server KV cache +([0-9.]+) MiB: 4 requests of 1024 positions", srv[0], re.M)
    ok(got and abs(float(got.group(1)) - want) < 0.05 and
       re.search(r"^  server KV cache +0 MiB: every layer's K and V are on the GPU", srv[1], re.M),
       f"serve --plan -ngl 10: the server's KV cache of the CPU's 20 layers ({want:.1f} MiB); "
       f"-ngl 999: none", srv[0] + srv[1])
    plain = run("run", "-m", MODEL, "--plan")
    p = run("run", "-m", MODEL, "--plan", "-ngl", "999")
    host = [re.search(r"^  total +([0-9.]+) MiB", x.stdout, re.M) for x in (plain, p)]
    weights = re.search(r"layers, ([0-9.]+) MiB of weights", plain.stdout)
    ok(p.returncode == 0 and all(host) and weights and
       re.search(r"^  resident .*\(0 of 30 layers\)", p.stdout, re.M) and
       re.search(r"^  ring .*: 1 slot of .*to stage the GPU's reads at load", p.stdout, re.M) and
       re.search(r"GPU from drive +layers 0-29, ", p.stdout) and
       float(host[0].group(1)) - float(host[1].group(1)) > 0.5 * float(weights.group(1)),
       "-ngl 999, GPU memory enough: every layer read from the drive once, at load, to the GPU; "
       "the host holds none of them (its total is less by most of the weights), one slot to "
       "stage the reads", p.stdout + p.stderr)
    p = run("run", "-m", MODEL, "--plan", "--stream-layers", "2", "-ngl", "4", "--gpu-mem", "46M")
    ok(p.returncode == 0 and re.search(r"GPU layers .* layers 26-29 \(4 of 30\)", p.stdout) and
       re.search(r"GPU streamed .* layers 27-29 copied through a ring .*, "
                 r"layers 28-29 read from the drive first", p.stdout)
       and re.search(r"^  streamed .* layers 28-29", p.stdout, re.M)
       and "GPU from drive" not in p.stdout,
       "the same in 46 MiB of GPU memory (too little to keep them all): 26 resident, 27-29 "
       "copied to it each call, 28-29 from the drive's ring, the output layer on the CPU",
       p.stdout + p.stderr)
    # every layer on the GPU, 10 from the drive, room for some of those: the first kept
    p = run("run", "-m", MODEL, "--plan", "--stream-layers", "10", "-ngl", "999", "-c", "256",
            "--gpu-mem", "75M")
    kept = re.search(r"GPU from drive +layers (\d+)-(\d+), .* once", p.stdout)
    gs = re.search(r"GPU streamed .* layers (\d+)-29 copied .*, layers (\d+)-29 read from the "
                   r"drive first", p.stdout)
    cs = re.search(r"^  streamed .* per token: layers (\d+)-29$", p.stdout, re.M)
    ok(p.returncode == 0 and kept and gs and cs and int(kept.group(1)) == 20 and
       int(kept.group(2)) + 1 == int(gs.group(1)) == int(gs.group(2)) == int(cs.group(1)) < 30,
       "-ngl 999 over 10 layers from the drive in 75 MiB: the first of them (from 20) read once "
       "and kept, the rest from the drive's ring at every call, the host streaming only those",
       p.stdout + p.stderr)


def test_ngl0():
    a = run("run", "-m", MODEL, "-p", "Name a color.", "-n", "12", "--temp", "0")
    b = run("run", "-m", MODEL, "-p", "Name a color.", "-n", "12", "--temp", "0", "-ngl", "0")
    ok(a.returncode == 0 and a.stdout and a.stdout == b.stdout and b.returncode == 0,
       "-ngl 0: the same answer as without it", b.stderr)


def main():
    if not os.path.exists(MODEL):
        skip_all("no default model (make model)")
    have_gpu = test_library()
    test_plan(bool(have_gpu))
    test_gpu_mem()
    test_errors(bool(have_gpu))
    test_ngl0()
    shutil.rmtree(TMP, ignore_errors=True)
    end()


if __name__ == "__main__":
    main()
