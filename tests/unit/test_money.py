from decimal import Decimal

import pytest

from proxy.catalog.pricing import charge, cost_in_currency, sell_rate
from proxy.config import Markup, parse_config
from proxy.money import (
    MoneyError,
    ceil_to,
    floor_to,
    format_amount,
    from_minor,
    parse_amount,
    to_minor,
)


def config(**overrides):
    raw = {
        "currency": "USD",
        "exchange_rates": {"KRW": "1380"},
        "providers": {"kr": {"url": "https://x.test/api/v2", "key": "k", "currency": "KRW"}},
    }
    raw.update(overrides)
    return parse_config(raw, {})


@pytest.mark.parametrize(
    "value, expected",
    [("0.90", "0.90"), (" 8 ", "8"), (157, "157"), (0.27, "0.27"), (Decimal("1.5"), "1.5")],
)
def test_parse_amount(value, expected):
    assert parse_amount(value) == Decimal(expected)


@pytest.mark.parametrize("value", ["abc", "", "1,5", "NaN", "Infinity", True, None, [1]])
def test_parse_amount_refuses(value):
    with pytest.raises(MoneyError):
        parse_amount(value)


def test_minor_units_round_trip_exactly():
    assert to_minor(Decimal("100.84292")) == 1008429200
    assert from_minor(1008429200) == Decimal("100.84292")
    assert from_minor("-3") == Decimal("-0.0000003")
    with pytest.raises(MoneyError):
        to_minor(Decimal("0.00000001"))
    with pytest.raises(MoneyError):
        to_minor(Decimal("1e20"))


def test_rounding_directions():
    assert ceil_to(Decimal("0.123401"), 4) == Decimal("0.1235")
    assert floor_to(Decimal("0.123499"), 4) == Decimal("0.1234")
    assert ceil_to(Decimal("0.1234"), 4) == Decimal("0.1234")


def test_format_amount_like_panels():
    assert format_amount(Decimal("100.84292")) == "100.84292"
    assert format_amount(Decimal("0.9")) == "0.90"
    assert format_amount(Decimal("8")) == "8.00"
    assert format_amount(Decimal("1E+3")) == "1000.00"
    assert format_amount(Decimal("0.0000001")) == "0.0000001"


def test_krw_cost_is_converted_then_marked_up_and_rounded_up():
    cfg = config(markup={"percent": 25}, rate_decimals=4)
    cost = cost_in_currency(cfg, Decimal("1250"), "KRW")  # 0.905797... USD
    rate = sell_rate(cfg, cost)
    assert rate == Decimal("1.1323")  # 1.13224637... rounded up
    assert rate >= cost * Decimal("1.25")


def test_fixed_markup_per_1000_and_override():
    cfg = config(markup={"per_1000": "0.5"})
    assert sell_rate(cfg, Decimal("0.90")) == Decimal("1.40")
    assert sell_rate(cfg, Decimal("0.90"), Markup(percent=Decimal(10))) == Decimal("0.99")


def test_never_below_cost_plus_markup_for_many_prices():
    cfg = config(markup={"percent": "7.5"}, rate_decimals=2)
    for krw in range(1, 5000, 37):
        cost = cost_in_currency(cfg, Decimal(krw), "KRW")
        rate = sell_rate(cfg, cost)
        assert rate >= cost * Decimal("1.075")
        assert rate - cost * Decimal("1.075") < Decimal("0.01")


def test_charge_per_1000_flat_and_runs():
    assert charge(Decimal("0.90"), 300) == Decimal("0.27")
    assert charge(Decimal("1.1323"), 157) == Decimal("0.1777711")
    assert charge(Decimal("0.0001"), 1) == Decimal("0.0000001")  # 1e-7, rounded up from 1e-7
    assert charge(Decimal("0.00001"), 1) == Decimal("0.0000001")  # rounded up, never free
    assert charge(Decimal("5"), 1, flat=True) == Decimal("5")
    assert charge(Decimal("0.90"), 100, runs=3) == Decimal("0.27")
