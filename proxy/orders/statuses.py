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

Every order reaches an end: a read no rule can settle keeps the status, and
after `unsettled_reads` of them in a row the order goes to an operator and is
read at the slow rate; a final order is re-read at the slow rate for
`recheck_final` seconds, and a provider that changed its final answer is news
for an operator (no money moves); an unlimited subscription that used its
hold is asked to stop upstream. Each change this refresher applied itself is
told to the `on_status` hook (`proxy.orders.observe`) with the order before
and after: an answer dropped as stale is not (the change that made it stale
was told where it was applied), so an order's outcome counts once, when it
turned final, however often it is re-read after.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from decimal import Decimal

from proxy.errors import OutcomeUnknown, ProviderRefused, StateChanged, UpstreamError
from proxy.money import format_amount
from proxy.orders.book import OrderBook
from proxy.orders.due import DueIndex
from proxy.orders.records import Order, OrderSummary, new_call
from proxy.orders.settlement import must_stop, settle, unlimited
from proxy.orders.states import DETAIL, PLACED, RECHECK, STATUS, STOP
from proxy.providers.health import READS, Health
from proxy.providers.replies import MISSING_FROM_REPLY, ItemError, UpstreamStatus
from proxy.providers.upstream import ProviderClient
from proxy.vocabulary import ACTIVE, BULK_LIMIT, FINAL_STATUSES, IN_PROGRESS, PAUSED, PROCESSING

log = logging.getLogger(__name__)

_Result = UpstreamStatus | ItemError | None
# Defaults of the config's `settlement` section: status reads in a row that
# no rule can settle before an operator is asked to look; seconds between
# slow reads; how long a final order is re-checked.
UNSETTLED_READS = 5
SLOW_READ_SECONDS = 3600.0
RECHECK_FINAL_SECONDS = 48 * 3600.0
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
        unsettled_reads: int = UNSETTLED_READS,
        slow_read: float = SLOW_READ_SECONDS,
        recheck_final: float = RECHECK_FINAL_SECONDS,
        on_status: Callable[[Order, Order], Awaitable[None]] | None = None,
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
        self.unsettled_reads = unsettled_reads
        self.slow_read = slow_read
        self.recheck_final = recheck_final
        # Told of every status applied, before and after (proxy.orders.observe): never raises.
        self.on_status = on_status
        self._inflight: dict[tuple[str, int], asyncio.Future[_Result]] = {}
        # When a fetch of an order finished: a reader that read the record just
        # before it landed does not start another.
        self._fetched: dict[tuple[str, int], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def slow_delay(self) -> float:
        """How much later than ordinary ones reads at the slow rate come."""
        return max(0.0, self.slow_read - self.ttl)

    def stale(self, order: OrderSummary, ttl: float | None = None) -> bool:
        """Due for a refresh (older than `ttl`, by default the status TTL; an
        order no rule could settle lately, at the slow rate). A status stamped
        in the future (another instance's clock runs ahead) counts as stale
        too: skewed clocks cost a call, not a status."""
        if order.state != PLACED or order.final:
            return False
        ttl = self.ttl if ttl is None else ttl
        if order.misses >= self.unsettled_reads:
            ttl += self.slow_delay
        age = self.clock() - order.status_at
        return age >= ttl or age < -self.ttl

    def recheck_due(self, order: Order, ttl: float | None = None) -> bool:
        """A final order to read again (at the slow rate, within its re-check
        window from the read that made it final): has the provider changed its answer?"""
        if order.state != PLACED or not order.final or not self.in_recheck(order):
            return False
        ttl = self.ttl if ttl is None else ttl
        return self.clock() - max(order.status_at, order.checked_at) >= ttl + self.slow_delay

    def in_recheck(self, order: Order) -> bool:
        return self.clock() - order.status_at < self.recheck_final

    def due_now(self, order: Order, ttl: float | None = None) -> bool:
        return self.stale(order, ttl) or self.recheck_due(order, ttl)

    def next_read(self, order: Order) -> float | None:
        """Where the order belongs in its provider's due index (a score is the
        time of its last read, as if read at the ordinary rate); None: out."""
        if order.state != PLACED:
            return None
        if order.final:
            return max(order.status_at, order.checked_at) + self.slow_delay if self.in_recheck(order) else None
        return order.status_at + (self.slow_delay if order.misses >= self.unsettled_reads else 0.0)

    async def refresh(self, orders: Iterable[Order]) -> dict[int, Order]:
        """The given orders, the stale ones refreshed from upstream first."""
        orders = list(orders)
        by_provider: dict[str, list[Order]] = defaultdict(list)
        for order in orders:
            if self.due_now(order) and order.provider in self.providers:
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
                task.add_done_callback(functools.partial(self._release, keys=keys))
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
        """Up to `limit` orders of `provider` whose status is older than `age`
        (or whose slow read or re-check is that near), claimed so that no
        other instance reads them in this round. Claimed ones not due after
        all go back where they belong, or out."""
        now = self.clock()
        pairs = await self.due.claim(provider, now - age, now, limit)
        claimed = await self.book.load(pairs)
        due = [o for o in claimed if o.provider == provider and self.due_now(o, age)]
        taken = {(o.client, o.id) for o in due}
        found = {(o.client, o.id): o for o in claimed}
        later = {pair: self.next_read(found[pair]) if pair in found else None for pair in pairs if pair not in taken}
        try:
            await self.due.reschedule(provider, later)
        except Exception as exc:  # advice, not money: claimed again later
            log.warning("due index of %s not rescheduled: %s", provider, type(exc).__name__)
        return due

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
        moving the money it calls for. `asked_at` stamps the status.

        A read no rule can settle (no news of the order, a status word we do
        not know, Partial without remains) keeps the status; after
        `unsettled_reads` of them in a row the order goes to an operator with
        the provider's reply, and is read at the slow rate from then on."""
        if result is None:  # the provider did not answer: keep the old status
            return order
        now = self.clock() if asked_at is None else asked_at
        if order.state == PLACED and order.final:
            return await self._recheck(order, result, now)
        unsettled, said = "", ""
        if isinstance(result, ItemError):  # no news of this order: keep the status, ask again later
            unsettled, said = "nothing usable on this order", result.message
            read = UpstreamStatus(None, None, None, None, None, None)
        else:
            read = result
        settlement = settle(
            order,
            read,
            provider_currency=self.currencies.get(order.provider, order.cost_currency),
            tolerance_percent=self.tolerance_percent,
            now=now,
        )
        fields, attention = settlement.fields, settlement.attention
        if settlement.unsettled and not unsettled:
            unsettled, said = settlement.unsettled, read.raw
        misses = order.misses + 1 if unsettled else 0
        if misses != order.misses:
            fields["misses"] = misses
        if misses >= self.unsettled_reads:
            note = f"{self.unsettled_reads} status reads in a row could not be settled ({unsettled})"
            note += f"{DETAIL}the provider said: {said}" if said else ""
            attention = "; ".join(a for a in (attention, note) if a)
        call = new_call()
        try:
            updated = await self.book.apply(
                order,
                STATUS,
                fields,
                refund_to=settlement.refund_to,
                attention=attention,
                version=order.version,
                memo=f"order {order.id} {settlement.fields.get('status', 'status')}",
                call=call,
                due_at=self._due_after(str(fields.get("status", order.status)), misses, now),
            )
        except StateChanged:
            return order
        if updated.call != call:  # read before another status was applied: that one was observed
            return updated
        await self._observe(order, updated)
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
                f"{order.cost_currency} and the provider did not stop it: stop it there"
                f"{DETAIL}the provider said: {message[:200]}"
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
        await self._observe(order, after)
        if note and after.attention and not order.attention:
            await self.tally("orders_attention")
        return after

    def _due_after(self, status: str, misses: int, now: float) -> float | None:
        """The due score of an order read `now` with this status and count of
        unsettled reads, where it is not the table's (read at the slow rate,
        or kept for re-checks once final)."""
        if status in FINAL_STATUSES:
            return now + self.slow_delay if self.recheck_final > 0 else None
        return now + self.slow_delay if misses >= self.unsettled_reads else None

    async def _recheck(self, order: Order, result: UpstreamStatus | ItemError, now: float) -> Order:
        """A final order read again: nothing moves; a provider that now
        answers another status goes to an operator with both."""
        note = ""
        if isinstance(result, UpstreamStatus) and result.status is not None and result.status != order.status:
            note = (
                f"the provider changed its answer after the order was final: {order.status} when it was settled, "
                f"{result.status} now; no money was moved{DETAIL}the provider said: {result.raw or result.raw_status}"
            )
        later = replace(order, checked_at=now)
        try:
            updated = await self.book.apply(
                order,
                RECHECK,
                {"checked_at": f"{now:.3f}"},
                attention=note,
                memo=f"order {order.id} re-checked",
                due_at=self.next_read(later),
            )
        except StateChanged:
            return order
        await self._observe(order, updated)  # final before and after: its outcome counted once, when it turned final
        if note and updated.attention and not order.attention:
            log.warning("order %s needs an operator: %s", order.id, updated.attention)
            await self.tally("orders_attention")
        return updated

    async def _observe(self, before: Order, after: Order) -> None:
        """Tell the `on_status` hook of a change this refresher applied."""
        if self.on_status is not None:
            await self.on_status(before, after)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
