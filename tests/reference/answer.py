# SPDX-License-Identifier: MIT
"""Is a greedy answer the reference's? For the CLI tests: the engine's text
after a prompt (its token ids as `pinfer run --verbose-prompt` prints
them), against tests/reference/llama_ref.py's greedy continuation decoded
here from the file's byte-level vocabulary (GPT-2's byte mapping): at each
step the engine's token must be the reference's choice or, at a near tie
(logits within 2% of the range of the top one: 8-bit activations may flip
those), one of the tied; the reference then follows the engine's choice."""
import gguf
import numpy as np

from llama_ref import LlamaRef

NEAR_TIE = 0.02


def byte_decoder():
    """GPT-2's bytes_to_unicode, inverted: the byte each vocabulary character stands for."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def prompt_ids(stderr, turn=0):
    """The token ids `--verbose-prompt` printed for turn @turn (chat prints
    one line per turn, each with only that turn's new tokens)."""
    lines = [x for x in stderr.splitlines() if x.startswith("pinfer: prompt tokens:")]
    return [int(x) for x in lines[turn].split(":")[2].split()] if turn < len(lines) else []


def follows_reference(model, ids, out, n, taken=None):
    """(steps followed, steps at a near tie where the engine took another,
    what went wrong or None) for the engine's answer @out (bytes) after
    @ids, at most @n tokens; the answer may end where the reference's
    choice (or one tied with it) is a control token. @taken (a list, or
    None) receives the ids the engine took, the control token that ended
    the answer included."""
    taken = [] if taken is None else taken
    r = gguf.GGUFReader(model)
    dec = byte_decoder()
    f = r.fields["tokenizer.ggml.tokens"]
    vocab = [bytes(dec[c] for c in bytes(f.parts[i]).decode()) for i in f.data]
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    ref = LlamaRef(model)
    logits = ref.forward(ids)[-1]
    at, steps, ties = 0, 0, []
    for step in range(n):
        best = int(np.argmax(logits))
        near = np.flatnonzero(logits >= logits[best] - NEAR_TIE * (logits.max() - logits.min()))
        cands = [best] + [int(x) for x in near if x != best]
        if at == len(out) and any(types[t] == 3 for t in cands):
            if types[best] != 3:
                ties.append(step)
            taken.append(next(t for t in cands if types[t] == 3))
            return steps, ties, None  # the engine ended the answer there
        took = [t for t in cands if types[t] != 3 and out.startswith(vocab[t], at)]
        if not took:
            return steps, ties, f"step {step}: the reference has {vocab[best]!r} at byte {at}"
        if took[0] != best:
            ties.append(step)
        at += len(vocab[took[0]])
        taken.append(took[0])
        steps += 1
        logits = ref.step(took[0])
    return steps, ties, None if at == len(out) else f"the engine wrote more than {n} tokens"
