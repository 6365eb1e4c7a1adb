"""Per-provider request budgets, shared through Redis."""

from support import FakeClock

from proxy.providers.budget import RequestBudget

LINK = "https://instagram.com/p/abc"


async def test_budget_counts_per_minute_and_waits_when_allowed(redis_client, keys):
    clock = FakeClock(1_800_000_000.0)  # the start of a minute
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
        clock.advance(seconds)

    budget = RequestBudget(redis_client, keys, "panel", 3, clock, sleep)
    other_instance = RequestBudget(redis_client, keys, "panel", 3, clock, sleep)
    assert [await budget.take(), await other_instance.take(), await budget.take()] == [True, True, True]
    assert await other_instance.take() is False  # spent, and no waiting allowed
    clock.advance(55)
    assert await budget.take(wait=10) is True  # waited 5 s for the next minute
    assert slept == [5.0]
    assert await budget.take() and await budget.take()
    assert await budget.take(wait=1) is False and slept == [5.0]


async def test_reads_use_their_share_and_orders_the_whole_minute(redis_client, keys):
    clock = FakeClock(1_800_000_000.0)

    async def sleep(seconds):
        clock.advance(seconds)

    budget = RequestBudget(redis_client, keys, "panel", 4, clock, sleep, read_share_percent=50)
    assert [await budget.take(), await budget.take(), await budget.take()] == [True, True, False]
    assert [await budget.take(order=True), await budget.take(order=True)] == [True, True]
    assert await budget.take(order=True) is False  # the minute is spent, for orders too
    clock.advance(60)
    assert await budget.take(order=True) and await budget.take()
