"""Leases, not clocks (proxy/orders/leases.py): the placing task renews its
order's lease; recovery takes only orders whose lease is gone."""

from __future__ import annotations

import asyncio

from support import new_order

from proxy.orders.leases import Leases


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
