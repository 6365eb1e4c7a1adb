"""What we know of a provider's balance (proxy/providers/funds.py): a reading,
less what we sent it since; what a funds refusal teaches; one event when it
falls below its low_balance and one when it recovers, for every instance."""

from __future__ import annotations

from decimal import Decimal

import pytest

from proxy.providers.funds import Funds


@pytest.fixture
def told() -> list[tuple[str, str, dict[str, object]]]:
    return []


@pytest.fixture
def funds(redis_client, keys, clock, told) -> Funds:
    async def emit(kind: str, subject: str, message: str, **detail: object) -> None:
        told.append((kind, subject, detail))

    return Funds(redis_client, keys, {"korean": Decimal("5000")}, {"korean": "KRW"}, clock, emit)


async def known(redis_client, keys, provider="korean") -> tuple[str | None, str | None]:
    funds, low = await redis_client.hmget(keys.provider_state(provider), ["funds", "low"])
    return funds, low


async def test_a_reading_less_what_was_sent_since(funds, health, clock):
    await funds.read("korean", Decimal("12000"))
    await funds.spend("korean", Decimal("1250.5"))
    state = await health.state("korean")
    assert (state.funds, state.funds_at, state.low) == (Decimal("10749.5"), clock(), False)
    clock.advance(30)
    await funds.read("korean", Decimal("11000"))  # the provider's own figure wins
    assert (await health.state("korean")).funds == Decimal("11000")


async def test_spending_from_a_balance_never_read_knows_nothing(funds, health):
    await funds.spend("korean", Decimal("100"))
    assert (await health.state("korean")).funds is None


async def test_a_funds_refusal_says_the_balance_is_below_that_order(funds, health):
    await funds.short("korean", Decimal("1250"))
    assert (await health.state("korean")).funds == Decimal("1249.9999999")  # just below what it refused
    await funds.short("korean", Decimal("2000"))  # a dearer refusal teaches nothing new
    assert (await health.state("korean")).funds == Decimal("1249.9999999")


async def test_crossing_the_threshold_is_told_once_each_way(funds, told, redis_client, keys, clock):
    other_instance = Funds(redis_client, keys, funds.thresholds, funds.currencies, clock, funds.emit)
    await funds.read("korean", Decimal("6000"))
    await funds.spend("korean", Decimal("1000"))  # at the threshold: not below it
    assert told == []
    await funds.spend("korean", Decimal("0.01"))
    await other_instance.spend("korean", Decimal("100"))
    assert [(kind, detail["balance"], detail["threshold"]) for kind, _, detail in told] == [
        ("provider.low_balance", "4999.99", "5000.00")
    ]
    await other_instance.read("korean", Decimal("9000"))
    await funds.read("korean", Decimal("9000"))
    assert [kind for kind, _, _ in told] == ["provider.low_balance", "provider.balance_recovered"]
    assert await known(redis_client, keys) == ("90000000000", "0")  # minor units, in Redis


async def test_a_provider_without_a_threshold_is_never_low(funds, health):
    await funds.read("echomark", Decimal("0"))
    assert not (await health.state("echomark")).low


async def test_a_balance_beyond_what_lua_counts_exactly_is_taken_as_the_most_it_can(funds, health):
    # A hostile panel's reply: 10^12 is 10^19 minor units, past 2^53, where Lua's doubles round.
    await funds.read("korean", Decimal("1000000000000"))
    most = Decimal(2**53 - 1).scaleb(-7)
    assert (await health.state("korean")).funds == most
    await funds.spend("korean", Decimal("0.0000001"))  # still counted to the last minor unit
    assert (await health.state("korean")).funds == most - Decimal("0.0000001")
    await funds.read("korean", Decimal("-1000000000000"))
    state = await health.state("korean")
    assert (state.funds, state.low) == (-most, True)


async def test_a_balance_finer_than_a_minor_unit_is_rounded_down(funds, health):
    await funds.read("korean", Decimal("12000.123456789"))
    assert (await health.state("korean")).funds == Decimal("12000.1234567")
