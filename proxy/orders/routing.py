"""Choosing a route for an order and failing over between routes.

A route is skipped when its provider is cooling down after a failure, when
its upstream service cannot take the quantity, or when its current cost
would leave us selling at a loss. The next route is tried only when the
provider provably did not create the order (`ProviderRefused`). Any other
failure after the request may have left (`OutcomeUnknown`, or anything
unexpected) parks the order as `unknown` and sends it nowhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import redis.asyncio as aioredis

from proxy.catalog import RouteOption, Service
from proxy.orders.book import (
    FAILED,
    PLACED,
    RESERVED,
    SUBMITTED,
    UNKNOWN,
    Attempt,
    Order,
    OrderBook,
    StateChanged,
)
from proxy.providers.upstream import (
    OutcomeUnknown,
    ProviderClient,
    ProviderRefused,
    UpstreamError,
)
from proxy.store import Keys
from proxy.vocabulary import SUBSCRIPTIONS, Errors

log = logging.getLogger("proxy.routing")

# Refusals that are about the client's input, not about the provider: worth
# telling the client when every route refused.
CLIENT_ERRORS = (Errors.INCORRECT_LINK, "Bad link", Errors.ACTIVE_ORDER)
# Refusals that mean the provider cannot sell anything now.
PROVIDER_TROUBLE = (Errors.NOT_ENOUGH_FUNDS, Errors.INVALID_KEY)
NO_ROUTE = "Service temporarily unavailable, please try again later"


ORDERS = "orders"  # a provider that failed an `add` is skipped for new orders
READS = "reads"  # one that failed a status read is not asked again for a while


class Health:
    """Provider cool-downs, in Redis so every instance sees them.

    Kept apart for orders and for reads: a provider whose status endpoint
    failed may still take orders, and the other way round.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, cooldown: float) -> None:
        self.redis = redis
        self.keys = keys
        self.cooldown = cooldown

    async def cooling(self, provider: str, scope: str = ORDERS) -> bool:
        return bool(await self.redis.exists(self.keys.cooldown(f"{provider}:{scope}")))

    async def read_failed(self, provider: str, error: UpstreamError) -> None:
        """Cool reads down after a failed read, unless it was no outage: a plain
        JSON refusal, or a call we never sent (our pool or budget was spent)."""
        if not (isinstance(error, ProviderRefused) and (error.message or error.local)):
            await self.fail(provider, error.reason, READS)

    async def fail(self, provider: str, reason: str, scope: str = ORDERS) -> None:
        if self.cooldown > 0:
            await self.redis.set(
                self.keys.cooldown(f"{provider}:{scope}"), reason[:200], px=int(self.cooldown * 1000)
            )


@dataclass(frozen=True)
class Placement:
    order: Order
    error: str | None = None  # set when no route took the order (refunded)


def upstream_cost(option: RouteOption, quantity: int, flat: bool) -> Decimal:
    """What this route would cost us for the order, in the deployment currency."""
    return option.cost if flat else option.cost * quantity / 1000


def takes_quantity(option: RouteOption, service: Service, per_run: int) -> bool:
    if service.flat or service.type == SUBSCRIPTIONS:
        return True
    return option.upstream.min <= per_run <= option.upstream.max


class Router:
    def __init__(self, book: OrderBook, providers: Mapping[str, ProviderClient], health: Health) -> None:
        self.book = book
        self.providers = providers
        self.health = health

    async def candidates(self, service: Service, order: Order, per_run: int, runs: int) -> list[RouteOption]:
        chosen = []
        for option in service.routes:
            if await self.health.cooling(option.provider):
                continue
            if not takes_quantity(option, service, per_run):
                continue
            units = per_run * runs if not service.flat else runs
            cost = upstream_cost(option, units, service.flat)
            if cost > order.charge:
                log.info("order %s: route %s skipped, cost %s above charge %s",
                         order.id, option.provider, cost, order.charge)
                continue
            chosen.append(option)
        return chosen

    async def place(self, order: Order, service: Service, per_run: int, runs: int) -> Placement:
        """Send a `reserved` order to its routes in turn until one takes it."""
        attempts: list[Attempt] = []
        last_refusal = ""
        for option in await self.candidates(service, order, per_run, runs):
            attempts.append(Attempt(option.provider, "sent"))
            order = await self.book.transition(
                order,
                [RESERVED, SUBMITTED],
                {
                    "state": SUBMITTED,
                    "provider": option.provider,
                    "upstream_service": option.upstream.service,
                    "attempts": _attempts_json(attempts),
                    "submitted_at": repr(self.book.clock()),
                },
            )
            fields = {"service": str(option.upstream.service), **order.fields}
            try:
                upstream_order = await self.providers[option.provider].add(fields)
            except ProviderRefused as refused:
                attempts[-1] = Attempt(option.provider, "refused", refused.message or refused.reason)
                last_refusal = refused.message or ""
                if refused.message in PROVIDER_TROUBLE or (refused.message is None and not refused.local):
                    await self.health.fail(option.provider, refused.reason)
                continue
            except Exception as exc:  # the request may have left: never send it again
                reason = exc.reason if isinstance(exc, OutcomeUnknown) else f"unexpected {type(exc).__name__}"
                if not isinstance(exc, OutcomeUnknown):
                    log.exception("order %s: unexpected failure sending to %s", order.id, option.provider)
                attempts[-1] = Attempt(option.provider, "unknown", reason)
                await self.health.fail(option.provider, reason)
                try:
                    order = await self.book.transition(
                        order, [SUBMITTED], {"state": UNKNOWN, "attempts": _attempts_json(attempts)}
                    )
                except StateChanged:  # recovery got there first: it is unknown either way
                    return Placement(await self.book.get(order.client, order.id) or order)
                await self.book.count_metric("orders_unknown")
                log.warning("order %s: outcome unknown at %s (%s); left for an operator",
                            order.id, option.provider, reason)
                return Placement(order)
            attempts[-1] = Attempt(option.provider, "placed")
            log.info("order %s placed at %s as %s", order.id, option.provider, upstream_order)
            try:
                order = await self._placed(order, upstream_order, attempts)
            except StateChanged as exc:  # an operator settled it meanwhile: say so loudly
                log.error(
                    "order %s was placed at %s as upstream order %s, but is already %s: check it",
                    order.id, option.provider, upstream_order, exc.state,
                )
                return Placement(order)
            await self.book.count_metric("orders_placed")
            return Placement(order)
        order = await self.book.transition(
            order,
            [RESERVED, SUBMITTED],
            {"state": FAILED, "attempts": _attempts_json(attempts)},
            refund_to=order.charge,
            memo=f"order {order.id} refused by every route",
        )
        await self.book.count_metric("orders_failed")
        message = last_refusal if last_refusal in CLIENT_ERRORS else NO_ROUTE
        return Placement(order, error=message)

    async def _placed(self, order: Order, upstream_order: int, attempts: list[Attempt]) -> Order:
        """A reply with an ID proves the order exists: even one recovery took
        for lost (`unknown`) becomes `placed`."""
        return await self.book.transition(
            order,
            [SUBMITTED, UNKNOWN],
            {
                "state": PLACED,
                "upstream_order": upstream_order,
                "attempts": _attempts_json(attempts),
                "status_at": repr(self.book.clock()),
            },
        )


def _attempts_json(attempts: list[Attempt]) -> str:
    return json.dumps([a.__dict__ for a in attempts])
