"""Benchmark: order throughput and what batching saves upstream.

    .venv/bin/python benchmarks/bench_orders.py [--orders 1000]

Runs the router in process against two simulated panels and a real Redis
(127.0.0.1:6379 if it answers, else an embedded one), and prints:

- add: orders placed per second, 50 at a time;
- status: bulk status of every order through the router (stale records, so
  each is refreshed upstream), against the naive way of one upstream call
  per order, side by side: upstream calls and wall time, with the ratio.
  Each upstream call takes LATENCY seconds, as a (fast) real panel would.

Numbers, not assertions: machines are noisy, ratios less so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import FakeClock, router_config  # noqa: E402

from proxy.config import parse_config  # noqa: E402
from proxy.edge.app import create_app  # noqa: E402
from proxy.providers.upstream import ProviderClient  # noqa: E402
from proxy.runtime import Runtime  # noqa: E402
from proxy.settings import Settings  # noqa: E402
from proxy.sim.app import create_app as create_panel_app  # noqa: E402
from proxy.sim.catalogs import build_panel  # noqa: E402
from proxy.store import EmbeddedRedis, connect  # noqa: E402

LATENCY = 0.01  # seconds each simulated upstream call takes


def redis_url(stack: contextlib.ExitStack) -> str:
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=0.5).ping()
        return "redis://127.0.0.1:6379/0"
    except redis.RedisError:
        return stack.enter_context(EmbeddedRedis())


async def run(count: int) -> None:
    with contextlib.ExitStack() as stack:
        url = redis_url(stack)
        prefix = f"smm-bench:{uuid.uuid4().hex[:8]}:"
        clock = FakeClock()
        panels = {
            "echomark": build_panel("echomark", clock=clock, step_seconds=10),
            "korean": build_panel("korean", clock=clock, step_seconds=10),
        }
        for panel in panels.values():
            panel.faults.latency = LATENCY  # a fast real panel; most answer in 100-500 ms
        transports = {n: httpx.ASGITransport(app=create_panel_app(p)) for n, p in panels.items()}
        runtime = Runtime(
            Settings(key_prefix=prefix, duplicate_window=0, status_ttl=5),
            parse_config(router_config(), {}),
            connect(url),
            transports=transports,
            clock=clock,
        )
        try:
            _, key = await runtime.accounts.create("bench", Decimal("1000000"))
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://router"
            ) as http:
                await runtime.catalog()

                async def add(i: int) -> int:
                    data = {"key": key, "action": "add", "service": str(1 + i % 2),
                            "link": f"https://instagram.com/p/{i}", "quantity": "1000"}
                    return (await http.post("/api/v2", data=data)).json()["order"]

                started = time.perf_counter()
                ids: list[int] = []
                for start in range(0, count, 50):
                    ids += await asyncio.gather(*(add(i) for i in range(start, min(count, start + 50))))
                elapsed = time.perf_counter() - started
                print(f"add      {count} orders in {elapsed:.2f} s: {count / elapsed:,.0f} orders/s")

                clock.advance(6)  # every record is stale now
                before = {n: p.calls["status"] for n, p in panels.items()}
                started = time.perf_counter()
                for start in range(0, len(ids), 100):
                    chunk = ",".join(map(str, ids[start : start + 100]))
                    reply = (await http.post("/api/v2", data={"key": key, "action": "status", "orders": chunk})).json()
                    assert all("status" in item for item in reply.values())
                routed = time.perf_counter() - started
                routed_calls = sum(p.calls["status"] - before[n] for n, p in panels.items())

            records = await runtime.book.get_many("bench", ids)
            started = time.perf_counter()
            naive_calls = 0
            clients = {n: ProviderClient(n, "http://sim/api/v2", "sim-key", transport=t) for n, t in transports.items()}
            for order in records.values():
                await clients[order.provider].status(order.upstream_order)
                naive_calls += 1
            naive = time.perf_counter() - started
            for client in clients.values():
                await client.aclose()
            print(f"status   router (bulk, batched): {routed_calls:5d} upstream calls, {routed:.2f} s")
            print(f"status   naive (one per order):  {naive_calls:5d} upstream calls, {naive:.2f} s")
            print(f"status   ratio naive/router: calls x{naive_calls / max(routed_calls, 1):.0f}, "
                  f"time x{naive / routed:.1f}")
        finally:
            stale = [k async for k in runtime.redis.scan_iter(match=f"{prefix}*", count=1000)]
            if stale:
                await runtime.redis.delete(*stale)
            await runtime.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    asyncio.run(run(parser.parse_args().orders))


if __name__ == "__main__":
    main()
