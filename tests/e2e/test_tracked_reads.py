"""Reads from memory, never stale: two router instances on one Redis, and an
operator changing a client from a third connection (as the CLI does).

Each instance keeps an API key's client, the client's terms and its balance
in memory while Redis tracks them (`proxy.tracking`). A change, wherever it
is made, must be seen by the very next request on every instance: a disabled
or rotated key refused, a debit or top-up shown, new terms priced. No sleeps:
Redis writes the invalidation to each instance before it replies to the
writer, and an instance reads it no later than anything sent after that
reply. On a Redis Cluster nothing is tracked and every read goes to Redis:
the same tests hold there too.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from support import metric, on_every_store

from proxy.accounts.clients import Accounts
from proxy.accounts.ledger import Ledger
from proxy.keys import Keys

pytestmark = on_every_store

ROUNDS = 50
REFUSED = {"error": "Invalid API key"}
LINK = "https://instagram.com/p/tracked"


@pytest.fixture
async def instances(make_router, redis_client, key_prefix, store):
    """Two routers on one Redis and one prefix, and an operator's accounts (no cache)."""
    a = await make_router(status_ttl=5)
    b = await make_router(panels=a.panels, clock=a.clock, status_ttl=5)
    operator = Accounts(redis_client, Keys(key_prefix), Ledger(redis_client, Keys(key_prefix)), "USD")
    for router in (a, b):
        assert router.runtime.reads.healthy == (store == "single")
    return a, b, operator


async def served_from_memory(routers, before: list[int], store: str) -> None:
    """On one server the instances answered from memory (the cache is really in the path)."""
    if store == "single":
        assert all(r.runtime.reads.stats.hits > n for r, n in zip(routers, before, strict=True))


def hits(routers) -> list[int]:
    return [r.runtime.reads.stats.hits for r in routers]


async def test_a_disabled_key_is_refused_by_the_next_request_on_every_instance(instances, store):
    a, b, operator = instances
    for n in range(ROUNDS):
        name = f"client{n}"
        _, key = await operator.create(name, Decimal("5"))
        seen = hits((a, b))
        for router in (a, b, a, b):  # read twice each: the second from memory
            assert await router.call(key, action="balance") == {"balance": "5.00", "currency": "USD"}
        await served_from_memory((a, b), seen, store)
        await operator.disable(name)
        assert await a.call(key, action="balance") == REFUSED
        assert await b.call(key, action="balance") == REFUSED
        await operator.enable(name)
        assert (await b.call(key, action="balance"))["balance"] == "5.00"
        assert (await a.call(key, action="balance"))["balance"] == "5.00"


async def test_a_rotated_key_is_refused_and_the_new_one_taken_by_the_next_request_on_every_instance(instances, store):
    a, b, operator = instances
    _, key = await operator.create("alice", Decimal("5"))
    for _ in range(ROUNDS):
        seen = hits((a, b))
        for router in (b, a, b, a):
            assert (await router.call(key, action="balance"))["balance"] == "5.00"
        await served_from_memory((a, b), seen, store)
        new = await operator.rotate_key("alice")
        assert await b.call(key, action="balance") == REFUSED
        assert await a.call(key, action="balance") == REFUSED
        assert (await a.call(new, action="balance"))["balance"] == "5.00"
        assert (await b.call(new, action="balance"))["balance"] == "5.00"
        key = new


async def test_a_balance_read_right_after_a_change_shows_it_on_every_instance(instances, store):
    a, b, operator = instances
    _, key = await operator.create("alice", Decimal("100"))
    expected = Decimal("100")
    for n in range(ROUNDS // 5):
        for router in (a, b, a, b):
            assert Decimal((await router.call(key, action="balance"))["balance"]) == expected
        placed = await (a if n % 2 else b).call(key, action="add", service=1, link=f"{LINK}/{n}", quantity=1000)
        expected -= Decimal("1.17")  # the order's charge, debited before its ID is answered
        assert "order" in placed
        for router in (a, b):
            assert Decimal((await router.call(key, action="balance"))["balance"]) == expected
        await operator.topup("alice", Decimal("2"), ref=f"t{n}")
        expected += 2
        for router in (b, a):
            assert Decimal((await router.call(key, action="balance"))["balance"]) == expected


async def test_new_terms_price_the_next_request_on_every_instance(instances, store):
    a, b, operator = instances
    _, key = await operator.create("alice", Decimal("100"))

    async def rate(router) -> str:
        services = await router.call(key, action="services")
        return next(s["rate"] for s in services if s["service"] == 1)

    default = await rate(a)
    assert await rate(b) == await rate(a) == default
    for n in range(10):
        custom = Decimal("2") + Decimal(n) / 10
        await operator.set_rate("alice", 1, custom)
        assert Decimal(await rate(b)) == Decimal(await rate(a)) == custom
        await operator.set_terms("alice", {"markup": str(50 + n)})
        assert Decimal(await rate(a)) == custom  # a custom rate wins over the markup
        await operator.set_rate("alice", 1, None)
        marked_up = Decimal(await rate(b))
        assert marked_up == Decimal(await rate(a)) and marked_up > Decimal(default)
        await operator.set_terms("alice", {"markup": None})
        assert await rate(a) == await rate(b) == default


async def test_a_lost_tracking_connection_flushes_then_reads_through_until_it_is_back(instances, redis_client, store):
    if store != "single":
        pytest.skip("a Redis Cluster is not tracked: every read goes to Redis already")
    a, b, operator = instances
    _, key = await operator.create("alice", Decimal("5"))
    for _ in range(2):
        assert (await b.call(key, action="balance"))["balance"] == "5.00"
    cache = b.runtime.reads
    for which in (0, 1):  # the invalidations' connection, then the tracking one
        assert len(cache) > 0 and cache.connection_ids is not None
        connection = cache.connection_ids[which]
        losses = cache.stats.losses
        # The connection is killed, and the key disabled with no pause: Redis sends
        # the instance no invalidation now, yet the next request must be refused.
        await redis_client.client_kill_filter(_id=connection)
        await operator.disable("alice")
        assert await b.call(key, action="balance") == REFUSED
        assert cache.stats.losses == losses + 1  # flushed (it may already be tracking again)
        loads = cache.stats.loads
        await operator.enable("alice")
        assert (await b.call(key, action="balance"))["balance"] == "5.00"
        assert cache.stats.loads > loads  # read through
        async with asyncio.timeout(5):
            while not cache.healthy:
                await asyncio.sleep(0.01)
        assert cache.connection_ids is not None and connection not in cache.connection_ids
        seen = hits((b,))
        for _ in range(2):
            assert (await b.call(key, action="balance"))["balance"] == "5.00"
        await served_from_memory((b,), seen, store)
        await operator.disable("alice")  # and tracking works again
        assert await b.call(key, action="balance") == REFUSED
        await operator.enable("alice")
        assert (await b.call(key, action="balance"))["balance"] == "5.00"
    # Operators see it: tracking on again, after two losses.
    assert await metric(b, "smm_proxy_cache_tracking") == 1
    assert await metric(b, "smm_proxy_cache_events_total", event="losses") == 2
    assert await metric(b, "smm_proxy_cache_events_total", event="hits") > 0


async def test_an_order_s_status_read_on_one_instance_is_what_the_next_status_shows_on_the_other(instances, store):
    a, b, operator = instances
    _, key = await operator.create("alice", Decimal("100"))
    echomark = a.panels["echomark"]
    echomark.partial_ratio = echomark.cancel_ratio = 0
    order = (await a.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    shown = await a.call(key, action="status", order=order)
    seen = hits((a, b))
    for router in (b, a, b):
        assert await router.call(key, action="status", order=order) == shown
    await served_from_memory((a, b), seen, store)
    upstream = (await a.runtime.book.get("alice", order)).upstream_order
    for n, (status, remains) in enumerate([("In progress", 600), ("Partial", 400)]):
        echomark.force(upstream, status=status, remains=remains)
        a.clock.advance(6)  # past the status TTL: the next read asks the panel, once
        calls = echomark.calls["status"]
        first, then = (a, b) if n % 2 else (b, a)
        read = await first.call(key, action="status", order=order)
        assert echomark.calls["status"] == calls + 1 and read["status"] == status
        assert await then.call(key, action="status", order=order) == read  # the record just written
        assert echomark.calls["status"] == calls + 1  # not stale there either
