# SPDX-License-Identifier: MIT
"""The GPU path against the CPU on one model (numpy only: it runs on the GPU
machine, where tests/gpu/run.sh calls it once per model). print_logits
(tests/unit/print_logits.c) gives each run's logits; the limits are set
beforehand from the CPU's own figures on the same file and ids:

- reference mode (float activations), every layer and the output on the
  GPU against all on the CPU: within 0.5% of the logit range at every
  position, the limit test_forward.py holds the CPU to against numpy;
- the 8-bit path, -ngl at half and all layers: mean KL divergence from the
  CPU's reference mode at most 1.5x the CPU 8-bit path's own, plus 1e-5,
  and top-1 agreement at most 3 points below the CPU's (the GPU quantizes
  activations per 32 as the CPU's Q8_0 does; K-quants' Q8_K per 256 is
  coarser);
- 300 positions, so that attention splits the context into 3 chunks;
- a batch under 32 tokens fed at once gives the logits of one by one bit
  for bit (every kernel sums in the same order whatever the batch), and so
  does a batch of 300 with cuBLAS off (PINFER_CUBLAS=0); a batch of 300
  through cuBLAS (fp16 weights and inputs), when it is there, within the
  8-bit path's limits above;
- greedy generation equal to the CPU's, or apart only where the CPU's two
  best tokens are within 1% of the logit range (a near tie);
- with PINFER: under a GPU memory limit (the largest for which `pinfer run
  --plan` streams at least two layers), the logits of one by one and of a
  batch are those of every layer resident bit for bit (the same packed
  bytes, the same kernels), the output layer on the CPU in both (where
  layers stream it stays there: the smallest limit that streams none);
  and so are they with the last 4 layers read from the drive (the budget
  streaming them, PINFER_STREAM_LAYERS): all kept on the GPU after one
  read at load (at the resident limit), 2 kept and 2 read and copied at
  every call (at the streaming limit), and all 4 read and copied at every
  call (at the largest limit that streams 4); and with every layer from
  the drive and all but the first on the GPU, the GPU keeping its first
  ones after one read and copying the rest from the drive at every call
  (the host's ring of 2 slots cycling over layer 0 and those).

Usage: compare.py PRINT_LOGITS MODEL N_LAYER [PINFER]; exit 1 if any check
fails. compare.py --limit MODEL N_LAYER PINFER [N]: print that GPU memory
limit (the largest at which N layers stream, default 2); --resident-limit:
the smallest at which every layer is resident and the output layer on the
CPU.
Prints one line per check. PINFER_GPU_DRY=1: every run on the CPU (to try
the script itself on a machine without a GPU; its verdicts mean nothing).
"""
import os
import re
import subprocess
import sys

import numpy as np

HELPER, MODEL, N_LAYER = sys.argv[1], sys.argv[2], int(sys.argv[3])
CTX = 256       # the streaming check's context: a small KV cache, so that layers dominate
failed = 0


def check(cond, what):
    global failed
    print(f"{'ok' if cond else 'FAIL'}: {os.path.basename(MODEL)}: {what}", flush=True)
    failed += not cond


def logits(ids, ngl=0, exact=False, mode=None, greedy=0, gpu_mem=0, ctx=0, cublas=True,
           drive=0, ring=0):
    if os.environ.get("PINFER_GPU_DRY"):   # the script's plumbing, on the CPU alone
        ngl = 0
    env = dict(os.environ, PINFER_NGL=str(ngl), PINFER_EXACT="1" if exact else "0",
               PINFER_GPU_MEM=str(gpu_mem), PINFER_CTX=str(ctx),
               PINFER_CUBLAS=os.environ.get("PINFER_CUBLAS", "") if cublas else "0",
               PINFER_THREADS=os.environ.get("PINFER_THREADS", "8"),
               PINFER_STREAM_LAYERS=str(drive), PINFER_RING=str(ring))
    args = [HELPER] + (["--greedy", str(greedy)] if greedy else [mode] if mode else [])
    p = subprocess.run(args + [MODEL] + [str(i) for i in ids], capture_output=True, env=env,
                       timeout=600)
    if p.returncode:
        sys.stderr.write(p.stderr.decode(errors="replace"))
        raise SystemExit(f"{HELPER} failed (ngl {ngl}, exact {exact}): exit {p.returncode}")
    if greedy:
        return np.frombuffer(p.stdout, np.int32)
    out = np.frombuffer(p.stdout, np.float32)
    return out.reshape(-1, out.size // (len(ids) if mode != "--batch" else 1))


def kld(ref, got):
    def lsm(x):
        x = np.asarray(x, np.float64)
        x = x - x.max(axis=-1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    lp, lq = lsm(ref), lsm(got)
    per = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    return float(per.mean()), float((ref.argmax(-1) == got.argmax(-1)).mean())


def placed(pinfer, limit, ngl=N_LAYER):
    """(layers streamed, output layer on the GPU) at --gpu-mem @limit bytes with
    -ngl @ngl, or None when the plan refuses."""
    p = subprocess.run([pinfer, "run", "-m", MODEL, "--plan", "-ngl", str(ngl),
                        "-c", str(CTX), "--gpu-mem", str(limit)], capture_output=True, text=True)
    if p.returncode:
        return None
    m = re.search(r"GPU streamed .* layers (\d+)-(\d+) copied", p.stdout)
    return (int(m.group(2)) - int(m.group(1)) + 1 if m else 0,
            bool(re.search(r"GPU layers .* and the output layer", p.stdout)))


def search(pinfer, enough, ngl=N_LAYER):
    """(lo, hi): --gpu-mem limits 4 KiB apart, the placement at hi @enough and
    at lo not (binary search: fewer bytes never place more on the GPU)."""
    lo, hi = 1 << 20, 1 << 34
    while hi - lo > 4096:
        mid = (lo + hi) // 2
        if enough(placed(pinfer, mid, ngl)):
            hi = mid
        else:
            lo = mid
    return lo, hi


def streaming_limit(pinfer, n=2, ngl=N_LAYER):
    """The largest --gpu-mem at which the plan streams @n or more layers."""
    lim = search(pinfer, lambda p: p is not None and p[0] < n, ngl)[0]
    p = placed(pinfer, lim, ngl)
    return lim if p and p[0] >= n else None


def resident_limit(pinfer):
    """The smallest --gpu-mem at which nothing streams: every layer resident
    and the output layer on the CPU, as when layers stream."""
    lim = search(pinfer, lambda p: p is not None and p[0] == 0)[1]
    return lim if placed(pinfer, lim) == (0, False) else None


def main():
    rng = np.random.default_rng(7)
    ref0 = logits([1])
    vocab = ref0.shape[1]
    ids = [int(i) for i in rng.integers(0, vocab, 300)]   # attention over 3 chunks of 128
    half = max(1, N_LAYER // 2)

    ref = logits(ids, exact=True)
    gx = logits(ids, ngl=N_LAYER, exact=True)
    span = ref.max(axis=1) - ref.min(axis=1)
    rel = (np.abs(gx - ref).max(axis=1) / span).max()
    check(rel < 0.005, f"reference mode, all {N_LAYER} layers on the GPU: within {100 * rel:.4f}% "
          "of the logit range of the CPU's (limit 0.5%)")

    c8 = logits(ids)
    kl_c, top_c = kld(ref, c8)
    for ngl in (half, N_LAYER):
        g1 = logits(ids, ngl=ngl)   # the last: every layer on the GPU, one by one
        kl_g, top_g = kld(ref, g1)
        check(kl_g <= 1.5 * kl_c + 1e-5 and top_g >= top_c - 0.03,
              f"8-bit, -ngl {ngl}: mean KL {kl_g:.6f} (CPU {kl_c:.6f}, limit "
              f"{1.5 * kl_c + 1e-5:.6f}), top-1 {100 * top_g:.1f}% (CPU {100 * top_c:.1f}%)")

    ga = logits(ids[:24], ngl=N_LAYER, mode="--all")
    check(np.array_equal(g1[:24], ga), f"a batch of 24 on the GPU: the logits of one by one, "
          f"bit for bit (max difference {np.abs(g1[:24] - ga).max():.3g})")
    gb = logits(ids, ngl=N_LAYER, mode="--all")
    kl_b, top_b = kld(ref, gb)
    check(kl_b <= 1.5 * kl_c + 1e-5 and top_b >= top_c - 0.03,
          f"a batch of {len(ids)} (cuBLAS where there is one): mean KL {kl_b:.6f} (limit "
          f"{1.5 * kl_c + 1e-5:.6f}), top-1 {100 * top_b:.1f}% (CPU {100 * top_c:.1f}%)")
    gk = logits(ids, ngl=N_LAYER, mode="--all", cublas=False)
    check(np.array_equal(g1, gk), f"a batch of {len(ids)} without cuBLAS: the logits of one by "
          f"one bit for bit, attention's chunks included (max difference "
          f"{np.abs(g1 - gk).max():.3g})")

    prompt = ids[:8]
    cpu = logits(prompt, greedy=24)
    gpu = logits(prompt, ngl=N_LAYER, greedy=24)
    k = next((i for i in range(min(len(cpu), len(gpu))) if cpu[i] != gpu[i]), None)
    if k is None:
        check(len(cpu) == len(gpu) == 24, "greedy: 24 tokens, the CPU's")
    else:
        row = logits(prompt + [int(t) for t in cpu[:k]])[-1]
        gap = (row[cpu[k]] - row[gpu[k]]) / (row.max() - row.min())
        check(gap <= 0.01, f"greedy: apart at token {k} of 24, where the CPU's logits of the two "
              f"choices are {100 * gap:.3f}% of the range apart (a near tie: limit 1%)")

    if len(sys.argv) > 4 and not os.environ.get("PINFER_GPU_DRY"):
        lim, res = streaming_limit(sys.argv[4]), resident_limit(sys.argv[4])
        if not lim or not res:
            check(False, "no --gpu-mem at which the plan streams two layers, or none at which "
                  "every layer is resident and the output layer is not")
        else:
            short = ids[:CTX - 56]   # within the context of CTX, over 2 of attention's chunks
            r1 = logits(short, ngl=N_LAYER, ctx=CTX, gpu_mem=res)
            ra = logits(short, ngl=N_LAYER, ctx=CTX, gpu_mem=res, mode="--all")
            s1 = logits(short, ngl=N_LAYER, ctx=CTX, gpu_mem=lim)
            sa = logits(short, ngl=N_LAYER, ctx=CTX, gpu_mem=lim, mode="--all")
            check(np.array_equal(s1, r1) and np.array_equal(sa, ra),
                  f"layers streamed through {lim >> 20} MiB of GPU memory: the resident logits "
                  f"bit for bit, one by one and as a batch (max difference "
                  f"{max(np.abs(s1 - r1).max(), np.abs(sa - ra).max()):.3g})")
            drive, lim4 = 4, streaming_limit(sys.argv[4], 4)
            for how, mem in (("kept after one read at load", res),
                             ("some kept, the rest copied at every call", lim),
                             (f"copied through {(lim4 or 0) >> 20} MiB at every call", lim4)):
                if not mem:
                    check(False, f"the last {drive} layers from the drive, {how}: no --gpu-mem "
                          "at which the plan streams 4 layers")
                    continue
                d1 = logits(short, ngl=N_LAYER, ctx=CTX, gpu_mem=mem, drive=drive)
                da = logits(short, ngl=N_LAYER, ctx=CTX, gpu_mem=mem, drive=drive, mode="--all")
                check(np.array_equal(d1, r1) and np.array_equal(da, ra),
                      f"the last {drive} layers from the drive, {how}: the resident logits bit "
                      f"for bit, one by one and as a batch (max difference "
                      f"{max(np.abs(d1 - r1).max(), np.abs(da - ra).max()):.3g})")
            # every layer from the drive, the CPU's first one too: the GPU keeps its
            # first layers after one read, the host's ring of 2 slots cycles over
            # the others (reading them again at every token)
            ngl = N_LAYER - 1
            limh = streaming_limit(sys.argv[4], 2, ngl)
            p = subprocess.run([sys.argv[4], "run", "-m", MODEL, "--plan", "-ngl", str(ngl),
                                "-c", str(CTX), "--stream-layers", str(N_LAYER), "--ring", "2",
                                "--gpu-mem", str(limh or 0)], capture_output=True, text=True)
            kept = re.search(r"GPU from drive +layers (\d+)-(\d+)", p.stdout)
            ring = re.search(r"^  streamed .* layers (0-0, \d+-\d+)$", p.stdout, re.M)
            if not limh or not kept or not ring:
                check(False, f"-ngl {ngl}, every layer from the drive: no --gpu-mem at which the "
                      f"GPU keeps some and copies 2 or more at every call")
            else:
                h1 = logits(short, ngl=ngl, ctx=CTX, gpu_mem=limh)
                ha = logits(short, ngl=ngl, ctx=CTX, gpu_mem=limh, mode="--all")
                d1 = logits(short, ngl=ngl, ctx=CTX, gpu_mem=limh, drive=N_LAYER, ring=2)
                da = logits(short, ngl=ngl, ctx=CTX, gpu_mem=limh, drive=N_LAYER, ring=2,
                            mode="--all")
                check(np.array_equal(d1, h1) and np.array_equal(da, ha),
                      f"-ngl {ngl}, every layer from the drive: layers {kept.group(1)}-"
                      f"{kept.group(2)} kept on the GPU after one read, the host streaming "
                      f"{ring.group(1)}: the resident logits bit for bit, one by one and as a "
                      f"batch (max difference {max(np.abs(d1 - h1).max(), np.abs(da - ha).max()):.3g})")
    return 1 if failed else 0


if __name__ == "__main__":
    if HELPER == "--limit":
        print(streaming_limit(sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 2) or "")
        sys.exit(0)
    if HELPER == "--resident-limit":
        print(resident_limit(sys.argv[4]) or "")
        sys.exit(0)
    sys.exit(main())
