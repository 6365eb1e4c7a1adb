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

Orders are read by (client, ID), the key of a record, through one primitive
(`records`) and thin readers on it: `get` (one), `get_many` (of one client),
`load` (of any clients); `find` reads one by our ID alone, through the owner
index; `summaries` reads only what a status read shows.

Every key these scripts touch carries the client's hash tag, so the layout
works on Redis Cluster too. Finding an order by our ID alone goes through the
owner index, written before the order is reserved: an owner entry without a
record is harmless, a record without an owner entry cannot happen.

Clocks: leases expire on the Redis server's clock (`proxy.orders.leases`);
nothing decides whether an order is alive by the clock of an instance. Local
time is written only as information (`created`, `status_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy import scripts
from proxy.errors import DuplicateMismatch, InsufficientFunds, LinkInUse, StateChanged, UnknownClient
from proxy.money import format_amount, to_minor
from proxy.orders.due import DueIndex
from proxy.orders.leases import Leases
from proxy.orders.links import REFUSE, link_key
from proxy.orders.records import (
    RECENT_CALLS,
    SUMMARY_FIELDS,
    ArchivedOrder,
    Fingerprint,
    NewOrder,
    Order,
    OrderSummary,
    Reservation,
    flatten,
    new_call,
    unflatten,
)
from proxy.orders.states import ABANDON, ACCEPT, IN_FLIGHT, STATUS, WORKING_SETS, lua_values
from proxy.scripts import lua
from proxy.store import OWNER_BUCKET, Keys, Store, ints, maybe_text, single, text_map, texts

log = logging.getLogger(__name__)

# A reservation whose reply was lost is asked again this many times in all.
RESERVE_TRIES = 3
# An owner entry that starts so: the order is archived (`proxy.orders.archive`).
ARCHIVED = "~"
_Reply = TypeVar("_Reply")


class OrderBook:
    """Order records in Redis and the atomic transitions between states."""

    def __init__(
        self,
        redis: Store,
        keys: Keys,
        leases: Leases,
        due: DueIndex,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.leases = leases
        self.due = due
        self.clock = clock
        # A cluster pipeline sends each command to its slot's node; scripts go one by one there.
        # On one server, a script and the commands that go with it share a round trip.
        self._single = single(redis)
        facts = lua_values()
        self._reserve = scripts.register(redis, "proxy.orders", "reserve", facts)
        self._transition = scripts.register(
            redis, "proxy.orders", "transition", {**facts, "RECENT_CALLS": lua(RECENT_CALLS)}
        )
        self._summaries = scripts.register(redis, "proxy.orders", "summaries", {"SUMMARY_FIELDS": lua(SUMMARY_FIELDS)})

    def _sets(self, client: str) -> list[str]:
        """The client's working-set keys, then its open-links index, in the order the scripts take them."""
        return [*(self.keys.orders_of(client, name) for name in WORKING_SETS), self.keys.open_links(client)]

    # -- opening an order ------------------------------------------------------

    async def reserve(self, new: NewOrder, fingerprint: Fingerprint | None = None) -> Reservation:
        """Debit the charge and record the order `reserved`, in one step.

        Returns the new order's ID, or the first order's when `fingerprint`
        matches one made before. Raises `InsufficientFunds` (nothing
        changes), `DuplicateMismatch` and `UnknownClient`. A reservation whose
        reply was lost is retried safely: the script sees its own record.

        A refusal that a read can already tell (not enough funds, a retry) is
        answered before an order ID is taken, so a refused add leaves no
        trace; the script decides all the same, atomically.
        """
        duplicate_key = self.keys.duplicate(new.client, fingerprint.token if fingerprint else "-")
        link = link_key(new.fields.get("link", ""))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.balance(new.client))
            pipe.get(duplicate_key)
            pipe.hget(self.keys.client(new.client), "same_link")
            pipe.hget(self.keys.open_links(new.client), link or "-")
            balance, first, same_link, open_on_link = await pipe.execute()
        if fingerprint is not None and first:
            first_id, _, payload = first.partition(":")
            if fingerprint.payload and payload != fingerprint.payload:
                raise DuplicateMismatch(int(first_id))
            return Reservation(int(first_id), True)
        if link and same_link == REFUSE and int(open_on_link or 0) > 0:
            raise LinkInUse(new.client)
        if int(balance or 0) < to_minor(new.charge):
            raise InsufficientFunds(new.client)
        order_id = await self.redis.incr(self.keys.order_seq)
        record = new.record(order_id, self.clock())
        if link:
            record["link_key"] = link
        value = ""
        if fingerprint is not None:
            record["duplicate_key"] = duplicate_key
            record["duplicate_ms"] = max(1, int(fingerprint.window * 1000))
            value = f"{order_id}:{fingerprint.payload}" if fingerprint.payload else str(order_id)
        keys = [
            self.keys.client(new.client),
            self.keys.balance(new.client),
            self.keys.ledger(new.client),
            self.keys.totals(new.client),
            self.keys.order(new.client, order_id),
            self.keys.orders_of(new.client, "all"),
            self.keys.lease(new.client, order_id),
            duplicate_key,
            *self._sets(new.client),
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
            *flatten(record),
        ]

        async def owner_then_reserve() -> list[str]:
            reply: list[str]
            if self._single is None:
                await self.redis.hset(self.keys.order_owner(order_id), str(order_id), new.client)
                reply = await self._reserve(keys=keys, args=args)
                return reply
            # The owner entry first, in the same round trip: Redis runs them in order.
            async with self._single.pipeline(transaction=False) as pipe:
                pipe.hset(self.keys.order_owner(order_id), str(order_id), new.client)
                await self._reserve(keys=keys, args=args, client=pipe)
                owned, reply = await pipe.execute()
            return reply

        try:
            reply = await self._idempotent(owner_then_reserve)
        except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
            # Whether the debit applied is unknown. If it did, the client must
            # get this order's ID (recovery refunds it: it is never sent).
            try:
                exists = await self.redis.exists(self.keys.order(new.client, order_id))
            except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
                exists = True  # cannot tell: answer as if it did; a phantom ID costs nobody money
            if not exists:
                raise
            log.warning("order %s: reserved, but its store failed; recovery settles it", order_id)
            return Reservation(order_id, False, None)
        if reply[0] == "ok":
            log.info(
                "order %s reserved: %s charged",
                order_id,
                format_amount(new.charge),
                extra={"order": order_id, "client": new.client},
            )
            return Reservation(order_id, False, Order.from_record({k: str(v) for k, v in record.items()}))
        try:  # no order was made: its owner entry is litter (harmless if it stays)
            await self.redis.hdel(self.keys.order_owner(order_id), str(order_id))
        except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
            pass
        if reply[0] == "duplicate":
            return Reservation(int(reply[1]), True)
        if reply[0] == "mismatch":
            raise DuplicateMismatch(int(reply[1]))
        if reply[0] == "insufficient":
            raise InsufficientFunds(new.client)
        if reply[0] == "same_link":
            raise LinkInUse(new.client)
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

    # -- reading ---------------------------------------------------------------

    async def records(self, pairs: Iterable[tuple[str, int]]) -> list[dict[str, str]]:
        """Raw records by (client, ID), in one round trip (an empty dict: no such order).

        The one way orders are read by their key; the readers below build on it.
        """
        pairs = list(pairs)
        if not pairs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for client, order_id in pairs:
                pipe.hgetall(self.keys.order(client, order_id))
            return await pipe.execute()

    async def load(self, pairs: Iterable[tuple[str, int]]) -> list[Order]:
        """The orders that exist among (client, ID) pairs, in the order given."""
        return [Order.from_record(record) for record in await self.records(pairs) if record]

    async def get(self, client: str, order_id: int) -> Order | None:
        """One order of one client, or None."""
        found = await self.load([(client, order_id)])
        return found[0] if found else None

    async def get_many(self, client: str, order_ids: Iterable[int]) -> dict[int, Order]:
        """Orders of one client by ID (those that exist)."""
        return {order.id: order for order in await self.load((client, i) for i in order_ids)}

    async def summaries(self, client: str, order_ids: Iterable[int]) -> dict[int, OrderSummary]:
        """What a status read shows of many orders of one client, in one command."""
        ids = list(order_ids)
        if not ids:
            return {}
        rows = await self._summaries(keys=[self.keys.order(client, i) for i in ids])
        found = {}
        for order_id, row in zip(ids, rows, strict=True):
            summary = OrderSummary.from_row(order_id, row)
            if summary is not None:
                found[order_id] = summary
        return found

    async def owner(self, order_id: int) -> str | None:
        """The client an order ID belongs to (through the owner index)."""
        return maybe_text(await self.redis.hget(self.keys.order_owner(order_id), str(order_id)))

    async def find(self, order_id: int) -> Order | None:
        """An order by our ID alone (operators); None if unknown or archived."""
        client = await self.owner(order_id)
        return await self.get(client, order_id) if client and not client.startswith(ARCHIVED) else None

    async def is_archived(self, order_id: int) -> bool:
        return (await self.owner(order_id) or "").startswith(ARCHIVED)

    async def archived(self, client: str, order_ids: Iterable[int]) -> dict[int, ArchivedOrder]:
        """What Redis keeps of the client's archived orders among `order_ids` (`ArchivedOrder`)."""
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in ids:
                pipe.hget(self.keys.archived(client, order_id), str(order_id))
            views = await pipe.execute()
        return {i: ArchivedOrder.decode(client, i, v) for i, v in zip(ids, views, strict=True) if v is not None}

    async def newest_archived(self) -> AsyncIterator[ArchivedOrder]:
        """Archived orders of every client, newest first (through the owner index)."""
        newest = int(await self.redis.get(self.keys.order_seq) or 0)
        for bucket in range(newest // OWNER_BUCKET, -1, -1):
            owners = text_map(await self.redis.hgetall(self.keys.order_owner(bucket * OWNER_BUCKET)))
            by_client: dict[str, list[int]] = {}
            for order_id, owner in owners.items():
                if owner.startswith(ARCHIVED):
                    by_client.setdefault(owner[len(ARCHIVED) :], []).append(int(order_id))
            found: dict[int, ArchivedOrder] = {}
            for client, ids in by_client.items():
                found.update(await self.archived(client, ids))
            for number in sorted(found, reverse=True):
                yield found[number]

    async def clients(self) -> list[str]:
        return sorted(texts(await self.redis.smembers(self.keys.clients)))

    async def ids_in(self, group: str, client: str | None = None) -> list[int]:
        """Order IDs in a working set (or 'all'), of one client or every client, oldest first."""
        clients = [client] if client else await self.clients()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in clients:
                pipe.zrange(self.keys.orders_of(name, group), 0, -1)
            replies = await pipe.execute()
        return sorted(int(i) for ids in replies for i in ids)

    async def count(self, group: str) -> int:
        """How many orders a working set (or 'all') holds, over every client."""
        clients = await self.clients()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in clients:
                pipe.zcard(self.keys.orders_of(name, group))
            return sum(await pipe.execute())

    async def newest(self, client: str | None = None) -> AsyncIterator[Order]:
        """Orders newest first, of one client or of all (through the owner index)."""
        if client:
            key, start = self.keys.orders_of(client, "all"), 0
            while ids := ints(await self.redis.zrevrange(key, start, start + OWNER_BUCKET - 1)):
                found = await self.get_many(client, ids)
                for order_id in ids:
                    if order_id in found:
                        yield found[order_id]
                start += OWNER_BUCKET
            return
        newest = int(await self.redis.get(self.keys.order_seq) or 0)
        for bucket in range(newest // OWNER_BUCKET, -1, -1):
            owners = text_map(await self.redis.hgetall(self.keys.order_owner(bucket * OWNER_BUCKET)))
            by_client: dict[str, list[int]] = {}
            for member, owner in owners.items():
                if not owner.startswith(ARCHIVED):
                    by_client.setdefault(owner, []).append(int(member))
            found = {}
            for owner, ids in by_client.items():
                found.update(await self.get_many(owner, ids))
            for order_id in sorted(found, reverse=True):
                yield found[order_id]

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
        client = order.client
        keys = [
            self.keys.order(client, order.id),
            self.keys.balance(client),
            self.keys.ledger(client),
            self.keys.totals(client),
            self.keys.lease(client, order.id),
            order.duplicate_key or self.keys.duplicate(client, "-"),
            *self._sets(client),
        ]
        args: list[str | int] = [
            event,
            self.leases.token,
            self.leases.ms,
            "" if refund_to is None else to_minor(refund_to),
            "" if version is None else version,
            attention,
            memo or f"order {order.id} {event}",
            call or new_call(),
            *flatten(fields or {}),
        ]
        due = self.due.change(order, event, fields or {}, due_at)
        reply: list[Any]
        if due is None or self._single is None:
            reply = await self._transition(keys=keys, args=args)
            if due is not None and reply[0] == "ok":
                with contextlib.suppress(Exception):  # best effort: the poller repairs it
                    await due(self.redis)
        else:  # the due index moves in the same round trip (best effort: the poller repairs it)
            async with self._single.pipeline(transaction=False) as pipe:
                await self._transition(keys=keys, args=args, client=pipe)
                due(pipe)
                reply, _ = await pipe.execute(raise_on_error=False)
            if isinstance(reply, Exception):
                raise reply
        if reply[0] in ("ok", "stale"):
            after = Order.from_record(unflatten(reply[2]))
            if reply[0] == "ok" and (after.state != reply[1] or after.refunded != order.refunded or event != STATUS):
                log.info(
                    "order %s %s: %s -> %s%s%s%s",
                    order.id,
                    event,
                    reply[1],
                    after.state,
                    f" at {after.provider} as upstream order {after.upstream_order}" if event == ACCEPT else "",
                    f", refunded {after.refunded} in all" if after.refunded != order.refunded else "",
                    f", needs an operator: {after.attention}" if after.attention and not order.attention else "",
                    extra={"order": order.id, "transition": event, "client": client},
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
