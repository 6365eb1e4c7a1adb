"""Choosing a route for an order and failing over between routes.

A route is skipped when its provider is blocked (it bills in another
currency than the config says) or low on funds, when what we know of its
balance does not cover the order, when its upstream service cannot take the
quantity, or when its current cost would leave us selling at a loss. A
provider ejected for failing (`proxy.providers.health`) is skipped too, but
never more than `max_ejected_percent` of a service's routes at once: the
rest are still tried. The order of the routes left is the service's
strategy: as listed, cheapest first, or `best`: the highest expected value
for us (its delivered share, `proxy.providers.outcomes`, times our margin),
with a small exploring share sent elsewhere so a recovered route is seen.

The next route is tried only when the provider provably did not create the
order (`ProviderRefused`: it never left, or a JSON error came back), and
what its words mean (`proxy.providers.refusals`) says whether to: try the
next route, refuse the client (a retry elsewhere could never succeed), or
hold the order for an operator. Anything else after the request left parks
the order as `unknown`, and it is sent nowhere else.

Everything that can wait (the provider's rate budget, a free connection)
happens before the order is marked `submitted`: an order that ran out of time
waiting was never sent, and fails over as a proven refusal.

The task placing an order holds its lease for as long as it works on it
(renewed beside it, never holding it up: `proxy.orders.leases`); an instance
that shuts down hands the orders it could not finish over (`hand_over`).
What only this task knows (an upstream order ID, a refusal) is recorded with
a few retries when Redis falters, and logged before that, so an operator can
always settle the order.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from redis.exceptions import RedisError

from proxy import logs
from proxy.catalog.catalog import RouteOption, Service
from proxy.errors import OutcomeUnknown, ProviderRefused, StateChanged
from proxy.logs import Emit, no_events
from proxy.money import ceil_to, to_minor
from proxy.orders.accepting import Acceptance
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.leases import Leases
from proxy.orders.records import Attempt, Order, attempts_json, new_call, stamp
from proxy.orders.states import ACCEPT, EXHAUST, LOSE, REFUSE, RESERVED, SUBMIT, SUBMITTED
from proxy.providers.health import Health, RouteState
from proxy.providers.outcomes import Outcomes
from proxy.providers.refusals import Refusals
from proxy.providers.upstream import ProviderClient
from proxy.vocabulary import SUBSCRIPTIONS, Errors, known_error

log = logging.getLogger(__name__)

# Refusals worth telling the client (in our spelling) when every route said so.
CLIENT_ERRORS = (Errors.INCORRECT_LINK, Errors.ACTIVE_ORDER)
NO_ROUTE = "Service temporarily unavailable, please try again later"
# Recording what only the placing task knows: tries, and the pause between them.
RECORD_TRIES = 4
RECORD_PAUSE = 0.25

_T = TypeVar("_T")


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


@dataclass(frozen=True)
class RoutingRules:
    """The config's routing policy, as the router applies it (replaced on a reload)."""

    max_ejected_percent: int = 50
    explore_percent: float = 5.0
    refusals: Refusals = Refusals({})


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
        *,
        outcomes: Outcomes | None = None,
        rules: RoutingRules = RoutingRules(),
        rng: random.Random | None = None,
        emit: Emit = no_events,
    ) -> None:
        self.book = book
        self.leases = leases
        self.claims = claims
        self.acceptance = Acceptance(book, health)
        self.providers = providers
        self.health = health
        self.currencies = currencies
        self.tally = tally
        self.outcomes = outcomes
        self.rules = rules
        self.rng = rng or random.Random()
        self.emit = emit

    def route_keys(self, service: Service) -> list[tuple[str, str]]:
        """Where what routing needs of the service's providers lives, for the
        reserve script to read with the order (`Reservation.routes`)."""
        return self.health.route_keys(option.provider for option in service.routes)

    async def candidates(
        self, service: Service, order: Order, per_run: int, read: Sequence[str] | None = None
    ) -> list[RouteOption]:
        """The routes to try, in the order to try them; `read`: the providers'
        states as the reserve script read them (`route_keys`), else they are read now."""
        names = [option.provider for option in service.routes]
        try:
            if read is not None:
                states = self.health.route_states_from(names, read)
            else:
                states = await self.health.route_states(names)
        except (RedisError, OSError) as exc:  # advisory: fail open, the submit will tell if Redis is away
            log.warning("order %s: provider health not read (%s); trying every route", order.id, type(exc).__name__)
            states = {}
        usable: list[tuple[RouteOption, RouteState]] = []
        for option in service.routes:
            state = states.get(option.provider, RouteState())
            if option.provider not in self.providers or state.blocked or state.low:
                continue
            if not takes_quantity(option, service, per_run):
                continue
            cost = upstream_cost(option, order.quantity, service.flat)
            if cost > order.charge:
                log.info(
                    "order %s: route %s skipped, cost %s above charge %s", order.id, option.provider, cost, order.charge
                )
                continue
            owed = provider_cost(option, order.quantity, service.flat)
            if state.funds is not None and state.funds < owed:
                log.info(
                    "order %s: route %s skipped, its balance (about %s) does not cover %s",
                    order.id,
                    option.provider,
                    state.funds,
                    owed,
                )
                continue
            usable.append((option, state))
        left_out = self._ejected_left_out(service, usable)
        chosen = [option for option, _ in usable if option.provider not in left_out]
        if service.strategy == "best" and len(chosen) > 1:
            chosen = await self._by_value(chosen, order, service)
        return chosen

    def _ejected_left_out(self, service: Service, usable: list[tuple[RouteOption, RouteState]]) -> set[str]:
        """The ejected providers to leave out: at most `max_ejected_percent` of the
        service's routes (at least one), those ejected longest first; the others
        are tried all the same."""
        ejected = sorted(
            {option.provider: state.ejected_until for option, state in usable if state.ejected_until}.items(),
            key=lambda item: -item[1],
        )
        percent = self.rules.max_ejected_percent
        allowed = max(1, math.floor(len(service.routes) * percent / 100)) if percent else 0
        return {name for name, _ in ejected[:allowed]}

    async def _by_value(self, options: list[RouteOption], order: Order, service: Service) -> list[RouteOption]:
        """Routes by expected value for us, best first: delivered share x margin;
        with `explore_percent` chance, one of the others goes first."""
        try:
            rates = (
                await self.outcomes.rates((o.provider, o.upstream.service) for o in options) if self.outcomes else {}
            )
        except (RedisError, OSError) as exc:  # advisory: keep the listed order
            log.warning("order %s: route outcomes not read (%s)", order.id, type(exc).__name__)
            return options

        def value(option: RouteOption) -> float:
            found = rates.get((option.provider, option.upstream.service))
            completion = found.completion if found is not None else 1.0
            margin = order.charge - upstream_cost(option, order.quantity, service.flat)
            return completion * float(margin)

        ranked = sorted(options, key=value, reverse=True)
        if self.rng.random() * 100 < self.rules.explore_percent:
            explored = ranked.pop(self.rng.randrange(1, len(ranked)))
            ranked.insert(0, explored)
            log.info("order %s: exploring route %s", order.id, explored.provider)
        return ranked

    async def place(
        self,
        order: Order,
        service: Service,
        per_run: int,
        routes: Sequence[str] | None = None,
        taken: asyncio.Future[None] | None = None,
    ) -> Placement:
        """Send a `reserved` order to its routes in turn until one takes it;
        `routes`: its providers' states as reserving it read them (`route_keys`).
        `taken` is done as soon as a provider answers with its order ID, before
        that is recorded: the client's answer (this order's ID) is settled then,
        and written before this task goes on to record the provider's."""
        async with self.leases.leased(order):
            return await self._place(order, service, per_run, routes, taken)

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

    async def _place(
        self,
        order: Order,
        service: Service,
        per_run: int,
        routes: Sequence[str] | None,
        taken: asyncio.Future[None] | None = None,
    ) -> Placement:
        attempts = list(order.attempts)
        last_refusal = ""
        refusal: str | None = None  # what to tell the client, when a refusal means no route can do it
        for option in await self.candidates(service, order, per_run, routes):
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
                meaning = (
                    None if refused.message is None else self.rules.refusals.meaning(option.provider, last_refusal)
                )
                if meaning.health if meaning is not None else not refused.local:
                    await self._fail(option.provider, refused.reason)
                if meaning is not None and meaning.funds:
                    await self._short(option.provider, provider_cost(option, order.quantity, service.flat))
                if meaning is not None and meaning.action == "hold" and submitted:
                    log.warning("order %s: held for an operator: %s", order.id, refused.reason)
                    reason = f"held: {option.provider} refused it ({refused.reason}); resolve it"
                    order = await self._record(order, LOSE, {"attempts": attempts_json(attempts)}, attention=reason)
                    await self.emit("order.attention", str(order.id), f"order {order.id}: {reason}", reason=reason)
                    return Placement(order)
                if submitted:
                    order = await self._record(order, REFUSE, {"attempts": attempts_json(attempts)})
                    if order.state != RESERVED:  # recovery took it for lost meanwhile; now settled
                        return Placement(order)
                if meaning is not None and meaning.action == "refuse":
                    refusal = meaning.client_message(last_refusal)
                    log.info("order %s: refused for the client (%s): no route can do it", order.id, refusal)
                    break
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
                await self._fail(option.provider, reason)
                order = await self._record(order, LOSE, {"attempts": attempts_json(attempts)})
                return Placement(order)
            if taken is not None and not taken.done():
                taken.set_result(None)
                # The add waiting on `taken` was woken first: it writes the
                # client's answer before this task prepares the record of it.
                await asyncio.sleep(0)
            attempts[-1] = Attempt(option.provider, "placed")
            cost = provider_cost(option, order.quantity, service.flat)
            placed, counted = await self._accepted(order, option.provider, upstream_order, attempts, cost)
            if not counted:
                await self._succeeded(option.provider, cost)
            return Placement(placed)
        order = await self._record(
            order, EXHAUST, {"attempts": attempts_json(attempts)}, memo=f"order {order.id} refused by every route"
        )
        known = known_error(last_refusal)
        message = refusal or (known if known in CLIENT_ERRORS else NO_ROUTE)
        return Placement(order, error=message)

    async def _accepted(
        self, order: Order, provider: str, upstream_order: int, attempts: list[Attempt], cost: Decimal
    ) -> tuple[Order, bool]:
        """A reply with an ID proves the order exists upstream; record it as ours,
        and whether the provider's success and spend were counted with it.

        On one server the claim, the transition, the due index and the
        provider's health and funds are one step (`Acceptance`). An upstream
        ID that another of our orders already owns is not believed: the
        order waits for an operator as `unknown`.
        """
        fields: dict[str, object] = {
            "upstream_order": upstream_order,
            "attempts": attempts_json(attempts),
            "status_at": stamp(self.book.clock()),
        }
        call = new_call()
        accepted = await self._retrying(
            order,
            lambda: self.acceptance.accept(order, provider, upstream_order, fields, call, cost),
            f"upstream order {upstream_order} at {provider}",
        )
        if accepted is not None:
            return accepted, True
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
            reason = f"{provider} answered with upstream order {upstream_order}, which order {owner} owns"
            lost = await self._record(order, LOSE, {"attempts": attempts_json(attempts)}, attention=reason)
            await self.emit("order.attention", str(order.id), f"order {order.id}: {reason}", reason=reason)
            return lost, False
        return await self._record(order, ACCEPT, fields), False

    async def _record(
        self, order: Order, event: str, fields: dict[str, object], *, memo: str = "", attention: str = ""
    ) -> Order:
        """Apply an event only this task can know of, retrying while Redis falters.

        Every try is the same call: one whose reply was lost is not applied twice.
        """
        call = new_call()
        return await self._retrying(
            order,
            lambda: self.book.apply(order, event, fields, call=call, memo=memo, attention=attention),
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

    async def _retrying(self, order: Order, action: Callable[[], Awaitable[_T]], what: str = "") -> _T:
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

    # Health and funds: advice for the next orders, never in the way of this one.

    async def _fail(self, provider: str, reason: str) -> None:
        try:
            await self.health.fail(provider, reason)
        except Exception as exc:
            log.warning("provider %s: failure not counted: %s", provider, type(exc).__name__)

    async def _short(self, provider: str, cost: Decimal) -> None:
        try:
            await self.health.funds.short(provider, cost)
        except Exception as exc:
            log.warning("provider %s: its short funds not noted: %s", provider, type(exc).__name__)

    async def _succeeded(self, provider: str, cost: Decimal) -> None:
        try:
            await self.health.succeed(provider)
            await self.health.funds.spend(provider, cost)
        except Exception as exc:
            log.warning("provider %s: success not counted: %s", provider, type(exc).__name__)
