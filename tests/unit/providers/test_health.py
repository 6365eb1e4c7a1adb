"""Provider health (proxy/providers/health.py): cool-downs, and blocking a
provider whose balance reply names another currency than the config."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from upstreams import ScriptedPanel

from proxy.errors import ProviderRefused, UpstreamError
from proxy.providers.health import ORDERS, READS, Health


@pytest.fixture
def health(redis_client, keys, clock) -> Health:
    return Health(redis_client, keys, cooldown=0.2, clock=clock)


async def test_a_failure_cools_a_provider_down_for_one_scope_until_it_expires(health):
    await health.fail("echomark", "timed out")
    assert await health.cooling("echomark", ORDERS) and not await health.cooling("echomark", READS)
    assert await health.routable(["echomark", "korean", "korean"]) == {"korean"}
    assert await health.cooldowns(["echomark", "korean"]) == {
        "echomark": {ORDERS: True, READS: False},
        "korean": {ORDERS: False, READS: False},
    }
    await asyncio.sleep(0.25)  # on Redis' clock
    assert await health.routable(["echomark"]) == {"echomark"}


async def test_no_cooldown_configured_benches_nobody(redis_client, keys, clock):
    health = Health(redis_client, keys, cooldown=0, clock=clock)
    await health.fail("echomark", "down")
    assert not await health.cooling("echomark")


@pytest.mark.parametrize(
    "error, cools",
    [
        (UpstreamError("echomark", "status: HTTP 502"), True),
        (ProviderRefused("echomark", "status: unreachable"), True),  # could not connect
        (ProviderRefused("echomark", "status", "Incorrect request"), False),  # it answered, plainly
        (ProviderRefused("echomark", "status: no free connection in time", local=True), False),  # never sent
    ],
)
async def test_a_failed_read_cools_reads_only_if_it_was_an_outage(health, error, cools):
    await health.read_failed("echomark", error)
    assert await health.cooling("echomark", READS) is cools
    assert not await health.cooling("echomark", ORDERS)


async def test_a_balance_in_another_currency_blocks_until_one_agrees(health, clock):
    panel = ScriptedPanel("echomark")
    panel.on(
        "balance",
        {"balance": "100.84", "currency": "USD"},
        {"balance": "100.84", "currency": "EUR"},
        {"balance": "99.00"},  # says nothing of the currency: the block stays
        httpx.ConnectError,
        {"balance": "98.00", "currency": "USD"},
    )
    client = panel.client()
    try:
        state = await health.verify(client, "USD")
        assert (state.balance, state.currency, state.blocked, state.checked_at) == ("100.84", "USD", "", clock())
        state = await health.verify(client, "USD")
        assert state.blocked == "its balance is in EUR, the config says USD"
        assert await health.routable(["echomark"]) == set()
        assert await health.blocked(["echomark", "korean"]) == {"echomark": state.blocked}
        assert (await health.verify(client, "USD")).blocked  # no currency: no news
        failed = await health.verify(client, "USD")
        assert failed.blocked and failed.error and failed.balance == "99.00"  # the last good read is kept
        state = await health.verify(client, "USD")
        assert state.blocked == "" and state.error == "" and state.currency == "USD"
        assert await health.routable(["echomark"]) == {"echomark"}
    finally:
        await client.aclose()


async def test_a_provider_never_checked_has_an_empty_state(health):
    state = await health.state("echomark")
    assert (state.balance, state.currency, state.checked_at, state.blocked, state.error) == ("", "", 0.0, "", "")
