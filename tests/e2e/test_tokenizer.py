# SPDX-License-Identifier: MIT
"""The engine's tokenizer on the real model's vocabulary against Hugging
Face's tokenizers (an independent implementation, in Rust) built from the
same vocabulary, merges, special tokens and pre-tokenizer (SmolLM2: each
digit alone, then GPT-2's byte-level pattern): the ids of a corpus of hard
strings are identical, and decoding the ids gives back the exact bytes.
Then the same vocabulary with the pre-tokenizers of Llama 3 (llama-bpe)
and Qwen2, written to tokenizer-only GGUF files, against tokenizers with
those models' split patterns."""
import os
import subprocess
import tempfile

from tap import MODEL, end, helper, ok, skip_all  # noqa: E402

HELPER = helper("print_tokens")

try:
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
except ImportError:
    skip_all("gguf or tokenizers not installed (make venv)")
if not os.path.exists(MODEL):
    skip_all(f"{MODEL} missing (make model)")

CORPUS = [
    "Hello, world!",
    "The capital of France is Paris.",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\nmany\r\nCRLF",
    "Numbers: 3.14159, 1,000,000 and 2026-11-21 at 10:30.",
    "x=12345678901234567890",
    "I'm sure you've seen they'll do it; we'd've said 'no'. IT'S LOUD",
    "Ünïcödé: naïve café, Straße, Ελληνικά, русский язык, עברית, العربية",
    "中文测试：你好，世界！日本語のテキスト。한국어 문장입니다.",
    "Emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and ♥︎ symbols ∑∫√∞",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(3))",
    "int main(void) { printf(\"%d\\n\", a[i] >> 2); return 0; }",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text with <|endoftext|> inside and <notatoken> too",
    "\u00a0non-breaking\u2003em-space\u3000ideographic space",
    "mixed123abc456 ٣٤٥ Ⅻ ½ ² digits",
    "   ",
    "a",
    "!!!???...---___",
    "https://example.com/path?query=1&x=%20y#frag",
    "12 123 1234 12345 1234567 ١٢٣٤٥ 3.14e10",
    "DON'T YOU'LL He'S 'Tis o'clock '' IT'STOP she'Sgone WE'REady",
    "end.\n\n\n  next\r\n\r\n\tindent\n \n  \n",
    "a \t\n b\t\tc  \u00a0d\u2028e",
    "!!!\n\n???\r\n... ,;:\n",
]

# The split patterns of the pre-tokenizers llama.cpp calls llama-bpe and qwen2
PATTERNS = {
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


def vocabulary():
    r = gguf.GGUFReader(MODEL)
    f = r.fields

    def strings(key):
        fl = f[key]
        return [bytes(fl.parts[i]).decode("utf-8") for i in fl.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = strings("tokenizer.ggml.merges")
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    return tokens, merges, types


def vocabulary_plus():
    """SmolLM2's vocabulary (single digits only) with merges for runs of 2
    and 3 digits and upper-case contractions appended: without them the
    patterns' digit groups and (?i) would not show in the ids."""
    tokens, merges, types = vocabulary()
    have = set(tokens)
    digits = "0123456789"
    extra = [(a, b) for a in digits for b in digits]
    extra += [(a + b, c) for a in digits for b in digits for c in digits]
    extra += [("'", "S"), ("'", "T"), ("'", "LL"), ("'", "RE")]
    for a, b in extra:
        if a + b not in have and a in have | {x for x, _ in extra} and b in have:
            tokens.append(a + b)
            types.append(1)
            have.add(a + b)
            merges.append(f"{a} {b}")
    return tokens, merges, types


def hf_tokenizer(pre=None):
    tokens, merges, types = vocabulary() if pre is None else vocabulary_plus()
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                              merges=[tuple(m.split(" ", 1)) for m in merges]))
    if pre is None:     # SmolLM2's own
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PATTERNS[pre]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                           for i, ty in enumerate(types) if ty in (3, 4)])
    return tk


def tokenizer_gguf(path, pre):
    """A GGUF with vocabulary_plus() and pre-tokenizer @pre."""
    tokens, merges, types = vocabulary_plus()
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def compare(model, tk, what):
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"\0".join(s.encode() for s in CORPUS) + b"\0")
        f.flush()
        p = subprocess.run([HELPER, model, f.name], capture_output=True)
    lines = p.stdout.decode().splitlines()
    ok(p.returncode == 0 and len(lines) == len(CORPUS), f"{what}: the tokenizer loads and runs",
       p.stderr.decode())
    for s, line in zip(CORPUS, lines):
        ids_s, hexed = line.split("\t")
        ours = [int(x) for x in ids_s.split()]
        theirs = tk.encode(s, add_special_tokens=False).ids
        ok(ours == theirs, f"{what}: ids of {s[:40]!r}: {len(ours)} tokens, as tokenizers",
           f"ours   {ours}\ntheirs {theirs}")
        ok(bytes.fromhex(hexed) == s.encode(), f"{what}: decode(encode({s[:30]!r})) is the text")


def main():
    compare(MODEL, hf_tokenizer(), "smollm")
    with tempfile.TemporaryDirectory() as d:
        for pre in ("llama-bpe", "qwen2"):
            path = os.path.join(d, f"{pre}.gguf")
            tokenizer_gguf(path, pre)
            compare(path, hf_tokenizer(pre), pre)
        path = os.path.join(d, "bad.gguf")
        tokenizer_gguf(path, "falcon")
        p = subprocess.run([HELPER, path, "/dev/null"], capture_output=True)
        err = p.stderr.decode()
        ok(p.returncode == 1 and "pre-tokenizer 'falcon' is not supported" in err and
           "llama-bpe" in err, f"an unknown pre-tokenizer is refused, listing the known: {err.strip()}")


if __name__ == "__main__":
    main()
    end()
