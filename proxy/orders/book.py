"""Order records in Redis, and the two scripts that open and change them.

`reserve` opens an order (`scripts/reserve.lua`): it checks the client's
duplicate fingerprint and, for a client that refuses a second order on a
link, its open links (`Keys.open_links`, kept by both scripts), debits the
charge, writes the record, its indexes,
the placing task's lease and the fingerprint, all in one step. `apply`
applies one event of the state table (`proxy.orders.states`,
`scripts/transition.lua`): it checks the event against the order's state and
lease, writes the fields, moves the money the rule calls for, queues the
order for an operator, keeps or drops the fingerprint, and updates the
working sets, again in one step. Nothing that decides whether money moves
happens outside these two scripts.

Orders are read (`proxy.orders.reading`, mixed in) by (client, ID), the key of a record, through one primitive
(`records`) and thin readers on it: `get` (one), `get_many` (of one client),
`load` (of any clients); `find` reads one by our ID alone, through the owner
index; `summaries` reads only what a status read shows.

Every key these scripts touch carries the client's hash tag, so the layout
works on Redis Cluster too. Finding an order by our ID alone goes through the
owner index: on one server the reserve script writes its entry with the
record; on a cluster (another slot) it is written just before: an owner
entry without a record is harmless, a record without an owner entry cannot
happen. On one server a script may touch keys of any slot, so the reserve
also reads the routes' health and funds, and a transition moves the order in
its provider's due index: an add waits for Redis three times (reserve,
submit, accept: `proxy.orders.accepting`), with no reads before them; order
IDs come from blocks (`proxy.orders.ids`), scripts are run by SHA and loaded
only when Redis answers NOSCRIPT (never in a pipeline, which would ask
SCRIPT EXISTS each time).

Clocks: leases expire on the Redis server's clock (`proxy.orders.leases`);
nothing decides whether an order is alive by the clock of an instance. Local
time is written only as information (`created`, `status_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy import logs, scripts
from proxy.accounts.fair_use import RateWindow
from proxy.errors import (
    DuplicateMismatch,
    IdsInUse,
    InsufficientFunds,
    LinkInUse,
    RateSpent,
    StateChanged,
    UnknownClient,
)
from proxy.keys import Keys
from proxy.money import format_amount, to_minor
from proxy.orders.due import DueIndex
from proxy.orders.ids import OrderIds
from proxy.orders.leases import Leases
from proxy.orders.links import link_key
from proxy.orders.reading import OrderReading
from proxy.orders.records import (
    RECENT_CALLS,
    SUMMARY_FIELDS,
    Fingerprint,
    NewOrder,
    Order,
    Reservation,
    flatten,
    new_call,
    unflatten,
)
from proxy.orders.states import ABANDON, ACCEPT, IN_FLIGHT, STATUS, WORKING_SETS, lua_values
from proxy.scripts import lua
from proxy.store import Store, ints, maybe_text, single

log = logging.getLogger(__name__)

# A reservation whose reply was lost is asked again this many times in all.
RESERVE_TRIES = 3
# IDs in a row found numbering other orders before an add gives up (`OrderIds.skip`).
ID_TRIES = 5
# How long a fence keeps a reservation settled as not applied from applying
# late (fence.lua): longer than any request can wait in a socket buffer.
FENCE_SECONDS = 86400
_Reply = TypeVar("_Reply")


class OrderBook(OrderReading):
    """Order records in Redis and the atomic transitions between states."""

    def __init__(
        self,
        redis: Store,
        keys: Keys,
        leases: Leases,
        due: DueIndex,
        clock: Callable[[], float] = time.time,
        ids: OrderIds | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.leases = leases
        self.due = due
        self.clock = clock
        self.ids = ids or OrderIds(redis, keys.order_seq, clock=clock)
        # On one server a script may touch keys of any slot (the owner entry, the due index);
        # on a cluster those are written apart.
        self.single = single(redis) is not None
        facts = lua_values()
        self._reserve = scripts.register(redis, "proxy.orders", "reserve", facts)
        self._fence = scripts.register(redis, "proxy.orders", "fence")
        self._transition = scripts.register(
            redis, "proxy.orders", "transition", {**facts, "RECENT_CALLS": lua(RECENT_CALLS)}
        )
        self._summaries = scripts.register(redis, "proxy.orders", "summaries", {"SUMMARY_FIELDS": lua(SUMMARY_FIELDS)})

    def _sets(self, client: str, link: str) -> list[str]:
        """The client's working-set keys, then the bucket of its open-links index
        that holds `link` (a link key), in the order the scripts take them."""
        return [*(self.keys.orders_of(client, name) for name in WORKING_SETS), self.keys.open_links(client, link)]

    # -- opening an order ------------------------------------------------------

    async def reserve(
        self,
        new: NewOrder,
        fingerprint: Fingerprint | None = None,
        route_keys: Sequence[tuple[str, str]] = (),
        rate: Sequence[RateWindow] = (),
    ) -> Reservation:
        """Debit the charge and record the order `reserved`, in one step.

        Returns the new order's ID, or the first order's when `fingerprint`
        matches one made before. Raises `InsufficientFunds` (nothing
        changes), `DuplicateMismatch`, `LinkInUse` and `UnknownClient`. A
        reservation whose reply was lost is retried safely: the script sees
        its own record (by the name of this reservation, `opened`).

        On one server this is one round trip: the ID comes from this
        instance's block (`OrderIds`), the script writes the owner entry
        with the order, and reads what routing must know of the providers
        whose `route_keys` (health, state) are given (`Reservation.routes`),
        and counts the add request in the client's `rate` windows (raises
        `RateSpent` when one is spent; on a cluster the caller counts it).
        A refused add leaves a gap in the IDs and nothing else.

        An ID that numbers another order already (the sequence fell behind
        the IDs in use: `OrderIds.skip`) is refused by the script without
        moving money; it is logged, skipped, and the order takes another
        (`Reservation.skipped` lists them). Raises `IdsInUse` when
        `ID_TRIES` IDs in a row were in use.
        """
        skipped: list[int] = []
        for _ in range(ID_TRIES):
            order_id = await self.ids.next()
            reservation = await self._reserve_as(order_id, new, fingerprint, route_keys, rate)
            if reservation is not None:
                return reservation._replace(skipped=tuple(skipped))
            skipped.append(order_id)
            seq = await self.ids.skip(order_id)
            log.error(
                "order ID %s numbers another order already: the ID sequence fell behind the IDs in use "
                "(a Redis failover that lost writes, or a restored dump?); skipped, the sequence moved to %s",
                order_id,
                seq,
                extra={"client": new.client},
            )
        raise IdsInUse(tuple(skipped))

    async def _reserve_as(
        self,
        order_id: int,
        new: NewOrder,
        fingerprint: Fingerprint | None,
        route_keys: Sequence[tuple[str, str]],
        rate: Sequence[RateWindow],
    ) -> Reservation | None:
        """`reserve` with `order_id`; None when the ID numbers another order."""
        duplicate_key = self.keys.duplicate(new.client, fingerprint.token if fingerprint else "-")
        link = link_key(new.fields.get("link", ""))
        opened = new_call()  # names this reservation across its retries
        record = new.record(order_id, self.clock())
        record["opened"] = opened
        if link:
            record["link_key"] = link
        value = ""
        if fingerprint is not None:
            record["duplicate_key"] = duplicate_key
            record["duplicate_ms"] = max(1, int(fingerprint.window * 1000))
            value = f"{order_id}:{fingerprint.payload}" if fingerprint.payload else str(order_id)
        order_key = self.keys.order(new.client, order_id)
        single = self.single
        routes = list(route_keys) if single else []
        windows = list(rate) if single else []
        keys = [
            self.keys.client(new.client),
            self.keys.balance(new.client),
            self.keys.ledger(new.client),
            self.keys.totals(new.client),
            order_key,
            self.keys.all_orders(new.client, order_id),
            self.keys.lease(new.client, order_id),
            duplicate_key,
            *self._sets(new.client, link),
            # On a cluster the owner bucket lives in another slot: the order's own key holds its place.
            self.keys.order_owner(order_id) if single else order_key,
            *(key for pair in routes for key in pair),
            *(window.key for window in windows),
            self.keys.archived(new.client, order_id),
            self.keys.fence(new.client, order_id),
        ]
        args: list[str | int] = [
            order_id,
            to_minor(new.charge),
            self.leases.token,
            self.leases.ms,
            value,
            fingerprint.payload if fingerprint else "",
            f"order {order_id}",
            link,
            new.client if single else "",
            len(routes),
            len(windows),
            repr(time.time()),  # as `limits` counts requests: by this machine's clock
            opened,
            *(value for window in windows for value in (window.limit, window.seconds)),
            *flatten(record),
        ]
        owner_written = False  # by this reservation (a cluster's owner entry, written apart)

        async def reserve() -> list[Any]:
            nonlocal owner_written
            if not single:  # the owner entry first: a record without one cannot happen
                owner = self.keys.order_owner(order_id)
                if await self.redis.hsetnx(owner, str(order_id), new.client):
                    owner_written = True
                elif not owner_written and maybe_text(await self.redis.hget(owner, str(order_id))) != new.client:
                    return ["taken"]  # another client's order, or an archived one
            reply: list[Any] = await self._reserve(keys=keys, args=args)
            return reply

        try:
            reply = await self._idempotent(reserve)
        except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
            # Whether the debit applied is unknown. If it did, the client must
            # get this order's ID (recovery refunds it: it is never sent). If
            # it did not, a fence makes sure it never will: a try still on its
            # way to Redis must not move money after the client heard "error".
            try:
                mine = await self._fence(
                    keys=[order_key, self.keys.fence(new.client, order_id)], args=[FENCE_SECONDS, opened]
                )
            except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
                mine = True  # cannot tell: answer as if it did; a phantom ID costs nobody money
            if not mine:  # no record, or another order's: this reservation moved no money
                raise
            log.warning("order %s: reserved, but its store failed; recovery settles it", order_id)
            return Reservation(order_id, False, None)
        if reply[0] == "ok":
            logs.info(
                log,
                f"order {order_id} reserved: {format_amount(new.charge)} charged",
                {"order": order_id, "client": new.client},
            )
            order = Order.from_record({k: str(v) for k, v in record.items()})
            return Reservation(order_id, False, order, tuple(reply[1]) if routes else None)
        if not single and owner_written:  # no order was made: its owner entry is litter (harmless if it stays)
            with contextlib.suppress(ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
                await self.redis.hdel(self.keys.order_owner(order_id), str(order_id))
        if reply[0] == "taken":
            return None
        if reply[0] == "duplicate":
            return Reservation(int(reply[1]), True)
        if reply[0] == "mismatch":
            raise DuplicateMismatch(int(reply[1]))
        if reply[0] == "insufficient":
            raise InsufficientFunds(new.client)
        if reply[0] == "same_link":
            raise LinkInUse(new.client)
        if reply[0] == "too_many":
            raise RateSpent(new.client)
        if reply[0] == "fenced":  # only a late try's reply, which nobody waits for: nothing applied
            raise RedisConnectionError(f"order {order_id}: its reservation was settled as not applied")
        raise UnknownClient(new.client)

    @staticmethod
    async def _idempotent(call: Callable[[], Awaitable[_Reply]]) -> _Reply:
        """Run a script that is safe to repeat, again if its reply was lost."""
        for attempt in range(RESERVE_TRIES):
            try:
                return await call()
            except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
                if attempt == RESERVE_TRIES - 1:
                    raise
                await asyncio.sleep(0.05 * 4**attempt)
        raise AssertionError("unreachable")

    # -- changing an order -----------------------------------------------------

    async def apply(
        self,
        order: Order,
        event: str,
        fields: Mapping[str, object] | None = None,
        *,
        refund_to: Decimal | None = None,
        attention: str = "",
        version: int | None = None,
        memo: str = "",
        call: str | None = None,
        due_at: float | None = None,
    ) -> Order:
        """Apply `event` to `order` as the state table says; the order after.

        `refund_to` raises the order's total refund to that amount where the
        rule moves money by target; `attention` queues it for an operator with
        that reason; `version` (for status reads) drops the answer if another
        status was applied since the order was read. `call` names this call:
        repeating it (after a lost reply) never applies it twice. `due_at`
        puts the order in its provider's due index at that score, whatever
        the table says. Raises `StateChanged` when the table does not allow
        the event now.
        """
        due = self.due.change(order, event, fields or {}, due_at)
        folded = due is not None and self.single  # on one server the due index moves in the script
        keys = [*self.transition_keys(order), *([due.key] if folded and due else [])]
        args: list[str | int] = [
            *self.transition_args(order, event, refund_to, version, attention, memo, call),
            due.op if folded and due else "",
            due.member if folded and due else "",
            repr(due.score) if folded and due and due.score is not None else "",
            *flatten(fields or {}),
        ]
        reply: list[Any] = await self._transition(keys=keys, args=args)
        if due is not None and not folded and reply[0] == "ok":
            with contextlib.suppress(Exception):  # best effort: the poller repairs it
                await due(self.redis)
        return self.applied(order, event, reply)

    def transition_keys(self, order: Order) -> list[str]:
        """The keys transition.lua takes first (accept.lua too)."""
        client = order.client
        return [
            self.keys.order(client, order.id),
            self.keys.balance(client),
            self.keys.ledger(client),
            self.keys.totals(client),
            self.keys.lease(client, order.id),
            order.duplicate_key or self.keys.duplicate(client, "-"),
            *self._sets(client, order.link_key or link_key(order.link)),
        ]

    def transition_args(
        self,
        order: Order,
        event: str,
        refund_to: Decimal | None = None,
        version: int | None = None,
        attention: str = "",
        memo: str = "",
        call: str | None = None,
    ) -> list[str | int]:
        """The arguments transition.lua takes first (accept.lua too)."""
        return [
            event,
            self.leases.token,
            self.leases.ms,
            "" if refund_to is None else to_minor(refund_to),
            "" if version is None else version,
            attention,
            memo or f"order {order.id} {event}",
            call or new_call(),
        ]

    def applied(self, order: Order, event: str, reply: list[Any]) -> Order:
        """The order after a transition's reply; raises `StateChanged` for a refusal."""
        client = order.client
        if reply[0] in ("ok", "stale"):
            after = Order.from_record(unflatten(reply[2]))
            if reply[0] == "ok" and (after.state != reply[1] or after.refunded != order.refunded or event != STATUS):
                logs.info(
                    log,
                    f"order {order.id} {event}: {reply[1]} -> {after.state}"
                    + (f" at {after.provider} as upstream order {after.upstream_order}" if event == ACCEPT else "")
                    + (f", refunded {after.refunded} in all" if after.refunded != order.refunded else "")
                    + (f", needs an operator: {after.attention}" if after.attention and not order.attention else ""),
                    {"order": order.id, "transition": event, "client": client},
                )
            return after
        if reply[0] == "missing":
            raise StateChanged(None)
        raise StateChanged(reply[1], reply[0])

    # -- recovery ----------------------------------------------------------------

    async def recover(self) -> list[Order]:
        """Take over the in-flight orders whose placing task is gone.

        An order still in flight whose lease has expired was left by a task
        that died (or stalled past its lease): `abandon` refunds one that was
        never sent and makes one that may exist upstream `unknown`. Orders
        whose lease is alive are left alone, whatever any clock says.
        """
        settled = []
        for client in await self.clients():
            ids = ints(await self.redis.zrange(self.keys.orders_of(client, "inflight"), 0, -1))
            if ids:
                settled += await self.abandon(client, ids)
        return settled

    async def abandon(self, client: str, order_ids: list[int]) -> list[Order]:
        """Take over those of the client's orders that are in flight with no lease."""
        settled = []
        for order_id in await self.leases.lapsed(client, order_ids):
            order = await self.get(client, order_id)
            if order is None or order.state not in IN_FLIGHT:
                continue
            try:
                settled.append(await self.apply(order, ABANDON, memo=f"order {order_id} abandoned in flight"))
            except StateChanged:
                continue
        return settled
