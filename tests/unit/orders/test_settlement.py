"""What an upstream status means for an order's money (proxy/orders/settlement.py).

`settle` is pure: an order as recorded and one status read in, the fields to
write, the order's total refund and a reason for the operator out. Charge
1.17 for 1000 units throughout; the route's rate said it costs us 0.90 USD.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from proxy.money import format_amount, to_minor
from proxy.orders.records import Order
from proxy.orders.settlement import ROUNDING_SLACK, by_delivery, must_stop, refund_by_rate, settle, unlimited
from proxy.orders.states import FAILED, PLACED
from proxy.providers.replies import UpstreamStatus
from proxy.vocabulary import (
    ACTIVE,
    CANCELED,
    COMPLETED,
    EXPIRED,
    IN_PROGRESS,
    PARTIAL,
    PENDING,
    SUBSCRIPTIONS,
)

CHARGE = Decimal("1.17")
COST = Decimal("0.90")
NOW = 1_800_000_123.4567


def placed(**overrides: object) -> Order:
    values: dict[str, object] = dict(
        id=1,
        state=PLACED,
        status=IN_PROGRESS,
        charge=CHARGE,
        refunded=Decimal(0),
        remains=1000,
        start_count=0,
        status_at=0.0,
        provider="echomark",
        client="alice",
        service=1,
        type="Default",
        quantity=1000,
        fields={"link": "https://instagram.com/p/abc", "quantity": "1000"},
        created=0.0,
        refill=False,
        cancel=True,
        cost=COST,
        cost_currency="USD",
        cost_base=COST,
    )
    values.update(overrides)
    return Order(**values)  # type: ignore[arg-type]


def read(status: str | None, remains: int | None = 0, charge: str | None = None, currency: str | None = "USD"):
    return UpstreamStatus(status, None if charge is None else Decimal(charge), 10, remains, currency, status)


def settled(order: Order, result: UpstreamStatus, tolerance: str = "1"):
    return settle(order, result, provider_currency="USD", tolerance_percent=Decimal(tolerance), now=NOW)


# -- by rate --------------------------------------------------------------------------


def test_completed_keeps_the_whole_charge():
    s = settled(placed(), read(COMPLETED, 0, "0.90"))
    assert s.refund_to == 0 and s.attention == ""
    assert s.fields == {
        "status_at": f"{NOW:.3f}",
        "upstream_charge": to_minor(COST),
        "upstream_currency": "USD",
        "status": COMPLETED,
        "remains": 0,
        "start_count": 10,
    }


@pytest.mark.parametrize(
    "remains, refund",
    [(157, "0.18369"), (1, "0.00117"), (999, "1.16883"), (1000, "1.17"), (0, "0")],
)
def test_partial_refunds_the_remains_share_rounded_down(remains, refund):
    s = settled(placed(), read(PARTIAL, remains))
    assert s.refund_to == Decimal(refund)
    assert s.fields["remains"] == remains


def test_partial_refunds_are_rounded_down_to_the_ledger_unit():
    order = placed(charge=Decimal("0.0000007"), quantity=3)
    assert refund_by_rate(order, PARTIAL, 1) == Decimal("0.0000002")  # 2.33e-7, never 3e-7


def test_canceled_refunds_everything():
    assert settled(placed(), read(CANCELED, 1000)).refund_to == CHARGE
    assert settled(placed(refunded=Decimal("0.5")), read(CANCELED, 1000)).refund_to == CHARGE


@pytest.mark.parametrize("status", [PENDING, IN_PROGRESS, ACTIVE])
def test_a_status_that_is_not_final_moves_no_money(status):
    s = settled(placed(), read(status, 400))
    assert s.refund_to is None and s.fields["status"] == status and s.fields["remains"] == 400


def test_remains_are_clamped_to_the_quantity():
    assert settled(placed(), read(PARTIAL, 5000)).fields["remains"] == 1000
    assert settled(placed(), read(PARTIAL, 5000)).refund_to == CHARGE
    assert settled(placed(), read(IN_PROGRESS, -3)).fields["remains"] == 0


def test_a_partial_without_remains_waits_for_a_reading_that_has_them():
    s = settled(placed(), read(PARTIAL, None))
    assert s.refund_to is None and "status" not in s.fields  # asked again later
    assert s.unsettled == "Partial without usable remains"  # counted towards an operator's look


def test_missing_remains_of_completed_is_zero_and_of_others_what_we_had():
    assert settled(placed(remains=300), read(COMPLETED, None)).fields["remains"] == 0
    assert settled(placed(remains=300), read(IN_PROGRESS, None)).fields["remains"] == 300


def test_an_unknown_spelling_keeps_the_status_we_had():
    s = settled(placed(), read(None, 0, "0.90"))
    assert s.unsettled == "no status"
    odd = UpstreamStatus(None, None, 10, 0, "USD", "Canceled  by\nadmin")
    assert settled(placed(), odd).unsettled == "a status we do not know ('Canceled by admin')"
    assert settled(placed(), read(IN_PROGRESS, 500)).unsettled == ""
    assert s.refund_to is None and "status" not in s.fields
    assert s.fields["upstream_charge"] == to_minor(COST)  # what it said of the money is kept


# -- tolerances ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, remains, charged, tolerance, flagged",
    [
        (COMPLETED, 0, "0.90", "1", False),
        (COMPLETED, 0, "0.909", "1", False),  # 1 % of 0.90 is 0.009
        (COMPLETED, 0, "0.9091", "1", False),  # within the rounding slack
        (COMPLETED, 0, "0.9092", "1", True),
        (COMPLETED, 0, "0.8908", "1", True),
        (COMPLETED, 0, "1.00", "15", False),
        (COMPLETED, 0, "0", "1", True),  # billed nothing for a completed order
        (PARTIAL, 500, "0.45", "1", False),  # half delivered, half the cost
        (PARTIAL, 500, "0.90", "1", True),  # billed in full for half
        (CANCELED, 1000, "0", "1", False),
        (CANCELED, 1000, "0.10", "1", True),  # billed for a canceled order
    ],
)
def test_an_upstream_charge_is_compared_with_the_cost_we_recorded(status, remains, charged, tolerance, flagged):
    s = settled(placed(), read(status, remains, charged), tolerance)
    assert bool(s.attention) == flagged, s.attention
    assert s.refund_to == refund_by_rate(placed(), status, remains)  # by rate whatever it billed
    if flagged:
        assert f"the provider charged {format_amount(Decimal(charged))} USD" in s.attention
        assert "expected about" in s.attention
    assert ROUNDING_SLACK == Decimal("0.0001")


def test_a_charge_read_before_is_compared_when_the_final_read_has_none():
    s = settled(placed(upstream_charge=Decimal("2.00"), upstream_currency="USD"), read(COMPLETED, 0))
    assert "charged 2.00 USD" in s.attention


def test_a_charge_in_another_currency_is_not_compared_but_reported():
    s = settled(placed(), read(COMPLETED, 0, "1242", currency="KRW"))
    assert s.refund_to == 0
    assert s.attention == "the provider reported its charge in KRW, not USD"
    assert s.fields["upstream_currency"] == "KRW"


def test_without_a_recorded_cost_nothing_is_compared():
    s = settled(placed(cost=None), read(COMPLETED, 0, "5.00"))
    assert s.attention == "" and s.refund_to == 0


# -- odd upstream values ---------------------------------------------------------------------


@pytest.mark.parametrize("charge", ["-0.05", "1e30", "123456789012", "NaN", "Infinity"])
def test_an_unusable_charge_is_reported_and_the_order_still_settles_by_rate(charge):
    s = settled(placed(), read(CANCELED, 1000, charge))
    assert s.refund_to == CHARGE
    assert "upstream_charge" not in s.fields
    assert "a charge we cannot use" in s.attention


def test_a_huge_charge_is_shown_shortened():
    s = settled(placed(), read(COMPLETED, 0, "9" * 60))
    assert "..." in s.attention and len(s.attention) < 120


def test_the_fields_are_stamped_with_the_reading_time():
    assert settled(placed(), read(IN_PROGRESS, 10)).fields["status_at"] == "1800000123.457"


# -- by delivery -----------------------------------------------------------------------------


def subscription(**overrides: object) -> Order:
    # Held the most it can cost: 5 posts of at most 200 = 1000 units.
    return placed(type=SUBSCRIPTIONS, quantity=1000, remains=1000, **overrides)


def test_what_is_settled_by_delivery():
    assert by_delivery(subscription(), COMPLETED)
    assert by_delivery(placed(billing="delivery"), COMPLETED)
    assert by_delivery(placed(type="Package", quantity=1), PARTIAL)
    assert not by_delivery(placed(type="Package", quantity=1), COMPLETED)
    assert not by_delivery(placed(), PARTIAL)


@pytest.mark.parametrize(
    "charged, billed",
    [
        ("0.90", "1.17"),  # all it could cost: all we held
        ("0.45", "0.585"),
        ("0.30", "0.39"),
        ("0.0000001", "0.0000002"),  # 1.17 x 1e-7 / 0.90 = 1.3e-7, rounded up
        ("0", "0"),
    ],
)
def test_a_subscription_is_billed_what_the_provider_charged_marked_up(charged, billed):
    s = settled(subscription(), read(COMPLETED, 0, charged))
    assert s.refund_to == CHARGE - Decimal(billed)
    assert s.attention == ""


@pytest.mark.parametrize("status", [EXPIRED, CANCELED, PARTIAL])
def test_every_end_of_a_subscription_is_settled_the_same_way(status):
    s = settled(subscription(), read(status, 400, "0.30"))
    assert s.refund_to == CHARGE - Decimal("0.39")


def test_a_provider_charging_more_than_the_hold_goes_to_the_operator():
    s = settled(subscription(), read(COMPLETED, 0, "1.00"))
    assert s.refund_to == 0  # billed what was held, no more
    assert "more than the 0.90 USD held" in s.attention


@pytest.mark.parametrize(
    "order, result",
    [
        (subscription(), read(COMPLETED, 0)),  # no charge reported, none before
        (subscription(), read(COMPLETED, 0, "0.30", currency="EUR")),
        (subscription(cost=None), read(COMPLETED, 0, "0.30")),
        (subscription(cost=Decimal(0)), read(COMPLETED, 0, "0.30")),
        (subscription(), read(COMPLETED, 0, "-1")),
    ],
)
def test_without_a_usable_upstream_charge_the_operator_decides(order, result):
    s = settled(order, result)
    assert s.refund_to is None
    assert "what the provider charged is unknown; the refund is to be decided" in s.attention


def test_a_package_that_ends_partial_is_settled_by_delivery_not_by_rate():
    package = placed(type="Package", quantity=1, remains=1)
    s = settled(package, read(PARTIAL, 0, "0.45"))
    assert s.refund_to == CHARGE - Decimal("0.585")


def test_settling_never_changes_the_order_it_is_given():
    order = placed()
    before = dataclasses.replace(order)
    settled(order, read(CANCELED, 1000, "0.90"))
    assert order == before


# -- unlimited subscriptions ------------------------------------------------------------------


def unlimited_subscription(charged: str | None, **overrides: object) -> Order:
    """No posts: held for 5 posts of at most 200 (1000 units, 0.90 at cost); `charged` so far."""
    fields = {"username": "nasa", "min": "100", "max": "200"}
    upstream_charge = None if charged is None else Decimal(charged)
    values: dict[str, object] = dict(status=ACTIVE, fields=fields, upstream_charge=upstream_charge)
    values.update(overrides)
    return subscription(**values)


def test_a_subscription_without_posts_is_unlimited():
    assert unlimited(unlimited_subscription(None))
    assert unlimited(unlimited_subscription(None, fields={"username": "nasa", "max": "200", "posts": "0"}))
    assert not unlimited(unlimited_subscription(None, fields={"username": "nasa", "max": "200", "posts": "5"}))
    assert not unlimited(placed())


@pytest.mark.parametrize(
    "charged, stop",
    [
        ("0", False),
        ("0.72", False),  # four posts: room for a fifth (at most 0.18)
        ("0.7200001", True),  # no room for one more post of the most it can cost
        ("0.90", True),
        (None, None),  # no charge reported: cannot be told
    ],
)
def test_an_unlimited_subscription_must_stop_once_one_more_post_would_pass_its_hold(charged, stop):
    assert must_stop(unlimited_subscription(charged), "USD") is stop


def test_only_an_open_placed_unlimited_subscription_is_ever_stopped():
    assert must_stop(unlimited_subscription("0.90", upstream_currency="EUR"), "USD") is None  # not comparable
    assert must_stop(unlimited_subscription("0.90", status=COMPLETED), "USD") is False  # ended
    assert must_stop(unlimited_subscription("0.90", state=FAILED), "USD") is False
    with_posts = {"username": "nasa", "min": "100", "max": "200", "posts": "5"}
    assert must_stop(unlimited_subscription("0.90", fields=with_posts), "USD") is False  # posts given: it ends
    assert must_stop(unlimited_subscription("0.90", cost=None), "USD") is False
