# SPDX-License-Identifier: MIT
"""The layering of Documentation/architecture.md, checked on the tree and on
the built objects: each engine folder includes only the folders below it,
the runtime nothing of the engine; no object calls a function of a folder
above its own, no file of the engine calls into another in a circle (the
call graph between the built objects, from nm, is acyclic), and placement
(budget, plan, stream) calls nothing of loading or of the forward pass."""
import glob
import os
import re
import subprocess

from tap import BUILD, ROOT, end, ok, skip_all  # noqa: E402

# The folders of engine/, each with those it may use (runtime and uapi are
# below them all: libpinfer.h, pinfer.h).
BELOW = {
    "base": set(),
    "format": {"base"},
    "kernels": {"format", "base"},
    "text": {"format", "base"},
    "cuda": set(),      # a shared library of its own: model includes its contract
    "model": {"kernels", "cuda", "format", "text", "base"},
    "serve": {"model", "text", "format", "base"},
}
PLACEMENT = {"model/budget", "model/plan", "model/stream"}
ABOVE_PLACEMENT = {"model/model", "model/forward", "model/session", "model/matmul",
                   "model/attention"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def includes(path):
    with open(path, encoding="utf-8") as f:
        return INCLUDE.findall(f.read())


def test_includes():
    folders = sorted(d for d in os.listdir(os.path.join(ROOT, "engine"))
                     if os.path.isdir(os.path.join(ROOT, "engine", d)))
    ok(set(folders) == set(BELOW), f"engine/ has the folders the layering names ({', '.join(folders)})")
    for d in folders:
        bad = []
        for src in sorted(glob.glob(os.path.join(ROOT, "engine", d, "*.[ch]"))):
            for inc in includes(src):
                top = inc.split("/")[0] if "/" in inc else None
                if top is None:
                    if not any(os.path.exists(os.path.join(where, inc)) for where in
                               (os.path.dirname(src), os.path.join(ROOT, "runtime"),
                                os.path.join(ROOT, "uapi"))):
                        bad.append(f"{os.path.relpath(src, ROOT)}: \"{inc}\" (not in its folder)")
                elif top not in BELOW.get(d, set()):
                    bad.append(f"{os.path.relpath(src, ROOT)}: \"{inc}\"")
        ok(not bad, f"engine/{d} includes only {sorted(BELOW.get(d, set())) or 'its own folder'} "
           "(and the runtime)", "\n".join(bad))
    bad = [f"{os.path.relpath(src, ROOT)}: \"{inc}\""
           for src in sorted(glob.glob(os.path.join(ROOT, "runtime", "*.[ch]")))
           for inc in includes(src) if "/" in inc or inc.endswith(("model.h", "gguf.h", "quant.h"))]
    ok(not bad, "runtime/ includes nothing of the engine", "\n".join(bad))


def symbols(obj):
    """(defined, undefined) function and data symbols of an object file."""
    out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDRB":
            defined.add(parts[2])
    return defined, undefined


def test_calls():
    objs = sorted(glob.glob(os.path.join(BUILD, "obj", "engine", "*", "*.o")))
    if not objs:
        ok(False, "the engine's objects are built (make)", f"none under {BUILD}/obj/engine")
        return
    owner, uses = {}, {}
    for o in objs:
        name = os.path.splitext(os.path.relpath(o, os.path.join(BUILD, "obj", "engine")))[0]
        defined, undefined = symbols(o)
        for s in defined:
            owner[s] = name
        uses[name] = undefined
    calls = {f: {owner[s] for s in u if s in owner and owner[s] != f} for f, u in uses.items()}
    up = [f"{f} -> {g}" for f, gs in sorted(calls.items()) for g in sorted(gs)
          if g.split("/")[0] != f.split("/")[0] and g.split("/")[0] not in BELOW[f.split("/")[0]]]
    ok(not up, f"no call goes up a layer ({len(objs)} objects)", "\n".join(up))

    # a circle: depth-first search for a back edge
    state, circle = {}, []

    def visit(f, path):
        state[f] = 1
        for g in sorted(calls[f]):
            if state.get(g) == 1 and not circle:
                circle.extend(path[path.index(g):] + [g])
            elif g not in state:
                visit(g, path + [g])
        state[f] = 2

    for f in sorted(calls):
        if f not in state:
            visit(f, [f])
    ok(not circle, "no files of the engine call each other in a circle", " -> ".join(circle))
    bad = [f"{f} -> {g}" for f in sorted(PLACEMENT) for g in sorted(calls.get(f, ()))
           if g in ABOVE_PLACEMENT]
    ok(not bad and PLACEMENT <= set(calls),
       "placement (budget, plan, stream) calls nothing of loading or the forward pass",
       "\n".join(bad) or f"missing: {sorted(PLACEMENT - set(calls))}")
    fwd, load = calls.get("model/forward", set()), calls.get("model/model", set())
    ok("model/stream" in fwd and "model/plan" in load,
       "the forward pass and loading do call placement (the check sees real edges)",
       f"forward -> {sorted(fwd)}; model -> {sorted(load)}")


if not os.path.isdir(os.path.join(ROOT, "engine")):
    skip_all("no engine/")
test_includes()
test_calls()
end()
