"""Provider health (proxy/providers/health.py): failures in a row eject a
provider from one scope for a time that grows with each ejection, a probe
brings it back, and a provider whose balance reply names another currency
than the config is blocked."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from support import router_config
from upstreams import ScriptedPanel

from proxy.config import parse_config
from proxy.errors import ProviderRefused, UpstreamError
from proxy.providers.health import ORDERS, READS, Health, Thresholds, thresholds_from


def with_thresholds(redis_client, keys, funds, clock, **thresholds: float) -> Health:
    rules = Thresholds(**thresholds)
    return Health(redis_client, keys, {"echomark": rules, "korean": rules}, funds, clock)


async def test_failures_in_a_row_eject_a_provider_from_one_scope(redis_client, keys, funds, clock):
    health = with_thresholds(redis_client, keys, funds, clock, consecutive_failures=3, base_ejection_seconds=30)
    assert await health.fail("echomark", "timed out") is None
    assert await health.fail("echomark", "timed out") is None
    assert (await health.ejection("echomark")).failures == 2 and await health.routable(["echomark"]) == {"echomark"}
    ejection = await health.fail("echomark", "timed out")
    assert ejection is not None and (ejection.ejections, ejection.until) == (1, clock() + 30)
    assert await health.cooling("echomark", ORDERS) and not await health.cooling("echomark", READS)
    assert await health.routable(["echomark", "korean", "korean"]) == {"korean"}
    assert await health.cooldowns(["echomark", "korean"]) == {
        "echomark": {ORDERS: True, READS: False},
        "korean": {ORDERS: False, READS: False},
    }
    clock.advance(31)
    assert await health.cooling("echomark")  # its time is up, but only a probe or a success brings it back


async def test_a_success_starts_the_count_over(redis_client, keys, funds, clock):
    health = with_thresholds(redis_client, keys, funds, clock, consecutive_failures=2)
    for _ in range(3):
        await health.fail("echomark", "down")
        await health.succeed("echomark")
    assert not (await health.ejection("echomark")).ejected


async def test_a_probe_brings_it_back_and_a_failed_one_ejects_it_for_longer_up_to_the_cap(health, clock):
    panel = ScriptedPanel("echomark").on(
        "balance", httpx.ConnectError, {"balance": "12.00", "currency": "USD"}, {"balance": "11.00", "currency": "USD"}
    )
    client = panel.client()
    try:
        await health.fail("echomark", "down")
        assert await health.probe({"echomark": client}) == {}  # its 60 s are not up: nobody is asked
        clock.advance(60)
        assert await health.probe({"echomark": client}) == {"echomark": False}
        ejection = await health.ejection("echomark")
        assert (ejection.ejections, ejection.until - clock()) == (2, 120)
        assert ejection.reason.startswith("probe: balance: not sent")
        clock.advance(120)
        assert await health.probe({"echomark": client}) == {"echomark": True}
        assert not await health.cooling("echomark") and len(panel.asked("balance")) == 2
        assert (await health.state("echomark")).funds == Decimal("12.00")  # the probe's balance is news too
        for _ in range(4):  # failing again soon after: each ejection twice as long, at most 900 s
            await health.fail("echomark", "down")
            clock.advance((await health.ejection("echomark")).until - clock())
            await health.succeed("echomark")
        await health.fail("echomark", "down")
        assert (await health.ejection("echomark")).until - clock() == 900
    finally:
        await client.aclose()


async def test_while_one_instance_probes_the_others_leave_the_provider_alone(redis_client, keys, funds, health, clock):
    other = Health(redis_client, keys, health.thresholds, funds, clock)
    meanwhile = []

    async def balance(fields: dict[str, str]) -> dict[str, str]:
        meanwhile.append(await other.probe({"echomark": client}))  # another instance's loop, during the probe
        return {"balance": "12.00", "currency": "USD"}

    panel = ScriptedPanel("echomark").on("balance", balance)
    client = panel.client()
    try:
        await health.fail("echomark", "down")
        clock.advance(60)
        assert await health.probe({"echomark": client}) == {"echomark": True}
        assert meanwhile == [{}] and len(panel.asked("balance")) == 1
    finally:
        await client.aclose()


async def test_no_first_ejection_configured_benches_nobody(redis_client, keys, funds, clock):
    health = with_thresholds(redis_client, keys, funds, clock, consecutive_failures=1, base_ejection_seconds=0)
    await health.fail("echomark", "down")
    assert not await health.cooling("echomark")


@pytest.mark.parametrize(
    "error, counts",
    [
        (UpstreamError("echomark", "status: HTTP 502"), True),
        (ProviderRefused("echomark", "status: unreachable"), True),  # could not connect
        (ProviderRefused("echomark", "status", "Incorrect request"), False),  # it answered, plainly
        (ProviderRefused("echomark", "status: no free connection in time", local=True), False),  # never sent
    ],
)
async def test_a_failed_read_counts_against_reads_only_if_it_was_an_outage(health, error, counts):
    await health.read_failed("echomark", error)
    assert await health.cooling("echomark", READS) is counts
    assert not await health.cooling("echomark", ORDERS)


def test_each_provider_s_thresholds_are_its_own_else_the_config_s_else_the_cooldown_setting():
    raw = router_config(health={"consecutive_failures": 5, "max_ejection_seconds": 300})
    raw["providers"]["korean"]["health"] = {"consecutive_failures": 2, "base_ejection_seconds": 10}
    found = thresholds_from(parse_config(raw, {}), default_base=45)
    assert found["echomark"] == Thresholds(consecutive_failures=5, base_ejection_seconds=45, max_ejection_seconds=300)
    assert found["korean"] == Thresholds(consecutive_failures=2, base_ejection_seconds=10, max_ejection_seconds=300)


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
        assert (state.funds, state.funds_at) == (Decimal("100.84"), clock())
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


async def test_a_provider_below_its_low_balance_takes_no_orders(health, funds):
    funds.thresholds["echomark"] = Decimal("5")
    await funds.read("echomark", Decimal("4.99"))
    assert (await health.route_states(["echomark"]))["echomark"].low
    assert await health.routable(["echomark", "korean"]) == {"korean"}
    await funds.read("echomark", Decimal("5"))
    assert await health.routable(["echomark", "korean"]) == {"echomark", "korean"}


async def test_a_provider_never_checked_has_an_empty_state(health):
    state = await health.state("echomark")
    assert (state.balance, state.currency, state.checked_at, state.blocked, state.error) == ("", "", 0.0, "", "")
    assert (state.funds, state.funds_at, state.low) == (None, 0.0, False)
