# SPDX-License-Identifier: MIT
"""The engine's reference kernels (engine/kernels/dequant_ref.c, quant_act_ref.c,
quant_weight.c, dot_ref.c) against an independent
implementation, the PyPI gguf package's numpy quantizers: dequantization of
random blocks of every supported type and of the real model's tensors,
8-bit quantization of activations, and fp16 conversion (all 65536 values
one way, a million random floats the other)."""
import os
import subprocess
import tempfile

import numpy as np

from tap import MODEL, end, helper, ok, skip_all  # noqa: E402

HELPER = helper("print_dequant")

try:
    import gguf
    from gguf import quants
    from gguf.constants import GGMLQuantizationType as T
except ImportError:
    skip_all("the gguf package is not installed (make venv)")

rng = np.random.default_rng(20261121)


def helper(*args):
    return subprocess.run([HELPER, *map(str, args)], capture_output=True,
                          check=True).stdout


def f16_bits(values):
    return np.asarray(values, dtype=np.float16).view(np.uint16)


def random_blocks(qtype, nblocks):
    """Random blocks whose fp16 scale fields hold sane finite values."""
    elems, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    scales = {  # byte offsets of the fp16 fields in each block layout
        T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
        T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    }[qtype]
    for off in scales:
        vals = rng.uniform(-0.05, 0.05, size=nblocks)
        raw[:, off:off + 2] = f16_bits(vals).view(np.uint8).reshape(nblocks, 2)
    return raw, elems * nblocks


def test_random_blocks():
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K):
        raw, n = random_blocks(qtype, 64)
        want = quants.dequantize(raw, qtype).reshape(-1).astype(np.float32)
        with tempfile.NamedTemporaryFile() as f:
            f.write(raw.tobytes())
            f.flush()
            got = np.frombuffer(helper("blocks", int(qtype), n, f.name), np.float32)
        diff = np.abs(got - want).max() if got.shape == want.shape else np.inf
        ok(got.shape == want.shape and diff <= 1e-6 * np.abs(want).max(),
           f"{qtype.name}: 64 random blocks dequantize as gguf does "
           f"(max diff {diff:.3g})")
    for name, dtype, bits in (
            ("F16", T.F16, f16_bits(rng.standard_normal(4096))),
            ("BF16", T.BF16,
             (rng.standard_normal(4096).astype(np.float32).view(np.uint32) >> 16)
             .astype(np.uint16))):
        if dtype == T.BF16:
            want = quants.dequantize(bits.view(np.uint8), dtype).reshape(-1)
        else:
            want = bits.view(np.float16).astype(np.float32)
        with tempfile.NamedTemporaryFile() as f:
            f.write(bits.tobytes())
            f.flush()
            got = np.frombuffer(helper("blocks", int(dtype), bits.size, f.name), np.float32)
        ok(np.array_equal(got, want), f"{name}: 4096 values convert exactly")


def test_model_tensors():
    if not os.path.exists(MODEL):
        ok(False, f"{MODEL} missing (make model)")
        return
    ref = gguf.GGUFReader(MODEL)
    by_name = {t.name: t for t in ref.tensors}
    for name in ("token_embd.weight", "blk.0.ffn_down.weight",
                 "blk.29.attn_k.weight", "output_norm.weight"):
        t = by_name[name]
        want = quants.dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
        got = np.frombuffer(helper("tensor", MODEL, name), np.float32)
        ok(got.shape == want.shape and np.array_equal(got, want),
           f"{name} ({t.tensor_type.name}, {want.size} values) of the real "
           "model dequantizes exactly as gguf does")


def test_activation_quant():
    x = (rng.standard_normal(32 * 256) * 3).astype(np.float32)
    x[:32] = 0  # an all-zero block
    want = quants.quantize(x.reshape(-1, 32), T.Q8_0).tobytes()
    with tempfile.NamedTemporaryFile() as f:
        f.write(x.tobytes())
        f.flush()
        got = helper("q8", int(T.Q8_0), x.size, f.name)
        ok(got == want, "Q8_0 activations: byte for byte as gguf quantizes them")
        for qtype, elems in ((T.Q8_1, 32), (T.Q8_K, 256)):
            q = helper("q8", int(qtype), x.size, f.name)
            # dequantize our blocks by their layout: within half a step, plus
            # (for Q8_1, whose d is stored as fp16) d's rounding times |q|
            if qtype == T.Q8_1:
                b = np.frombuffer(q, np.uint8).reshape(-1, 36)
                d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
                s = b[:, 2:4].copy().view(np.float16).astype(np.float32)
                qs = b[:, 4:].view(np.int8).astype(np.float32)
                sums_ok = np.all(np.abs(s[:, 0] - d[:, 0] * qs.sum(axis=1)) <=
                                 2e-3 * np.abs(d[:, 0] * qs.sum(axis=1)) + d[:, 0])
            else:
                b = np.frombuffer(q, np.uint8).reshape(-1, 292)
                d = b[:, 0:4].copy().view(np.float32)
                qs = b[:, 4:260].view(np.int8).astype(np.float32)
                bs = b[:, 260:].copy().view(np.int16)
                sums_ok = np.array_equal(bs, qs.reshape(-1, 16, 16).sum(axis=2))
            y = (d * qs).reshape(-1)
            step = np.repeat(d[:, 0], elems)
            slack = 127 * 2.0 ** -11 if qtype == T.Q8_1 else 1e-6
            err = np.abs(y - x)
            ok(np.all(err <= step * (0.5 + slack) + 1e-7) and sums_ok,
               f"{qtype.name} activations: within half a step of the input, "
               "block sums right")


def test_weight_quant():
    """pinfer quantize's K-quant writers: gguf's dequantizer reads back
    Gaussian weights within each sub-block's step (Q6_K: 1/32 of its
    extreme, see below; Q4_K, Q5_K: 1/15 or 1/31 of its range, plus the
    6-bit rounding of the min),
    with the RMS error a plain min-max fit gives."""
    x = rng.standard_normal(256 * 64).astype(np.float32)
    x[:256] = 0                 # an all-zero super-block
    x[256:512] = 1.5            # a constant one
    with tempfile.NamedTemporaryFile() as f:
        f.write(x.tobytes())
        f.flush()
        for qtype, sub, rms_limit in ((T.Q6_K, 16, 0.025), (T.Q4_K, 32, 0.10),
                                      (T.Q5_K, 32, 0.05)):
            q = helper("weights", int(qtype), x.size, f.name)
            y = quants.dequantize(np.frombuffer(q, np.uint8), qtype).reshape(-1)
            xs = x.reshape(-1, sub)
            if qtype == T.Q6_K:
                step = np.abs(xs).max(axis=1) / 32
            else:
                levels = 15 if qtype == T.Q4_K else 31
                step = (xs.max(axis=1) - np.minimum(xs.min(axis=1), 0)) / levels
            err = np.abs(y - x).reshape(-1, sub)
            if qtype == T.Q6_K:
                # each sub-block's step as written, ds = d * scale, is its
                # extreme / 32 rounded to an 8-bit multiple of d, and q is in
                # -32..31: an element of the other sign than the extreme may
                # reach 32 steps and clamp at 31 (a whole step off), and the
                # rounding of ds moves the far ends by 32 times its error
                b = np.frombuffer(q, np.uint8).reshape(-1, 210)
                d = b[:, 208:210].copy().view(np.float16).astype(np.float32)
                ds = np.abs(d * b[:, 192:208].view(np.int8).astype(np.float32)).reshape(-1)
                step = ds + 32 * np.abs(ds - step) + 1e-6 * step
            worst = (err.max(axis=1) / np.maximum(step, 1e-12))[step > 0].max()
            rel = np.sqrt(((y - x)[512:] ** 2).mean() / (x[512:] ** 2).mean())
            ok(len(q) == x.size // 256 * {T.Q6_K: 210, T.Q4_K: 144, T.Q5_K: 176}[qtype] and
               np.all(y[:256] == 0) and np.allclose(y[256:512], 1.5, rtol=0.01) and
               worst <= (1.0 if qtype == T.Q6_K else 1.1) and rel < rms_limit,
               f"{qtype.name} weights: zeros and constants kept; every element within "
               f"{worst:.2f} of " +
               ("its bound (a step, plus 32 times the rounding of the step)"
                if qtype == T.Q6_K else "its sub-block's step") +
               f"; RMS error {100 * rel:.2f}% (limit {100 * rms_limit:.1f}%)")


def test_weight_requant():
    """Weights already on a coarser grid, as when `pinfer quantize` requantizes
    SmolLM2's Q4_1 file: per super-block one step d and an offset below zero,
    each sub-block holding levels 0..15 (both ends). Q4_K finds the step and
    Q5_K half of it, so both give the values back to the precision of their
    fp16 and 6-bit scales; Q6_K likewise on Q4_0's grid (d times -8..7, -8
    in each sub-block of 16). The grid puts values on ties of the K-quants'
    searches (llama.cpp's Q5_K trial of 30.5 levels over 15 steps lands the
    top one on 30.5): rounding them away from zero, as pinfer did, left Q5_K
    a quarter step off; rounding them to even, half the time."""
    nsb = 64
    d = rng.uniform(0.05, 0.5, size=(nsb, 1, 1)).astype(np.float32)
    q = rng.integers(0, 16, size=(nsb, 8, 32))
    q[:, :, 0], q[:, :, 1], q[:, :, 16] = 0, 15, 0
    for qtype, levels in ((T.Q4_K, q), (T.Q5_K, q), (T.Q6_K, q - 8)):
        m = -d * rng.uniform(1, 14, size=(nsb, 1, 1)) if qtype != T.Q6_K else 0
        x = (d * levels + m).astype(np.float32).reshape(-1)
        with tempfile.NamedTemporaryFile() as f:
            f.write(x.tobytes())
            f.flush()
            out = helper("weights", int(qtype), x.size, f.name)
        y = quants.dequantize(np.frombuffer(out, np.uint8), qtype).reshape(nsb, -1)
        worst = (np.abs(y - x.reshape(nsb, -1)) / d.reshape(nsb, 1)).max()
        ok(worst < 0.02, f"{qtype.name} weights on a coarser grid given back: the worst "
           f"element {worst:.4f} of the grid's step off (limit 0.02)")


def k_scales(blocks, qtype):
    """Per super-block: d, dmin and the 8 sub-blocks' 6-bit scales and mins
    (Q4_K, Q5_K), or d and the 16 int8 scales (Q6_K)."""
    if qtype == T.Q6_K:
        return (blocks[:, 208:210].copy().view(np.float16).astype(np.float32)[:, 0], None,
                blocks[:, 192:208].view(np.int8).astype(np.int32), None)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)[:, 0]
    dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)[:, 0]
    s = blocks[:, 4:16].astype(np.int32)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return d, dmin, sc, mn


def stored_error(x, w, ds, dm, nmax, lo):
    """Σ w (ds q - dm - x)^2 with each q rounded to the nearest level in lo..nmax."""
    q = np.clip(np.rint((x + dm) / ds) if ds else np.zeros_like(x), lo, nmax)
    return float((w * (ds * q - dm - x) ** 2).sum())


def test_weight_scales():
    """The K-quant writers store, for each sub-block, the scale (and Q4_K's
    and Q5_K's min) whose stored block has the least weighted error (their
    fits' weights: rms + |x| over 32, x^2 over Q6_K's 16) among the nearest
    multiples of the super-block's d (and dmin) and their neighbours, one up
    or down each: rounding a small scale to 6 bits moves it by percents.
    Checked here from the file's bytes against every neighbour, on random
    weights (rounding to the nearest, as llama.cpp's quantizer does, fails
    it for Q4_K and Q5_K)."""
    nsb = 64
    for qtype, n, nmax, lo in ((T.Q4_K, 32, 15, 0), (T.Q5_K, 32, 31, 0), (T.Q6_K, 16, 31, -32)):
        x = (rng.standard_normal(nsb * 256) * rng.uniform(0.01, 1, nsb * 256)).astype(np.float32)
        with tempfile.NamedTemporaryFile() as f:
            f.write(x.tobytes())
            f.flush()
            out = helper("weights", int(qtype), x.size, f.name)
        size = gguf.GGML_QUANT_SIZES[qtype][1]
        d, dmin, sc, mn = k_scales(np.frombuffer(out, np.uint8).reshape(nsb, size), qtype)
        worse = 0
        for b in range(nsb):
            for j in range(256 // n):
                xs = x[256 * b + n * j:256 * b + n * (j + 1)]
                w = xs * xs if qtype == T.Q6_K else np.sqrt((xs * xs).mean()) + np.abs(xs)

                def err(a, c):
                    dm = np.float32(0) if mn is None else dmin[b] * np.float32(c)
                    return stored_error(xs, w, d[b] * np.float32(a), dm, nmax, lo)
                a0, c0 = sc[b, j], (0 if mn is None else mn[b, j])
                here = err(a0, c0)
                top = 127 if qtype == T.Q6_K else 63
                bottom = -128 if qtype == T.Q6_K else 0
                for a in range(max(a0 - 1, bottom), min(a0 + 1, top) + 1):
                    for c in ([0] if mn is None else range(max(c0 - 1, 0), min(c0 + 1, 63) + 1)):
                        worse += err(a, c) < here * (1 - 1e-5)
        ok(worse == 0, f"{qtype.name}: every sub-block's stored scale{'' if mn is None else ' and min'} "
           f"the best of itself and its neighbours by the weighted error ({worse} beaten)")


def test_weight_quant_32():
    """The 32-element types' writers (Q4_0, Q4_1, Q5_0, Q5_1) give the very
    bytes the gguf package's quantizers (ports of llama.cpp's) give."""
    x = rng.standard_normal(32 * 4096).astype(np.float32)
    x[:32] = 0
    x[32:64] = 1.5
    x[64:96] *= 1e-30  # subnormal scales
    with tempfile.NamedTemporaryFile() as f:
        f.write(x.tobytes())
        f.flush()
        for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
            got = helper("weights", int(qtype), x.size, f.name)
            want = quants.quantize(x.reshape(-1, 256), qtype).tobytes()
            diff = sum(a != b for a, b in zip(got, want)) if len(got) == len(want) else -1
            ok(got == want, f"{qtype.name} weights: 4096 blocks byte for byte as gguf quantizes them "
               f"({diff} bytes differ)")


def test_fp16():
    f = rng.standard_normal(1 << 20).astype(np.float32) * np.float32(
        rng.choice([1e-6, 1e-3, 1.0, 1e3, 7e4], size=1 << 20))
    f[:6] = [0.0, -0.0, np.inf, -np.inf, 65504.0, 65520.0]
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(f.tobytes())
        tmp.flush()
        out = helper("f16", tmp.name)
    to32 = np.frombuffer(out[:65536 * 4], np.float32)
    want = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    ok(np.array_equal(np.isnan(to32), nan) and np.array_equal(to32[~nan], want[~nan]),
       "fp16 -> f32: all 65536 values as numpy converts them")
    to16 = np.frombuffer(out[65536 * 4:], np.uint16)
    with np.errstate(over="ignore"):  # overflow to inf is part of the test
        want16 = f.astype(np.float16).view(np.uint16)
    ok(np.array_equal(to16, want16),
       "f32 -> fp16: a million floats (subnormal, overflow, ties) round as numpy's",
       f"{np.count_nonzero(to16 != want16)} differ")


def tensor_types(path):
    return {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}


def more_bits(i, n):
    """llama.cpp's use_more_bits(): the layers q4_k_m/q5_k_m give Q6_K."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def test_mix():
    """pinfer quantize's choice per tensor, llama.cpp's rules (tools/quantize.c):
    the output layer (or the tied embedding) at Q6_K but for q8_0; q4_k_m and
    q5_k_m: attn_v and ffn_down at Q6_K in more_bits() layers; with 8
    experts attn_k/attn_v at Q8_0 (q4_k_m: attn_output Q5_K); rows that are
    not whole blocks: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0. q4_k is
    llama.cpp's Q4_K_S (a few tensors at Q5_K)."""
    pinfer = os.path.join(os.path.dirname(HELPER), "..", "pinfer")
    with tempfile.TemporaryDirectory() as tmp:
        def quantize(src, qtype):
            out = os.path.join(tmp, f"{os.path.basename(src)}.{qtype}.gguf")
            p = subprocess.run([pinfer, "quantize", src, out, qtype], capture_output=True)
            return tensor_types(out) if p.returncode == 0 else {}

        # SmolLM2: embedding tied to the output, 576 columns (not a multiple of
        # 256; ffn_down has 1536), 30 layers
        want = {
            "q4_0": {"token_embd.weight": T.Q8_0, "blk.0.attn_q.weight": T.Q4_0,
                     "blk.0.ffn_down.weight": T.Q4_0, "output_norm.weight": T.F32},
            "q8_0": {"token_embd.weight": T.Q8_0, "blk.0.attn_q.weight": T.Q8_0},
            "q5_0": {"token_embd.weight": T.Q8_0, "blk.0.attn_q.weight": T.Q5_0,
                     "blk.0.ffn_down.weight": T.Q5_0},
            "q5_1": {"token_embd.weight": T.Q8_0, "blk.0.attn_v.weight": T.Q5_1},
            # q4_k is llama.cpp's Q4_K_S: attn_v of layers 0-3 and ffn_down of
            # the first eighth (0-2) at Q5_K (attn_v falls back to Q5_1)
            "q4_k": {"token_embd.weight": T.Q8_0, "blk.0.attn_q.weight": T.Q5_0,
                     "blk.3.attn_v.weight": T.Q5_1, "blk.4.attn_v.weight": T.Q5_0,
                     "blk.2.ffn_down.weight": T.Q5_K, "blk.3.ffn_down.weight": T.Q4_K},
            "q5_k": {"token_embd.weight": T.Q8_0, "blk.0.attn_q.weight": T.Q5_1,
                     "blk.0.ffn_down.weight": T.Q5_K},
            "q6_k": {"token_embd.weight": T.Q8_0, "blk.0.attn_q.weight": T.Q8_0,
                     "blk.0.ffn_down.weight": T.Q6_K},
            "f16": {"token_embd.weight": T.F16, "blk.0.attn_q.weight": T.F16},
        }
        for qtype, base, fallback in (("q4_k_m", T.Q4_K, T.Q5_0), ("q5_k_m", T.Q5_K, T.Q5_1)):
            w = {"token_embd.weight": T.Q8_0, "blk.0.attn_q.weight": fallback,
                 "blk.3.ffn_gate.weight": fallback}
            for i in range(30):
                w[f"blk.{i}.attn_v.weight"] = T.Q8_0 if more_bits(i, 30) else fallback
                w[f"blk.{i}.ffn_down.weight"] = T.Q6_K if more_bits(i, 30) else base
            want[qtype] = w
        for qtype, w in want.items():
            got = quantize(MODEL, qtype)
            bad = {k: (got.get(k), v) for k, v in w.items() if got.get(k) != v}
            shown = list(w.items())[:4]
            ok(not bad, f"SmolLM2 to {qtype}: " + ", ".join(f"{k} {v.name}" for k, v in shown) +
               (f" and {len(w) - 4} more" if len(w) > 4 else ""), bad)
        # an untied output of 256 columns: Q6_K; the embedding as the rest
        src = os.path.join(tmp, "untied.gguf")
        subprocess.run([pinfer, "synth", "--embd", "256", "--layers", "1", "--ff", "512", "--heads",
                        "4", "--type", "f32", "-o", src], capture_output=True, check=True)
        for qtype, out_t, emb_t in (("q4_0", T.Q6_K, T.Q4_0), ("q4_k", T.Q6_K, T.Q4_K),
                                     ("q5_k", T.Q6_K, T.Q5_K), ("q8_0", T.Q8_0, T.Q8_0)):
            got = quantize(src, qtype)
            ok(got.get("output.weight") == out_t and got.get("token_embd.weight") == emb_t,
               f"untied output to {qtype}: output {out_t.name}, token_embd {emb_t.name}",
               {k: got.get(k) for k in ("output.weight", "token_embd.weight")})
        # Mixtral's layout, 8 experts, 16 layers of 256 columns
        src = os.path.join(tmp, "moe.gguf")
        subprocess.run([pinfer, "synth", "--embd", "256", "--layers", "16", "--ff", "256",
                        "--heads", "4", "--experts", "8", "--type", "f32", "-o", src],
                       capture_output=True, check=True)
        got = quantize(src, "q4_k_m")
        w = {"blk.0.attn_k.weight": T.Q8_0, "blk.0.attn_v.weight": T.Q8_0,
             "blk.0.attn_q.weight": T.Q4_K, "blk.0.attn_output.weight": T.Q5_K,
             "blk.0.ffn_down_exps.weight": T.Q6_K, "blk.3.ffn_down_exps.weight": T.Q4_K,
             "blk.4.ffn_down_exps.weight": T.Q6_K, "blk.0.ffn_gate_inp.weight": T.F32}
        bad = {k: (got.get(k), v) for k, v in w.items() if got.get(k) != v}
        ok(not bad, "8 experts to q4_k_m: attn_k, attn_v Q8_0, attn_output Q5_K, ffn_down_exps "
           "Q6_K in the more-bits layers, the router kept", bad)


test_random_blocks()
test_model_tensors()
test_mix()
test_activation_quant()
test_weight_quant()
test_weight_requant()
test_weight_scales()
test_weight_quant_32()
test_fp16()
end()
