"""What we charge: upstream cost, converted, marked up, rounded up.

Rates are per 1000 units (flat for packages). Every rounding here goes up,
so a quoted rate is never below cost plus markup and a charge never below
the quoted rate.

A client may have terms of its own (`Pricing`): a markup that replaces the
configured one, and custom rates for single services. A custom rate below
the service's current cost is never sold: the cost, rounded up, is its floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Pricing:
    """A client's prices: a markup percentage in place of the configured
    markup (None: the configured one), and custom rates per service."""

    markup: Decimal | None = None
    rates: tuple[tuple[int, Decimal], ...] = ()

    @classmethod
    def of(cls, markup: Decimal | None, rates: Mapping[int, Decimal]) -> Pricing:
        return cls(markup, tuple(sorted(rates.items())))

    @property
    def standard(self) -> bool:
        return self.markup is None and not self.rates


def client_rate(rate: Decimal, cost: Decimal, service: int, pricing: Pricing, rate_decimals: int) -> Decimal:
    """A service's rate for a client: its custom rate (never below `cost`,
    rounded up), else `cost` marked up by its own markup, else `rate` (ours)."""
    custom = dict(pricing.rates).get(service)
    if custom is not None:
        return max(custom, ceil_to(cost, rate_decimals))
    if pricing.markup is not None:
        return ceil_to(cost * (1 + pricing.markup / 100), rate_decimals)
    return rate
