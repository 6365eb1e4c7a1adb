"""Fair use (proxy/accounts/fair_use.py): per-client request rates and per-order
refill and cancel limits, counted in Redis by the `limits` library so every
instance counts the same calls; when Redis cannot count, calls go through."""

from __future__ import annotations

import pytest

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
