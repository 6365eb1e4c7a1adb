"""What one Redis command costs the router's process: redis-py's path against ours.

    .venv/bin/python benchmarks/redis_call.py [--redis redis://127.0.0.1:6379/15] [--calls 4000] [--rounds 5]

The same EVALSHA (a one-key script, as the add's three are) and the same
GET, sent one at a time, through:

- redis-py: `redis.asyncio.Redis` on redis-py's `BlockingConnectionPool`,
  with the options `proxy.store.connect` gives it, the script run by
  redis-py's `AsyncScript`: what every command cost before `Client`;
- ours: `proxy.store.connect` (`Client`: commands sent alone share one
  connection, `proxy.lane`), the script run by `proxy.scripts.Script`.

Each is timed one call at a time, and with 16 callers at once (as under
load: an add's three scripts, 16 clients). Wall time and this process's
CPU per call, medians of alternated rounds,
against the given Redis (keys under a fresh prefix, deleted at the end), on
uvloop as the served router runs.
Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.scripts import Script  # noqa: E402
from proxy.store import connect  # noqa: E402

SCRIPT = "redis.call('INCR', KEYS[1]); return {ARGV[1], redis.call('GET', KEYS[1])}"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(call: Callable[[], Awaitable[Any]], calls: int, callers: int = 1) -> tuple[float, float]:
    async def one() -> None:
        for _ in range(calls // callers):
            await call()

    wall, used = time.perf_counter(), cpu()
    await asyncio.gather(*(one() for _ in range(callers)))
    done = calls // callers * callers
    return (time.perf_counter() - wall) / done * 1e6, (cpu() - used) / done * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    key = f"bench-redis-call:{uuid.uuid4().hex[:8]}"
    stock = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            args.redis, max_connections=64, timeout=10, decode_responses=True, socket_timeout=10
        )
    )
    ours = connect(args.redis)
    stock_script = stock.register_script(SCRIPT)
    our_script = Script(ours, SCRIPT)
    paths: dict[str, Callable[[], Awaitable[Any]]] = {
        "EVALSHA, redis-py": lambda: stock_script(keys=[key], args=["a"]),
        "EVALSHA, ours": lambda: our_script(keys=[key], args=["a"]),
        "GET, redis-py": lambda: stock.get(key),
        "GET, ours": lambda: ours.get(key),
    }
    for call in paths.values():  # warm: connections made, scripts loaded
        await call()
    found: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for callers in (1, 16):
            for name, call in paths.items():
                label = name if callers == 1 else f"{name}, 16 at once"
                found.setdefault(label, []).append(await timed(call, args.calls, callers))
    print(f"{args.calls} calls a round, {args.rounds} rounds alternated, medians\n")
    print("| command, path | wall per call | CPU per call |")
    print("|---|---|---|")
    for name, runs in found.items():
        wall = statistics.median(w for w, _ in runs)
        used = statistics.median(c for _, c in runs)
        print(f"| {name} | {wall:.1f} µs | {used:.1f} µs |")
    await ours.delete(key)
    await stock.aclose()
    await ours.aclose()


if __name__ == "__main__":
    try:
        import uvloop  # the served router's loop (uvicorn takes it when installed)
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
