# SPDX-License-Identifier: MIT
"""Seeds for the fuzzers, made from the real model's header.

gguf (fuzz_gguf): the same metadata (arrays cut to 16 elements) and the
same tensor table with every tensor shrunk to one block, so seeds are small
but shaped like a real file.
text (fuzz_text): a 16-bit length, a text, then a tokenizer-only GGUF: the
model's first 1000 tokens, the merges among them, its special tokens and
chat template; and a SentencePiece-style vocabulary (pieces, scores, byte
tokens <0xXX>) made here.
(fuzz_model's seeds are tiny models of pinfer synth: tests/fuzz/run-fuzz.sh.)
Usage: make-seeds.py MODEL OUTDIR"""
import os
import struct
import sys

import gguf

VT = gguf.GGUFValueType
FMT = {VT.UINT8: "B", VT.INT8: "b", VT.UINT16: "H", VT.INT16: "h",
       VT.UINT32: "I", VT.INT32: "i", VT.FLOAT32: "f", VT.BOOL: "?",
       VT.UINT64: "Q", VT.INT64: "q", VT.FLOAT64: "d"}


def s(b):
    return struct.pack("<Q", len(b)) + b


def value(f, limit):
    t = f.types[0]
    if t == VT.STRING:
        return struct.pack("<I", t) + s(bytes(f.parts[f.data[0]]))
    if t == VT.ARRAY:
        et = f.types[1]
        idx = f.data[:limit]
        out = struct.pack("<IIQ", t, et, len(idx))
        for i in idx:
            out += s(bytes(f.parts[i])) if et == VT.STRING else \
                struct.pack("<" + FMT[et], f.parts[i][0])
        return out
    return struct.pack("<I" + FMT[t], t, f.parts[f.data[0]][0])


def write(path, version, fields, tensors, limit=16, align=32):
    kvs = [f for k, f in fields.items() if not k.startswith("GGUF.")]
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for f in kvs:
        out += s(f.name.encode()) + value(f, limit)
    off, data = 0, b""
    for t in tensors:
        elems, size = gguf.GGML_QUANT_SIZES[t.tensor_type]
        out += s(t.name.encode()) + struct.pack("<IQ", 1, elems)
        out += struct.pack("<IQ", int(t.tensor_type), off)
        data += bytes(size) + bytes(-size % align)
        off = len(data)
    out += bytes(-len(out) % align)
    with open(path, "wb") as fh:
        fh.write(out + data)


def kv(key, t, payload):
    return s(key.encode()) + struct.pack("<I", t) + payload


def strs(key, items):
    return kv(key, VT.ARRAY, struct.pack("<IQ", VT.STRING, len(items)) + b"".join(s(x) for x in items))


def nums(key, et, items):
    return kv(key, VT.ARRAY, struct.pack("<IQ", et, len(items)) +
              b"".join(struct.pack("<" + FMT[et], x) for x in items))


def header(kvs):
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


TEXTS = [b"Hello, world! <|im_start|>user\nHi<|im_end|>", b"  leading  spaces\tand\nlines",
         "naïve café 中文 😀 ∑".encode(), b"12345 6789 3.14159", b"<0x41><s></s>"]


def text_seeds(r, outdir):
    f = r.fields
    toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]) for i in f["tokenizer.ggml.tokens"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    keep = set(range(1000))
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]) for i in f["tokenizer.ggml.merges"].data]
    have = set(toks[i] for i in keep)
    merges = [m for m in merges if all(p in have for p in m.split(b" ", 1)) and
              m.replace(b" ", b"", 1) in have][:2000]
    tmpl = bytes(f["tokenizer.chat_template"].parts[f["tokenizer.chat_template"].data[0]])
    bpe = header([kv("tokenizer.ggml.model", VT.STRING, s(b"gpt2")),
                  kv("tokenizer.ggml.pre", VT.STRING, s(b"smollm")),
                  strs("tokenizer.ggml.tokens", toks[:1000]),
                  nums("tokenizer.ggml.token_type", VT.INT32, types[:1000]),
                  strs("tokenizer.ggml.merges", merges),
                  kv("tokenizer.ggml.bos_token_id", VT.UINT32, struct.pack("<I", 1)),
                  kv("tokenizer.ggml.eos_token_id", VT.UINT32, struct.pack("<I", 2)),
                  kv("tokenizer.chat_template", VT.STRING, s(tmpl))])
    pieces = [b"<unk>", b"<s>", b"</s>"] + [b"<0x%02X>" % i for i in range(256)] + \
        ["\u2581the", "\u2581a", "he", "th", "\u2581", "in", "er", "an", "\u2581t", "e", "t", "h"]
    pieces = [p if isinstance(p, bytes) else p.encode() for p in pieces]
    ptypes = [2, 3, 3] + [6] * 256 + [1] * (len(pieces) - 259)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces) - 259)]
    spm = header([kv("tokenizer.ggml.model", VT.STRING, s(b"llama")),
                  strs("tokenizer.ggml.tokens", pieces),
                  nums("tokenizer.ggml.token_type", VT.INT32, ptypes),
                  nums("tokenizer.ggml.scores", VT.FLOAT32, scores),
                  kv("tokenizer.ggml.bos_token_id", VT.UINT32, struct.pack("<I", 1)),
                  kv("tokenizer.ggml.add_bos_token", VT.BOOL, b"\x01"),
                  kv("tokenizer.chat_template", VT.STRING,
                     s(b"{% if messages[0]['role'] == 'system' %}[INST] <<SYS>>"))])
    os.makedirs(outdir, exist_ok=True)
    for i, t in enumerate(TEXTS):
        for name, g in (("bpe", bpe), ("spm", spm)):
            with open(os.path.join(outdir, f"{name}-{i}.bin"), "wb") as fh:
                fh.write(struct.pack("<H", len(t)) + t + g)


def main():
    model, outdir = sys.argv[1:]
    r = gguf.GGUFReader(model)
    os.makedirs(os.path.join(outdir, "gguf"), exist_ok=True)
    write(os.path.join(outdir, "gguf", "model-mini.gguf"), 3, r.fields, r.tensors)
    write(os.path.join(outdir, "gguf", "model-v2-16-tensors.gguf"), 2, r.fields,
          r.tensors[:16], limit=4)
    write(os.path.join(outdir, "gguf", "metadata-only.gguf"), 3, r.fields, [])
    text_seeds(r, os.path.join(outdir, "text"))


main()
