"""Order records in Redis, and the two scripts that change them.

`scripts/reserve.lua` opens an order: it checks the client's duplicate
fingerprint, debits the charge, writes the record, its indexes, the placing
task's lease and the fingerprint, all in one step. `scripts/transition.lua`
applies one event of the state table (`proxy.orders.states`): it checks the
event against the order's state and lease, writes the fields, moves the money
the rule calls for, queues the order for an operator, keeps or drops the
fingerprint, and updates the working sets, again in one step. Nothing that
decides whether money moves happens outside these two scripts.

Every key these scripts touch carries the client's hash tag, so the layout
works on Redis Cluster too. Finding an order by our ID alone goes through the
owner index, written before the order is reserved: an owner entry without a
record is harmless, a record without an owner entry cannot happen.

Clocks: leases expire on the Redis server's clock; nothing decides whether an
order is alive by the clock of an instance. Local time is written only as
information (`created`, `status_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy import scripts
from proxy.errors import ClaimConflict, DuplicateMismatch, InsufficientFunds, StateChanged, UnknownClient
from proxy.money import format_amount, from_minor, to_minor
from proxy.orders.states import (
    ABANDON,
    ACCEPT,
    ACK,
    COUNTED,
    IN_FLIGHT,
    OUTCOMES,
    REFUND,
    RESERVED,
    RESOLVE_FAILED,
    RESOLVE_PLACED,
    UNKNOWN,
    WORKING_SETS,
    counter,
    due_change,
    final,
    lua_values,
    shown_status,
)
from proxy.scripts import lua
from proxy.store import OWNER_BUCKET, Keys, is_cluster
from proxy.vocabulary import PENDING, SERVICE_TYPES

log = logging.getLogger(__name__)

# A reservation whose reply was lost is asked again this many times in all.
RESERVE_TRIES = 3

__all__ = [
    "Attempt",
    "Fingerprint",
    "NewOrder",
    "Order",
    "OrderBook",
    "Reservation",
]

@dataclass(frozen=True)
class Attempt:
    provider: str
    outcome: str  # "sent", "refused", "unknown", "placed"
    reason: str = ""


class _Shown:
    """What a client is shown of an order, for `Order` and `Glance` alike."""

    state: str
    status: str
    charge: Decimal
    refunded: Decimal

    @property
    def public_status(self) -> str:
        """What the client is shown (`states.shown_status`)."""
        return shown_status(self.state, self.status)

    @property
    def final(self) -> bool:
        return final(self.state, self.status)

    @property
    def net_charge(self) -> Decimal:
        return self.charge - self.refunded


@dataclass(frozen=True)
class Glance(_Shown):
    """The few fields of an order a status read needs, read in one command for many."""

    id: int
    state: str
    status: str
    charge: Decimal
    refunded: Decimal
    remains: int
    start_count: int
    status_at: float
    provider: str


SUMMARY_FIELDS = ("state", "status", "charge", "refunded", "remains", "start_count", "status_at", "provider", "quantity")


@dataclass(frozen=True)
class Order(_Shown):
    """One order as its record holds it. Amounts are in the deployment currency
    unless they say otherwise."""

    id: int
    client: str
    service: int
    type: str
    quantity: int  # total units: per-run quantity x runs
    fields: Mapping[str, str]  # what is sent upstream with `add`
    charge: Decimal
    refunded: Decimal
    state: str
    status: str  # the upstream status, canonical; meaningful once placed
    remains: int
    start_count: int
    status_at: float
    created: float
    refill: bool
    cancel: bool
    billing: str = "rate"  # "delivery": settled at the end to what the provider charged
    provider: str = ""
    upstream_service: int = 0
    upstream_order: int = 0
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    duplicate_key: str = ""
    attention: str = ""  # why an operator must look at it, if they must
    version: int = 0  # of the status, for dropping answers read before the last one applied
    cost: Decimal | None = None  # what the route's rate said it costs us, in `cost_currency`
    cost_currency: str = ""
    cost_base: Decimal | None = None  # the same cost in the deployment currency, at the config's rate
    upstream_charge: Decimal | None = None  # what the provider last said it charged
    upstream_currency: str = ""
    misses: int = 0  # status reads in a row whose reply had nothing usable on this order

    @property
    def link(self) -> str:
        return self.fields.get("link", "")

    @property
    def flat(self) -> bool:
        spec = SERVICE_TYPES.get(self.type)
        return spec is not None and spec.flat

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> Order:
        def amount(name: str) -> Decimal | None:
            value = record.get(name, "")
            return from_minor(value) if value != "" else None

        return cls(
            id=int(record["id"]),
            client=record["client"],
            service=int(record["service"]),
            type=record["type"],
            quantity=int(record["quantity"]),
            fields=json.loads(record.get("fields", "{}")),
            charge=from_minor(record["charge"]),
            refunded=from_minor(record.get("refunded", "0")),
            state=record["state"],
            status=record.get("status", PENDING),
            remains=int(record.get("remains", record["quantity"])),
            start_count=int(record.get("start_count", "0")),
            status_at=float(record.get("status_at", "0")),
            created=float(record["created"]),
            refill=record.get("refill") == "1",
            cancel=record.get("cancel") == "1",
            billing=record.get("billing", "rate"),
            provider=record.get("provider", ""),
            upstream_service=int(record.get("upstream_service", "0")),
            upstream_order=int(record.get("upstream_order", "0")),
            attempts=_attempts(record.get("attempts", "[]")),
            duplicate_key=record.get("duplicate_key", ""),
            attention=record.get("attention", ""),
            version=int(record.get("v", "0")),
            cost=amount("cost"),
            cost_currency=record.get("cost_currency", ""),
            cost_base=amount("cost_base"),
            upstream_charge=amount("upstream_charge"),
            upstream_currency=record.get("upstream_currency", ""),
            misses=int(record.get("misses", "0")),
        )


@dataclass(frozen=True)
class NewOrder:
    """What `OrderBook.reserve` needs to open an order."""

    client: str
    service: int
    type: str
    quantity: int
    fields: Mapping[str, str]
    charge: Decimal
    refill: bool
    cancel: bool
    billing: str = "rate"


@dataclass(frozen=True)
class Fingerprint:
    """What makes a retried `add` answer with the first order.

    `token` names it (a hash of the fields, or of the client's
    Idempotency-Key); `payload` is set for an Idempotency-Key, whose reuse
    with other fields is refused. `window` is how long it answers once the
    client has its answer; until then it lives as long as the order is in
    flight or unknown.
    """

    token: str
    window: float
    payload: str = ""


class Reservation(NamedTuple):
    order_id: int
    duplicate: bool  # True: the order a retried add made before
    order: Order | None = None  # the new order, as reserved


def _flatten(fields: Mapping[str, object]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, str(value)]
    return flat


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def new_call() -> str:
    """A name for one transition call, kept across its retries (64 random bits)."""
    return uuid.uuid4().hex[:16]


def attempts_json(attempts: Iterable[Attempt]) -> str:
    """Attempts as the record keeps them: compact JSON, reasons only where there is one."""
    return json.dumps(
        [[a.provider, a.outcome, a.reason] if a.reason else [a.provider, a.outcome] for a in attempts],
        ensure_ascii=False, separators=(",", ":"),
    )


def _attempts(text: str) -> tuple[Attempt, ...]:
    return tuple(Attempt(**a) if isinstance(a, dict) else Attempt(*a) for a in json.loads(text))


def stamp(seconds: float) -> str:
    """A time for a record: to the millisecond is all anyone reads."""
    return f"{seconds:.3f}"


class OrderBook:
    """Order records in Redis and the atomic transitions between states."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 30.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.lease_seconds = lease_seconds
        # Names the instance that holds a lease, for whoever reads the key.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A cluster pipeline sends each command to its slot's node; scripts go one by one there.
        self.pipelined = not is_cluster(redis)
        facts = lua_values()
        self._reserve = scripts.register(redis, "proxy.orders", "reserve", facts)
        self._transition = scripts.register(redis, "proxy.orders", "transition", facts)
        self._renew = scripts.register(redis, "proxy.orders", "renew_lease")
        self._claim = scripts.register(redis, "proxy.orders", "claim")
        self._claim_due = scripts.register(redis, "proxy.orders", "claim_due")
        self._glance = scripts.register(redis, "proxy.orders", "summaries", {"SUMMARY_FIELDS": lua(SUMMARY_FIELDS)})

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease_seconds * 1000))

    def _sets(self, client: str) -> list[str]:
        return [self.keys.orders_of(client, name) for name in WORKING_SETS]

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
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.balance(new.client))
            pipe.get(duplicate_key)
            balance, first = await pipe.execute()
        if fingerprint is not None and first:
            first_id, _, payload = first.partition(":")
            if fingerprint.payload and payload != fingerprint.payload:
                raise DuplicateMismatch(int(first_id))
            return Reservation(int(first_id), True)
        if int(balance or 0) < to_minor(new.charge):
            raise InsufficientFunds(new.client)
        order_id = await self.redis.incr(self.keys.order_seq)
        record = {
            "id": order_id,
            "client": new.client,
            "service": new.service,
            "type": new.type,
            "quantity": new.quantity,
            "fields": json.dumps(dict(new.fields), ensure_ascii=False, separators=(",", ":")),
            "charge": to_minor(new.charge),
            "refunded": 0,
            "state": RESERVED,
            "status": PENDING,
            "remains": new.quantity,
            "created": stamp(self.clock()),
            "refill": int(new.refill),
            "cancel": int(new.cancel),
        }
        if new.billing != "rate":
            record["billing"] = new.billing
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
        args = [
            order_id, to_minor(new.charge), self.token, self.lease_ms, value,
            fingerprint.payload if fingerprint else "", f"order {order_id}", *_flatten(record),
        ]
        async def owner_then_reserve() -> list[str]:
            if not self.pipelined:
                await self.redis.hset(self.keys.order_owner(order_id), str(order_id), new.client)
                return await self._reserve(keys=keys, args=args)
            # The owner entry first, in the same round trip: Redis runs them in order.
            async with self.redis.pipeline(transaction=False) as pipe:
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
            log.info("order %s reserved: %s charged", order_id, format_amount(new.charge),
                     extra={"order": order_id, "client": new.client})
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
        raise UnknownClient(new.client)

    @staticmethod
    async def _idempotent(call):  # type: ignore[no-untyped-def]
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

    async def get(self, client: str, order_id: int) -> Order | None:
        record = await self.redis.hgetall(self.keys.order(client, order_id))
        return Order.from_record(record) if record else None

    async def records(self, pairs: Iterable[tuple[str, int]]) -> list[dict[str, str]]:
        """Raw records by (client, ID), in one round trip (an empty dict: no such order)."""
        pairs = list(pairs)
        if not pairs:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for client, order_id in pairs:
                pipe.hgetall(self.keys.order(client, order_id))
            return await pipe.execute()

    async def get_many(self, client: str, order_ids: Iterable[int]) -> dict[int, Order]:
        ids = list(order_ids)
        records = await self.records((client, i) for i in ids)
        return {i: Order.from_record(r) for i, r in zip(ids, records, strict=True) if r}

    async def glance(self, client: str, order_ids: Iterable[int]) -> dict[int, Glance]:
        """What a status read shows of many orders of one client, in one command."""
        ids = list(order_ids)
        if not ids:
            return {}
        rows = await self._glance(keys=[self.keys.order(client, i) for i in ids])
        found = {}
        for order_id, (state, status, charge, refunded, remains, start, at, provider, quantity) in zip(
            ids, rows, strict=True
        ):
            if state is None:
                continue
            found[order_id] = Glance(
                id=order_id, state=state, status=status or PENDING, charge=from_minor(charge),
                refunded=from_minor(refunded or "0"), remains=int(remains or quantity),
                start_count=int(start or "0"), status_at=float(at or "0"), provider=provider or "",
            )
        return found

    async def owner(self, order_id: int) -> str | None:
        return await self.redis.hget(self.keys.order_owner(order_id), str(order_id))

    async def find(self, order_id: int) -> Order | None:
        """An order by our ID alone (operators); None if unknown or archived."""
        client = await self.owner(order_id)
        return await self.get(client, order_id) if client and not client.startswith("~") else None

    async def clients(self) -> list[str]:
        return sorted(await self.redis.smembers(self.keys.clients))

    async def ids_in(self, group: str, client: str | None = None) -> list[int]:
        """Order IDs in a working set (or 'all'), of one client or every client, oldest first."""
        clients = [client] if client else await self.clients()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in clients:
                pipe.zrange(self.keys.orders_of(name, group), 0, -1)
            replies = await pipe.execute()
        return sorted(int(i) for ids in replies for i in ids)

    async def count(self, group: str) -> int:
        clients = await self.clients()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in clients:
                pipe.zcard(self.keys.orders_of(name, group))
            return sum(await pipe.execute())

    async def newest(self, client: str | None = None) -> AsyncIterator[Order]:
        """Orders newest first, of one client or of all (through the owner index)."""
        if client:
            key, start = self.keys.orders_of(client, "all"), 0
            while ids := [int(i) for i in await self.redis.zrevrange(key, start, start + OWNER_BUCKET - 1)]:
                found = await self.get_many(client, ids)
                for order_id in ids:
                    if order_id in found:
                        yield found[order_id]
                start += OWNER_BUCKET
            return
        newest = int(await self.redis.get(self.keys.order_seq) or 0)
        for bucket in range(newest // OWNER_BUCKET, -1, -1):
            owners = await self.redis.hgetall(self.keys.order_owner(bucket * OWNER_BUCKET))
            by_client: dict[str, list[int]] = {}
            for order_id, owner in owners.items():
                if not owner.startswith("~"):  # archived
                    by_client.setdefault(owner, []).append(int(order_id))
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
    ) -> Order:
        """Apply `event` to `order` as the state table says; the order after.

        `refund_to` raises the order's total refund to that amount where the
        rule moves money by target; `attention` queues it for an operator with
        that reason; `version` (for status reads) drops the answer if another
        status was applied since the order was read. `call` names this call:
        repeating it (after a lost reply) never applies it twice. Raises
        `StateChanged` when the table does not allow the event now.
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
        args = [
            event,
            self.token,
            self.lease_ms,
            "" if refund_to is None else to_minor(refund_to),
            "" if version is None else version,
            attention,
            memo or f"order {order.id} {event}",
            call or new_call(),
            *_flatten(fields or {}),
        ]
        due = self._due_change(order, event, fields or {})
        if due is None or not self.pipelined:
            reply = await self._transition(keys=keys, args=args)
            if due is not None and reply[0] == "ok":
                with contextlib.suppress(Exception):  # best effort: the poller repairs it
                    await due(self.redis)
        else:  # the due index moves in the same round trip (best effort: the poller repairs it)
            async with self.redis.pipeline(transaction=False) as pipe:
                await self._transition(keys=keys, args=args, client=pipe)
                due(pipe)
                reply, _ = await pipe.execute(raise_on_error=False)
            if isinstance(reply, Exception):
                raise reply
        if reply[0] in ("ok", "stale"):
            after = Order.from_record(_pairs(reply[2]))
            if reply[0] == "ok" and (after.state != reply[1] or after.refunded != order.refunded or event != "status"):
                log.info(
                    "order %s %s: %s -> %s%s%s%s", order.id, event, reply[1], after.state,
                    f" at {after.provider} as upstream order {after.upstream_order}" if event == ACCEPT else "",
                    f", refunded {after.refunded} in all" if after.refunded != order.refunded else "",
                    f", needs an operator: {after.attention}" if after.attention and not order.attention else "",
                    extra={"order": order.id, "transition": event, "client": client},
                )
            return after
        if reply[0] == "missing":
            raise StateChanged(None)
        raise StateChanged(reply[1], reply[0])

    # -- the due index: which open orders' statuses to read next --------------

    def _due_change(self, order: Order, event: str, fields: Mapping[str, object]):  # type: ignore[no-untyped-def]
        """How `event` moves the order in its provider's due index, if it does."""
        provider = str(fields.get("provider") or order.provider)
        if not provider:
            return None
        key, member = self.keys.due(provider), f"{order.client}:{order.id}"
        change = due_change(order.state, event, fields.get("status"))
        if change:
            at = float(str(fields.get("status_at", order.status_at) or 0))
            return lambda pipe: pipe.zadd(key, {member: at})
        if change is False:
            return lambda pipe: pipe.zrem(key, member)
        return None

    async def claim_due(self, provider: str, read_before: float, now: float, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` open orders of `provider` whose status was read before
        `read_before`, claimed for this round: (client, order ID)."""
        members = await self._claim_due(keys=[self.keys.due(provider)], args=[repr(read_before), repr(now), limit])
        taken = []
        for member in members:
            client, _, order_id = member.rpartition(":")
            taken.append((client, int(order_id)))
        return taken

    async def orders_of(self, pairs: Iterable[tuple[str, int]]) -> list[Order]:
        """Orders by (client, ID), in one round trip."""
        return [Order.from_record(record) for record in await self.records(pairs) if record]

    # -- leases ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def leased(self, order: Order) -> AsyncIterator[None]:
        """Renew the order's lease while the caller is placing it."""
        task = asyncio.create_task(self._keep_lease(order), name=f"lease-{order.id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_lease(self, order: Order) -> None:
        key = self.keys.lease(order.client, order.id)
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._renew(keys=[key], args=[self.token, self.lease_ms])
            except Exception as exc:  # Redis away: the next try may work; the lease may lapse
                log.warning("order %s: lease not renewed: %s", order.id, type(exc).__name__)

    async def recover(self) -> list[Order]:
        """Take over the in-flight orders whose placing task is gone.

        An order still in flight whose lease has expired was left by a task
        that died (or stalled past its lease): `abandon` refunds one that was
        never sent and makes one that may exist upstream `unknown`. Orders
        whose lease is alive are left alone, whatever any clock says.
        """
        settled = []
        for client in await self.clients():
            ids = [int(i) for i in await self.redis.zrange(self.keys.orders_of(client, "inflight"), 0, -1)]
            if not ids:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for order_id in ids:
                    pipe.exists(self.keys.lease(client, order_id))
                leased = await pipe.execute()
            for order_id in (i for i, held in zip(ids, leased, strict=True) if not held):
                order = await self.get(client, order_id)
                if order is None or order.state not in IN_FLIGHT:
                    continue
                try:
                    settled.append(await self.apply(order, ABANDON, memo=f"order {order_id} abandoned in flight"))
                except StateChanged:
                    continue
        return settled

    # -- claims on upstream orders ---------------------------------------------

    async def claim(self, order: Order, provider: str, upstream_order: int) -> int | None:
        """Make `order` the owner of `upstream_order` at `provider`.

        None when it is ours now; the ID of the other order that owns it
        otherwise. An order still in flight owns its claim (it records the
        upstream ID one step after claiming it). A claim left by an order that
        did not record it and is no longer in flight (a crash between claim
        and transition, a failed resolve) is taken over.
        """
        key = self.keys.claims(provider, upstream_order)
        expected = ""
        for _ in range(5):
            current = await self._claim(keys=[key], args=[upstream_order, order.id, expected])
            if current in ("ok", str(order.id)):
                return None
            if current == "":  # released since we looked: claim it afresh
                expected = ""
                continue
            other = await self.find(int(current))
            if other is not None and (
                other.state in IN_FLIGHT or (other.provider == provider and other.upstream_order == upstream_order)
            ):
                return other.id
            expected = current
        raise RuntimeError(f"claim on {provider} {upstream_order} kept changing")

    async def release_claim(self, order: Order, provider: str, upstream_order: int) -> None:
        await self._claim(keys=[self.keys.claims(provider, upstream_order)], args=[upstream_order, "", order.id])

    # -- operators -------------------------------------------------------------

    async def _found(self, order_id: int) -> Order:
        order = await self.find(order_id)
        if order is None:
            raise LookupError(f"no order {order_id}")
        return order

    async def resolve(self, order_id: int, *, upstream_order: int | None = None, failed: bool = False) -> Order:
        """An operator's verdict on an `unknown` order: it exists upstream as
        `upstream_order`, or it does not (`failed`: refunded in full).

        Refuses an upstream order that another of our orders already owns.
        """
        if (upstream_order is None) == (not failed):
            raise ValueError("give the upstream order ID, or declare the order failed")
        order = await self._found(order_id)
        if failed:
            return await self.apply(order, RESOLVE_FAILED, memo=f"order {order_id} resolved as failed")
        assert upstream_order is not None
        if upstream_order <= 0:
            raise ValueError("an upstream order ID is a positive number")
        if order.state != UNKNOWN:
            raise StateChanged(order.state)
        owner = await self.claim(order, order.provider, upstream_order)
        if owner is not None:
            raise ClaimConflict(order.provider, upstream_order, owner)
        try:
            return await self.apply(
                order, RESOLVE_PLACED, {"upstream_order": upstream_order, "status_at": 0},
                memo=f"order {order_id} resolved as placed",
            )
        except StateChanged:
            now = await self.get(order.client, order.id)  # a late reply may have placed it with this very ID
            if now is None or now.upstream_order != upstream_order:
                await self.release_claim(order, order.provider, upstream_order)
            raise

    async def refund(self, order_id: int, total: Decimal) -> Order:
        """An operator's refund: raise the order's total refund to `total`."""
        order = await self._found(order_id)
        if total > order.charge or total < order.refunded:
            raise ValueError(
                f"the total refund must be between {order.refunded} (already refunded) and {order.charge} (charged)"
            )
        return await self.apply(order, REFUND, refund_to=total, memo=f"order {order_id} refunded by an operator")

    async def acknowledge(self, order_id: int) -> Order:
        """An operator has dealt with what the order's attention note said."""
        return await self.apply(await self._found(order_id), ACK)

    # -- counters (not money: best effort) -------------------------------------

    async def tally(self, name: str, amount: int = 1) -> None:
        try:
            await self.redis.hincrby(self.keys.metrics, name, amount)
        except Exception as exc:
            log.warning("counter %s not counted: %s", name, type(exc).__name__)

    async def metrics(self) -> dict[str, int]:
        """Order outcomes: counted by the transition script in each client's totals
        (state:event pairs), and a few rarer ones counted beside."""
        counted = {k: int(v) for k, v in (await self.redis.hgetall(self.keys.metrics)).items()}
        events = await self.totals_raw()
        for outcome, transitions in OUTCOMES.items():
            counted[f"orders_{outcome}"] = sum(events.get(counter(*t), 0) for t in transitions)
        return counted

    async def totals_raw(self) -> dict[str, int]:
        """Every client's running totals, summed (minor units, and counts)."""
        clients = await self.clients()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in clients:
                pipe.hgetall(self.keys.totals(name))
            replies = await pipe.execute()
        summed: dict[str, int] = {}
        for totals in replies:
            for kind, amount in totals.items():
                summed[kind] = summed.get(kind, 0) + int(amount)
        return summed

    async def totals(self) -> dict[str, Decimal]:
        """Every client's money by kind, summed: charge, refund, topup, paid (upstream)."""
        return {kind: from_minor(n) for kind, n in (await self.totals_raw()).items() if not kind.startswith(COUNTED)}
