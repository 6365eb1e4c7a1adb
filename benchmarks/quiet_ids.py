"""What a quiet instance pays for order IDs in blocks (proxy/orders/ids.py).

    .venv/bin/python benchmarks/quiet_ids.py [--redis redis://127.0.0.1:6379/15] [--calls 2000] [--rounds 5]

A block lives at most 60 s, so an instance with few adds a minute takes a
new block (one INCRBY round trip) on most of its adds. Two figures, numbers
not assertions:

1. the cost of an ID: from a block in hand, and with a fresh block each time
   (a quiet instance), wall time and this process's CPU per call, medians of
   alternated rounds against the given Redis (its keys under a fresh prefix,
   deleted at the end);
2. how many adds take a block: Poisson adds at a range of rates a minute on
   one instance, over a simulated day (a fake clock), INCRBYs per add.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.orders.ids import OrderIds  # noqa: E402
from proxy.store import connect  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """The store, counting INCRBYs."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.incrbys = 0

    async def incrby(self, key: str, amount: int) -> int:
        self.incrbys += 1
        return int(await self.redis.incrby(key, amount))

    def register_script(self, script: str) -> Any:
        return self.redis.register_script(script)


async def per_call(redis: Any, key: str, calls: int, quiet: bool) -> tuple[float, float]:
    clock = Clock()
    ids = OrderIds(redis, key, clock=clock)
    await ids.next()  # warm: the connection made
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        if quiet:
            clock.now += 61  # the block in hand is too old: a round trip for a new one
        await ids.next()
    return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


async def per_add(redis: Any, key: str, per_minute: float, seconds: float) -> float:
    clock = Clock()
    counted = Counted(redis)
    ids = OrderIds(counted, key, clock=clock)  # type: ignore[arg-type]
    rng = random.Random(17)
    adds = 0
    end = clock.now + seconds
    while clock.now < end:
        clock.now += rng.expovariate(per_minute / 60)
        await ids.next()
        adds += 1
    return counted.incrbys / adds


async def main_async(args: argparse.Namespace) -> None:
    redis = connect(args.redis)
    prefix = f"bench-quiet-ids:{uuid.uuid4().hex[:8]}:"
    try:
        found: dict[str, list[tuple[float, float]]] = {"block in hand": [], "fresh block each call": []}
        for round_ in range(args.rounds):
            found["block in hand"].append(await per_call(redis, f"{prefix}seq{round_}a", args.calls, False))
            found["fresh block each call"].append(await per_call(redis, f"{prefix}seq{round_}b", args.calls, True))
        print(f"\nan order ID, {args.calls} a round, median of {args.rounds} alternated rounds ({args.redis})\n")
        print("| where the ID comes from | wall per call | CPU per call (this process) |")
        print("|---|---|---|")
        for name, runs in found.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"| {name} | {wall:,.1f} µs | {cpu:,.1f} µs |")
        print("\nINCRBY round trips per add, one instance, Poisson adds over a simulated day\n")
        print("| adds a minute | round trips per add |")
        print("|---|---|")
        for rate in (0.25, 0.5, 1, 2, 5, 10, 60, 600):
            share = await per_add(redis, f"{prefix}rate{rate}", rate, 86_400 if rate <= 60 else 3_600)
            print(f"| {rate:g} | {share:.3f} |")
    finally:
        stale = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if stale:
            await redis.delete(*stale)
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
