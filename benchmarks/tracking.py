"""CPU per read: redis-py GET against proxy/tracking.py's cache, side by side.

    .venv/bin/python benchmarks/tracking.py [--redis URL] [--reads 20000] [--rounds 5] [--loop uvloop|asyncio]

Measures this process's CPU (time.process_time: Redis' own CPU is another
process's) and wall time per read, rounds alternated, medians printed:

- redis-py GET through the pool the router uses (proxy.store.connect), one at
  a time and 16 at a time;
- TrackedCache.get on a hit, and on a miss (the GET plus keeping the value);
- get_many of 10 keys, all hits, per key;
- what an instance pays for each key another process changes under a tracked
  prefix (the invalidation parsed and applied while the loop is otherwise idle).

Without --redis it starts an embedded Redis on a unix socket, as the tests do.
Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.embedded import EmbeddedRedis  # noqa: E402
from proxy.store import connect  # noqa: E402
from proxy.tracking import TrackedCache  # noqa: E402

PREFIX = "bench-tracking:"
KEYS = 1000

WRITER = """
import sys, redis
url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = redis.Redis.from_url(url)
for n in range(count):
    client.set(f"{prefix}apikey:{n % 1000}", f"client-{n}")
"""


async def measure(reads: int, run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(CPU µs, wall µs) per read of `run`, which performs `reads` reads."""
    cpu, wall = time.process_time(), time.perf_counter()
    await run()
    return (time.process_time() - cpu) / reads * 1e6, (time.perf_counter() - wall) / reads * 1e6


async def bench(url: str, reads: int, rounds: int) -> list[tuple[str, float, float]]:
    redis = connect(url)
    keys = [f"{PREFIX}apikey:{n}" for n in range(KEYS)]
    await redis.mset({key: f"client-{n}" for n, key in enumerate(keys)})
    cache = TrackedCache(url, [f"{PREFIX}apikey:"])
    await cache.start()
    if not cache.healthy:
        raise SystemExit("tracking did not start: see the log")

    def loader(key: str) -> Callable[[], Awaitable[str | None]]:
        return lambda: redis.get(key)  # type: ignore[return-value]

    loaders = {key: loader(key) for key in keys}

    async def plain() -> None:
        for n in range(reads):
            await redis.get(keys[n % KEYS])

    async def plain_concurrent() -> None:
        async def worker(start: int) -> None:
            for n in range(start, reads, 16):
                await redis.get(keys[n % KEYS])

        await asyncio.gather(*(worker(start) for start in range(16)))

    async def hit() -> None:
        get = cache.get
        for n in range(reads):
            key = keys[n % KEYS]
            await get(key, loaders[key])

    async def miss() -> None:
        get = cache.get
        for n in range(reads):
            if n % KEYS == 0:
                cache.clear()
            key = keys[n % KEYS]
            await get(key, loaders[key])

    async def many() -> None:
        async def mget(missing: list[str]) -> list[str | None]:
            return await redis.mget(missing)  # type: ignore[no-any-return]

        for n in range(0, reads, 10):
            start = n % KEYS
            await cache.get_many(keys[start : start + 10], mget)

    async def invalidations() -> None:
        writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, url, PREFIX, str(reads))
        await writer.wait()
        await asyncio.sleep(0.05)  # the last messages

    cases: dict[str, Callable[[], Awaitable[None]]] = {
        "redis-py GET, one at a time": plain,
        "redis-py GET, 16 concurrent": plain_concurrent,
        "cache get, miss (GET + keep)": miss,
        "cache get, hit": hit,
        "cache get_many of 10, hit (per key)": many,
        "an invalidation received (per key)": invalidations,
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    try:
        for name, run in cases.items():  # warm up: every key cached, code paths hot
            await run() if name != "an invalidation received (per key)" else None
        for _ in range(rounds):
            for name, run in cases.items():
                if name.startswith("cache get") and "miss" not in name:
                    await cache.get_many(keys, lambda missing: redis.mget(missing))  # all cached again
                samples[name].append(await measure(reads, run))
        if cache.stats.losses:
            raise SystemExit("tracking was lost during the run")
    finally:
        await cache.aclose()
        with contextlib.suppress(Exception):
            await redis.delete(*keys)
        await redis.aclose()
    return [
        (name, statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs))
        for name, runs in samples.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="a Redis URL (default: an embedded redis-server)")
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(EmbeddedRedis())
        if args.loop == "uvloop":
            import uvloop

            rows = uvloop.run(bench(url, args.reads, args.rounds))
        else:
            rows = asyncio.run(bench(url, args.reads, args.rounds))
        version = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import redis; print(redis.Redis.from_url({url!r}).info('server')['redis_version'])",
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()
    where = "unix socket" if url.startswith("unix:") else "TCP"
    print(f"CPU and wall time per read, µs: median of {args.rounds} rounds of {args.reads:,} reads")
    print(f"({args.loop}, Redis {version} over {where}, this process's CPU only)\n")
    base = rows[0][1]
    print(f"{'read':<40}{'CPU µs':>9}{'wall µs':>10}{'CPU vs GET':>12}")
    for name, cpu, wall in rows:
        print(f"{name:<40}{cpu:>9.2f}{wall:>10.2f}{cpu / base:>11.3f}x")


if __name__ == "__main__":
    main()
