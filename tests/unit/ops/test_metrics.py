"""Metrics (proxy/ops/metrics.py): counted here, or read from Redis at each scrape."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import new_order

from proxy.ops.metrics import Metrics, SharedState, Tallies
from proxy.orders import states
from proxy.orders.states import ACCEPT, EXHAUST, LOSE, SUBMIT
from proxy.providers.listings import Listings
from proxy.providers.replies import UpstreamService


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


@pytest.fixture
def tallies(redis_client, keys, book) -> Tallies:
    return Tallies(redis_client, keys, book.clients)


async def some_orders(book):
    fields = {"provider": "echomark", "cost": 9_000_000, "cost_currency": "USD", "cost_base": 9_000_000}
    placed = await book.apply((await book.reserve(new_order())).order, SUBMIT, fields)
    placed = await book.apply(placed, ACCEPT, {"upstream_order": 1})
    lost = await book.apply((await book.reserve(new_order(link="https://x.test/2"))).order, SUBMIT, fields)
    lost = await book.apply(lost, LOSE)
    await book.apply((await book.reserve(new_order(link="https://x.test/3"))).order, EXHAUST)
    return placed, lost


async def test_outcomes_are_counted_from_the_transitions_the_script_counts(book, alice, tallies):
    await some_orders(book)
    await tallies.tally("orders_duplicate")
    counts = await tallies.counts()
    assert (counts["orders_placed"], counts["orders_unknown"], counts["orders_failed"]) == (1, 1, 1)
    assert counts["orders_late_accept"] == 0 and counts["orders_duplicate"] == 1
    raw = await tallies.totals_raw()
    assert raw[states.counter(states.SUBMITTED, ACCEPT)] == 1
    money = await tallies.totals()
    assert money == {
        "topup": Decimal("10"),
        "charge": Decimal("3.51"),
        "refund": Decimal("1.17"),
        "paid": Decimal("0.90"),
    }


async def test_a_tally_that_cannot_be_written_is_no_error(tallies, redis_client, keys, caplog):
    await redis_client.set(keys.metrics, "a string, not a hash")
    await tallies.tally("orders_duplicate")  # WRONGTYPE: logged, not raised
    assert "counter orders_duplicate not counted" in caplog.text


async def test_a_scrape_reads_what_lives_in_redis(book, alice, tallies, redis_client, keys, clock, health, funds):
    await some_orders(book)
    funds.thresholds["echomark"] = Decimal("5")
    await funds.read("echomark", Decimal("4.5"))  # below its low_balance
    await health.fail("korean", "down")
    listings = Listings(redis_client, keys, {}, ttl=300, clock=clock)
    await listings.store(
        "echomark", [UpstreamService(1, "S", "Default", "C", Decimal("0.9"), 10, 100, False, False, False, None)]
    )
    clock.advance(42)
    metrics = Metrics()
    metrics.share(SharedState(book, tallies, health, listings, {"echomark": "USD", "korean": "KRW"}, "USD"))
    metrics.request("add", "ok", 0.01)
    metrics.upstream_call("echomark", "add", "ok", 0.2)
    metrics.budget_wait("echomark")
    found = samples(await metrics.render())
    assert found[("smm_proxy_orders_inflight", ())] == 0
    assert found[("smm_proxy_orders_unknown", ())] == 1 and found[("smm_proxy_orders_open", ())] == 1
    assert found[("smm_proxy_orders_total", (("outcome", "failed"),))] == 1
    assert found[("smm_proxy_money_total", (("currency", "USD"), ("kind", "refunded")))] == 1.17
    assert found[("smm_proxy_money_total", (("currency", "USD"), ("kind", "paid_upstream")))] == 0.9
    assert found[("smm_proxy_provider_cooling", (("provider", "korean"), ("scope", "orders")))] == 1
    assert found[("smm_proxy_provider_cooling", (("provider", "echomark"), ("scope", "orders")))] == 0
    assert found[("smm_proxy_provider_ejected", (("provider", "korean"), ("scope", "orders")))] == 1
    assert found[("smm_proxy_provider_ejected", (("provider", "korean"), ("scope", "reads")))] == 0
    assert found[("smm_proxy_provider_low_balance", (("provider", "echomark"),))] == 1
    assert found[("smm_proxy_provider_low_balance", (("provider", "korean"),))] == 0
    assert found[("smm_proxy_provider_balance_age_seconds", (("provider", "echomark"),))] == 42
    assert ("smm_proxy_provider_balance_age_seconds", (("provider", "korean"),)) not in found  # never read
    assert found[("smm_proxy_price_changes_held", (("provider", "echomark"),))] == 0
    assert found[("smm_proxy_provider_blocked", (("provider", "echomark"),))] == 0
    assert found[("smm_proxy_catalog_age_seconds", (("provider", "echomark"),))] == 42
    assert ("smm_proxy_catalog_age_seconds", (("provider", "korean"),)) not in found  # never fetched
    assert found[("smm_proxy_requests_total", (("action", "add"), ("outcome", "ok")))] == 1
    assert found[("smm_proxy_upstream_seconds_count", (("action", "add"), ("provider", "echomark")))] == 1
    assert found[("smm_proxy_budget_waits_total", (("provider", "echomark"),))] == 1


async def test_metrics_without_a_shared_state_render_what_this_process_counted():
    metrics = Metrics()
    metrics.request("status", "error", 0.5)
    assert (
        samples(await metrics.render())[("smm_proxy_requests_total", (("action", "status"), ("outcome", "error")))] == 1
    )
