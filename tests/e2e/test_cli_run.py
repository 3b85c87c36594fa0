# SPDX-License-Identifier: MIT
"""pinfer run and pinfer chat on the real model: the greedy answer is the
independent reference's (tests/reference/llama_ref.py) on the prompt's
tokens, decoded by this test, up to the first near tie; the figures go to
stderr; greedy and seeded sampling are reproducible; chat keeps the
conversation (its second turn is the reference's continuation of the whole
conversation's tokens, not a fresh run's); bad command lines and impossible
requests are clear errors with the right exit status."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from tap import MODEL, PINFER, ROOT, end, ok, skip_all  # noqa: E402

try:
    from answer import follows_reference, prompt_ids
except ImportError:
    skip_all("the gguf package is not installed (make venv)")
if not os.path.exists(MODEL):
    skip_all(f"{MODEL} missing (make model)")


def run(*args, stdin=None):
    return subprocess.run([PINFER, *args], capture_output=True, input=stdin, cwd=ROOT)


def test_run():
    """The answer to a question, greedy, is the reference's greedy
    continuation of the same prompt tokens, token for token but at near
    ties (tests/reference/answer.py)."""
    n = 16
    p = run("run", "-m", MODEL, "-p", "What is 2+2?", "-n", str(n), "--temp", "0",
            "--verbose-prompt")
    out, err = p.stdout, p.stderr.decode()
    ids = prompt_ids(err)
    steps, ties, bad = follows_reference(MODEL, ids, out, n) if ids else (0, [], "no prompt ids")
    ok(p.returncode == 0 and bad is None and b"4" in out,
       f"greedy answer to 'What is 2+2?' {out.decode(errors='replace')!r}: the reference's "
       f"{steps} tokens" + (f", the engine taking the other of a near tie at steps {ties}" if ties else ""),
       f"{bad}\n{err}")
    ok("provider" in err and "chat template chatml" in err and "t/s" in err and
       "prompt" in err, "stderr: memory provider, template, prompt and generation speed")
    again = run("run", "-m", MODEL, "-p", "What is 2+2?", "-n", "24", "--temp", "0")
    ok(again.stdout == p.stdout, "greedy output is the same twice")
    a = run("run", "-p", "Tell me a story.", "-n", "24", "-s", "7")
    b = run("run", "-p", "Tell me a story.", "-n", "24", "-s", "7")
    ok(a.returncode == 0 and a.stdout == b.stdout and a.stdout,
       "sampling with the same seed is reproducible (default model path)")
    raw = run("run", "-m", MODEL, "--raw", "-p", "The capital of France is", "-n", "8", "--temp", "0")
    ok(raw.returncode == 0 and "chat template none" in raw.stderr.decode(),
       f"--raw continues the text without a template: {raw.stdout.decode()!r}")


def test_chat():
    """chat keeps the conversation: its second turn is the reference's
    greedy continuation of the whole conversation's tokens (the first
    turn's prompt, its answer as the engine took it, then the second turn's
    new tokens; an answer cut off at -n is closed with <|im_end|> first),
    and differs from a fresh run of the second question alone."""
    q1, q2 = "My name is Ada. Please remember it.", "What is my name?"
    n = 24
    args = ("-m", MODEL, "-n", str(n), "--temp", "0")
    p = run("chat", *args, "--verbose-prompt", stdin=f"{q1}\n{q2}\n".encode())
    out, err = p.stdout, p.stderr.decode()
    one = run("run", *args, "-p", q1).stdout
    two = run("run", *args, "-p", q2).stdout
    ok(p.returncode == 0 and out.startswith(one + b"\n"),
       "chat: the first turn answers as run does", err)
    ids1, ids2 = prompt_ids(err, 0), prompt_ids(err, 1)
    rest = out[len(one) + 1:].rstrip(b"\n")
    taken = []
    bad = None if ids1 and ids2 else "no prompt ids for two turns"
    if bad is None:
        _, _, bad = follows_reference(MODEL, ids1, one, n, taken)
    # SmolLM2's ids: "\n", <|im_start|>, "user", <|im_end|>
    nl, im_start, user, im_end = 198, 1, 4093, 2
    ended = len(taken) < n or taken[-1] == im_end
    turn2 = ([] if ended else [im_end]) + [nl, im_start, user]
    ok(bad is None and ids2[:len(turn2)] == turn2,
       "chat: the second turn's new tokens follow the first answer"
       + (" and its <|im_end|>" if ended else ", closed with <|im_end|> (cut off at -n)"),
       f"{bad}\nturn 2's ids: {ids2}")
    steps, ties, bad = follows_reference(MODEL, ids1 + taken + ids2, rest, n) \
        if bad is None else (0, [], bad)
    ok(bad is None and rest != two.rstrip(b"\n"),
       f"chat: the second turn {rest.decode(errors='replace')!r} is the reference's "
       f"{steps} tokens after the whole conversation"
       + (f" (near ties at {ties})" if ties else "") + ", not a fresh run's",
       f"{bad}\nfresh: {two!r}\n{err}")


def test_errors():
    cases = [
        (("run",), 2, "no prompt"),
        (("run", "-p", "x", "-n", "abc"), 2, "-n abc: not a whole number"),
        (("run", "-p", "x", "--bogus"), 2, ""),
        (("run", "-m", "/nonexistent.gguf", "-p", "x"), 1, "/nonexistent.gguf"),
        (("run", "-m", MODEL, "-p", "x", "--provider", "nonsense"), 2, "not one of"),
        (("run", "-m", MODEL, "-p", "word " * 40, "--ctx", "16"), 1, "the context has room for"),
    ]
    if not os.path.exists("/dev/pinfer"):
        cases.append((("run", "-m", MODEL, "-p", "x", "--provider", "kmod"), 1,
                      "kmod: /dev/pinfer does not exist"))
    for args, code, msg in cases:
        p = run(*args)
        err = p.stderr.decode()
        ok(p.returncode == code and msg in err,
           f"pinfer {' '.join(a if len(a) < 20 else a[:17] + '...' for a in args)}: exit {code}, {err.strip().splitlines()[-1] if err.strip() else ''!r}")
    p = run("run", "--help")
    ok(p.returncode == 0 and b"usage: pinfer run" in p.stdout, "run --help")
    for args, code, msg in ((("quantize", MODEL, "/tmp/x.gguf", "q3_k"), 2, "not one of"),
                            (("quantize", "/nonexistent.gguf", "/tmp/x.gguf", "q8_0"), 1, "/nonexistent.gguf"),
                            (("quantize", MODEL), 2, "usage"),
                            (("quantize", MODEL, "/nonexistent/dir/x.gguf", "q8_0"), 1,
                             "/nonexistent/dir/x.gguf.XXXXXX: No such file or directory")):
        p = run(*args)
        ok(p.returncode == code and msg in p.stderr.decode(),
           f"pinfer quantize, bad arguments: exit {code}: {p.stderr.decode().strip().splitlines()[-1]}")


def test_bench():
    import json
    p = run("bench", "-m", MODEL, "-p", "8", "-n", "4", "-r", "2", "--json")
    rows = [json.loads(x) for x in p.stdout.decode().splitlines()]
    ok(p.returncode == 0 and [r["test"] for r in rows] == ["pp8", "tg4"] and
       all(r["t_s"] > 0 and r["weight_bytes_per_token"] > 50e6 for r in rows) and
       rows[-1]["mem_read_gbs"] > 0,
       f"bench --json: pp8 and tg4 in tokens/s: {[round(r['t_s'], 1) for r in rows]}",
       p.stderr.decode())
    p = run("bench", "-m", MODEL, "-p", "8", "-n", "4", "-r", "1")
    ok(p.returncode == 0 and b"pp8" in p.stdout and b"tg4" in p.stdout and
       b"memory read bandwidth (" in p.stdout,
       "bench: a table, generation's weight bandwidth and the memory's")


test_run()
test_chat()
test_bench()
test_errors()
end()
