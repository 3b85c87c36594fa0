# SPDX-License-Identifier: MIT
"""One row of tests/gpu/run.sh's benchmark table, from `pinfer bench --json`
output and `llama-bench -o json` output (empty when there was none):
tg128 and pp512 of each, their ratios, and pinfer's generation as a
fraction of the GPU's read bandwidth (weight bytes per token x tokens/s).

Usage: row.py LABEL PINFER_OUT LLAMA_OUT BANDWIDTH_GBS"""
import json
import sys

label, pfile, lfile, bw = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4] or 0)
p = {}
for line in open(pfile):
    if line.startswith("{"):
        o = json.loads(line)
        p[o["test"][:2]] = o
try:
    recs = json.load(open(lfile))
    ll = {("tg" if r["n_gen"] else "pp"): r["avg_ts"] for r in recs}
except (OSError, ValueError, KeyError):
    ll = {}


def f(x):
    return f"{x:.1f}" if x else "-"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


tg = p.get("tg", {}).get("t_s", 0)
pp = p.get("pp", {}).get("t_s", 0)
wb = p.get("tg", {}).get("weight_bytes_per_token", 0)
frac = f"{wb * tg / (bw * 1e9):.0%}" if bw and wb and tg else "-"
print(f"| {label:<16} | {f(tg):>9} | {f(ll.get('tg')):>8} | {f(pp):>9} | {f(ll.get('pp')):>8} | "
      f"{ratio(tg, ll.get('tg')):>5} | {ratio(pp, ll.get('pp')):>5} | {frac:>5} |")
