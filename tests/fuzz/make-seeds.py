# SPDX-License-Identifier: MIT
"""Seeds for the GGUF fuzzer, made from the real model's header: the same
metadata (arrays cut to 16 elements) and the same tensor table with every
tensor shrunk to one block, so seeds are small but shaped like a real file.
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


def main():
    model, outdir = sys.argv[1:]
    os.makedirs(outdir, exist_ok=True)
    r = gguf.GGUFReader(model)
    write(os.path.join(outdir, "model-mini.gguf"), 3, r.fields, r.tensors)
    write(os.path.join(outdir, "model-v2-16-tensors.gguf"), 2, r.fields,
          r.tensors[:16], limit=4)
    write(os.path.join(outdir, "metadata-only.gguf"), 3, r.fields, [])


main()
