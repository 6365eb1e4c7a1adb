"""What we charge: upstream cost, converted, marked up, rounded up.

Rates are per 1000 units (flat for packages). Every rounding here goes up,
so a quoted rate is never below cost plus markup and a charge never below
the quoted rate.
"""

from __future__ import annotations

from decimal import Decimal

from proxy.config import Config, Markup
from proxy.money import ceil_to, convert


def cost_in_currency(config: Config, upstream_rate: Decimal, upstream_currency: str) -> Decimal:
    """An upstream rate in the deployment currency, unrounded."""
    return convert(upstream_rate, config.rate_of(upstream_currency))


def sell_rate(config: Config, cost: Decimal, markup: Markup | None = None) -> Decimal:
    """Our rate for a cost in the deployment currency, rounded up to `rate_decimals`."""
    return ceil_to((markup or config.markup).apply(cost), config.rate_decimals)


def charge(rate: Decimal, quantity: int, *, flat: bool = False, runs: int = 1) -> Decimal:
    """What an order costs: rate x quantity / 1000 (or the flat rate), x runs.

    Rounded up to the minor unit.
    """
    amount = rate if flat else rate * quantity / 1000
    return ceil_to(amount * runs)
