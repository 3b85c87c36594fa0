# SPDX-License-Identifier: MIT
"""tests/run-tests.sh itself: a test program that was not built (normal or
ASan build), a program whose plan ("1..N") is missing or does not match the
cases it printed, and one that crashes after passing cases each fail the
run; a good program passes. Fake programs in a scratch build tree, one
real test name (unit/test_gguf) as the filter."""
import os
import stat
import subprocess
import tempfile

from tap import ROOT, end, ok

RUNNER = os.path.join(ROOT, "tests", "run-tests.sh")


def runner(build, asan, body=None, asan_body=None):
    for tree, text in ((build, body), (asan, asan_body)):
        os.makedirs(os.path.join(tree, "tests"), exist_ok=True)
        path = os.path.join(tree, "tests", "test_gguf")
        if text is not None:
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + text)
            os.chmod(path, stat.S_IRWXU)
        elif os.path.exists(path):
            os.unlink(path)
    env = dict(os.environ, PINFER_TEST_BUILD=build, PINFER_TEST_ASAN=asan,
               PINFER_TEST_LOGS=os.path.join(build, "logs"))
    p = subprocess.run([RUNNER, "/test_gguf"], capture_output=True, env=env, cwd=ROOT)
    return p.returncode, p.stdout.decode()


GOOD = "echo 'ok 1 - a'; echo 'ok 2 - b'; echo '1..2'\n"
with tempfile.TemporaryDirectory() as tmp:
    b, a = os.path.join(tmp, "b"), os.path.join(tmp, "a")
    rc, out = runner(b, a, GOOD, GOOD)
    ok(rc == 0 and out.rstrip().endswith("4 passed, 0 failed, 0 skipped"),
       "two good programs (normal and ASan): 4 passed, exit 0", out)
    rc, out = runner(b, a, None, GOOD)
    ok(rc == 1 and "test_gguf was not built (make tests)" in out,
       "the normal build's program missing: a failure", out)
    rc, out = runner(b, a, GOOD, None)
    ok(rc == 1 and "test_gguf was not built (make SAN=1 tests)" in out,
       "the ASan build's program missing: a failure", out)
    cases = (("a plan of 3 for 2 cases", "echo 'ok 1 - a'; echo 'ok 2 - b'; echo '1..3'\n",
              "its plan (3) does not match the 2 cases it ran"),
             ("no plan", "echo 'ok 1 - a'\n", "its plan (none) does not match the 1 cases"),
             ("a crash after a passing case", "echo 'ok 1 - a'; kill -SEGV $$\n",
              "exited with status 139"),
             ("no case at all", "exit 0\n", "ran no test case"))
    for what, body, msg in cases:
        rc, out = runner(b, a, body, GOOD)
        ok(rc == 1 and msg in out and "1 failed" in out, f"{what}: a failure ({msg})", out)
end()
