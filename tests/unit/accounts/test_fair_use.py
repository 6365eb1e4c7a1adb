"""Fair use (proxy/accounts/fair_use.py): per-client request rates and per-order
refill and cancel limits, counted in Redis by the `limits` library so every
instance counts the same calls; when Redis cannot count, calls go through."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from proxy.accounts.fair_use import FairUse, storage_for
from proxy.policies import FairUsePolicy
from proxy.store import connect


def policy(**limits: str) -> FairUsePolicy:
    return FairUsePolicy(**{"requests": "3/minute", "refills_per_order": "2/hour", **limits})


async def test_a_client_over_its_rate_is_refused_and_other_clients_are_not(redis_client, keys):
    fair = FairUse(storage_for(redis_client, keys), policy())
    other_instance = FairUse(storage_for(redis_client, keys), policy())
    assert [await fair.request("alice"), await other_instance.request("alice"), await fair.request("alice")] == [
        True,
        True,
        True,
    ]
    assert await other_instance.request("alice") is False
    assert await fair.request("bob") is True


async def test_refills_and_cancels_are_limited_per_order(redis_client, keys):
    fair = FairUse(storage_for(redis_client, keys), policy(cancels_per_order="1/hour"))
    assert [await fair.order_action("refill", "alice", 7) for _ in range(3)] == [True, True, False]
    assert await fair.order_action("refill", "alice", 8) is True  # another order: its own count
    assert [await fair.order_action("cancel", "alice", 7) for _ in range(2)] == [True, False]


async def test_a_new_policy_takes_effect_for_the_next_call(redis_client, keys):
    fair = FairUse(storage_for(redis_client, keys), policy(requests="1/minute"))
    assert await fair.request("alice") and not await fair.request("alice")
    fair.configure(policy(requests="10/minute"))
    assert await fair.request("alice")


async def test_the_limits_live_under_the_router_s_prefix(redis_client, keys):
    fair = FairUse(storage_for(redis_client, keys), policy())
    await fair.request("alice")
    assert [key async for key in redis_client.scan_iter(match=f"{keys.limits}*")]


async def test_when_redis_cannot_count_calls_go_through(keys, caplog):
    away = connect("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        fair = FairUse(storage_for(away, keys), policy(requests="1/minute"))
        assert [await fair.request("alice") for _ in range(3)] == [True, True, True]
    finally:
        await away.aclose()
    assert "fair use not counted" in caplog.text


def test_a_rate_the_library_cannot_read_is_refused_by_the_config():
    with pytest.raises(ValueError, match="not a rate like '600/minute'"):
        FairUsePolicy(requests="lots")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRedis(aioredis.Redis):
    """Our Redis, counting the lease scripts sent."""

    scripts = 0

    async def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        if args[0] in ("EVALSHA", "EVAL"):
            CountingRedis.scripts += 1
        return await super().execute_command(*args, **options)


def leasing(redis_client, keys, requests: str, clock: Clock) -> FairUse:
    counting = CountingRedis.from_pool(redis_client.connection_pool)
    return FairUse(storage_for(redis_client, keys), policy(requests=requests), keys.limits, redis=counting, clock=clock)


async def test_a_busy_client_is_counted_in_leases_and_instances_together_keep_its_limit(redis_client, keys):
    """1,000 a minute: leases of up to 20 requests, each good for 1 s. Two
    instances let a client sending 100 requests a second through with one round
    trip for many requests, and together never past the limit."""
    CountingRedis.scripts = 0
    clock = Clock()
    a, b = (leasing(redis_client, keys, "1000/minute", clock) for _ in range(2))
    granted = 0
    for n in range(1500):  # at 100 a second, alternating instances
        granted += await (a if n % 2 else b).request("alice")
        clock.now += 0.01
        if n == 900:
            assert granted == 901  # under the limit: all let through...
            assert CountingRedis.scripts < 900 / 5  # ...most without a round trip
    # (the window is Redis' and real time's: the clock moved the leases only)
    assert 1000 - 2 * 20 <= granted <= 1000
    assert not await a.request("alice") and not await b.request("alice")


async def test_a_client_that_pauses_gets_back_what_its_leases_did_not_use(redis_client, keys):
    """Bursts of 7 with pauses longer than a lease: all 1,000 requests the limit
    allows are let through, not one more."""
    clock = Clock()
    fair = leasing(redis_client, keys, "1000/minute", clock)
    granted = 0
    for n in range(1100):
        granted += await fair.request("alice")
        clock.now += 3 if n % 7 == 6 else 0.002
    assert granted == 1000


async def test_a_client_sending_less_than_a_request_per_lease_is_counted_one_by_one(redis_client, keys):
    CountingRedis.scripts = 0
    clock = Clock()
    fair = leasing(redis_client, keys, "1000/minute", clock)
    for _ in range(20):
        assert await fair.request("alice")
        clock.now += 1.5  # slower than one a lease (1 s)
    assert CountingRedis.scripts == 20


async def test_concurrent_requests_share_one_lease(redis_client, keys):
    clock = Clock()
    fair = leasing(redis_client, keys, "1000/minute", clock)
    for _ in range(30):  # a busy client: its leases grow to the largest
        await fair.request("alice")
        clock.now += 0.01
    CountingRedis.scripts = 0
    assert all(await asyncio.gather(*(fair.request("alice") for _ in range(16))))
    assert CountingRedis.scripts <= 2


async def test_leases_and_the_limits_library_count_in_one_window(redis_client, keys):
    """A policy of several limits (or a cluster) is counted by `limits`, request by
    request, on the same keys: switching between them loses no count."""
    clock = Clock()
    leased = leasing(redis_client, keys, "3/minute", clock)
    plain = FairUse(storage_for(redis_client, keys), policy(requests="3/minute"))
    assert [await leased.request("alice"), await plain.request("alice"), await leased.request("alice")] == [True] * 3
    assert not await plain.request("alice") and not await leased.request("alice")
