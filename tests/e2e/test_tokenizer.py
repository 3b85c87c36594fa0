# SPDX-License-Identifier: MIT
"""The engine's tokenizer on the real model's vocabulary against Hugging
Face's tokenizers (an independent implementation, in Rust) built from the
same vocabulary, merges, special tokens and pre-tokenizer (SmolLM2: each
digit alone, then GPT-2's byte-level pattern): the ids of a corpus of hard
strings are identical, and decoding the ids gives back the exact bytes."""
import os
import subprocess
import tempfile

from tap import MODEL, end, helper, ok, skip_all  # noqa: E402

HELPER = helper("print_tokens")

try:
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
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
]


def hf_tokenizer():
    r = gguf.GGUFReader(MODEL)
    f = r.fields

    def strings(key):
        fl = f[key]
        return [bytes(fl.parts[i]).decode("utf-8") for i in fl.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                           for i, ty in enumerate(types) if ty in (3, 4)])
    return tk


def main():
    tk = hf_tokenizer()
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"\0".join(s.encode() for s in CORPUS) + b"\0")
        f.flush()
        p = subprocess.run([HELPER, MODEL, f.name], capture_output=True)
    lines = p.stdout.decode().splitlines()
    ok(p.returncode == 0 and len(lines) == len(CORPUS), "the tokenizer loads and runs",
       p.stderr.decode())
    for s, line in zip(CORPUS, lines):
        ids_s, hexed = line.split("\t")
        ours = [int(x) for x in ids_s.split()]
        theirs = tk.encode(s, add_special_tokens=False).ids
        ok(ours == theirs, f"ids of {s[:40]!r}: {len(ours)} tokens, as tokenizers",
           f"ours   {ours}\ntheirs {theirs}")
        ok(bytes.fromhex(hexed) == s.encode(), f"decode(encode({s[:30]!r})) is the text")


main()
end()
