# SPDX-License-Identifier: MIT
"""Progress on stderr for long work, only when stderr is a terminal (run
under script(1), which gives the command a pseudo-terminal) and not with
-q: loading (pinfer run; the bar names the memory provider), the first pass through the layers a memory
budget streams (pinfer run --mem), the GPU's layers read once at load
(pinfer run -ngl 999, on the CPU emulation of the CUDA backend), quantize
and synth each show a bar with bytes done of the total and GB/s, ending at
100%; piped, or with -q, nothing."""
import os
import re
import shlex
import subprocess
import tempfile

from tap import BUILD, MODEL, PINFER, end, ok, skip_all

if not os.path.exists(MODEL):
    skip_all(f"{MODEL} missing (make model)")
if subprocess.run(["which", "script"], capture_output=True).returncode:
    skip_all("script(1) is missing (util-linux)")


def on_tty(args):
    """stdout and stderr of @args as a terminal shows them."""
    p = subprocess.run(["script", "-qec", shlex.join(args), "/dev/null"], capture_output=True)
    return p.returncode, p.stdout.decode(errors="replace").replace("\r", "\n")


def piped(args):
    p = subprocess.run(args, capture_output=True)
    return p.returncode, p.stderr.decode(errors="replace")


with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "q.gguf")
    cases = [
        ("quantize", "quantizing", [PINFER, "quantize", MODEL, out, "q8_0"],
         [PINFER, "quantize", "-q", MODEL, out, "q8_0"]),
        ("synth", "writing", [PINFER, "synth", "--params", "135M", "-o", out],
         [PINFER, "synth", "--params", "135M", "-q", "-o", out]),
        ("run", "loading", [PINFER, "run", "-p", "hi", "-n", "1", "--temp", "0"],
         [PINFER, "run", "-q", "-p", "hi", "-n", "1", "--temp", "0"]),
        # a budget that streams the last 12 layers: their first pass, before
        # the first token
        ("run --mem 300M", "streaming, first pass",
         [PINFER, "run", "--mem", "300M", "-p", "hi", "-n", "1", "--temp", "0"],
         [PINFER, "run", "-q", "--mem", "300M", "-p", "hi", "-n", "1", "--temp", "0"]),
    ]
    emul = os.path.join(BUILD, "tests", "libpinfer-cuda-emul.so")
    if os.path.exists(emul):
        # every layer on the (emulated) GPU, none held in host memory: read once, at load
        os.environ["PINFER_CUDA_LIB"] = emul
        cases.append(("run -ngl 999", "loading the GPU's layers",
                      [PINFER, "run", "-ngl", "999", "-p", "hi", "-n", "1", "--temp", "0"],
                      [PINFER, "run", "-q", "-ngl", "999", "-p", "hi", "-n", "1", "--temp", "0"]))
    else:
        ok(False, f"{emul} missing (make tests)")
    for name, what, args, quiet in cases:
        rc, text = on_tty(args)
        bars = [ln for ln in text.splitlines() if ln.startswith(f"pinfer: {what} ")]
        provider = what != "loading" or re.match(
            r"pinfer: loading into (kmod|hugetlb|thp|plain) memory ", bars[-1] if bars else "")
        ok(rc == 0 and bars and "100%" in bars[-1] and " MiB, " in bars[-1] and provider and
           bars[-1].rstrip("\x1b[K").endswith("GB/s"),
           f"{name} on a terminal: '{bars[-1].rstrip(chr(27) + '[K') if bars else None}'", text[-600:])
        rc, text = on_tty(quiet)
        ok(rc == 0 and f"pinfer: {what} " not in text, f"{name} -q on a terminal: no bar", text[-600:])
        rc, text = piped(args)
        ok(rc == 0 and f"pinfer: {what} " not in text, f"{name} piped: no bar", text[-600:])
end()
