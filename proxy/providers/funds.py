"""What we know of each provider's balance, so no order goes where it would
be refused for lack of funds.

The balance is read on a schedule (and by every probe); between readings
each order a provider accepts is taken off what we know (`spend`), and a
provider that refuses for lack of funds tells us its balance is below that
order's cost (`short`). Below its `low_balance` (in its own currency) a
provider gets no new orders; above it, it still gets none that what we know
of its balance does not cover. Whether it is low is decided in one script
(`scripts/funds.lua`) for every instance, so operators get one warning (and
event) when it crosses, and one when it recovers.

These are estimates of someone else's money, not ours: the ledger never
reads them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_FLOOR, Decimal

from proxy import scripts
from proxy.keys import Keys
from proxy.logs import Emit, no_events
from proxy.money import MAX_MINOR, MINOR, format_amount, from_minor, to_minor
from proxy.store import Store

log = logging.getLogger(__name__)

# The most a balance reading can say: Lua's numbers are exact up to 2**53 minor units.
MOST = from_minor(MAX_MINOR)


class Funds:
    def __init__(
        self,
        redis: Store,
        keys: Keys,
        thresholds: Mapping[str, Decimal],
        currencies: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        emit: Emit = no_events,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.thresholds = dict(thresholds)
        self.currencies = currencies
        self.clock = clock
        self.emit = emit
        self._script = scripts.register(redis, "proxy.providers", "funds")

    async def read(self, provider: str, balance: Decimal) -> None:
        """A balance just read from the provider: one beyond what the script can
        count exactly (a hostile or broken panel) is taken as the most it can, and
        a fraction finer than our minor unit is dropped."""
        if abs(balance) > MOST:
            log.warning("provider %s: a balance of %s is beyond what we count; taken as %s", provider, balance, MOST)
            balance = MOST.copy_sign(balance)
        await self._run(provider, "read", balance.quantize(MINOR, rounding=ROUND_FLOOR))

    async def spend(self, provider: str, cost: Decimal) -> None:
        """An order the provider accepted, at `cost` in its currency."""
        await self._run(provider, "spend", cost)

    async def short(self, provider: str, cost: Decimal) -> None:
        """The provider refused an order of `cost` for lack of funds."""
        await self._run(provider, "short", cost)

    async def _run(self, provider: str, op: str, amount: Decimal) -> None:
        threshold = self.thresholds.get(provider, Decimal(0))
        reply = await self._script(
            keys=[self.keys.provider_state(provider)],
            args=[op, to_minor(amount), to_minor(threshold), repr(self.clock())],
        )
        await self.announce(provider, str(reply[0]), str(reply[1]))

    async def announce(self, provider: str, outcome: str, funds: str) -> None:
        """Tell operators of a crossing `funds.lua` (or a script including it) decided:
        `outcome` 'low' or 'recovered' ('same': nothing to tell), `funds` in minor units."""
        if outcome not in ("low", "recovered"):
            return
        threshold = self.thresholds.get(provider, Decimal(0))
        currency = self.currencies.get(provider, "")
        left = f"{format_amount(from_minor(funds))} {currency}".strip()
        limit = f"{format_amount(threshold)} {currency}".strip()
        if outcome == "low":
            log.warning("PROVIDER %s LOW ON FUNDS: about %s left, below %s; no new orders", provider, left, limit)
            kind, told = "provider.low_balance", f"{provider} has about {left} left, below its low_balance of {limit}"
            told += ": it gets no new orders"
        else:
            log.warning("provider %s has funds again: about %s, at or above %s", provider, left, limit)
            kind, told = "provider.balance_recovered", f"{provider} has about {left} again, at or above {limit}"
        await self.emit(
            kind,
            provider,
            told,
            balance=format_amount(from_minor(funds)),
            currency=currency,
            threshold=format_amount(threshold),
        )
