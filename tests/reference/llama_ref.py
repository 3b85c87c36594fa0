# SPDX-License-Identifier: MIT
"""An independent reference forward pass of llama-family GGUF models, in
numpy, for the tests: weights from the PyPI gguf package's reader and
dequantizers, activations in float64, no code shared with the engine.
Architectures llama (with experts: Mixtral), qwen2, qwen3 (per-head
RMSNorm of q and k before RoPE; heads of attention.key_length) and qwen3moe
(a mixture of experts: softmax over the router's logits, the top
expert_used_count, their weights renormalised to sum to 1).

    ref = LlamaRef(path); logits = ref.forward(token_ids)  # (n, vocab)
"""
import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize, quantize


def q8_kv(x):
    """@x through Q8_0 blocks of 32 (gguf's quantizer and dequantizer)."""
    q = quantize(x.astype(np.float32).reshape(-1, 32), GGMLQuantizationType.Q8_0)
    return dequantize(q, GGMLQuantizationType.Q8_0).reshape(x.shape).astype(np.float64)


class LlamaRef:
    def __init__(self, path):
        r = GGUFReader(path)
        f = {k: v for k, v in r.fields.items()}

        def val(key, default=None):
            if key not in f:
                return default
            field = f[key]
            return field.parts[field.data[0]][0].item()

        arch = bytes(f["general.architecture"].parts[f["general.architecture"].data[0]]).decode()
        assert arch in ("llama", "qwen2", "qwen3", "qwen3moe"), arch
        self.neox = arch != "llama"
        self.n_embd = val(f"{arch}.embedding_length")
        self.n_layer = val(f"{arch}.block_count")
        self.n_head = val(f"{arch}.attention.head_count")
        self.n_kv = val(f"{arch}.attention.head_count_kv", self.n_head)
        self.eps = val(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
        self.theta = val(f"{arch}.rope.freq_base", 10000.0)
        self.hd = val(f"{arch}.attention.key_length", self.n_embd // self.n_head)
        self.n_expert = val(f"{arch}.expert_count", 0)
        self.n_used = val(f"{arch}.expert_used_count", 0)
        self.n_rot = val(f"{arch}.rope.dimension_count", self.hd)
        # RoPE scaling: linear divides positions by the factor; a
        # rope_freqs tensor divides each pair's frequency
        kind = f.get(f"{arch}.rope.scaling.type")
        kind = bytes(kind.parts[kind.data[0]]).decode() if kind else "none"
        assert kind in ("none", "linear"), kind
        self.pos_scale = 1.0 / val(f"{arch}.rope.scaling.factor", 1.0) if kind == "linear" else 1.0
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float64)
            shape = [int(d) for d in t.shape][::-1]   # slowest first
            self.w[t.name] = a.reshape(-1) if len(shape) == 1 else a.reshape(shape)
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])
        self.freq_div = self.w.get("rope_freqs.weight", np.ones(self.n_rot // 2))

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x) + self.eps) * w

    def head_norm(self, p, q, k):
        """qwen3: each head of q (t, heads, hd) and k RMS-normed with its weights."""
        if p + "attn_q_norm.weight" not in self.w:
            return q, k

        def norm(x, wt):
            return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * wt
        return norm(q, self.w[p + "attn_q_norm.weight"]), norm(k, self.w[p + "attn_k_norm.weight"])

    def ffn(self, p, h):
        """The feed-forward of the normed inputs h (t, embd): SwiGLU, or the
        experts the router picks for each row."""
        w = self.w

        def swiglu(g, u):
            return g / (1 + np.exp(-g)) * u
        if not self.n_expert:
            g, u = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
            return swiglu(g, u) @ w[p + "ffn_down.weight"].T
        logits = h @ w[p + "ffn_gate_inp.weight"].T
        G, U, D = (w[p + f"ffn_{m}_exps.weight"] for m in ("gate", "up", "down"))
        out = np.zeros_like(h)
        for t in range(h.shape[0]):
            prob = np.exp(logits[t] - logits[t].max())
            prob /= prob.sum()
            top = np.argsort(-logits[t], kind="stable")[:self.n_used]
            for e, wt in zip(top, prob[top] / prob[top].sum()):
                out[t] += wt * (D[e] @ swiglu(G[e] @ h[t], U[e] @ h[t]))
        return out

    def rope(self, x, pos):
        """x: (heads, hd); rotate the first n_rot dims of each head."""
        half = self.n_rot // 2
        inv = self.theta ** (-np.arange(half) * 2.0 / self.n_rot) / self.freq_div
        c, s = np.cos(pos * self.pos_scale * inv), np.sin(pos * self.pos_scale * inv)
        x = x.copy()
        if self.neox:
            a, b = x[:, :half].copy(), x[:, half:self.n_rot].copy()
            x[:, :half], x[:, half:self.n_rot] = a * c - b * s, a * s + b * c
        else:
            a, b = x[:, 0:self.n_rot:2].copy(), x[:, 1:self.n_rot:2].copy()
            x[:, 0:self.n_rot:2], x[:, 1:self.n_rot:2] = a * c - b * s, a * s + b * c
        return x

    # How K and V are stored in the cache: as computed (None), or through a
    # function such as q8_kv below.
    kv_store = None

    def reset(self):
        self.ks = [[] for _ in range(self.n_layer)]
        self.vs = [[] for _ in range(self.n_layer)]

    def step(self, tok):
        """Feed one token at the next position; its logits."""
        w, hd, pos = self.w, self.hd, len(self.ks[0])
        x = w["token_embd.weight"][tok].copy()
        for i in range(self.n_layer):
            p = f"blk.{i}."
            h = self.rmsnorm(x, w[p + "attn_norm.weight"])
            q = w[p + "attn_q.weight"] @ h + w.get(p + "attn_q.bias", 0)
            k = w[p + "attn_k.weight"] @ h + w.get(p + "attn_k.bias", 0)
            v = w[p + "attn_v.weight"] @ h + w.get(p + "attn_v.bias", 0)
            q, k = self.head_norm(p, q.reshape(self.n_head, hd), k.reshape(self.n_kv, hd))
            q = self.rope(q, pos)
            k, v = self.rope(k, pos), v.reshape(self.n_kv, hd)
            if self.kv_store:
                k, v = self.kv_store(k), self.kv_store(v)
            self.ks[i].append(k)
            self.vs[i].append(v)
            rep = self.n_head // self.n_kv
            K = np.repeat(np.stack(self.ks[i]), rep, axis=1)   # (t, heads, hd)
            V = np.repeat(np.stack(self.vs[i]), rep, axis=1)
            att = np.einsum("hd,thd->ht", q, K) / np.sqrt(hd)
            att = np.exp(att - att.max(axis=1, keepdims=True))
            att /= att.sum(axis=1, keepdims=True)
            o = np.einsum("ht,thd->hd", att, V).reshape(-1)
            x = x + w[p + "attn_output.weight"] @ o
            h = self.rmsnorm(x, w[p + "ffn_norm.weight"])
            x = x + self.ffn(p, h[None, :])[0]
        return self.out @ self.rmsnorm(x, w["output_norm.weight"])

    def rope_all(self, x, pos):
        """x: (t, heads, hd) at positions @pos (t,); as rope() row by row."""
        half = self.n_rot // 2
        inv = self.theta ** (-np.arange(half) * 2.0 / self.n_rot) / self.freq_div
        ang = np.outer(pos * self.pos_scale, inv)[:, None, :]
        c, s = np.cos(ang), np.sin(ang)
        x = x.copy()
        if self.neox:
            a, b = x[..., :half].copy(), x[..., half:self.n_rot].copy()
            x[..., :half], x[..., half:self.n_rot] = a * c - b * s, a * s + b * c
        else:
            a, b = x[..., 0:self.n_rot:2].copy(), x[..., 1:self.n_rot:2].copy()
            x[..., 0:self.n_rot:2], x[..., 1:self.n_rot:2] = a * c - b * s, a * s + b * c
        return x

    def forward(self, tokens):
        """Logits of every position of @tokens, from an empty cache: the
        math of step() for all positions at once (each weight matrix used
        once per layer), the cache left as step() would leave it."""
        self.reset()
        w, hd, n = self.w, self.hd, len(tokens)
        pos = np.arange(n, dtype=np.float64)
        x = w["token_embd.weight"][np.asarray(tokens)].copy()
        mask = np.triu(np.full((n, n), -np.inf), 1)
        rep = self.n_head // self.n_kv

        def norm(x, wt):
            return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + self.eps) * wt
        for i in range(self.n_layer):
            p = f"blk.{i}."
            h = norm(x, w[p + "attn_norm.weight"])
            q = h @ w[p + "attn_q.weight"].T + w.get(p + "attn_q.bias", 0)
            k = h @ w[p + "attn_k.weight"].T + w.get(p + "attn_k.bias", 0)
            v = h @ w[p + "attn_v.weight"].T + w.get(p + "attn_v.bias", 0)
            q, k = self.head_norm(p, q.reshape(n, self.n_head, hd), k.reshape(n, self.n_kv, hd))
            q = self.rope_all(q, pos)
            k, v = self.rope_all(k, pos), v.reshape(n, self.n_kv, hd)
            if self.kv_store:
                k = np.stack([self.kv_store(r) for r in k])
                v = np.stack([self.kv_store(r) for r in v])
            self.ks[i], self.vs[i] = list(k), list(v)
            K, V = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            att = np.einsum("shd,thd->hst", q, K) / np.sqrt(hd) + mask
            att = np.exp(att - att.max(axis=2, keepdims=True))
            att /= att.sum(axis=2, keepdims=True)
            o = np.einsum("hst,thd->shd", att, V).reshape(n, -1)
            x = x + o @ w[p + "attn_output.weight"].T
            h = norm(x, w[p + "ffn_norm.weight"])
            x = x + self.ffn(p, h)
        return norm(x, w["output_norm.weight"]) @ self.out.T

    def greedy(self, tokens, n):
        """The n tokens greedy decoding picks after @tokens."""
        logits = self.forward(tokens)[-1]
        out = []
        for _ in range(n):
            out.append(int(np.argmax(logits)))
            logits = self.step(out[-1])
        return out
