"""What providers answer, as typed values, and how their replies are read.

Panels all speak API v2, each with its own accent (`proxy.providers.quirks`
normalises the values): these read whole replies and bulk items into
`UpstreamService`, `UpstreamStatus`, `UpstreamBalance`, refill IDs and
cancel flags. Bulk calls come back as an object keyed by ID or a list of
objects naming their ID (`Bulk` says which action does what); an item that
is an error, missing or unreadable is an `ItemError`, which says only that
this call told us nothing about that item. Pure: no I/O.

See docs/api-v2.md for the shapes and the quirks.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, TypeVar

from proxy.money import MAX_MINOR, ceil_to, from_minor
from proxy.providers import quirks
from proxy.vocabulary import BULK_LIMIT, SERVICE_TYPES

ORDER_ID_KEYS = ("order", "order_id", "id")
BALANCE_KEYS = ("balance", "funds")


@dataclass(frozen=True)
class UpstreamService:
    service: int
    name: str
    type: str
    category: str
    rate: Decimal
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool
    description: str | None


@dataclass(frozen=True)
class UpstreamStatus:
    """An order's state as the provider reports it.

    `status` is canonical (`proxy.vocabulary`), or `None` when the provider's
    spelling is unknown (kept in `raw_status`): keep the previous status.
    `remains` is never negative but may exceed the quantity: clamp it.
    """

    status: str | None
    charge: Decimal | None
    start_count: int | None
    remains: int | None
    currency: str | None
    raw_status: str | None
    # The reply item as sent (redacted, at most RAW_CHARS), for an operator; not part of the value.
    raw: str = field(default="", compare=False)


@dataclass(frozen=True)
class UpstreamBalance:
    balance: Decimal
    currency: str | None


@dataclass(frozen=True)
class ItemError:
    """One item of a bulk reply was an error, missing, or unreadable.

    It says only that this call told us nothing usable about the item, not
    that the order failed: keep what you knew about it.
    """

    message: str


MISSING_FROM_REPLY = "missing from reply"
# How much of a reply item an operator is shown.
RAW_CHARS = 300
UNREADABLE_ITEM = "unreadable reply item"
# The one "unreadable" value, told apart from a provider's error by identity.
UNREADABLE = ItemError(UNREADABLE_ITEM)

# Told apart from any value by identity: an ID that a bulk reply left out.
MISSING = object()

Key = TypeVar("Key")


@dataclass(frozen=True)
class Bulk(Generic[Key]):
    """How one action takes many IDs and names them in its reply."""

    action: str
    parameter: str  # "orders": the comma-separated IDs.
    id_field: str  # "order": an item's ID in a list-shaped reply.
    answer_field: str  # "status": what a single-item reply holds.
    read_id: Callable[[object], Key | None]


def json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "JSON object"
    if isinstance(value, list):
        return "JSON list"
    return "JSON scalar"


def error_of(payload: object) -> str | None:
    """The error a reply object carries, if any (`{"error": "..."}`).

    An empty or false `error` is no error. A non-text one (`{"error": true,
    "message": "..."}`) falls back to `message`, then to its JSON text.
    """
    if not isinstance(payload, dict) or "error" not in payload:
        return None
    error = payload["error"]
    if isinstance(error, str):
        return error if error.strip() else None
    if not error:
        return None
    message = payload.get("message")
    if isinstance(message, str) and message.strip():
        return message
    return json.dumps(error, default=str)


@dataclass(frozen=True)
class DisabledService:
    """An upstream service whose price we cannot use (not a number, negative,
    or too large for any charge to hold): not sold, shown to operators."""

    service: int
    name: str
    category: str
    rate: str  # as the provider sent it, shortened
    reason: str


# The most one order may cost, in a provider's currency: what the ledger can
# hold (2^53 minor units, about 900 million).
MOST_ONE_ORDER_COSTS = from_minor(MAX_MINOR)


def read_service(entry: object) -> UpstreamService | DisabledService | None:
    """A service list entry: a service, one whose price we cannot use
    (`DisabledService`), or None for an entry without a usable ID or limits."""
    if not isinstance(entry, dict):
        return None
    service = quirks.to_int(entry.get("service"))
    minimum = quirks.to_int(entry.get("min"))
    maximum = quirks.to_int(entry.get("max"))
    if service is None or minimum is None or maximum is None:
        return None
    kind = quirks.service_type(entry.get("type"))
    rate = quirks.to_amount(entry.get("rate"))
    problem = price_problem(rate, maximum, kind)
    if problem:
        shown = " ".join(str(entry.get("rate")).split())
        return DisabledService(
            service,
            _text(entry.get("name"))[:100],
            _text(entry.get("category"))[:100],
            shown if len(shown) <= 40 else shown[:37] + "...",
            problem,
        )
    assert rate is not None
    description = entry.get("description")
    return UpstreamService(
        service=service,
        name=_text(entry.get("name")),
        type=kind,
        category=_text(entry.get("category")),
        rate=rate,
        min=minimum,
        max=maximum,
        refill=quirks.to_bool(entry.get("refill")),
        cancel=quirks.to_bool(entry.get("cancel")),
        dripfeed=quirks.to_bool(entry.get("dripfeed")),
        description=None if description is None else _text(description),
    )


def parse_service(entry: object) -> UpstreamService | None:
    """A service we can sell from, or None (see `read_service`)."""
    read = read_service(entry)
    return read if isinstance(read, UpstreamService) else None


def price_problem(rate: Decimal | None, maximum: int, kind: str) -> str:
    """Why a service's rate cannot be used, or "": not a finite number, below
    zero, or so large that an order of its `maximum` could not be charged."""
    if rate is None:
        return "the rate is not a number"
    if rate < 0:
        return "the rate is below zero"
    spec = SERVICE_TYPES.get(kind)
    most = rate if spec is not None and spec.flat else rate * max(maximum, 1) / 1000
    try:
        if ceil_to(most) > MOST_ONE_ORDER_COSTS:
            return "the rate is too large for any order to be charged"
    except ArithmeticError:
        return "the rate is too large for any order to be charged"
    return ""


def parse_status(item: object) -> UpstreamStatus | None:
    if not isinstance(item, dict) or "status" not in item:
        return None
    raw = item["status"]
    if isinstance(raw, (dict, list)):
        return None
    return UpstreamStatus(
        status=quirks.order_status(raw),
        charge=quirks.to_amount(item.get("charge")),
        start_count=quirks.to_int(item.get("start_count")),
        remains=quirks.remains(item.get("remains")),
        currency=currency(item.get("currency")),
        raw_status=None if raw is None else str(raw),
    )


def order_id(payload: object) -> int | None:
    """The order ID of an `add` reply, under any of its names; positive or None."""
    if not isinstance(payload, dict):
        return None
    for key in ORDER_ID_KEYS:
        if payload.get(key) is not None:
            order = quirks.to_int(payload[key])
            return order if order is not None and order > 0 else None
    return None


def refill_key(value: object) -> str | None:
    """A refill ID as text: `1`, `"1"` and `"1.0"` are all "1"."""
    number = quirks.to_int(value)
    if number is not None:
        return str(number)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def currency(value: object) -> str | None:
    """A three-letter currency code, or None for anything else."""
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if len(code) == 3 and code.isascii() and code.isalpha() else None


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value)


def chunks(ids: Sequence[Key]) -> Iterator[list[Key]]:
    """Distinct IDs, in order, `BULK_LIMIT` at a time."""
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), BULK_LIMIT):
        yield unique[start : start + BULK_LIMIT]


STATUSES = Bulk("status", "orders", "order", "status", quirks.to_int)
REFILLS = Bulk("refill", "orders", "order", "refill", quirks.to_int)
REFILL_STATUSES = Bulk("refill_status", "refills", "refill", "status", refill_key)
CANCELS = Bulk("cancel", "orders", "order", "cancel", quirks.to_int)


class Items:
    """Reads one item of a bulk reply (or a single reply of the same shape).

    An item that is an error, missing, or unreadable is an `ItemError`; the
    provider's words in it pass through `redact` (its own API key, echoed
    back, must not reach a log or a client).
    """

    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact

    def error(self, item: object) -> ItemError | None:
        if item is MISSING:
            return ItemError(MISSING_FROM_REPLY)
        error = error_of(item)
        return ItemError(self.redact(error)) if error is not None else None

    def status(self, item: object) -> UpstreamStatus | ItemError:
        failed = self.error(item)
        if failed:
            return failed
        status = parse_status(item)
        if status is None:
            return ItemError(f"{UNREADABLE_ITEM}: {self.raw(item)}")
        return dataclasses.replace(status, raw=self.raw(item))

    def raw(self, item: object) -> str:
        """A reply item as an operator may read it: compact JSON, redacted, bounded."""
        try:
            text = json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            text = repr(item)
        text = " ".join(self.redact(text).split())
        return text if len(text) <= RAW_CHARS else text[: RAW_CHARS - 1] + "…"

    def refill(self, item: object) -> str | ItemError:
        """A refill ID from `{"refill": 1}`, `{"order": 1, "refill": "1"}` or a bare ID."""
        failed = self.error(item)
        if failed:
            return failed
        if isinstance(item, dict):
            item = item.get("refill")
            failed = self.error(item)
            if failed:
                return failed
        refill = refill_key(item)
        return refill if refill is not None else UNREADABLE

    def refill_status(self, item: object) -> str | None | ItemError:
        answer = self._answer(item, "status")
        return answer if isinstance(answer, ItemError) else quirks.refill_status(answer)

    def cancel(self, item: object) -> bool | ItemError:
        answer = self._answer(item, "cancel")
        return answer if isinstance(answer, ItemError) else quirks.to_bool(answer)

    def _answer(self, item: object, name: str) -> object:
        """The plain value an item answers, bare or under `name` (`{"cancel": 1}`);
        an `ItemError` when it is an error or not a plain value."""
        failed = self.error(item)
        if failed:
            return failed
        if isinstance(item, dict):
            if name not in item:
                return UNREADABLE
            item = item[name]
            failed = self.error(item)
            if failed:
                return failed
        if isinstance(item, (dict, list)):
            return UNREADABLE
        return item
