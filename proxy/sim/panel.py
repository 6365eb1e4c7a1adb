"""A simulated SMM panel speaking API v2: plain state, no HTTP.

Every public action returns exactly the JSON a panel answers, or raises
`PanelError` carrying the panel's verbatim error string; `Panel.handle` wraps
them all behind one `params -> reply` entry point for the HTTP app.

Orders move with the injected clock: `Pending` for `step_seconds`, then
`In progress` for `step_seconds`, then their final status. The final status is
drawn at creation from `random.Random(seed)`: `Partial` (refunds
charge × remains / quantity) with `partial_ratio`, `Canceled` (refunds all)
with `cancel_ratio`, else `Completed`. Refills move the same way and end
`Rejected` with `reject_ratio`. `force()` and `force_refill()` pin an outcome.

Amounts are kept to `precision` decimal places (5, like the seed panel):
charges are rounded up, refunds down. A status reports the charge net of any
refund, i.e. what the order finally cost.
"""

from __future__ import annotations

import heapq
import itertools
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from proxy.money import ceil_to, floor_to, format_amount
from proxy.sim.faults import Faults, respell
from proxy.vocabulary import (
    ACTIONS,
    ACTIVE,
    BULK_LIMIT,
    CANCELED,
    COMPLETED,
    EXPIRED,
    FINAL_REFILL_STATUSES,
    FINAL_STATUSES,
    IN_PROGRESS,
    LIST_FIELDS,
    PARTIAL,
    PENDING,
    REJECTED,
    SERVICE_TYPES,
    SUBSCRIPTION_DELAYS,
    SUBSCRIPTIONS,
    Errors,
)

DEFAULT_KEY = "sim-key"
_LINK = re.compile(r"^(https?://[^\s/]+\S*|@?[\w.\-]+(/\S*)?)$", re.IGNORECASE)
_LINES = re.compile(r"\r?\n")
_INTEGER = re.compile(r"-?[0-9]+")


class PanelError(Exception):
    """An API-level error; `message` is what the panel says, verbatim."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SimService:
    service: int
    name: str
    type: str
    category: str
    rate: Decimal
    min: int
    max: int
    refill: bool = False
    cancel: bool = False
    dripfeed: bool = False

    def listing(self) -> dict[str, Any]:
        """The service as the `services` action lists it (seed shape).

        Like panels that support drip-feed, it adds `"dripfeed": true` to the
        services that take `runs`/`interval`.
        """
        listing: dict[str, Any] = {
            "service": self.service,
            "name": self.name,
            "type": self.type,
            "category": self.category,
            "rate": f"{self.rate:f}",
            "min": str(self.min),
            "max": str(self.max),
            "refill": self.refill,
            "cancel": self.cancel,
        }
        if self.dripfeed:
            listing["dripfeed"] = True
        return listing


@dataclass
class SimOrder:
    id: int
    key: str
    service: SimService
    fields: dict[str, str]
    quantity: int
    charge: Decimal
    created: float
    start_count: int
    outcome: str
    outcome_remains: int
    status: str = PENDING
    remains: int = 0
    refund: Decimal = Decimal(0)
    stage: int = 0
    pinned: bool = False

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def unlimited(self) -> bool:
        return self.service.type == SUBSCRIPTIONS and not _int_or_none(self.fields.get("posts") or "0")

    def reply(self, currency: str) -> dict[str, str]:
        return {
            "charge": format_amount(self.charge - self.refund),
            "start_count": str(self.start_count),
            "status": self.status,
            "remains": str(self.remains),
            "currency": currency,
        }


@dataclass
class SimRefill:
    id: int
    key: str
    order: int
    created: float
    outcome: str
    status: str = PENDING
    stage: int = 0
    pinned: bool = False

    @property
    def final(self) -> bool:
        return self.status in FINAL_REFILL_STATUSES


@dataclass
class _Validated:
    quantity: int
    charge: Decimal


class Panel:
    """One panel: its services, accounts (API key -> balance), orders and refills."""

    def __init__(
        self,
        services: Iterable[SimService],
        *,
        currency: str = "USD",
        accounts: Mapping[str, Decimal] | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
        step_seconds: float = 5.0,
        partial_ratio: float = 0.1,
        cancel_ratio: float = 0.05,
        reject_ratio: float = 0.1,
        first_order_id: int | None = None,
        first_refill_id: int = 1,
        precision: int = 5,
        unique_links: bool = False,
    ) -> None:
        self.catalog: dict[int, SimService] = {s.service: s for s in services}
        self.currency = currency
        self._accounts: dict[str, Decimal] = dict(accounts if accounts is not None else {DEFAULT_KEY: Decimal(1000)})
        self.clock = clock
        self.random = random.Random(seed)
        self.step_seconds = step_seconds
        self.partial_ratio = partial_ratio
        self.cancel_ratio = cancel_ratio
        self.reject_ratio = reject_ratio
        self.precision = precision
        self.unique_links = unique_links
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self._orders: dict[int, SimOrder] = {}
        self._refills: dict[int, SimRefill] = {}
        self._open_orders: set[int] = set()
        self._open_refills: dict[int, int] = {}  # order ID -> its unfinished refill
        self._due: list[tuple[float, int, str, int]] = []  # (when, sequence, kind, ID)
        self._sequence = itertools.count()
        if first_order_id is None:
            first_order_id = self.random.randint(10_000, 90_000)
        self._next_order = first_order_id
        self._fixed_order: int | None = None  # hand_out_order_id(always=True)
        self._next_refill = first_refill_id

    # Views that are always up to date with the clock.

    @property
    def accounts(self) -> dict[str, Decimal]:
        self.tick()
        return self._accounts

    @property
    def orders(self) -> dict[int, SimOrder]:
        self.tick()
        return self._orders

    @property
    def refills(self) -> dict[int, SimRefill]:
        self.tick()
        return self._refills

    # The one entry point of the HTTP app.

    def handle(self, params: Mapping[str, str]) -> Any:
        """Answer one API request: the JSON-able reply, errors as `{"error": ...}`."""
        action = params.get("action", "")
        self.calls[action] += 1
        try:
            reply = self._dispatch(action, params)
        except PanelError as error:
            return {"error": error.message}
        return respell(action, reply, self.faults.quirks)

    def _dispatch(self, action: str, params: Mapping[str, str]) -> Any:
        key = params.get("key", "")
        self._authenticate(key)
        if action not in ACTIONS:
            raise PanelError(Errors.INCORRECT_REQUEST)
        if action == "services":
            return self.services()
        if action == "add":
            return self.add(key, params)
        if action == "balance":
            return self.balance(key)
        if action == "refill_status":
            if params.get("refills"):
                return self.refill_status_many(key, _split_ids(params["refills"]))
            return self.refill_status(key, _required(params, "refill"))
        if params.get("orders"):
            ids = _split_ids(params["orders"])
            bulk = {"status": self.status_many, "refill": self.refill_many, "cancel": self.cancel}
            return bulk[action](key, ids)
        order = _required(params, "order")
        if action == "cancel":
            return self.cancel(key, [order])
        return self.status(key, order) if action == "status" else self.refill(key, order)

    # Actions.

    def services(self) -> list[dict[str, Any]]:
        return [s.listing() for s in self.catalog.values()]

    def balance(self, key: str) -> dict[str, str]:
        self._authenticate(key)
        return {"balance": format_amount(self.accounts[key]), "currency": self.currency}

    def add(self, key: str, fields: Mapping[str, str]) -> dict[str, int]:
        self._authenticate(key)
        self.tick()
        service = self.catalog.get(_int_or_none(fields.get("service", "")) or 0)
        if service is None:
            raise PanelError(Errors.INCORRECT_SERVICE)
        kept = {name: str(value) for name, value in fields.items() if name not in ("key", "action")}
        checked = self._validate(service, kept)
        if self.unique_links and any(
            self._orders[i].service == service and self._orders[i].fields.get("link") == kept.get("link")
            for i in self._open_orders
        ):
            raise PanelError(Errors.ACTIVE_ORDER)
        if self._accounts[key] < checked.charge:
            raise PanelError(Errors.NOT_ENOUGH_FUNDS)
        self._accounts[key] -= checked.charge
        order = self._new_order(key, service, kept, checked)
        return {"order": order.id}

    def status(self, key: str, order: str | int) -> dict[str, str]:
        return self._own_order(key, order).reply(self.currency)

    def status_many(self, key: str, orders: Sequence[str]) -> dict[str, dict[str, str]]:
        self._authenticate(key)
        result = {}
        for given in orders:
            try:
                result[given] = self.status(key, given)
            except PanelError as error:
                result[given] = {"error": error.message}
        return result

    def refill(self, key: str, order: str | int) -> dict[str, str]:
        found = self._own_order(key, order)
        if not found.service.refill:
            raise PanelError(Errors.REFILL_DISABLED)
        if found.status not in (COMPLETED, PARTIAL):
            raise PanelError(Errors.NOT_ELIGIBLE_FOR_REFILL)
        if found.id in self._open_refills:
            raise PanelError(Errors.REFILL_NOT_COMPLETED)
        refill = SimRefill(
            id=self._next_refill,
            key=key,
            order=found.id,
            created=self.clock(),
            outcome=REJECTED if self.random.random() < self.reject_ratio else COMPLETED,
        )
        self._next_refill += 1
        self._refills[refill.id] = refill
        self._open_refills[found.id] = refill.id
        self._schedule(refill.created, "refill", refill.id)
        return {"refill": str(refill.id)}

    def refill_many(self, key: str, orders: Sequence[str]) -> list[dict[str, Any]]:
        self._authenticate(key)
        result = []
        for given in orders:
            try:
                item: Any = int(self.refill(key, given)["refill"])
            except PanelError as error:
                item = {"error": error.message}
            result.append({"order": _int_or_none(given) or given, "refill": item})
        return result

    def refill_status(self, key: str, refill: str | int) -> dict[str, str]:
        self._authenticate(key)
        self.tick()
        found = self._refills.get(_int_or_none(refill) or 0)
        if found is None or found.key != key:
            raise PanelError(Errors.REFILL_NOT_FOUND)
        return {"status": found.status}

    def refill_status_many(self, key: str, refills: Sequence[str]) -> list[dict[str, Any]]:
        self._authenticate(key)
        result = []
        for given in refills:
            try:
                status: Any = self.refill_status(key, given)["status"]
            except PanelError as error:
                status = {"error": error.message}
            result.append({"refill": _int_or_none(given) or given, "status": status})
        return result

    def cancel(self, key: str, orders: Sequence[str | int]) -> list[dict[str, Any]]:
        self._authenticate(key)
        result = []
        for given in orders:
            try:
                self._cancel_one(key, given)
                item: Any = 1
            except PanelError as error:
                item = {"error": error.message}
            result.append({"order": _int_or_none(given) or given, "cancel": item})
        return result

    # Test controls.

    def force(self, order_id: int, *, status: str, remains: int | None = None) -> SimOrder:
        """Put an order into `status` now and keep it there (refunding if final)."""
        order = self.orders[order_id]
        if order.final:
            raise ValueError(f"order {order_id} is already {order.status}")
        order.pinned = True
        if status in FINAL_STATUSES:
            if remains is None and order.service.type == SUBSCRIPTIONS and status != CANCELED:
                remains = order.outcome_remains
            if remains is None:
                remains = {COMPLETED: 0, CANCELED: order.quantity}.get(status, order.quantity // 2)
            if not 0 <= remains <= order.quantity:
                raise ValueError(f"remains {remains} outside 0..{order.quantity}")
            order.outcome, order.outcome_remains = status, remains
            self._settle(order)
        else:
            order.status = status
            order.remains = order.quantity if remains is None else remains
        return order

    def revise(self, order_id: int, *, status: str) -> SimOrder:
        """Report a final order as `status` from now on, as a provider that
        changes its mind does (Completed, then Canceled); no money moves here."""
        order = self.orders[order_id]
        if not order.final:
            raise ValueError(f"order {order_id} is {order.status}, not final: force it instead")
        order.status, order.pinned = status, True
        return order

    def open_account(self, key: str, balance: Decimal) -> None:
        """Give the API key `key` an account holding `balance` (or set its balance)."""
        self._accounts[key] = balance

    def hand_out_order_id(self, order_id: int, *, always: bool = False) -> None:
        """Answer the next add (every add, if `always`) with `order_id`, even one
        handed out before: a broken panel's duplicate IDs."""
        self._next_order = order_id
        self._fixed_order = order_id if always else None

    def forget_order(self, order_id: int) -> None:
        """Stop knowing an order: every request about it is refused with
        "Incorrect order ID", as if it belonged to another key."""
        self._orders[order_id].key = ""

    def force_refill(self, refill_id: int, *, status: str) -> SimRefill:
        """Put a refill into `status` now and keep it there."""
        refill = self._refills[refill_id]
        refill.status, refill.pinned = status, True
        if refill.final:
            self._open_refills.pop(refill.order, None)
        return refill

    def tick(self) -> None:
        """Move every open order and refill to where the clock says it is."""
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            _, _, kind, ident = heapq.heappop(self._due)
            if kind == "order":
                self._advance_order(self._orders[ident])
            else:
                self._advance_refill(self._refills[ident])

    def state(self) -> dict[str, Any]:
        """A summary for the admin endpoint."""
        self.tick()
        return {
            "currency": self.currency,
            "services": len(self.catalog),
            "orders": len(self._orders),
            "open_orders": len(self._open_orders),
            "refills": len(self._refills),
            "calls": dict(self.calls),
            "balances": {key: format_amount(value) for key, value in self._accounts.items()},
            "faults": self.faults.to_dict(),
        }

    # Internals.

    def _authenticate(self, key: str) -> None:
        if not key or key not in self._accounts:
            raise PanelError(Errors.INVALID_KEY)

    def _own_order(self, key: str, order: str | int) -> SimOrder:
        self._authenticate(key)
        self.tick()
        found = self._orders.get(_int_or_none(order) or 0)
        if found is None or found.key != key:
            raise PanelError(Errors.INCORRECT_ORDER)
        return found

    def _cancel_one(self, key: str, order: str | int) -> None:
        found = self._own_order(key, order)
        if not found.service.cancel or found.final:
            raise PanelError(Errors.CANNOT_CANCEL)
        found.outcome, found.outcome_remains = CANCELED, found.quantity
        self._settle(found)

    def _validate(self, service: SimService, fields: dict[str, str]) -> _Validated:
        kind = SERVICE_TYPES.get(service.type)
        if kind is None:
            raise PanelError(Errors.INCORRECT_SERVICE)
        if any(not fields.get(name, "").strip() for name in kind.required):
            raise PanelError(Errors.INCORRECT_REQUEST)
        if "link" in kind.required and not _LINK.match(fields["link"].strip()):
            raise PanelError(Errors.INCORRECT_LINK)
        for name in LIST_FIELDS:
            if name in kind.required and not _lines(fields[name]):
                raise PanelError(Errors.INCORRECT_REQUEST)
        if kind.name == SUBSCRIPTIONS:
            return self._validate_subscription(service, fields)
        if kind.name == "Web Traffic":
            _validate_traffic(fields)
        if kind.name == "Poll" and (_positive(fields["answer_number"]) is None):
            raise PanelError(Errors.INCORRECT_REQUEST)

        runs = 1
        if fields.get("runs") or fields.get("interval"):
            if not (kind.dripfeed and service.dripfeed):
                raise PanelError(Errors.INCORRECT_REQUEST)
            runs_value, interval = _positive(fields.get("runs", "")), _positive(fields.get("interval", ""))
            if runs_value is None or interval is None:
                raise PanelError(Errors.INCORRECT_REQUEST)
            runs = runs_value

        if kind.flat:
            return _Validated(quantity=1, charge=self._round_charge(service.rate))
        if kind.quantity == "field":
            quantity = _int_or_none(fields["quantity"])
            if quantity is None:
                raise PanelError(Errors.INCORRECT_REQUEST)
        else:
            quantity = len(_lines(fields[kind.quantity]))
        self._check_bounds(service, quantity, quantity)
        total = quantity * runs
        return _Validated(quantity=total, charge=self._round_charge(total * service.rate / 1000))

    def _validate_subscription(self, service: SimService, fields: dict[str, str]) -> _Validated:
        low, high = _int_or_none(fields["min"]), _int_or_none(fields["max"])
        if low is None or high is None or low > high:
            raise PanelError(Errors.INCORRECT_REQUEST)
        self._check_bounds(service, low, high)
        posts = _int_or_none(fields["posts"]) if fields.get("posts") else 0
        old_posts = _int_or_none(fields["old_posts"]) if fields.get("old_posts") else 0
        delay = _int_or_none(fields["delay"]) if fields.get("delay") else 0
        if posts is None or posts < 0 or old_posts is None or old_posts < 0 or delay not in SUBSCRIPTION_DELAYS:
            raise PanelError(Errors.INCORRECT_REQUEST)
        if fields.get("expiry"):
            try:
                datetime.strptime(fields["expiry"], "%d/%m/%Y")
            except ValueError:
                raise PanelError(Errors.INCORRECT_REQUEST) from None
        if not posts:  # unlimited: nothing up front, each post (old ones first) is billed as it is delivered
            return _Validated(quantity=0, charge=Decimal(0))
        # Debited up front: the most the posts can cost, the old posts it also
        # delivers to included; what is not delivered is refunded.
        quantity = high * (posts + old_posts)
        return _Validated(quantity=quantity, charge=self._round_charge(quantity * service.rate / 1000))

    @staticmethod
    def _check_bounds(service: SimService, low: int, high: int) -> None:
        if low < service.min:
            raise PanelError(Errors.quantity_below(service.min))
        if high > service.max:
            raise PanelError(Errors.quantity_above(service.max))

    def _round_charge(self, amount: Decimal) -> Decimal:
        return ceil_to(amount, self.precision)

    def _new_order(self, key: str, service: SimService, fields: dict[str, str], checked: _Validated) -> SimOrder:
        outcome, remains = self._draw_outcome(service, checked.quantity, fields)
        order = SimOrder(
            id=self._next_order,
            key=key,
            service=service,
            fields=fields,
            quantity=checked.quantity,
            charge=checked.charge,
            created=self.clock(),
            start_count=self.random.randint(0, 10_000),
            outcome=outcome,
            outcome_remains=remains,
            remains=checked.quantity,
        )
        self._next_order = self._fixed_order if self._fixed_order is not None else self._next_order + 1
        self._orders[order.id] = order
        self._open_orders.add(order.id)
        self._schedule(order.created, "order", order.id)
        return order

    def _draw_outcome(self, service: SimService, quantity: int, fields: Mapping[str, str]) -> tuple[str, int]:
        if service.type == SUBSCRIPTIONS:
            posts = (_int_or_none(fields.get("posts") or "0") or 0) + _old_posts(fields)
            per_post = self.random.randint(int(fields["min"]), int(fields["max"]))
            return COMPLETED, max(0, quantity - posts * per_post)  # remains: what was held, not delivered
        draw = self.random.random()
        if draw < self.cancel_ratio:
            return CANCELED, quantity
        if draw < self.cancel_ratio + self.partial_ratio and quantity > 1:
            return PARTIAL, self.random.randint(1, quantity - 1)
        return COMPLETED, 0

    def _schedule(self, created: float, kind: str, ident: int, stage: int = 0) -> None:
        """Queue the next step of an order or refill: `step_seconds` after the last."""
        when = created + (stage + 1) * max(self.step_seconds, 0)
        heapq.heappush(self._due, (when, next(self._sequence), kind, ident))

    def _advance_order(self, order: SimOrder) -> None:
        """One step: Pending -> In progress (Active) -> the drawn outcome."""
        if order.pinned or order.final:
            return
        order.stage += 1
        subscription = order.service.type == SUBSCRIPTIONS
        if order.stage == 1:
            order.status = ACTIVE if subscription else IN_PROGRESS
            order.remains = max(order.outcome_remains, order.quantity // 2)
            if subscription and order.unlimited:  # the old posts are delivered to at once
                for _ in range(_old_posts(order.fields)):
                    self._deliver_post(order)
        elif subscription and order.unlimited:
            self._deliver_post(order)  # active until canceled or forced, billing each post
        else:
            self._settle(order)
            return
        self._schedule(order.created, "order", order.id, order.stage)

    def _deliver_post(self, order: SimOrder) -> None:
        """One post of an unlimited subscription: billed now."""
        per_post = self.random.randint(int(order.fields["min"]), int(order.fields["max"]))
        cost = self._round_charge(per_post * order.service.rate / 1000)
        order.charge += cost
        order.quantity += per_post
        self._accounts[order.key] -= cost

    def _settle(self, order: SimOrder) -> None:
        """Give the order its final status and refund what was not delivered."""
        order.status, order.remains = order.outcome, order.outcome_remains
        if order.unlimited:  # billed per post delivered: nothing held, nothing to refund
            order.remains = 0
        elif order.status in (PARTIAL, CANCELED, EXPIRED) or (order.service.type == SUBSCRIPTIONS and order.remains):
            order.refund = floor_to(order.charge * order.remains / order.quantity, self.precision)
            self._accounts[order.key] += order.refund
        self._open_orders.discard(order.id)

    def _advance_refill(self, refill: SimRefill) -> None:
        if refill.pinned or refill.final:
            return
        refill.stage += 1
        if refill.stage == 1:
            refill.status = IN_PROGRESS
            self._schedule(refill.created, "refill", refill.id, refill.stage)
        else:
            refill.status = refill.outcome
            self._open_refills.pop(refill.order, None)


def _old_posts(fields: Mapping[str, str]) -> int:
    return max(0, _int_or_none(fields.get("old_posts") or "0") or 0)


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not str(value).strip():
        raise PanelError(Errors.INCORRECT_REQUEST)
    return str(value).strip()


def _split_ids(text: str) -> list[str]:
    ids = [part.strip() for part in str(text).split(",") if part.strip()]
    if not ids or len(ids) > BULK_LIMIT:
        raise PanelError(Errors.INCORRECT_REQUEST)
    return ids


def _int_or_none(value: str | int) -> int | None:
    text = str(value).strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def _positive(value: str) -> int | None:
    number = _int_or_none(value)
    return number if number is not None and number > 0 else None


def _lines(text: str) -> list[str]:
    return [line for line in _LINES.split(text) if line.strip()]


def _validate_traffic(fields: dict[str, str]) -> None:
    device, traffic = _int_or_none(fields["device"]), _int_or_none(fields["type_of_traffic"])
    if device is None or traffic is None or device not in range(1, 6) or traffic not in range(1, 4):
        raise PanelError(Errors.INCORRECT_REQUEST)
    needed = {1: "google_keyword", 2: "referring_url"}.get(traffic)
    if needed and not fields.get(needed, "").strip():
        raise PanelError(Errors.INCORRECT_REQUEST)
