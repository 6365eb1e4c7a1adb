"""CPU per request of the pieces every read pays, side by side.

    .venv/bin/python benchmarks/hot_path.py [--redis URL] [--calls 20000] [--rounds 5]

This process's CPU (time.process_time) per call, medians of alternated rounds:

- fair use: one request counted in Redis by the `limits` library (what every
  request paid before the pre-check), against `FairUse.request` as it is now
  (leases: most requests counted from memory, proxy/accounts/fair_use.py);
- authentication: the API key's entry read through redis-py, against
  `Accounts.authenticate` with the tracked cache (a hit);
- a log line: the access line and an order's transition line as the router
  writes them (JSON, INFO, request context bound), to /dev/null; and the
  same fields written with orjson alone, the floor.

Without --redis it starts an embedded Redis, as the tests do. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy import logs  # noqa: E402
from proxy.accounts.clients import Accounts  # noqa: E402
from proxy.accounts.fair_use import FairUse, storage_for  # noqa: E402
from proxy.accounts.ledger import Ledger  # noqa: E402
from proxy.embedded import EmbeddedRedis  # noqa: E402
from proxy.keys import Keys  # noqa: E402
from proxy.policies import FairUsePolicy  # noqa: E402
from proxy.store import connect  # noqa: E402
from proxy.tracking import TrackedCache  # noqa: E402

PREFIX = "bench-hot:"


async def cpu_per_call(calls: int, run: Callable[[], Awaitable[object]]) -> float:
    started = time.process_time()
    for _ in range(calls):
        await run()
    return (time.process_time() - started) / calls * 1e6


async def bench(url: str, calls: int, rounds: int) -> dict[str, float]:
    redis = connect(url)
    keys = Keys(PREFIX)
    cache = TrackedCache(redis, keys.hot)
    await cache.start()
    accounts = Accounts(redis, keys, Ledger(redis, keys), "USD", cache)
    plain = Accounts(redis, keys, Ledger(redis, keys), "USD")
    with contextlib.suppress(Exception):
        await accounts.create("alice", Decimal(1))
    api_key = "0" * 32
    await redis.set(keys.api_key(__import__("hashlib").sha256(api_key.encode()).hexdigest()), "alice")
    policy = FairUsePolicy(requests="1000000000/minute")
    fair = FairUse(storage_for(redis, keys), policy, keys.limits, redis=redis)
    [item] = fair.requests
    access = logging.getLogger("proxy.access")
    book = logging.getLogger("proxy.orders.book")
    devnull = open(os.devnull, "w")  # noqa: SIM115
    logs.configure("json", "info", secrets=["sim-key"], stream=devnull)
    logs.bind(request_id="0123456789abcdef", client="alice", action="balance")

    async def access_line() -> None:  # as proxy/edge/context.py writes it
        logs.info(access, "POST /api/v2 200", {"status": 200, "ms": 0.42, "method": "POST", "path": "/api/v2"})

    orders = itertools.count(1042)

    async def transition_line() -> None:  # as proxy/orders/book.py writes it: every order's line is new text
        order = next(orders)
        logs.info(
            book,
            f"order {order} accept: submitted -> placed at echomark as upstream order {order + 4000}",
            {"order": order, "transition": "accept", "client": "alice"},
        )

    async def orjson_line() -> None:
        devnull.write(
            orjson.dumps(
                {
                    "event": "POST /api/v2 200",
                    "request_id": "0123456789abcdef",
                    "client": "alice",
                    "action": "balance",
                    "status": 200,
                    "ms": 0.42,
                    "method": "POST",
                    "path": "/api/v2",
                    "logger": "proxy.access",
                    "level": "info",
                    "timestamp": "2026-12-06T10:00:00.000000Z",
                }
            ).decode()
            + "\n"
        )

    pieces: dict[str, Callable[[], Awaitable[object]]] = {
        "fair use, counted in Redis (limits)": lambda: fair.limiter.hit(item, "request", "bench"),
        "fair use, FairUse.request (leases)": lambda: fair.request("bench"),
        "authenticate, read through redis-py": lambda: plain.authenticate(api_key),
        "authenticate, tracked cache": lambda: accounts.authenticate(api_key),
        "access line": access_line,
        "transition line": transition_line,
        "the same line, orjson alone": orjson_line,
    }
    for run in pieces.values():  # warm
        await cpu_per_call(200, run)
    results: dict[str, list[float]] = {name: [] for name in pieces}
    for _ in range(rounds):
        for name, run in pieces.items():
            results[name].append(await cpu_per_call(calls, run))
    logs.unconfigure()
    devnull.close()
    await cache.aclose()
    stale = [key async for key in redis.scan_iter(match=f"{PREFIX}*")]
    if stale:
        await redis.delete(*stale)
    await redis.aclose()
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(EmbeddedRedis())
        numbers = asyncio.run(bench(url, args.calls, args.rounds))
    print(f"\nCPU of this process per call, median of {args.rounds} rounds of {args.calls:,}\n")
    print("| piece | µs |")
    print("|---|---|")
    for name, value in numbers.items():
        print(f"| {name} | {value:.1f} |")


if __name__ == "__main__":
    main()
