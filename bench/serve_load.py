# SPDX-License-Identifier: MIT
"""The load generator of bench/serve.sh: C concurrent clients (asyncio and
the openai client), each sending its share of requests one after another,
streamed, through /v1/completions: fixed prompt lengths (distinct prompts,
so no prefix cache helps either server), fixed max_tokens with ignore_eos.
Prints one JSON line per level: aggregate generated tokens/s, time to first
token p50/p99, inter-token latency p50/p99 (seconds).
Usage: serve_load.py URL LEVELS REQUESTS_PER_CLIENT MAX_TOKENS PROMPT_WORDS"""
import asyncio
import json
import sys
import time

import openai

url, levels, per_client, max_tokens, words = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
WORDS = "the quick brown fox jumps over a lazy dog while seven old men read books".split()


def prompt(i):
    body = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(words))
    return f"Request {i}: {body}"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


async def one(client, i, ttft, itl, counts):
    t0 = time.perf_counter()
    last = None
    n = 0
    stream = await client.completions.create(model="m", prompt=prompt(i), max_tokens=max_tokens,
                                             temperature=0, stream=True,
                                             extra_body={"ignore_eos": True})
    async for ch in stream:
        if not ch.choices or not ch.choices[0].text:
            continue
        t = time.perf_counter()
        if last is None:
            ttft.append(t - t0)
        else:
            itl.append(t - last)
        last = t
        n += 1
    counts.append(n)


async def level(c, base):
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=600)
    ttft, itl, counts = [], [], []

    async def worker(w):
        for k in range(per_client):
            await one(client, base + w * per_client + k, ttft, itl, counts)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(c)))
    wall = time.perf_counter() - t0
    await client.close()
    # tokens: the chunks with text (one per token for both servers)
    return {"clients": c, "requests": len(counts), "tokens": sum(counts), "wall_s": wall,
            "tok_s": sum(counts) / wall, "ttft_p50": pct(ttft, 50), "ttft_p99": pct(ttft, 99),
            "itl_p50": pct(itl, 50), "itl_p99": pct(itl, 99)}


async def main():
    await level(1, 100000)  # warm-up, not reported
    for k, c in enumerate(int(x) for x in levels.split(",")):
        print(json.dumps(await level(c, 1000 * (k + 1))), flush=True)

asyncio.run(main())
