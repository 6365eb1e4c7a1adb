"""What happens to the orders a route takes (proxy/providers/outcomes.py):
decayed counts per (provider, upstream service), the shares they make, and
a stuck order counted once."""

from __future__ import annotations

import pytest

from proxy.providers.outcomes import CANCELED, COMPLETED, PARTIAL, PRIOR_ORDERS, Outcomes, Rates


@pytest.fixture
def outcomes(redis_client, keys) -> Outcomes:
    return Outcomes(redis_client, keys, window=4)


async def test_outcomes_add_up_per_route(outcomes):
    await outcomes.record("echomark", 1, COMPLETED, 1.0, 30)
    await outcomes.record("echomark", 1, PARTIAL, 0.5)
    await outcomes.record("echomark", 3, CANCELED, 0.0)
    rates = await outcomes.rates([("echomark", 1), ("echomark", 3), ("korean", 101)])
    first = rates[("echomark", 1)]
    assert first.orders == pytest.approx(1 * 0.75 + 1)  # the older outcome has decayed once
    assert first.share(first.completed) == pytest.approx(0.75 / 1.75)
    assert first.mean_seconds == pytest.approx(30)
    assert rates[("echomark", 3)].share(rates[("echomark", 3)].canceled) == 1
    assert rates[("korean", 101)] == Rates()  # no history
    assert set(await outcomes.of_provider("echomark")) == {1, 3}


async def test_old_outcomes_fade_so_a_recovered_route_is_seen(outcomes):
    for _ in range(8):
        await outcomes.record("echomark", 1, CANCELED, 0.0)
    for _ in range(8):
        await outcomes.record("echomark", 1, COMPLETED, 1.0, 10)
    rates = (await outcomes.rates([("echomark", 1)]))[("echomark", 1)]
    assert rates.share(rates.completed) > 0.9


def test_a_short_history_leans_on_an_optimistic_prior():
    assert Rates().completion == 1.0
    one_failure = Rates(orders=1, delivered=0, canceled=1)
    assert one_failure.completion == pytest.approx(PRIOR_ORDERS / (1 + PRIOR_ORDERS))
    many = Rates(orders=100, delivered=60)
    assert many.completion == pytest.approx(62 / 102)


async def test_a_stuck_order_counts_once_and_its_late_outcome_not_again(outcomes, redis_client, keys):
    other_instance = Outcomes(redis_client, keys, window=4)
    assert await outcomes.stuck("echomark", 1, order=7) is True
    assert await other_instance.stuck("echomark", 1, order=7) is False
    await outcomes.finished("echomark", 1, 7, COMPLETED, 1.0, 3600)
    await outcomes.finished("echomark", 1, 8, COMPLETED, 1.0, 60)
    rates = (await outcomes.of_provider("echomark"))[1]
    assert (round(rates.orders, 4), round(rates.stuck, 4), round(rates.completed, 4)) == (1.75, 0.75, 1.0)
