# SPDX-License-Identifier: MIT
"""Shared by the Python test scripts: the tree's paths, and TAP output with
the conventions of tests/tap.h."""
import os
import re
import shutil
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("PINFER_TEST_BUILD", os.path.join(ROOT, "build"))
PINFER = os.path.join(BUILD, "pinfer")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def patched(tmp, name, patches, src=MODEL):
    """A copy of @src named @name in @tmp with @patches, (offset, bytes) pairs, written over it."""
    path = os.path.join(tmp, name)
    shutil.copyfile(src, path)
    with open(path, "r+b") as f:
        for off, data in patches:
            f.seek(off)
            f.write(data)
    return path


def serve_port(p, lines=None, timeout=120):
    """The port a `pinfer serve` started as the Popen @p (stderr piped, --port
    0) says it listens on, reading its stderr up to that line (each line read
    is added to @lines); None if it exits or says nothing of it in time."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        line = p.stderr.readline().decode(errors="replace")
        if not line:
            return None
        if lines is not None:
            lines.append(line)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))
    return None


def helper(name):
    """A test helper program of tests/unit/print_*.c."""
    return os.path.join(BUILD, "tests", name)

_count = 0
_failed = 0


def ok(cond, desc, diag=None):
    global _count, _failed
    _count += 1
    print(f"{'' if cond else 'not '}ok {_count} - {desc}")
    if not cond:
        _failed += 1
        if diag:
            for line in str(diag).splitlines()[:20]:
                print(f"#   {line}")
    sys.stdout.flush()
    return cond


def skip(reason):
    """One case that could not run here (counted as skipped)."""
    global _count
    _count += 1
    print(f"ok {_count} - {reason} # SKIP")
    sys.stdout.flush()


def skip_all(reason):
    print(f"1..0 # SKIP {reason}")
    sys.exit(77)


def end():
    print(f"1..{_count}")
    sys.exit(1 if _failed else 0)
