"""Leases, not clocks (proxy/orders/leases.py): the placing task renews its
order's lease; recovery takes only orders whose lease is gone."""

from __future__ import annotations

import asyncio
import time

from faults import FaultPlan, FaultyRedis, script_call, script_sha
from support import new_order

from proxy.orders.leases import Leases
from proxy.store import connect


async def test_a_lease_is_renewed_while_its_order_is_placed(redis_client, keys, book, alice):
    leases = Leases(redis_client, keys, seconds=0.15)
    order = (await book.reserve(new_order())).order
    key = keys.lease("alice", order.id)
    await redis_client.set(key, leases.token, px=leases.ms)
    async with leases.leased(order):
        await asyncio.sleep(0.3)  # twice the lease: renewed every 0.05 s
        assert await redis_client.get(key) == leases.token
    await asyncio.sleep(0.2)
    assert await redis_client.get(key) is None  # no task renews it: it lapses on Redis' clock
    assert await leases.lapsed("alice", [order.id]) == [order.id]


async def test_a_lease_another_instance_holds_is_not_renewed(redis_client, keys, book, alice):
    leases = Leases(redis_client, keys, seconds=0.15)
    order = (await book.reserve(new_order())).order
    key = keys.lease("alice", order.id)
    await redis_client.set(key, "another instance", px=100)
    async with leases.leased(order):
        await asyncio.sleep(0.2)
    assert await redis_client.get(key) is None


async def test_which_leases_lapsed(redis_client, keys, leases):
    await redis_client.set(keys.lease("alice", 1), leases.token, px=10_000)
    await redis_client.set(keys.lease("alice", 3), "other", px=10_000)
    assert await leases.lapsed("alice", [1, 2, 3, 4]) == [2, 4]
    assert leases.ms == 30_000 and Leases(redis_client, keys, seconds=0.0001).ms == 1
    assert leases.token != Leases(redis_client, keys).token  # each instance names itself


async def test_leaving_the_block_never_waits_for_a_renewal_under_way(redis_url, keys, book, alice):
    """A renewal stuck inside a Redis command, its cancel swallowed (as redis-py may):
    the placing task leaves at once all the same; the renewal ends on its own."""
    renew = script_sha("proxy.orders", "renew_lease")
    started = asyncio.Event()

    class StuckRenewal(FaultPlan):
        async def before(self, commands, pipeline=False):
            if any((call := script_call(c)) and call.sha == renew for c in commands):
                started.set()
                try:
                    await asyncio.sleep(0.5)
                except asyncio.CancelledError:  # swallowed, as a cancel landing mid-command can be
                    await asyncio.sleep(0.5)
            return None

    redis = FaultyRedis.with_plan(connect(redis_url).connection_pool, StuckRenewal())
    try:
        leases = Leases(redis, keys, seconds=0.15)
        order = (await book.reserve(new_order())).order
        async with leases.leased(order):
            await asyncio.wait_for(started.wait(), 1)
            left_at = time.monotonic()
        assert time.monotonic() - left_at < 0.05
        renewals = [t for t in asyncio.all_tasks() if t.get_name() == f"lease-{order.id}"]
        await asyncio.wait(renewals, timeout=2)  # told to stop: it ends at its next wake
        assert all(t.done() for t in renewals)
    finally:
        await redis.aclose()


async def test_a_lease_is_given_up_only_by_its_holder(redis_client, keys, book, alice):
    """At shutdown an instance gives up its leases (recovery may take the orders at
    once), and never one another instance holds."""
    leases = book.leases
    mine = (await book.reserve(new_order(link="https://x.test/1"))).order  # reserved with our lease
    theirs = (await book.reserve(new_order(link="https://x.test/2"))).order
    await redis_client.set(keys.lease("alice", theirs.id), "another instance", px=10_000)
    assert await leases.release(mine) and await redis_client.get(keys.lease("alice", mine.id)) is None
    assert not await leases.release(theirs)
    assert await redis_client.get(keys.lease("alice", theirs.id)) == "another instance"
    assert await leases.lapsed("alice", [mine.id, theirs.id]) == [mine.id]
