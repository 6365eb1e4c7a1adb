"""A long run of ordinary adds with the event loop stalled at random: every charged add is answered.

Issue 12, case 2: with no fault injected, a few adds in a thousand got no
reply although each was charged and placed upstream. The task renewing an
order's lease was cancelled and then awaited without a deadline, and a cancel
that lands inside a redis-py command can be swallowed, so the placing task
waited for its own housekeeping forever.

This run places `--long-run` adds (LONG_RUN_DEFAULT by default, a CI-sized
run; tens of thousands with `.venv/bin/python -m pytest -s
tests/e2e/test_long_run.py --long-run=50000`, which prints its numbers) while:

- a task blocks the event loop with `time.sleep` at random moments (CPU
  stalls: Redis replies pile up, and cancels land mid-command);
- leases are short (renewed every third of a second), upstream replies take
  a random time, and Redis answers through a proxy that delays each reply a
  little (tests/tcpproxy.py), so lease renewals are often under way when
  their order is done;
- a second router's recovery runs all the while;
- the client may send as many requests as it likes (fair use is not what is
  measured here), and the panels never run dry.

Every add must get an answer within its deadline; every order that kept
money must be one the client was told of; the money invariants must hold.
"""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal

import httpx
from invariants import check_money, fresh_prefix
from support import expire_leases, router_config
from tcpproxy import RedisProxy

from proxy.sim.panel import DEFAULT_KEY

LINK = "https://instagram.com/p/long"
CONCURRENCY = 128
# Placing takes well under a second here: an add that waited this long for
# its order to be placed was held up by something else.
ADD_WAIT = 10.0
# An add that has no answer after this long has hung.
HUNG_AFTER = 20.0


class RandomLatency(httpx.AsyncBaseTransport):
    """Upstream replies that take between 0 and `most` seconds (0 until a test sets it)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rng: random.Random, most: float = 0.0) -> None:
        self.inner, self.rng, self.most = inner, rng, most

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.rng.random() * self.most)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def stall_the_loop(rng: random.Random, stop: asyncio.Event, stalls: list[float]) -> None:
    """Block the event loop (CPU-bound work, a GC pause) at random moments."""
    while not stop.is_set():
        await asyncio.sleep(rng.random() * 0.15)
        blocked = rng.random() * 0.04
        time.sleep(blocked)
        stalls.append(blocked)


def placing_tasks() -> list[asyncio.Task[object]]:
    """The tasks placing an order now (asyncio's own view: they are named `place-ID`)."""
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("place-") and not task.done()]


async def test_every_charged_add_is_answered_under_cpu_stalls(make_router, redis_url, long_run):
    adds = long_run
    rng = random.Random(12)
    latencies: list[RandomLatency] = []

    def slow_upstream(inner: httpx.AsyncBaseTransport) -> RandomLatency:
        latencies.append(RandomLatency(inner, rng))
        return latencies[-1]

    async with RedisProxy(redis_url, reply_delay=lambda: rng.random() * 0.004) as slow:
        prefix = fresh_prefix()
        options = dict(prefix=prefix, duplicate_window=0, order_lease=1, upstream_cooldown=0, add_wait=ADD_WAIT)
        raw = router_config(fair_use={"requests": "1000000/minute"})
        router = await make_router(raw, url=slow.url, upstream=slow_upstream, **options)
        helper = await make_router(raw, panels=router.panels, clock=router.clock, **options)
        key = await router.client(balance=str(adds))
        for panel in router.panels.values():  # the panels never run dry, however long the run
            panel.open_account(DEFAULT_KEY, Decimal(10**9))
        await router.call(key, action="services")
        for latency in latencies:
            latency.most = 0.6

        stop = asyncio.Event()
        stalls: list[float] = []

        async def recovery() -> None:
            while not stop.is_set():
                await helper.runtime.sync.recover()
                await asyncio.sleep(0.2)

        background = [asyncio.create_task(stall_the_loop(rng, stop, stalls)), asyncio.create_task(recovery())]
        gate = asyncio.Semaphore(CONCURRENCY)
        hung = 0
        started = time.monotonic()

        async def add(i: int) -> dict[str, object] | None:
            nonlocal hung
            async with gate:
                try:
                    async with asyncio.timeout(HUNG_AFTER):
                        return await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=100)
                except TimeoutError:
                    hung += 1
                    return None

        replies = await asyncio.gather(*(add(i) for i in range(adds)))
        elapsed = time.monotonic() - started
        stop.set()
        await asyncio.gather(*background)
        if placing_tasks():  # tasks still placing an order now are stuck, not slow
            await asyncio.wait(placing_tasks(), timeout=5)
        placing = placing_tasks()
        print(
            f"\n{adds} adds in {elapsed:.1f} s ({adds / elapsed:.0f}/s), {len(stalls)} loop stalls "
            f"({sum(stalls):.1f} s blocked), {hung} without an answer, {len(placing)} placing tasks stuck"
        )
        assert hung == 0, f"{hung} of {adds} adds got no answer"
        assert not placing, f"{len(placing)} tasks never finished placing their order"
        await router.runtime.actions.aclose(timeout=HUNG_AFTER)
        await expire_leases(router)
        await router.runtime.sync.recover()
        orders = await check_money(router, {"alice": Decimal(adds)})
        answered = {r["order"] for r in replies if r and "order" in r}
        assert all(r is not None and set(r) in ({"order"}, {"error"}) for r in replies)
        kept = {o.id for o in orders if o.net_charge > 0}
        assert kept <= answered, f"money kept for orders the client was not told of: {sorted(kept - answered)[:10]}"
        assert len(answered) == adds
