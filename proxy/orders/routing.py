"""Choosing a route for an order and failing over between routes.

A route is skipped when its provider cools down after a failure or is
blocked (it bills in another currency than the config says), when its
upstream service cannot take the quantity, or when its current cost would
leave us selling at a loss. The next route is tried only when the provider
provably did not create the order (`ProviderRefused`: it never left, or a
JSON error came back). Anything else after the request left parks the order
as `unknown`, and it is sent nowhere else.

Everything that can wait (the provider's rate budget, a free connection)
happens before the order is marked `submitted`: an order that ran out of time
waiting was never sent, and fails over as a proven refusal.

The task placing an order holds its lease for as long as it works on it.
What only this task knows (an upstream order ID, a refusal) is recorded with
a few retries when Redis falters, and logged before that, so an operator can
always settle the order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from redis.exceptions import RedisError

from proxy import logs
from proxy.catalog.catalog import RouteOption, Service
from proxy.errors import OutcomeUnknown, ProviderRefused, StateChanged
from proxy.money import ceil_to, to_minor
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.leases import Leases
from proxy.orders.records import Attempt, Order, attempts_json, new_call, stamp
from proxy.orders.states import ACCEPT, EXHAUST, LOSE, REFUSE, RESERVED, SUBMIT, SUBMITTED
from proxy.providers.health import Health
from proxy.providers.upstream import ProviderClient
from proxy.vocabulary import SUBSCRIPTIONS, Errors, known_error

log = logging.getLogger(__name__)

# Refusals that are about the client's input, not about the provider: worth
# telling the client (in our spelling) when every route refused.
CLIENT_ERRORS = (Errors.INCORRECT_LINK, Errors.ACTIVE_ORDER)
# Refusals that mean the provider cannot sell anything now.
PROVIDER_TROUBLE = (Errors.NOT_ENOUGH_FUNDS, Errors.INVALID_KEY)
NO_ROUTE = "Service temporarily unavailable, please try again later"
# Recording what only the placing task knows: tries, and the pause between them.
RECORD_TRIES = 4
RECORD_PAUSE = 0.25


@dataclass(frozen=True)
class Placement:
    order: Order
    error: str | None = None  # set when no route took the order and it was refunded


def upstream_cost(option: RouteOption, quantity: int, flat: bool) -> Decimal:
    """What this route would cost us for the order, in the deployment currency."""
    return option.cost if flat else option.cost * quantity / 1000


def provider_cost(option: RouteOption, quantity: int, flat: bool) -> Decimal:
    """The same, in the provider's own currency and at its own rate: what it should bill."""
    rate = option.upstream.rate
    return ceil_to(rate if flat else rate * quantity / 1000)


def takes_quantity(option: RouteOption, service: Service, per_run: int) -> bool:
    if service.flat or service.type == SUBSCRIPTIONS:
        return True
    return option.upstream.min <= per_run <= option.upstream.max


class Router:
    def __init__(
        self,
        book: OrderBook,
        leases: Leases,
        claims: Claims,
        providers: Mapping[str, ProviderClient],
        health: Health,
        currencies: Mapping[str, str],
        tally: Callable[[str], Awaitable[None]],
    ) -> None:
        self.book = book
        self.leases = leases
        self.claims = claims
        self.providers = providers
        self.health = health
        self.currencies = currencies
        self.tally = tally

    async def candidates(self, service: Service, order: Order, per_run: int) -> list[RouteOption]:
        names = [option.provider for option in service.routes]
        try:
            routable = await self.health.routable(names)
        except (RedisError, OSError) as exc:  # advisory: fail open, the submit will tell if Redis is away
            log.warning("order %s: provider health not read (%s); trying every route", order.id, type(exc).__name__)
            routable = set(names)
        chosen = []
        for option in service.routes:
            if option.provider not in routable or option.provider not in self.providers:
                continue
            if not takes_quantity(option, service, per_run):
                continue
            cost = upstream_cost(option, order.quantity, service.flat)
            if cost > order.charge:
                log.info(
                    "order %s: route %s skipped, cost %s above charge %s", order.id, option.provider, cost, order.charge
                )
                continue
            chosen.append(option)
        return chosen

    async def place(self, order: Order, service: Service, per_run: int) -> Placement:
        """Send a `reserved` order to its routes in turn until one takes it."""
        async with self.leases.leased(order):
            return await self._place(order, service, per_run)

    async def hand_over(self, orders: Iterable[Order], timeout: float) -> list[Order]:
        """Orders this instance stops placing (it shuts down): give up their
        leases and take them over at once, as recovery would after the leases
        lapsed. One never sent is refunded; one that may exist upstream waits
        for an operator as `unknown`. Their tasks must have been told to stop
        first: the state table refuses whatever a task that did not stop tries
        next. Within `timeout`; what is left then, any instance's recovery
        takes once the leases lapse."""
        orders = list(orders)
        settled: list[Order] = []
        try:
            async with asyncio.timeout(timeout):
                for order in orders:
                    await self.leases.release(order)
                by_client: dict[str, list[int]] = {}
                for order in orders:
                    by_client.setdefault(order.client, []).append(order.id)
                for client, ids in by_client.items():
                    settled += await self.book.abandon(client, ids)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning(
                "orders %s not all taken over at shutdown (%s); recovery takes them once their leases lapse",
                ", ".join(str(o.id) for o in orders),
                type(exc).__name__,
            )
        for order in settled:
            log.warning("order %s handed over at shutdown: now %s", order.id, order.state)
        return settled

    async def _place(self, order: Order, service: Service, per_run: int) -> Placement:
        attempts = list(order.attempts)
        last_refusal = ""
        for option in await self.candidates(service, order, per_run):
            attempts.append(Attempt(option.provider, "sent"))
            submitted = False

            async def submit(option: RouteOption = option) -> None:
                nonlocal order, submitted
                order = await self._record(
                    order,
                    SUBMIT,
                    {
                        "provider": option.provider,
                        "upstream_service": option.upstream.service,
                        "attempts": attempts_json(attempts),
                        "cost": to_minor(provider_cost(option, order.quantity, service.flat)),
                        "cost_currency": self.currencies[option.provider],
                        "cost_base": to_minor(ceil_to(upstream_cost(option, order.quantity, service.flat))),
                    },
                )
                submitted = True

            fields = {"service": str(option.upstream.service), **order.fields}
            sent = attempts_json(attempts)
            logs.bind(provider=option.provider)
            try:
                upstream_order = await self.providers[option.provider].add(fields, before_send=submit)
            except ProviderRefused as refused:
                attempts[-1] = Attempt(option.provider, "refused", refused.message or refused.reason)
                last_refusal = refused.message or ""
                if known_error(refused.message or "") in PROVIDER_TROUBLE or (
                    refused.message is None and not refused.local
                ):
                    await self._cool(option.provider, refused.reason)
                if submitted:
                    order = await self._record(order, REFUSE, {"attempts": attempts_json(attempts)})
                    if order.state != RESERVED:  # recovery took it for lost meanwhile; now settled
                        return Placement(order)
                continue
            except StateChanged:  # the submit was refused: recovery took the order over
                return Placement(await self.book.get(order.client, order.id) or order)
            except Exception as exc:
                if not submitted:  # it never left (our store failed, say): the next route may take it
                    log.warning("order %s: not sent to %s: %s", order.id, option.provider, type(exc).__name__)
                    attempts[-1] = Attempt(option.provider, "refused", f"not sent: {type(exc).__name__}")
                    order = await self._unsent(order, sent, attempts)
                    if order.state != RESERVED:
                        return Placement(order)
                    continue
                reason = exc.reason if isinstance(exc, OutcomeUnknown) else f"unexpected {type(exc).__name__}"
                if not isinstance(exc, OutcomeUnknown):
                    log.exception("order %s: unexpected failure sending to %s", order.id, option.provider)
                log.warning(
                    "order %s: outcome unknown at %s (%s); left for an operator", order.id, option.provider, reason
                )
                attempts[-1] = Attempt(option.provider, "unknown", reason)
                await self._cool(option.provider, reason)
                order = await self._record(order, LOSE, {"attempts": attempts_json(attempts)})
                return Placement(order)
            attempts[-1] = Attempt(option.provider, "placed")
            return Placement(await self._accepted(order, option.provider, upstream_order, attempts))
        order = await self._record(
            order, EXHAUST, {"attempts": attempts_json(attempts)}, memo=f"order {order.id} refused by every route"
        )
        known = known_error(last_refusal)
        message = known if known in CLIENT_ERRORS else NO_ROUTE
        return Placement(order, error=message)

    async def _accepted(self, order: Order, provider: str, upstream_order: int, attempts: list[Attempt]) -> Order:
        """A reply with an ID proves the order exists upstream; record it as ours.

        An upstream ID that another of our orders already owns is not
        believed: the order waits for an operator as `unknown`.
        """
        owner = await self._retrying(
            order,
            lambda: self.claims.claim(order, provider, upstream_order),
            f"upstream order {upstream_order} at {provider}",
        )
        if owner is not None:
            log.error(
                "order %s: %s answered with upstream order %s, which order %s already owns",
                order.id,
                provider,
                upstream_order,
                owner,
            )
            await self.tally("orders_claimed_twice")
            return await self._record(
                order,
                LOSE,
                {"attempts": attempts_json(attempts)},
                attention=f"{provider} answered with upstream order {upstream_order}, which order {owner} owns",
            )
        return await self._record(
            order,
            ACCEPT,
            {
                "upstream_order": upstream_order,
                "attempts": attempts_json(attempts),
                "status_at": stamp(self.book.clock()),
            },
        )

    async def _record(
        self, order: Order, event: str, fields: dict[str, object], *, attention: str = "", memo: str = ""
    ) -> Order:
        """Apply an event only this task can know of, retrying while Redis falters.

        Every try is the same call: one whose reply was lost is not applied twice.
        """
        call = new_call()
        return await self._retrying(
            order,
            lambda: self.book.apply(order, event, fields, call=call, attention=attention, memo=memo),
            f"{event} {fields}",
        )

    async def _unsent(self, order: Order, sent: str, attempts: list[Attempt]) -> Order:
        """Bring back to `reserved` an order whose submit may have applied
        although nothing left (the store failed around it)."""

        async def check() -> Order:
            current = await self.book.get(order.client, order.id)
            if current is None:
                raise StateChanged(None)
            if current.state == SUBMITTED and attempts_json(current.attempts) == sent:
                return await self.book.apply(current, REFUSE, {"attempts": attempts_json(attempts)})
            return current

        return await self._retrying(order, check)

    async def _retrying(self, order, action, what: str = ""):  # type: ignore[no-untyped-def]
        for attempt in range(RECORD_TRIES):
            try:
                return await action()
            except (RedisError, OSError) as exc:
                if attempt == RECORD_TRIES - 1:
                    log.error(
                        "order %s: could not record what happened upstream (%s): %s",
                        order.id,
                        type(exc).__name__,
                        what or "a claim",
                    )
                    raise
                await asyncio.sleep(RECORD_PAUSE * 2**attempt)
        raise AssertionError("unreachable")

    async def _cool(self, provider: str, reason: str) -> None:
        try:
            await self.health.fail(provider, reason)
        except (RedisError, OSError) as exc:  # not money: best effort
            log.warning("provider %s not cooled down: %s", provider, type(exc).__name__)
