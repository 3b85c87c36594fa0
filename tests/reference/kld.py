# SPDX-License-Identifier: MIT
"""Quantization quality as llama.cpp measures it (llama-perplexity
--kl-divergence): over every position of a text, the KL divergence of a
model's next-token distribution from a reference's, KL(ref || model), and
how often their top tokens agree. Used by tests/e2e/test_forward.py (pinfer
against the numpy reference) and bench/accuracy.sh (pinfer and llama.cpp
against the same reference, side by side: where the test's limits come
from).

The text: the opening of Lewis Carroll's Alice's Adventures in Wonderland
(1865, public domain), tests/reference/text.txt: 332 tokens with SmolLM2's
tokenizer."""
import os
import subprocess
import tempfile

import numpy as np

TEXT = os.path.join(os.path.dirname(__file__), "text.txt")


def text_tokens(print_tokens, model):
    """The text's token ids by the engine's tokenizer (tests/unit/print_tokens.c;
    itself tested against Hugging Face's tokenizers)."""
    with open(TEXT, "rb") as f:
        text = f.read().rstrip(b"\n")
    with tempfile.NamedTemporaryFile() as f:
        f.write(text + b"\0")
        f.flush()
        out = subprocess.run([print_tokens, model, f.name], capture_output=True, check=True)
    return [int(x) for x in out.stdout.decode().split("\t")[0].split()]


def log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kld(ref, got):
    """Mean KL(ref || got) over the positions (rows of logits), its 99th
    percentile, and the fraction of positions whose argmax agree."""
    lp, lq = log_softmax(ref), log_softmax(got)
    per = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    top1 = float((np.argmax(ref, axis=-1) == np.argmax(got, axis=-1)).mean())
    return float(per.mean()), float(np.percentile(per, 99)), top1
