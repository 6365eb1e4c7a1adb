"""Keeping order statuses fresh: batched, shared, and refunding exactly once.

Records older than the status TTL are refreshed from upstream with one bulk
call per provider (100 IDs a call, providers in parallel). A request that
needs an order whose refresh is already under way waits for that refresh
instead of asking again, so concurrent readers share one upstream call.
What a status means for the money is decided by `proxy.orders.settlement`
and applied by the order book in the same step as the status itself, so a
refund happens once however often, and by however many instances, the
status is read. An answer read before another instance applied a newer one
is dropped (the record's status version), whatever the instances' clocks say.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal

from proxy.errors import OutcomeUnknown, ProviderRefused, StateChanged, UpstreamError
from proxy.money import format_amount
from proxy.orders.book import OrderBook
from proxy.orders.due import DueIndex
from proxy.orders.records import Order, OrderSummary
from proxy.orders.settlement import must_stop, settle, unlimited
from proxy.orders.states import PLACED, STATUS, STOP
from proxy.providers.health import READS, Health
from proxy.providers.replies import MISSING_FROM_REPLY, ItemError, UpstreamStatus
from proxy.providers.upstream import ProviderClient
from proxy.vocabulary import ACTIVE, BULK_LIMIT, IN_PROGRESS, PAUSED, PROCESSING

log = logging.getLogger(__name__)

_Result = UpstreamStatus | ItemError | None
# Status reads in a row without news of an order (the provider says it does
# not know it, or leaves it out) before an operator is asked to look.
MISSES_FOR_ATTENTION = 5
# A fetch this recent counts as fresh, whatever an older read of the record said.
JUST_FETCHED_SECONDS = 1.0
# An unlimited subscription asked this many times to stop, still going, goes to an operator.
STOP_TRIES = 3
# Statuses of an unlimited subscription under way, whose hold is watched.
WATCHED_STATUSES = frozenset({ACTIVE, PAUSED, IN_PROGRESS, PROCESSING})


class StatusRefresher:
    def __init__(
        self,
        book: OrderBook,
        due: DueIndex,
        providers: Mapping[str, ProviderClient],
        health: Health,
        ttl: float,
        clock: Callable[[], float] = time.time,
        *,
        currencies: Mapping[str, str],
        tally: Callable[[str], Awaitable[None]],
        tolerance_percent: Decimal = Decimal(1),
    ) -> None:
        self.book = book
        self.due = due
        self.tally = tally
        self.providers = providers
        self.health = health
        self.ttl = ttl
        self.clock = clock
        self.currencies = currencies
        self.tolerance_percent = tolerance_percent
        self._inflight: dict[tuple[str, int], asyncio.Future[_Result]] = {}
        # When a fetch of an order finished: a reader that read the record just
        # before it landed does not start another.
        self._fetched: dict[tuple[str, int], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def stale(self, order: OrderSummary, ttl: float | None = None) -> bool:
        """Due for a refresh (older than `ttl`, by default the status TTL). A
        status stamped in the future (another instance's clock runs ahead)
        counts as stale too: skewed clocks cost a call, not a status."""
        if order.state != PLACED or order.final:
            return False
        ttl = self.ttl if ttl is None else ttl
        age = self.clock() - order.status_at
        return age >= ttl or age < -self.ttl

    async def refresh(self, orders: Iterable[Order]) -> dict[int, Order]:
        """The given orders, the stale ones refreshed from upstream first."""
        orders = list(orders)
        by_provider: dict[str, list[Order]] = defaultdict(list)
        for order in orders:
            if self.stale(order) and order.provider in self.providers:
                by_provider[order.provider].append(order)
        waits: list[asyncio.Future[_Result]] = []
        reread = False  # whether a record may have changed since it was read
        for provider, group in by_provider.items():
            if await self.health.cooling(provider, READS):
                continue
            # After the await: a fetch may have finished meanwhile (its answer is in the record).
            just = self.clock() - JUST_FETCHED_SECONDS
            unread = [o for o in group if self._fetched.get((provider, o.upstream_order), 0.0) < just]
            reread = reread or len(unread) < len(group)
            group = unread
            mine = [o for o in group if (provider, o.upstream_order) not in self._inflight]
            if mine:
                # Claimed before any await, so concurrent readers join this fetch.
                loop = asyncio.get_running_loop()
                for order in mine:
                    self._inflight[(provider, order.upstream_order)] = loop.create_future()
                waits += [self._inflight[(provider, o.upstream_order)] for o in group]
                if len(mine) < BULK_LIMIT:  # one call reads 100: carry other stale orders along
                    try:
                        found = await self._also_due(provider, mine, BULK_LIMIT - len(mine))
                    except BaseException:  # cancelled: wake whoever joined, then go
                        self._wake([(provider, o.upstream_order) for o in mine])
                        raise
                    extras = [o for o in found if (provider, o.upstream_order) not in self._inflight]
                    for order in extras:
                        self._inflight[(provider, order.upstream_order)] = loop.create_future()
                    mine += extras
                keys = [(provider, order.upstream_order) for order in mine]
                task = asyncio.create_task(self._fetch(provider, mine))
                self._tasks.add(task)
                task.add_done_callback(lambda done, keys=keys: self._release(done, keys))
            else:
                waits += [self._inflight[(provider, o.upstream_order)] for o in group]
        if not waits and not reread:
            return {o.id: o for o in orders}
        # Shielded: a caller that goes away does not cancel a shared refresh.
        await asyncio.gather(*(asyncio.shield(w) for w in waits))
        by_client: dict[str, list[int]] = defaultdict(list)
        for order in orders:
            by_client[order.client].append(order.id)
        fresh: dict[int, Order] = {}
        for client, ids in by_client.items():
            fresh.update(await self.book.get_many(client, ids))
        return fresh

    async def _claim_due(self, provider: str, age: float, limit: int) -> list[Order]:
        """Up to `limit` open orders of `provider` whose status is older than
        `age`, claimed so that no other instance reads them in this round."""
        now = self.clock()
        claimed = await self.book.load(await self.due.claim(provider, now - age, now, limit))
        return [o for o in claimed if o.provider == provider and self.stale(o, age)]

    async def _also_due(self, provider: str, taken: list[Order], room: int) -> list[Order]:
        """Other open orders of `provider` due, or half way there: read
        together now, they stay in step after."""
        try:
            candidates = await self._claim_due(provider, self.ttl / 2, room)
        except Exception as exc:  # an optimisation: the orders asked for are read all the same
            log.warning("no other due orders of %s carried along: %s", provider, type(exc).__name__)
            return []
        have = {o.id for o in taken}
        return [o for o in candidates if o.id not in have and (provider, o.upstream_order) not in self._inflight]

    async def poll(self, provider: str) -> int:
        """Read every due open order of `provider`, 100 a call; how many were read."""
        read = 0
        while True:
            orders = await self._claim_due(provider, self.ttl, BULK_LIMIT)
            if not orders:
                return read
            await self.refresh(orders)
            read += len(orders)

    def _release(self, task: asyncio.Task[None], keys: list[tuple[str, int]]) -> None:
        """Wake every waiter of a finished (or cancelled) fetch."""
        self._tasks.discard(task)
        self._wake(keys)

    def _wake(self, keys: list[tuple[str, int]]) -> None:
        now = self.clock()
        if len(self._fetched) > 50_000:
            self._fetched = {k: at for k, at in self._fetched.items() if now - at < JUST_FETCHED_SECONDS}
        for key in keys:
            self._fetched[key] = now
            future = self._inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def _fetch(self, provider: str, orders: list[Order]) -> None:
        asked_at = self.clock()
        try:
            results: Mapping[int, UpstreamStatus | ItemError] = await self.providers[provider].statuses(
                sorted({o.upstream_order for o in orders})
            )
        except UpstreamError as exc:
            log.warning("statuses from %s not refreshed: %s", provider, exc.reason)
            try:
                await self.health.read_failed(provider, exc)
            except Exception as store:  # Redis away too: the cool-down is advice, not money
                log.warning("provider %s not cooled down: %s", provider, type(store).__name__)
            return
        outcomes = await asyncio.gather(
            *(self.apply(order, results.get(order.upstream_order), asked_at) for order in orders),
            return_exceptions=True,
        )
        for order, outcome in zip(orders, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("order %s: status not applied", order.id, exc_info=outcome)

    async def apply(self, order: Order, result: _Result, asked_at: float | None = None) -> Order:
        """Record what upstream said of `order` (as read before asking),
        moving the money it calls for. `asked_at` stamps the status."""
        if result is None:  # the provider did not answer: keep the old status
            return order
        missed = isinstance(result, ItemError)
        if missed:  # no news of this order: keep the status, ask again later
            result = UpstreamStatus(None, None, None, None, None, None)
        settlement = settle(
            order,
            result,
            provider_currency=self.currencies.get(order.provider, order.cost_currency),
            tolerance_percent=self.tolerance_percent,
            now=self.clock() if asked_at is None else asked_at,
        )
        fields, attention = settlement.fields, settlement.attention
        if missed:
            fields["misses"] = order.misses + 1
            if order.misses + 1 >= MISSES_FOR_ATTENTION:
                attention = f"{order.misses + 1} status reads in a row had nothing on this order upstream"
        elif order.misses:
            fields["misses"] = 0
        try:
            updated = await self.book.apply(
                order,
                STATUS,
                fields,
                refund_to=settlement.refund_to,
                attention=attention,
                version=order.version,
                memo=f"order {order.id} {settlement.fields.get('status', 'status')}",
            )
        except StateChanged:
            return order
        if attention and updated.attention and not order.attention:
            log.warning("order %s needs an operator: %s", order.id, updated.attention)
            await self.tally("orders_attention")
        if unlimited(updated) and not updated.final:
            updated = await self._watch_hold(updated)
        return updated

    async def _watch_hold(self, order: Order) -> Order:
        """Stop an unlimited subscription upstream once it has used its hold
        (`settlement.must_stop`): ask the provider to cancel it, at each read
        until it ends; tell an operator if the provider will not, or if what it
        charged cannot be told."""
        currency = self.currencies.get(order.provider, order.cost_currency)
        stop = must_stop(order, currency)
        if stop is False or (stop is None and order.status not in WATCHED_STATUSES):
            return order
        if stop is None:
            note = "an unlimited subscription whose provider reports no charge we can compare: stop it when it should"
            return await self._stopped(order, {}, note)
        upstream = self.providers.get(order.provider)
        reply: bool | ItemError = ItemError("provider no longer configured")
        if upstream is not None:
            try:
                replies = await upstream.cancel([order.upstream_order])
                reply = replies.get(order.upstream_order, ItemError(MISSING_FROM_REPLY))
            except OutcomeUnknown as exc:  # it may have stopped: the next read tells
                log.warning("order %s: asked to stop, no clear answer: %s", order.id, exc.reason)
                reply = True
            except ProviderRefused as exc:
                reply = ItemError(exc.message or exc.reason)
            except UpstreamError as exc:
                reply = ItemError(exc.reason)
        stops = order.stops + 1
        note = ""
        if reply is not True:
            message = reply.message if isinstance(reply, ItemError) else "it said no"
            note = (
                f"an unlimited subscription used its hold of {format_amount(order.cost or Decimal(0))} "
                f"{order.cost_currency}; the provider did not stop it ({message[:200]}): stop it there"
            )
        elif stops >= STOP_TRIES:
            note = f"an unlimited subscription used its hold; asked {STOP_TRIES} times, the provider still has not stopped it"
        log.warning("order %s: unlimited subscription used its hold; asked the provider to stop it", order.id)
        return await self._stopped(order, {"stops": stops}, note)

    async def _stopped(self, order: Order, fields: dict[str, object], note: str) -> Order:
        try:
            after = await self.book.apply(order, STOP, fields, attention=note, memo=f"order {order.id} stop")
        except StateChanged:
            return order
        if note and after.attention and not order.attention:
            await self.tally("orders_attention")
        return after

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
