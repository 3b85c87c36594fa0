# SPDX-License-Identifier: MIT
"""pinfer doctor on the host (without pinfer.ko; tests/kmod/test_vm.sh runs
its checks again inside the VM with the module loaded), against states this
test sets up and restores (as root; the cases that need root are skipped
without it):

- every check reports one line, OK/INFO/WARN/FAIL, the fix under each WARN
  and FAIL; --json gives the same items and the worst status;
- vm.swappiness at 100: WARN with the sysctl that fixes it; at 5: OK;
- a 2 MiB hugetlb pool: its pages read back per node; with -m, too small a
  pool for the model is a WARN naming the vm.nr_hugepages that fits it, a
  large enough one OK;
- a memory cgroup limit on the process: reported with its size, a WARN
  when the model is larger;
- no /dev/pinfer on the host: a WARN with modprobe;
- -m: the plan (resident, or what streams with --mem), the file's O_DIRECT;
  a missing model or a budget below the minimum: FAIL, exit 1;
- unprivileged (as nobody): still every check, nothing crashes;
- a wrong command line: exit 2.
"""
import json
import os
import re
import subprocess
import tempfile

from tap import MODEL, PINFER, end, ok, skip

ROOT_USER = os.geteuid() == 0
CHECKS = ["thp", "swappiness", "hugepages", "memlock", "pinfer.ko", "io_uring", "governor",
          "smt", "cpu", "numa", "cgroup"]


def doctor(*args, prefix=()):
    return subprocess.run(list(prefix) + [PINFER, "doctor"] + list(args), capture_output=True,
                          text=True)


def items(*args, prefix=()):
    p = doctor("--json", *args, prefix=prefix)
    try:
        return p, {i["check"]: i for i in json.loads(p.stdout)["items"]}
    except (ValueError, KeyError):
        return p, {}


def sysctl(path, value=None):
    with open(path) as f:
        old = f.read().strip()
    if value is not None:
        with open(path, "w") as f:
            f.write(str(value))
    return old


def test_lines():
    p = doctor()
    lines = [ln for ln in p.stdout.splitlines() if not ln.startswith(" ")]
    names = [ln.split()[1] for ln in lines if ln.split()]
    good = all(re.match(r"^(OK|INFO|WARN|FAIL)\s", ln) for ln in lines)
    fixes = all("fix: " in p.stdout.splitlines()[i + 1] for i, ln in enumerate(p.stdout.splitlines())
                if ln.startswith(("WARN", "FAIL")))
    ok(p.returncode in (0, 1) and good and names == CHECKS and fixes,
       f"doctor: {len(lines)} checks, each OK/INFO/WARN/FAIL, a fix under each WARN and FAIL "
       f"(exit {p.returncode})", p.stdout + p.stderr)
    p, it = items()
    worst = max((["OK", "INFO", "WARN", "FAIL"].index(i["status"]) for i in it.values()), default=-1)
    ok(p.returncode in (0, 1) and sorted(it) == sorted(CHECKS) and
       json.loads(p.stdout)["worst"] == ["OK", "INFO", "WARN", "FAIL"][worst] and
       (p.returncode == 1) == (worst == 3),
       "doctor --json: the same checks, the worst status, exit 1 only on FAIL", p.stdout)
    mod = it.get("pinfer.ko", {})
    if os.path.exists("/dev/pinfer"):
        skip("/dev/pinfer exists on this host: the module's absence is tested elsewhere")
    else:
        ok(mod.get("status") == "WARN" and "modprobe pinfer" in mod.get("fix", ""),
           "no /dev/pinfer: WARN, fix modprobe pinfer", mod)
    cpu = it.get("cpu", {})
    p2, it2 = items(prefix=("env", "PINFER_CPU=scalar"))
    ok("kernels: Q4_0" in cpu.get("found", "") and it2.get("cpu", {}).get("status") == "WARN" and
       "capped by PINFER_CPU" in it2["cpu"]["found"],
       "cpu: the ISA and kernels; PINFER_CPU=scalar is a WARN that says it is capped",
       f"{cpu} / {it2.get('cpu')}")


def test_swappiness():
    path = "/proc/sys/vm/swappiness"
    old = sysctl(path)
    try:
        sysctl(path, 100)
        _, it = items()
        s = it.get("swappiness", {})
        ok(s.get("status") == "WARN" and s.get("found", "").startswith("100") and
           "sysctl -w vm.swappiness=10" in s.get("fix", ""),
           "vm.swappiness 100: WARN, fix sysctl -w vm.swappiness=10", s)
        sysctl(path, 5)
        _, it = items()
        ok(it.get("swappiness", {}).get("status") == "OK", "vm.swappiness 5: OK",
           it.get("swappiness"))
    finally:
        sysctl(path, old)


def test_hugepages():
    path = "/proc/sys/vm/nr_hugepages"
    old = sysctl(path)
    try:
        sysctl(path, 8)
        got = int(sysctl(path))
        _, it = items()
        h = it.get("hugepages", {})
        ok(f"2 MiB {got} free of {got}" in h.get("found", "") or
           (got < 8 and "node0" in h.get("found", "")),
           f"a pool of {got} 2 MiB pages reads back", h)
        _, it = items("-m", MODEL)
        h = it.get("hugepages", {})
        need = (os.path.getsize(MODEL) >> 21)
        m = re.search(r"vm\.nr_hugepages=(\d+)", h.get("fix", ""))
        ok(h.get("status") == "WARN" and m and int(m.group(1)) >= need,
           f"-m with a pool of {got}: WARN, fix vm.nr_hugepages={m and m.group(1)} (the model: "
           f"about {need} pages)", h)
        sysctl(path, int(m.group(1)) if m else need + 8)
        if int(sysctl(path)) >= (int(m.group(1)) if m else need + 8):
            _, it = items("-m", MODEL)
            ok(it.get("hugepages", {}).get("status") == "OK",
               "-m with the pool the fix names: OK", it.get("hugepages"))
        else:
            skip("the kernel would not make the pool the fix names (memory)")
    finally:
        sysctl(path, old)


def test_cgroup():
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    base = "/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/memory"
    if not os.path.isdir(base):
        skip("no memory cgroup hierarchy")
        return
    cg = os.path.join(base, f"pinfer-doctor-{os.getpid()}")
    try:
        os.mkdir(cg)
    except OSError as e:
        skip(f"cannot make a cgroup: {e}")
        return
    try:
        with open(os.path.join(cg, "memory.max" if v2 else "memory.limit_in_bytes"), "w") as f:
            f.write(str(64 << 20))
        cmd = f"echo $$ > {cg}/cgroup.procs && exec {PINFER} doctor --json -m {MODEL}"
        p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
        try:
            it = {i["check"]: i for i in json.loads(p.stdout)["items"]}
        except ValueError:
            it = {}
        c = it.get("cgroup", {})
        ok(c.get("status") == "WARN" and "memory limited to 64 MiB" in c.get("found", "") and
           cg in c.get("found", ""),
           "in a cgroup of 64 MiB with a larger model: WARN naming the limit and the cgroup", c or p.stderr)
    finally:
        os.rmdir(cg)


def test_model():
    p, it = items("-m", MODEL)
    plan, f = it.get("plan", {}), it.get("model file", {})
    ok(plan.get("status") == "OK" and plan.get("found", "").startswith("resident") and
       ("O_DIRECT reads work" in f.get("found", "") or f.get("status") == "WARN"),
       "-m: resident, and the file's O_DIRECT", f"{plan} {f}")
    _, it = items("-m", MODEL, "--mem", "300M")
    plan = it.get("plan", {})
    ok(plan.get("status") == "INFO" and plan.get("found", "").startswith("streams") and
       "MiB read per token" in plan.get("found", ""),
       "-m --mem 300M: what streams and the floor", plan)
    p, it = items("-m", MODEL, "--mem", "50M")
    ok(p.returncode == 1 and it.get("plan", {}).get("status") == "FAIL" and
       "--mem" in it["plan"]["fix"], "--mem below the minimum: FAIL with the fix, exit 1",
       it.get("plan"))
    p, it = items("-m", "/nonexistent/model.gguf")
    ok(p.returncode == 1 and it.get("model file", {}).get("status") == "FAIL",
       "a missing model: FAIL, exit 1", p.stdout)


def test_unprivileged():
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PINFER,
                        "doctor", "--json"], capture_output=True, text=True)
    if p.returncode in (126, 127) or "Permission denied" in p.stderr:
        skip(f"nobody cannot run {PINFER} here: {p.stderr.strip()}")
        return
    try:
        it = {i["check"]: i for i in json.loads(p.stdout)["items"]}
    except ValueError:
        it = {}
    ok(p.returncode in (0, 1) and sorted(it) == sorted(CHECKS) and
       "root" not in it.get("memlock", {}).get("found", "root"),
       "as nobody: every check, RLIMIT_MEMLOCK read as that user", p.stdout[-500:] + p.stderr)


def test_usage():
    for args, code in ((["--bogus"], 2), (["--mem", "lots"], 2), (["extra"], 2), (["--help"], 0)):
        p = doctor(*args)
        ok(p.returncode == code and "Traceback" not in p.stderr,
           f"doctor {' '.join(args)}: exit {p.returncode}", p.stderr)


test_lines()
test_model()
test_usage()
if ROOT_USER:
    test_swappiness()
    test_hugepages()
    test_cgroup()
    test_unprivileged()
else:
    skip("not root: the swappiness, hugepage, cgroup and unprivileged cases")
end()
