"""Order records and their state machine, kept in Redis.

    reserved ──send──▶ submitted ──reply with ID──▶ placed ─▶ upstream statuses
       ▲                  │                                 ├─▶ Partial  (refund remains)
       │ next route       ├─ provider refused ─┘            └─▶ Canceled (refund all)
       │                  │  (no route left: failed, refund)
       │                  └─ no answer / garbage ─▶ unknown ──operator──▶ placed | failed

`reserved` is written with the charge in one script; `submitted` (with the
provider) is written before a request leaves, so after a crash a record
still `reserved` was never sent and one still `submitted` may exist
upstream. Every transition checks the state it comes from, and every one
that moves money does so in the same script, against a reference, so a
refund happens exactly once however many processes race to apply it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import redis.asyncio as aioredis

from proxy.accounts.ledger import Ledger, UnknownClient
from proxy.money import floor_to, from_minor, to_minor
from proxy.store import Keys
from proxy.vocabulary import (
    CANCELED,
    EXPIRED,
    FINAL_ORDER_STATUSES,
    PARTIAL,
    PENDING,
    SERVICE_TYPES,
)

RESERVED = "reserved"
SUBMITTED = "submitted"
PLACED = "placed"
UNKNOWN = "unknown"
FAILED = "failed"
STATES = (RESERVED, SUBMITTED, PLACED, UNKNOWN, FAILED)

# KEYS: client, balance, ledger, applied, order, duplicate
# ARGV: charge (minor, > 0), ref, memo, duplicate ttl ms (0: none), order id, field, value, ...
PLACE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'no_client'}
end
if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1 then
  return {'ok', 'retried'}
end
if ARGV[4] ~= '0' then
  local first = redis.call('GET', KEYS[6])
  if first then
    return {'duplicate', first}
  end
end
local after = redis.call('DECRBY', KEYS[2], ARGV[1])
if after < 0 then
  redis.call('INCRBY', KEYS[2], ARGV[1])
  return {'insufficient'}
end
local id = redis.call('XADD', KEYS[3], '*', 'kind', 'charge', 'amount', '-' .. ARGV[1],
                      'balance', redis.call('GET', KEYS[2]), 'ref', ARGV[2], 'memo', ARGV[3])
redis.call('HSET', KEYS[4], ARGV[2], id)
redis.call('HSET', KEYS[5], unpack(ARGV, 6))
if ARGV[4] ~= '0' then
  redis.call('SET', KEYS[6], ARGV[5], 'PX', ARGV[4])
end
return {'ok', id}
"""

# KEYS: order, balance, ledger, applied
# ARGV: allowed states ("a,b" or "*"), refunded so far (as read), refund delta
#       (minor, "0": none), ref, memo, snapshot time ("" or seconds: skip if the
#       record holds a newer status), field, value, ...
TRANSITION_SCRIPT = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'missing'}
end
if ARGV[1] ~= '*' then
  local allowed = false
  for s in string.gmatch(ARGV[1], '[^,]+') do
    if s == state then allowed = true end
  end
  if not allowed then
    return {'state', state}
  end
end
if ARGV[6] ~= '' then
  local status = redis.call('HGET', KEYS[1], 'status')
  if status == 'Completed' or status == 'Partial' or status == 'Canceled' or status == 'Expired' then
    return {'stale', state}
  end
  if tonumber(redis.call('HGET', KEYS[1], 'status_at') or '0') > tonumber(ARGV[6]) then
    return {'stale', state}
  end
end
if ARGV[3] ~= '0' then
  if (redis.call('HGET', KEYS[1], 'refunded') or '0') ~= ARGV[2] then
    return {'conflict'}
  end
  if redis.call('HEXISTS', KEYS[4], ARGV[4]) == 0 then
    redis.call('INCRBY', KEYS[2], ARGV[3])
    local id = redis.call('XADD', KEYS[3], '*', 'kind', 'refund', 'amount', ARGV[3],
                          'balance', redis.call('GET', KEYS[2]), 'ref', ARGV[4], 'memo', ARGV[5])
    redis.call('HSET', KEYS[4], ARGV[4], id)
    redis.call('HINCRBY', KEYS[1], 'refunded', ARGV[3])
  end
end
if #ARGV > 6 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 7))
end
return {'ok', state}
"""


class InsufficientFunds(Exception):
    pass


class StateChanged(Exception):
    """A transition found the order in a state it does not start from."""

    def __init__(self, state: str | None) -> None:
        super().__init__(f"order is {state or 'missing'}")
        self.state = state


@dataclass(frozen=True)
class Attempt:
    provider: str
    outcome: str  # "sent", "refused", "unknown", "placed"
    reason: str = ""


@dataclass(frozen=True)
class Order:
    """One order as its record holds it. Amounts are in the deployment currency."""

    id: int
    client: str
    service: int
    type: str
    quantity: int  # total units: per-run quantity x runs
    link: str
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
    provider: str = ""
    upstream_service: int = 0
    upstream_order: int = 0
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    duplicate_key: str = ""
    submitted_at: float = 0.0
    attention: str = ""  # why an operator must look at it, if they must

    @property
    def public_status(self) -> str:
        """What the client is shown: `unknown` looks Pending, `failed` Canceled."""
        if self.state == PLACED:
            return self.status
        if self.state == FAILED:
            return CANCELED
        return PENDING

    @property
    def final(self) -> bool:
        if self.state == FAILED:
            return True
        return self.state == PLACED and (self.status in FINAL_ORDER_STATUSES or self.status == EXPIRED)

    @property
    def flat(self) -> bool:
        spec = SERVICE_TYPES.get(self.type)
        return spec is not None and spec.flat

    @property
    def net_charge(self) -> Decimal:
        return self.charge - self.refunded

    def refund_due(self, status: str, remains: int) -> Decimal:
        """Total refund an upstream status calls for: none, remains' share, or all.

        A flat-priced package has no per-unit price, so its Partial refund is
        left to an operator rather than guessed.
        """
        if status == CANCELED:
            return self.charge
        if status == PARTIAL and self.quantity > 0 and not self.flat:
            return floor_to(self.charge * min(remains, self.quantity) / self.quantity)
        return Decimal(0)

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> Order:
        return cls(
            id=int(record["id"]),
            client=record["client"],
            service=int(record["service"]),
            type=record["type"],
            quantity=int(record["quantity"]),
            link=record.get("link", ""),
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
            provider=record.get("provider", ""),
            upstream_service=int(record.get("upstream_service", "0")),
            upstream_order=int(record.get("upstream_order", "0")),
            attempts=tuple(Attempt(**a) for a in json.loads(record.get("attempts", "[]"))),
            duplicate_key=record.get("duplicate_key", ""),
            submitted_at=float(record.get("submitted_at", "0")),
            attention=record.get("attention", ""),
        )


@dataclass(frozen=True)
class NewOrder:
    """What `OrderBook.reserve` needs to open an order."""

    client: str
    service: int
    type: str
    quantity: int
    link: str
    fields: Mapping[str, str]
    charge: Decimal
    refill: bool
    cancel: bool


def _flatten(fields: Mapping[str, object]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, str(value)]
    return flat


class OrderBook:
    """Order records in Redis and the atomic transitions between states."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, ledger: Ledger, clock=time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.ledger = ledger
        self.clock = clock
        self._place = redis.register_script(PLACE_SCRIPT)
        self._transition = redis.register_script(TRANSITION_SCRIPT)

    @staticmethod
    def charge_ref(order_id: int) -> str:
        return f"order:{order_id}:charge"

    @staticmethod
    def refund_ref(order_id: int, total_minor: int) -> str:
        return f"order:{order_id}:refund:{total_minor}"

    async def reserve(self, new: NewOrder, duplicate_token: str | None, duplicate_ttl: float) -> tuple[int, bool]:
        """Debit the charge and record the order `reserved`, in one step.

        Returns (order ID, False), or (the first order's ID, True) when the
        same client sent the same order within the window. Raises
        `InsufficientFunds` (nothing changes) and `UnknownClient`.
        """
        order_id = await self.redis.incr(self.keys.order_seq)
        now = self.clock()
        record = {
            "id": order_id,
            "client": new.client,
            "service": new.service,
            "type": new.type,
            "quantity": new.quantity,
            "link": new.link,
            "fields": json.dumps(dict(new.fields), ensure_ascii=False),
            "charge": to_minor(new.charge),
            "refunded": 0,
            "state": RESERVED,
            "status": PENDING,
            "remains": new.quantity,
            "start_count": 0,
            "status_at": 0,
            "created": repr(now),
            "refill": int(new.refill),
            "cancel": int(new.cancel),
            "attempts": "[]",
        }
        ttl_ms = int(duplicate_ttl * 1000) if duplicate_token else 0
        duplicate_key = self.keys.duplicate(new.client, duplicate_token or "-")
        if duplicate_token:
            record["duplicate_key"] = duplicate_key
        # The indexes first: a record is never without its owner entry, and
        # recovery finds a charged order even if this process dies right after.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.order_owner, str(order_id), new.client)
            pipe.zadd(self.keys.orders_in("inflight"), {str(order_id): now})
            await pipe.execute()
        reply = await self._place(
            keys=[*self.ledger.script_keys(new.client), self.keys.order(new.client, order_id), duplicate_key],
            args=[to_minor(new.charge), self.charge_ref(order_id), f"order {order_id}", ttl_ms, order_id, *_flatten(record)],
        )
        if reply[0] != "ok":
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hdel(self.keys.order_owner, str(order_id))
                pipe.zrem(self.keys.orders_in("inflight"), str(order_id))
                await pipe.execute()
            if reply[0] == "duplicate":
                return int(reply[1]), True
            if reply[0] == "insufficient":
                raise InsufficientFunds(new.client)
            raise UnknownClient(new.client)
        await self.redis.zadd(self.keys.orders, {str(order_id): now})
        return order_id, False

    async def get(self, client: str, order_id: int) -> Order | None:
        record = await self.redis.hgetall(self.keys.order(client, order_id))
        return Order.from_record(record) if record else None

    async def get_many(self, client: str, order_ids: Iterable[int]) -> dict[int, Order]:
        ids = list(order_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in ids:
                pipe.hgetall(self.keys.order(client, order_id))
            records = await pipe.execute()
        return {i: Order.from_record(r) for i, r in zip(ids, records, strict=True) if r}

    async def find(self, order_id: int) -> Order | None:
        """An order by our ID alone (operators)."""
        client = await self.redis.hget(self.keys.order_owner, str(order_id))
        return await self.get(client, order_id) if client else None

    async def transition(
        self,
        order: Order,
        allowed: Iterable[str] | None,
        fields: Mapping[str, object],
        refund_to: Decimal | None = None,
        memo: str = "",
        snapshot: float | None = None,
    ) -> Order:
        """Set `fields` if the order is in an `allowed` state (None: any).

        With `refund_to`, the order's total refund is raised to that amount
        in the same step: the client is credited the difference, never twice
        and never more than was charged. With `snapshot` (when an upstream
        status was asked for), nothing changes if the record already holds a
        final status or one read later. Raises `StateChanged`.
        """
        for _ in range(10):
            delta = Decimal(0)
            if refund_to is not None:
                refund_to = min(refund_to, order.charge)
                delta = refund_to - order.refunded
            total = to_minor(refund_to) if refund_to is not None else 0
            reply = await self._transition(
                keys=[
                    self.keys.order(order.client, order.id),
                    *self.ledger.script_keys(order.client)[1:],
                ],
                args=[
                    ",".join(allowed) if allowed is not None else "*",
                    to_minor(order.refunded),
                    to_minor(delta) if delta > 0 else 0,
                    self.refund_ref(order.id, total),
                    memo or f"refund order {order.id}",
                    "" if snapshot is None else repr(snapshot),
                    *_flatten({**fields, "updated": repr(self.clock())}),
                ],
            )
            if reply[0] == "ok":
                break
            if reply[0] == "stale":
                fresh = await self.get(order.client, order.id)
                assert fresh is not None
                return fresh
            if reply[0] == "conflict":  # another process refunded meanwhile: re-read
                fresh = await self.get(order.client, order.id)
                if fresh is None:
                    raise StateChanged(None)
                order = fresh
                continue
            raise StateChanged(reply[1] if len(reply) > 1 else None)
        else:
            raise RuntimeError(f"order {order.id}: refund kept conflicting")
        updated = await self.get(order.client, order.id)
        assert updated is not None
        await self._reindex(updated)
        if updated.state == FAILED and updated.duplicate_key:
            await self._forget_duplicate(updated)
        return updated

    async def _forget_duplicate(self, order: Order) -> None:
        """A failed order must not answer the client's retries: drop its fingerprint."""
        key = order.duplicate_key
        if await self.redis.get(key) == str(order.id):
            await self.redis.delete(key)

    async def resolve(self, order_id: int, *, upstream_order: int | None = None, failed: bool = False) -> Order:
        """An operator's verdict on an `unknown` order: it exists upstream as
        `upstream_order`, or it does not (`failed`: refunded in full)."""
        if (upstream_order is None) == (not failed):
            raise ValueError("give the upstream order ID, or declare the order failed")
        order = await self.find(order_id)
        if order is None:
            raise LookupError(f"no order {order_id}")
        if failed:
            return await self.transition(
                order, [UNKNOWN], {"state": FAILED}, refund_to=order.charge,
                memo=f"order {order_id} resolved as failed",
            )
        return await self.transition(
            order, [UNKNOWN], {"state": PLACED, "upstream_order": upstream_order, "status_at": 0}
        )

    async def recover(self, older_than: float) -> list[Order]:
        """Settle orders a crash left mid-flight: reserved, or sent, before `older_than`.

        One still `reserved` was never sent: it is refunded. One `submitted`
        may exist upstream: it becomes `unknown` for an operator.
        """
        settled = []
        for order_id in await self.ids_in("inflight", older_than):
            order = await self.find(order_id)
            if order is None:  # the place script refused it, or it never ran
                await self.redis.zrem(self.keys.orders_in("inflight"), str(order_id))
                await self.redis.hdel(self.keys.order_owner, str(order_id))
                continue
            try:
                if order.state == RESERVED:
                    order = await self.transition(
                        order, [RESERVED], {"state": FAILED}, refund_to=order.charge,
                        memo=f"order {order_id} never sent",
                    )
                elif order.state == SUBMITTED:
                    order = await self.transition(order, [SUBMITTED], {"state": UNKNOWN})
                    await self.count_metric("orders_unknown")
                else:
                    await self._reindex(order)
                    continue
            except StateChanged:
                continue
            settled.append(order)
        return settled

    async def _reindex(self, order: Order) -> None:
        """Keep the working sets in step with the record (not money: best effort)."""
        oid = str(order.id)
        async with self.redis.pipeline(transaction=False) as pipe:
            if order.state in (RESERVED, SUBMITTED):
                since = order.submitted_at if order.state == SUBMITTED else order.created
                pipe.zadd(self.keys.orders_in("inflight"), {oid: since or order.created})
            else:
                pipe.zrem(self.keys.orders_in("inflight"), oid)
            if order.state == UNKNOWN:
                pipe.zadd(self.keys.orders_in("unknown"), {oid: order.created})
            else:
                pipe.zrem(self.keys.orders_in("unknown"), oid)
            if order.state == PLACED and not order.final:
                pipe.zadd(self.keys.orders_in("open"), {oid: order.created})
            else:
                pipe.zrem(self.keys.orders_in("open"), oid)
            await pipe.execute()

    async def needs_attention(self, order: Order, reason: str) -> Order:
        """Queue an order for an operator (`orders list --state attention`)."""
        added = await self.redis.zadd(self.keys.orders_in("attention"), {str(order.id): order.created})
        if added:
            await self.redis.hset(self.keys.order(order.client, order.id), "attention", reason)
            await self.count_metric("orders_attention")
        return await self.get(order.client, order.id) or order

    async def refund(self, order_id: int, total: Decimal) -> Order:
        """An operator's refund: raise the order's total refund to `total`."""
        order = await self.find(order_id)
        if order is None:
            raise LookupError(f"no order {order_id}")
        if total > order.charge or total < order.refunded:
            raise ValueError(
                f"the total refund must be between {order.refunded} (already refunded) and {order.charge} (charged)"
            )
        order = await self.transition(
            order, [PLACED, FAILED], {"attention": ""}, refund_to=total, memo=f"order {order_id} refunded by an operator"
        )
        await self.redis.zrem(self.keys.orders_in("attention"), str(order_id))
        return order

    async def ids_in(self, group: str, older_than: float | None = None) -> list[int]:
        key = self.keys.orders if group == "all" else self.keys.orders_in(group)
        high = "+inf" if older_than is None else older_than
        return [int(i) for i in await self.redis.zrangebyscore(key, "-inf", high)]

    async def count(self, group: str) -> int:
        return await self.redis.zcard(self.keys.orders_in(group))

    async def count_metric(self, name: str, amount: int = 1) -> None:
        await self.redis.hincrby(self.keys.metrics, name, amount)

    async def metrics(self) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.redis.hgetall(self.keys.metrics)).items()}
