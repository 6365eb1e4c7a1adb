"""Pricing: cost in our currency, the marked-up rate, the charge; always rounded up."""

from decimal import Decimal

from proxy.catalog.pricing import charge, cost_in_currency, sell_rate
from proxy.config import Markup, parse_config


def config(**overrides):
    raw = {
        "currency": "USD",
        "exchange_rates": {"KRW": "1380"},
        "providers": {"kr": {"url": "https://x.test/api/v2", "key": "k", "currency": "KRW"}},
    }
    raw.update(overrides)
    return parse_config(raw, {})


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
