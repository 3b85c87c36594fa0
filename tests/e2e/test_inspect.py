# SPDX-License-Identifier: MIT
"""pinfer inspect on the real default model, checked against an independent
reader (the PyPI `gguf` package); the CLI's errors and exit codes on bad
files and bad command lines; the engine's type table against gguf's."""
import json
import os
import struct
import subprocess
import tempfile

import numpy as np

from tap import BUILD, MODEL, PINFER, end, ok, skip_all  # noqa: E402


try:
    import gguf
except ImportError:
    skip_all("the gguf package is not installed (make venv)")
if not os.path.exists(MODEL):
    skip_all(f"{MODEL} missing (make model)")


def run(*args):
    return subprocess.run([PINFER, *args], capture_output=True)


def field_value(f):
    """A field of gguf's reader as plain Python: strings as raw bytes."""
    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]])
    if t == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]) for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[f.data[0]][0].item()


def ours_value(entry):
    """A metadata value of `pinfer inspect --json`, strings as raw bytes."""
    def conv(v, t):
        if t == "str":
            return v.encode("utf-8", "surrogateescape")
        if t == "f32":
            return float(np.float32(v))
        return v
    if entry["type"] == "arr":
        return [conv(v, entry["elem_type"]) for v in entry["value"]]
    return conv(entry["value"], entry["type"])


TYPE_NAMES = {
    gguf.GGUFValueType.UINT8: "u8", gguf.GGUFValueType.INT8: "i8",
    gguf.GGUFValueType.UINT16: "u16", gguf.GGUFValueType.INT16: "i16",
    gguf.GGUFValueType.UINT32: "u32", gguf.GGUFValueType.INT32: "i32",
    gguf.GGUFValueType.FLOAT32: "f32", gguf.GGUFValueType.BOOL: "bool",
    gguf.GGUFValueType.STRING: "str", gguf.GGUFValueType.ARRAY: "arr",
    gguf.GGUFValueType.UINT64: "u64", gguf.GGUFValueType.INT64: "i64",
    gguf.GGUFValueType.FLOAT64: "f64",
}


def test_json_matches_gguf():
    p = run("inspect", "--json", MODEL)
    if not ok(p.returncode == 0, "inspect --json on the default model exits 0",
              p.stderr.decode(errors="replace")):
        return
    ours = json.loads(p.stdout.decode("utf-8", "surrogateescape"))
    ref = gguf.GGUFReader(MODEL)

    ok(ours["version"] == field_value(ref.fields["GGUF.version"]) and
       ours["alignment"] == ref.alignment and
       ours["data_offset"] == ref.data_offset and
       ours["file_size"] == os.path.getsize(MODEL),
       f"version {ours['version']}, alignment {ours['alignment']}, "
       f"data offset {ours['data_offset']} as gguf reads them")

    fields = [f for k, f in ref.fields.items() if not k.startswith("GGUF.")]
    ok([e["key"] for e in ours["metadata"]] == [f.name for f in fields],
       f"the {len(fields)} metadata keys, in file order")
    bad = []
    for e, f in zip(ours["metadata"], fields):
        types_ok = e["type"] == TYPE_NAMES[f.types[0]] and (
            e["type"] != "arr" or e["elem_type"] == TYPE_NAMES[f.types[1]])
        if not types_ok or ours_value(e) != field_value(f):
            bad.append(e["key"])
    ok(not bad, "every metadata value and type equals gguf's "
       "(49152 tokens, 48900 merges, token types, floats bit for bit)",
       f"differ: {bad}")

    rt = ref.tensors
    ot = ours["tensors"]
    ok(len(ot) == len(rt) == 272, f"{len(ot)} tensors, as gguf reads")
    mism = [o["name"] for o, r in zip(ot, rt) if not (
        o["name"] == r.name and o["type_id"] == int(r.tensor_type) and
        o["shape"] == [int(d) for d in r.shape] and
        o["n_elements"] == int(r.n_elements) and
        o["bytes"] == int(r.n_bytes) and o["offset"] == int(r.data_offset))]
    ok(not mism, "every tensor's name, type, shape, elements, bytes and "
       "absolute offset equals gguf's", f"differ: {mism[:10]}")


def test_text_table():
    ref = gguf.GGUFReader(MODEL)
    p = run("inspect", MODEL)
    out = p.stdout.decode()
    ok(p.returncode == 0 and p.stderr == b"", "inspect prints the table, exit 0")
    t = ref.tensors[0]
    row = [ln.split() for ln in out.splitlines()
           if ln.split()[1:2] == [t.name]]
    ok(row and row[0] == ["0", t.name, t.tensor_type.name, "576", "x", "49152",
                          str(t.data_offset), str(t.n_bytes)],
       f"the row of {t.name}: type, shape, offset, bytes", row)
    total = sum(int(x.n_bytes) for x in ref.tensors)
    allrow = [ln.split() for ln in out.splitlines() if ln.split()[:1] == ["all"]]
    ok(allrow and allrow[0][1] == "272" and allrow[0][3] == str(total),
       f"totals: 272 tensors, {total} bytes", allrow)
    ok("tokenizer.ggml.tokens" in out and "[str x 49152]" in out and
       "..." in out, "long arrays are summarized")


def patched_copy(tmp, name, size, patches):
    """The first @size bytes of the model with (offset, bytes) patches."""
    with open(MODEL, "rb") as f:
        data = bytearray(f.read(size))
    for off, b in patches:
        data[off:off + len(b)] = b
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_bad_files():
    ref = gguf.GGUFReader(MODEL)
    size = os.path.getsize(MODEL)
    t0 = ref.tensors[0]
    # tensor info: name (8 + len), n_dims (4), dims (8 each), type (4)
    type_off = t0.field.offset + 8 + len(t0.name) + 4 + 8 * len(t0.shape)
    tok = ref.fields["tokenizer.ggml.tokens"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("bad magic", patched_copy(tmp, "magic.gguf", 4096, [(0, b"GGUX")]),
             "offset 0: magic"),
            ("header cut at 1 MB", patched_copy(tmp, "cut.gguf", 1 << 20, []),
             "'tokenizer.ggml.merges'"),
            ("tensor type 99", patched_copy(tmp, "type.gguf", size,
                                            [(type_off, struct.pack("<I", 99))]),
             f"offset {type_off}: tensor[0] 'token_embd.weight' type: unknown type 99"),
            ("vocabulary count 2^62", patched_copy(
                tmp, "count.gguf", size,
                [(tok.offset + 8 + len(tok.name) + 4 + 4, struct.pack("<Q", 1 << 62))]),
             "cannot fit"),
            ("last tensor's data cut short", patched_copy(tmp, "short.gguf",
                                                          size - 1, []),
             "'output_norm.weight'"),
        ]
        for what, path, msg in cases:
            p = run("inspect", path)
            err = p.stderr.decode()
            ok(p.returncode == 1 and p.stdout == b"" and
               err.startswith(f"pinfer: {path}: ") and msg in err and
               err.count("\n") == 1,
               f"{what}: one line on stderr naming the field, exit 1", err)
    p = run("inspect", "/nonexistent.gguf")
    ok(p.returncode == 1 and b"No such file" in p.stderr,
       "a missing file: exit 1, says so", p.stderr)


def test_usage():
    p = run()
    ok(p.returncode == 2 and b"usage" in p.stderr, "no command: usage, exit 2")
    p = run("--help")
    ok(p.returncode == 0 and b"inspect" in p.stdout, "--help lists inspect")
    p = run("inspect", "--help")
    ok(p.returncode == 0 and b"usage: pinfer inspect" in p.stdout,
       "inspect --help: usage on stdout, exit 0")
    p = run("inspect")
    ok(p.returncode == 2 and b"expected one FILE" in p.stderr,
       "inspect without a file: exit 2")
    p = run("inspect", "--bogus", MODEL)
    ok(p.returncode == 2, "inspect with an unknown option: exit 2")
    p = run("frobnicate")
    ok(p.returncode == 2 and b"unknown command" in p.stderr,
       "an unknown command: exit 2")


def test_type_table():
    out = subprocess.run([os.path.join(BUILD, "tests", "print_types")],
                         capture_output=True, check=True).stdout.decode()
    ours = {int(t): (int(e), int(b)) for t, _, e, b in
            (ln.split() for ln in out.splitlines())}
    ref = {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()}
    # gguf's Q8_1 entry (40 bytes) is the old float d/s layout; ggml's
    # block_q8_1 is two fp16 and 32 int8 = 36. It never occurs in files.
    ref[gguf.GGMLQuantizationType.Q8_1] = (32, 36)
    ok(ours == ref, f"block geometry of all {len(ours)} tensor types equals "
       "gguf's table (Q8_1: 36 bytes, as in ggml)",
       {k: (ours.get(k), ref.get(k)) for k in set(ours) | set(ref)
        if ours.get(k) != ref.get(k)})


test_json_matches_gguf()
test_text_table()
test_bad_files()
test_usage()
test_type_table()
end()
