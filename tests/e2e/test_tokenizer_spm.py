# SPDX-License-Identifier: MIT
"""The engine's SentencePiece tokenizer (tokenizer.ggml.model "llama": Llama
2, TinyLlama, Mistral) against Google's sentencepiece (an independent
implementation, in C++): a BPE model with byte fallback is trained here on
a small corpus with the settings of Llama 2's tokenizer (identity
normalization, a dummy prefix, extra spaces kept, digits split), its
pieces, scores and types written to a tokenizer-only GGUF; the ids of hard
strings (some with characters the model never saw: byte fallback) equal
sentencepiece's, and decoding gives back the text with the prefix space."""
import io
import os
import subprocess
import tempfile

from tap import end, helper, ok, skip_all  # noqa: E402

try:
    import gguf
    import sentencepiece as spm
except ImportError:
    skip_all("gguf or sentencepiece not installed (make venv)")

HELPER = helper("print_tokens")

TRAIN = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a little girl who lived in a village near the forest.",
    "Whenever she went out, the little girl wore a red riding cloak.",
    "def main():\n    print('hello, world')\n    return 0\n",
    "Numbers like 3.14159 and 2026 appear in text, as do dates: 2026-11-21.",
    "Ünïcödé letters: naïve café Straße, and Ελληνικά, русский язык.",
    "  leading spaces, tabs\tand newlines\nare kept as they are  ",
] * 20

CORPUS = [
    "Hello, world!",
    "The little girl went into the forest.",
    "  two leading spaces and  double  spaces  ",
    "tabs\tand\nnewlines\n\nmany",
    "Numbers: 3.14159, 1,000,000 and 12345",
    "naïve café Straße Ελληνικά русский",
    "中文测试：你好，世界！",                      # never seen: bytes
    "Emoji 😀👍🏽 and ∑∫√∞",                      # never seen: bytes
    "def f(x):\n    return x ** 2\n",
    "a",
    "   ",
    "the the the thethe",
]


def train():
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TRAIN), model_writer=model, vocab_size=600,
        model_type="bpe", byte_fallback=True, split_digits=True,
        add_dummy_prefix=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", character_coverage=1.0,
        allow_whitespace_only_pieces=True, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def write_gguf(sp, path):
    n = sp.get_piece_size()
    types = []
    for i in range(n):
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else
                     6 if sp.is_byte(i) else 5 if sp.is_unused(i) else 1)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


def main():
    sp = train()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "spm.gguf")
        types = write_gguf(sp, path)
        ok(types.count(6) == 256 and sp.get_piece_size() == 600,
           "a 600-piece BPE model with 256 byte pieces trained and written")
        text = os.path.join(d, "corpus")
        with open(text, "wb") as f:
            f.write(b"\0".join(s.encode() for s in CORPUS) + b"\0")
        p = subprocess.run([HELPER, path, text], capture_output=True)
        lines = p.stdout.decode().splitlines()
        ok(p.returncode == 0 and len(lines) == len(CORPUS), "the tokenizer loads and runs",
           p.stderr.decode())
        for s, line in zip(CORPUS, lines):
            ids_s, hexed = line.split("\t")
            ours = [int(x) for x in ids_s.split()]
            theirs = sp.encode(s)
            fallback = sum(types[i] == 6 for i in theirs)
            ok(ours == theirs, f"ids of {s[:40]!r}: {len(ours)} tokens"
               f"{f', {fallback} of them bytes' if fallback else ''}, as sentencepiece",
               f"ours   {ours}\ntheirs {theirs}")
            ok(bytes.fromhex(hexed) == (" " + s).encode(),
               f"decode(encode({s[:30]!r})) is the text after the prefix space")


main()
end()
