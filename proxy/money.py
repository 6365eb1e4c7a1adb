"""Money: `Decimal` in code, integer minor units in Redis, never float.

One minor unit is 10⁻⁷ of a currency, the finest precision panels quote, so
every amount a panel sends us fits exactly. Rounding is always explicit and
always in our favour where a price is made (`ceil`) and in the client's
favour nowhere we could lose money (refunds are floored).
"""

from __future__ import annotations

import functools
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

from proxy.errors import MoneyError

MINOR_DIGITS = 7
MINOR = Decimal(1).scaleb(-MINOR_DIGITS)  # Decimal("0.0000001")
MINOR_PER_UNIT = 10**MINOR_DIGITS
# Amounts pass through Lua scripts in Redis, whose numbers are doubles: exact
# up to 2**53 minor units (about 900 million of a currency), no further.
MAX_MINOR = 2**53 - 1


def parse_amount(value: object) -> Decimal:
    """Read an amount from text or a number, refusing floats' binary noise.

    Accepts `Decimal`, `int` and decimal strings ("0.90", " 8 ", "1,5" is
    refused). A float is converted through its shortest repr, which is what a
    JSON panel meant by it ("charge": 0.27 means 0.27, not 0.2700000000000000177...).
    """
    if isinstance(value, bool):
        raise MoneyError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"not an amount: {value!r}") from None
    else:
        raise MoneyError(f"not an amount: {value!r}")
    if not amount.is_finite():
        raise MoneyError(f"not an amount: {value!r}")
    return amount


def to_minor(amount: Decimal) -> int:
    """Exact conversion to minor units; an amount finer than 10⁻⁷ is an error."""
    try:
        scaled = amount.scaleb(MINOR_DIGITS)
    except ArithmeticError:  # beyond Decimal's exponents: far too large anyway
        raise MoneyError(f"{amount} is too large") from None
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount} has more than {MINOR_DIGITS} decimal places")
    minor = int(scaled)
    if abs(minor) > MAX_MINOR:
        raise MoneyError(f"{amount} is too large")
    return minor


def from_minor(minor: int | str | bytes) -> Decimal:
    return Decimal(int(minor)).scaleb(-MINOR_DIGITS)


def ceil_to(amount: Decimal, digits: int = MINOR_DIGITS) -> Decimal:
    """Round up to `digits` decimal places (prices: never below cost)."""
    return amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_CEILING)


def floor_to(amount: Decimal, digits: int = MINOR_DIGITS) -> Decimal:
    """Round down to `digits` decimal places (refunds: never more than paid)."""
    return amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_FLOOR)


def format_amount(amount: Decimal, min_digits: int = 2) -> str:
    """Render as panels do: a decimal string, at least two places, no exponent.

    >>> format_amount(Decimal("100.84292")), format_amount(Decimal("0.9"))
    ('100.84292', '0.90')
    """
    # A balance or a charge is shown on every read of it: remembered, except zero
    # (0 and -0 are equal keys but print differently).
    return _formatted(amount, min_digits) if amount else _format(amount, min_digits)


def _format(amount: Decimal, min_digits: int) -> str:
    normal = amount.quantize(MINOR).normalize()
    exponent = normal.as_tuple().exponent
    assert isinstance(exponent, int)
    places = max(min_digits, -exponent)
    return f"{normal:.{places}f}"


_formatted = functools.lru_cache(maxsize=4096)(_format)


def convert(amount: Decimal, rate: Decimal) -> Decimal:
    """Convert with `rate` = units of the source currency per unit of the target.

    The result is exact as far as Decimal's 28 digits go; callers round.
    """
    if rate <= 0:
        raise MoneyError(f"exchange rate must be positive, not {rate}")
    return amount / rate
