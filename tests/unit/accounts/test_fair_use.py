"""Fair use (proxy/accounts/fair_use.py): per-client request rates and per-order
refill and cancel limits, counted in Redis by the `limits` library so every
instance counts the same calls; when Redis cannot count, calls go through."""

from __future__ import annotations

import asyncio

import pytest
from limits.aio.storage import RedisStorage

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


class CountingStorage(RedisStorage):
    """The limits library's Redis storage, counting the round trips that count requests."""

    hits = 0

    async def acquire_entry(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        CountingStorage.hits += 1
        return await super().acquire_entry(*args, **kwargs)


def counting_storage(redis_client, keys) -> CountingStorage:
    return CountingStorage(
        "async+redis://", implementation="redispy", connection_pool=redis_client.connection_pool, key_prefix=keys.limits
    )


async def test_a_busy_client_is_counted_in_leases_and_instances_together_keep_its_limit(redis_client, keys):
    """1,000 a minute: leases of up to 20 requests, each good for 1 s. Two
    instances let a client sending 100 requests a second through with one Redis
    hit for many requests, and together never past the limit by more than a
    lease each."""
    CountingStorage.hits = 0
    clock = Clock()
    limits = policy(requests="1000/minute")
    a, b = (FairUse(counting_storage(redis_client, keys), limits, clock=clock) for _ in range(2))
    granted = 0
    for n in range(1500):  # at 100 a second, alternating instances
        granted += await (a if n % 2 else b).request("alice")
        clock.now += 0.01
        if n == 900:
            assert granted == 901  # under the limit: all let through...
            assert CountingStorage.hits < 900 / 5  # ...most without going to Redis
    # (the window is Redis' and real time's: the clock moved the leases only)
    assert 1000 - 2 * 20 <= granted <= 1000 + 2 * 20
    assert not await a.request("alice") and not await b.request("alice")


async def test_a_client_sending_less_than_a_request_per_lease_is_counted_one_by_one(redis_client, keys):
    CountingStorage.hits = 0
    clock = Clock()
    fair = FairUse(counting_storage(redis_client, keys), policy(requests="1000/minute"), clock=clock)
    for _ in range(20):
        assert await fair.request("alice")
        clock.now += 1.5  # slower than one a lease (1 s)
    assert CountingStorage.hits == 20


async def test_concurrent_requests_share_one_lease(redis_client, keys):
    CountingStorage.hits = 0
    clock = Clock()
    fair = FairUse(counting_storage(redis_client, keys), policy(requests="1000/minute"), clock=clock)
    for _ in range(30):  # a busy client: its leases grow to the largest
        await fair.request("alice")
        clock.now += 0.01
    before = CountingStorage.hits
    assert all(await asyncio.gather(*(fair.request("alice") for _ in range(16))))
    assert CountingStorage.hits - before <= 2
