from decimal import Decimal

import pytest

from proxy.money import (
    MoneyError,
    ceil_to,
    floor_to,
    format_amount,
    from_minor,
    parse_amount,
    to_minor,
)


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
