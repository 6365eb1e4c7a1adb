"""What happens to the orders each route takes: rolling shares of outcomes.

Per (provider, upstream service), kept in Redis as exponentially decayed
counts (`scripts/outcome.lua`: each new outcome first multiplies the others
by 1 - 1/`window`), so the rates follow about the last `window` final
orders: the shares that ended Completed, Partial, Canceled or stuck (Pending
past the service's threshold), the share of what was ordered that was
delivered, and the mean time to completion.

Outcomes are recorded when an order turns final (best effort: never in the
path of money), and read by `strategy: best` (`proxy.orders.routing`), which
weighs each route's margin by its delivered share. A route with few outcomes
leans on an optimistic prior (`PRIOR_ORDERS` orders all delivered), so new
and recovered routes are tried, and the exploring share keeps them fed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from proxy import scripts
from proxy.keys import Keys
from proxy.store import Store, text_map

log = logging.getLogger(__name__)

COMPLETED = "c"
PARTIAL = "p"
CANCELED = "x"
STUCK = "k"
# A route without history counts as this many orders, all delivered.
PRIOR_ORDERS = 2.0
_FIELDS = ("n", "d", "c", "p", "x", "k", "t", "tn")


@dataclass(frozen=True)
class Rates:
    """One route's decayed outcome counts, and the shares they make."""

    orders: float = 0.0  # decayed count of final (or stuck) orders
    delivered: float = 0.0  # decayed sum of the delivered share of each
    completed: float = 0.0
    partial: float = 0.0
    canceled: float = 0.0
    stuck: float = 0.0
    seconds: float = 0.0  # decayed sum of times to completion
    timed: float = 0.0  # decayed count of orders those times are of

    def share(self, count: float) -> float | None:
        return count / self.orders if self.orders else None

    @property
    def completion(self) -> float:
        """The expected delivered share of the next order: the history,
        pulled towards 1 while it is short (`PRIOR_ORDERS`)."""
        return (self.delivered + PRIOR_ORDERS) / (self.orders + PRIOR_ORDERS)

    @property
    def mean_seconds(self) -> float | None:
        return self.seconds / self.timed if self.timed else None


class Outcomes:
    def __init__(self, redis: Store, keys: Keys, window: int = 100) -> None:
        self.redis = redis
        self.keys = keys
        self.window = window
        self._script = scripts.register(redis, "proxy.providers", "outcome")

    async def record(
        self, provider: str, service: int, kind: str, delivered: float, seconds: float | None = None
    ) -> None:
        """Add one outcome (`COMPLETED`, `PARTIAL`, `CANCELED` or `STUCK`) of the route."""
        keep = 1.0 - 1.0 / max(1, self.window)
        await self._script(
            keys=[self.keys.outcomes(provider)],
            args=[
                service,
                kind,
                repr(min(1.0, max(0.0, delivered))),
                "" if seconds is None else repr(max(0.0, seconds)),
                repr(keep),
            ],
        )

    async def stuck(self, provider: str, service: int, order: int) -> bool:
        """Count an order stuck upstream against its route, once: False if it was counted before."""
        if not await self.redis.sadd(self.keys.stuck(provider), str(order)):
            return False
        await self.record(provider, service, STUCK, 0.0)
        return True

    async def finished(
        self, provider: str, service: int, order: int, kind: str, delivered: float, seconds: float | None
    ) -> None:
        """An order turned final: its outcome counts, unless it counted as stuck already."""
        if await self.redis.srem(self.keys.stuck(provider), str(order)):
            return
        await self.record(provider, service, kind, delivered, seconds)

    async def rates(self, routes: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Rates]:
        """The rates of each (provider, upstream service), in one round trip."""
        pairs = list(dict.fromkeys(routes))
        if not pairs:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for provider, service in pairs:
                pipe.hmget(self.keys.outcomes(provider), [f"{service}:{name}" for name in _FIELDS])
            replies = await pipe.execute()
        return {pair: Rates(*(float(v or 0) for v in values)) for pair, values in zip(pairs, replies, strict=True)}

    async def of_provider(self, provider: str) -> dict[int, Rates]:
        """Every route of the provider with a history, by upstream service."""
        raw = text_map(await self.redis.hgetall(self.keys.outcomes(provider)))
        by_service: dict[int, dict[str, float]] = {}
        for field, value in raw.items():
            service, _, name = field.partition(":")
            if service.isdigit() and name in _FIELDS:
                by_service.setdefault(int(service), {})[name] = float(value)
        return {
            service: Rates(*(values.get(name, 0.0) for name in _FIELDS))
            for service, values in sorted(by_service.items())
        }
