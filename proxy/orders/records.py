"""An order as Python sees it, and as its Redis record holds it.

A record is one hash per order (`Keys.order`): amounts in integer minor
units, times as seconds to the millisecond, the attempts as compact JSON.
`Order.from_record` reads one; `NewOrder.record` writes the first version,
which the reserve script stores. `OrderSummary` is the few fields a status
read shows, read for many orders in one command (`SUMMARY_FIELDS`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from proxy.money import ceil_to, from_minor, to_minor
from proxy.orders.states import RESERVED, final, shown_remains, shown_status
from proxy.vocabulary import PENDING, SERVICE_TYPES


@dataclass(frozen=True)
class Attempt:
    """One route tried for an order."""

    provider: str
    outcome: str  # "sent", "refused", "unknown", "placed"
    reason: str = ""


# The record fields a status read shows, in the order the summaries script reads them.
SUMMARY_FIELDS = (
    "state",
    "status",
    "charge",
    "refunded",
    "remains",
    "start_count",
    "status_at",
    "provider",
    "quantity",
    "misses",
)


class Shown:
    """What a client is shown of an order, from the fields every view of one has."""

    state: str
    status: str
    charge: Decimal
    refunded: Decimal
    remains: int
    quantity: int

    @property
    def public_status(self) -> str:
        """What the client is shown (`states.shown_status`)."""
        return shown_status(self.state, self.status, self.charge, self.refunded)

    @property
    def public_remains(self) -> int:
        """What the client is shown as remaining (`states.shown_remains`)."""
        return shown_remains(self.state, self.remains, self.quantity, self.charge, self.refunded)

    @property
    def net_charge(self) -> Decimal:
        return self.charge - self.refunded


@dataclass(frozen=True)
class OrderSummary(Shown):
    """What a status read shows of an order, and what follows from it."""

    id: int
    state: str
    status: str  # the upstream status, canonical; meaningful once placed
    charge: Decimal
    refunded: Decimal
    remains: int
    start_count: int
    status_at: float
    provider: str
    quantity: int  # total units: per-run quantity x runs
    # Status reads in a row that no rule could settle (keyword-only, so that it may default).
    misses: int = field(default=0, kw_only=True)

    @property
    def final(self) -> bool:
        return final(self.state, self.status)

    @classmethod
    def from_row(cls, order_id: int, row: Sequence[str | None]) -> OrderSummary | None:
        """A summary from the values of `SUMMARY_FIELDS`; None for no record."""
        state, status, charge, refunded, remains, start, at, provider, quantity, misses = row
        if state is None:
            return None
        return cls(
            id=order_id,
            state=state,
            status=status or PENDING,
            charge=from_minor(charge or "0"),
            refunded=from_minor(refunded or "0"),
            remains=int(remains or quantity or "0"),
            start_count=int(start or "0"),
            status_at=float(at or "0"),
            provider=provider or "",
            quantity=int(quantity or "0"),
            misses=int(misses or "0"),
        )


@dataclass(frozen=True)
class Order(OrderSummary):
    """One order as its record holds it: the summary, and the rest. Amounts
    are in the deployment currency unless they say otherwise."""

    client: str
    service: int
    type: str
    fields: Mapping[str, str]  # what is sent upstream with `add`
    created: float
    refill: bool
    cancel: bool
    billing: str = "rate"  # "delivery": settled at the end to what the provider charged
    upstream_service: int = 0
    upstream_order: int = 0
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    duplicate_key: str = ""
    link_key: str = ""  # the order's key in its client's open-links index ("" for none)
    attention: str = ""  # why an operator must look at it, if they must
    version: int = 0  # of the status, for dropping answers read before the last one applied
    cost: Decimal | None = None  # what the route's rate said it costs us, in `cost_currency`
    cost_currency: str = ""
    cost_base: Decimal | None = None  # the same cost in the deployment currency, at the config's rate
    upstream_charge: Decimal | None = None  # what the provider last said it charged
    upstream_currency: str = ""
    stops: int = 0  # times an unlimited subscription that used its hold was asked to stop upstream
    checked_at: float = 0.0  # when a final order was last re-read (`states.RECHECK`)
    closed_reason: str = ""  # what the operator who closed it said
    call: str = ""  # the call that last changed it (`new_call`): who applied a transition

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

        # Every field is given: set at once, past the frozen dataclass' __init__ (a
        # setattr a field, 35 of them: a third of this function's time, three times an add).
        order = object.__new__(cls)
        order.__dict__.update(
            id=int(record["id"]),
            client=record["client"],
            service=int(record["service"]),
            type=record["type"],
            quantity=int(record["quantity"]),
            fields=_loads(record.get("fields", "{}")),
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
            link_key=record.get("link_key", ""),
            attention=record.get("attention", ""),
            version=int(record.get("v", "0")),
            cost=amount("cost"),
            cost_currency=record.get("cost_currency", ""),
            cost_base=amount("cost_base"),
            upstream_charge=amount("upstream_charge"),
            upstream_currency=record.get("upstream_currency", ""),
            misses=int(record.get("misses", "0")),
            stops=int(record.get("stops", "0")),
            checked_at=float(record.get("checked_at", "0")),
            closed_reason=record.get("closed_reason", ""),
            # The last call applied: the head of `calls` (records before it kept a `call` of its own).
            call=(record.get("calls") or record.get("call") or "").partition(" ")[0],
        )
        return order


@dataclass(frozen=True)
class ArchivedOrder(Shown):
    """What Redis keeps of an archived order (the archive file keeps the
    rest): enough to answer its client's `status` and `refill`, and to count
    its money in reports. One line of text, "|"-joined (`encode`), about 45
    bytes: short enough for Redis' compact hash encoding (64 bytes a value)."""

    id: int
    client: str
    state: str
    status: str
    charge: Decimal
    refunded: Decimal
    quantity: int
    remains: int
    start_count: int
    refill: bool
    upstream_order: int
    service: int
    created: float
    cost: Decimal  # what it cost us upstream, in the deployment currency, as reports count it
    provider: str  # last: the one field that may hold any character

    cancel = False  # archived orders are final
    final = True

    @classmethod
    def of(cls, order: Order, cost: Decimal) -> ArchivedOrder:
        return cls(
            id=order.id,
            client=order.client,
            state=order.state,
            status=order.status,
            charge=order.charge,
            refunded=order.refunded,
            quantity=order.quantity,
            remains=order.remains,
            start_count=order.start_count,
            refill=order.refill,
            upstream_order=order.upstream_order,
            service=order.service,
            created=order.created,
            cost=ceil_to(cost),
            provider=order.provider,
        )

    def encode(self) -> str:
        """state|status|then whole numbers in base 36 (amounts in minor units)|provider."""
        numbers = (
            to_minor(self.charge),
            to_minor(self.refunded),
            self.quantity,
            self.remains,
            self.start_count,
            int(self.refill),
            self.upstream_order,
            self.service,
            int(self.created),
            to_minor(self.cost),
        )
        return "|".join([self.state, self.status, *map(_base36, numbers), self.provider])

    @classmethod
    def decode(cls, client: str, order_id: int, text: str) -> ArchivedOrder:
        state, status, *rest = text.split("|", 12)
        charge, refunded, quantity, remains, start, refill, upstream, service, created, cost = (
            int(n, 36) for n in rest[:10]
        )
        return cls(
            id=order_id,
            client=client,
            state=state,
            status=status,
            charge=from_minor(charge),
            refunded=from_minor(refunded),
            quantity=quantity,
            remains=remains,
            start_count=start,
            refill=refill == 1,
            upstream_order=upstream,
            service=service,
            created=float(created),
            cost=from_minor(cost),
            provider=rest[10],
        )


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if number <= 0:
        return "0"
    text = ""
    while number:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
    return text


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

    def record(self, order_id: int, created: float) -> dict[str, object]:
        """The order's first record, `reserved`."""
        record: dict[str, object] = {
            "id": order_id,
            "client": self.client,
            "service": self.service,
            "type": self.type,
            "quantity": self.quantity,
            "fields": json.dumps(dict(self.fields), ensure_ascii=False, separators=(",", ":")),
            "charge": to_minor(self.charge),
            "refunded": 0,
            "state": RESERVED,
            "status": PENDING,
            "remains": self.quantity,
            "created": stamp(created),
            "refill": int(self.refill),
            "cancel": int(self.cancel),
        }
        if self.billing != "rate":
            record["billing"] = self.billing
        return record


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
    """What `OrderBook.reserve` answers."""

    order_id: int
    duplicate: bool  # True: the order a retried add made before
    order: Order | None = None  # the new order, as reserved
    # What the reserve script read of the routes' providers (one server):
    # per provider asked for, its ejection's end, block, funds and low flag.
    routes: tuple[str, ...] | None = None
    # IDs handed out first that numbered other orders already (skipped: `OrderIds.skip`).
    skipped: tuple[int, ...] = ()


def flatten(fields: Mapping[str, object]) -> list[str]:
    """Fields as a script's arguments: name, value, name, value..."""
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, str(value)]
    return flat


def unflatten(flat: Sequence[str]) -> dict[str, str]:
    """A flat HGETALL reply as a record."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


# Call IDs a record remembers, newest first (`calls`; `call` is the last):
# a transition retried after its reply was lost is recognised among them
# however many others were applied since, up to this many.
RECENT_CALLS = 8


def new_call() -> str:
    """A name for one transition call, kept across its retries (64 random bits)."""
    return os.urandom(8).hex()


def attempts_json(attempts: Iterable[Attempt]) -> str:
    """Attempts as the record keeps them: compact JSON, reasons only where there is one."""
    rows = [[a.provider, a.outcome, a.reason] if a.reason else [a.provider, a.outcome] for a in attempts]
    try:
        return orjson.dumps(rows).decode()  # the same text as json.dumps(..., ensure_ascii=False, compact)
    except TypeError:  # text orjson refuses (a lone surrogate): json escapes it, as UTF-8 could not hold it
        return json.dumps(rows, separators=(",", ":"))


def _loads(text: str) -> Any:
    """A record's JSON: orjson, or json for what orjson refuses (an escaped lone
    surrogate: records written by json.dumps' defaults, or by `attempts_json`)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _attempts(text: str) -> tuple[Attempt, ...]:
    return tuple(Attempt(**a) if isinstance(a, dict) else Attempt(*a) for a in _loads(text))


def stamp(seconds: float) -> str:
    """A time for a record: to the millisecond is all anyone reads."""
    return f"{seconds:.3f}"
