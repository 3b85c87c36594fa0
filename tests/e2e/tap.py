# SPDX-License-Identifier: MIT
"""TAP output for the Python test scripts (same conventions as tests/tap.h)."""
import sys

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


def skip_all(reason):
    print(f"1..0 # SKIP {reason}")
    sys.exit(77)


def end():
    print(f"1..{_count}")
    sys.exit(1 if _failed else 0)
