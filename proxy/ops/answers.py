"""What each operator action answers: typed values, and the JSON of them.

Every action of `proxy.ops.operators` answers one of these frozen
dataclasses (or a list of them). Their fields, in order, are the JSON that
both the CLI's `--json` and the admin API print (`as_json`, the one place it
is made); the CLI's tables read the same fields by name. Amounts are already
formatted as the ledger shows them (`money.format_amount`), times as ISO 8601
in UTC. The answers about providers and reports live in
`proxy.ops.provider_answers` and are named here too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.accounts.clients import Client
from proxy.accounts.ledger import Entry
from proxy.money import format_amount
from proxy.ops.admins import Admin
from proxy.ops.audit import Check, Record
from proxy.ops.provider_answers import (
    CallsView,
    EjectionView,
    HeldPriceView,
    PriceApproval,
    ProviderView,
    ReportLine,
    ReportView,
    RouteOutcomes,
    iso,
)
from proxy.orders.records import Attempt, Order
from proxy.orders.states import CLOSED

__all__ = [
    "AdminView",
    "Archived",
    "AuditCheck",
    "AuditEntry",
    "CallsView",
    "ClientView",
    "ConfigReload",
    "EjectionView",
    "EntryView",
    "EventView",
    "HeldPriceView",
    "NewAdmin",
    "NewClient",
    "NewKey",
    "OrderDetail",
    "OrderView",
    "PriceApproval",
    "Preview",
    "ProviderView",
    "Queues",
    "RemovedAdmin",
    "ReportLine",
    "ReportView",
    "RouteOutcomes",
    "TopUp",
    "as_json",
    "iso",
]


# -- clients and their ledgers ---------------------------------------------------


@dataclass(frozen=True)
class ClientView:
    """A client, its balance and its terms ("" / None: the deployment's)."""

    name: str
    balance: str
    currency: str
    disabled: bool
    markup: str  # percent; "" for the configured markup
    duplicate_window: float | None  # seconds; None for SMM_PROXY_DUPLICATE_WINDOW
    same_link: str  # "allow" or "refuse"
    rates: dict[str, str]  # service -> custom rate per 1000

    @classmethod
    def of(cls, client: Client) -> ClientView:
        terms = client.terms
        return cls(
            client.name,
            format_amount(client.balance),
            client.currency,
            client.disabled,
            "" if terms.markup is None else f"{terms.markup.normalize():f}",
            terms.duplicate_window,
            terms.same_link,
            {str(service): format_amount(rate) for service, rate in terms.rates.items()},
        )


@dataclass(frozen=True)
class NewClient(ClientView):
    """A client just opened, with its API key: shown this once, stored hashed."""

    key: str

    @classmethod
    def of_new(cls, client: Client, key: str) -> NewClient:
        return cls(**vars(ClientView.of(client)), key=key)


@dataclass(frozen=True)
class NewKey:
    """A client's new API key: shown this once, stored hashed; the old one no longer works."""

    key: str


@dataclass(frozen=True)
class EntryView:
    """One ledger entry; `actor` is the operator who moved it (top-ups, adjustments)."""

    id: str
    time: str
    kind: str
    amount: str
    balance: str
    ref: str
    memo: str
    order: int | None
    actor: str

    @classmethod
    def of(cls, entry: Entry) -> EntryView:
        return cls(
            id=entry.id,
            time=entry.time.isoformat(timespec="seconds"),
            kind=entry.kind,
            amount=format_amount(entry.amount),
            balance=format_amount(entry.balance),
            ref=entry.ref,
            memo=entry.memo,
            order=entry.order,
            actor=entry.actor,
        )


@dataclass(frozen=True)
class TopUp(EntryView):
    """A top-up's (or an adjustment's) entry; `applied` is False when its
    reference was applied before (nothing changed)."""

    applied: bool

    @classmethod
    def of_topup(cls, entry: Entry) -> TopUp:
        return cls(**vars(EntryView.of(entry)), applied=not entry.duplicate)


# -- orders ------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderView:
    """One order as an operator sees it: provider, attempts and costs included."""

    id: int
    client: str
    service: int
    type: str
    link: str
    quantity: int
    state: str
    status: str
    remains: int
    charge: str
    refunded: str
    provider: str
    upstream_service: int
    upstream_order: int
    attempts: tuple[Attempt, ...]
    attention: str
    closed_reason: str  # what the operator who closed it said ("" unless closed)
    cost: str  # "" when unknown, else the amount and its currency
    upstream_charge: str
    created: str

    @classmethod
    def of(cls, order: Order) -> OrderView:
        return cls(
            id=order.id,
            client=order.client,
            service=order.service,
            type=order.type,
            link=order.link,
            quantity=order.quantity,
            state=order.state,
            status=order.public_status,
            remains=order.public_remains,
            charge=format_amount(order.charge),
            refunded=format_amount(order.refunded),
            provider=order.provider,
            upstream_service=order.upstream_service,
            upstream_order=order.upstream_order,
            attempts=order.attempts,
            attention=order.attention,
            closed_reason=order.closed_reason if order.state == CLOSED else "",
            cost="" if order.cost is None else f"{format_amount(order.cost)} {order.cost_currency}",
            upstream_charge=(
                ""
                if order.upstream_charge is None
                else f"{format_amount(order.upstream_charge)} {order.upstream_currency or order.cost_currency}"
            ),
            created=iso(order.created),
        )


@dataclass(frozen=True)
class OrderDetail(OrderView):
    """One order, from Redis or the archive, with its ledger entries."""

    archived: bool
    ledger: tuple[EntryView, ...]

    @classmethod
    def of_found(cls, order: Order, archived: bool, entries: Sequence[Entry]) -> OrderDetail:
        ledger = tuple(EntryView.of(entry) for entry in entries)
        return cls(**vars(OrderView.of(order)), archived=archived, ledger=ledger)


@dataclass(frozen=True)
class Preview:
    """What a verdict on an order would do, with nothing done (a dry run):
    the money it would move to the client, and the balance after."""

    order: int
    action: str  # the audit's name of the verdict: order.resolve, order.refund, order.ack, order.close
    verdict: str  # in words: "failed", "placed as upstream order 88231", "total refund 0.75", ...
    client: str
    charge: str
    refunded: str  # the order's total refund now
    credit: str  # what the client would get back
    balance: str  # the client's balance now
    balance_after: str
    state: str  # the order's state now


@dataclass(frozen=True)
class Queues:
    """How many orders wait, by working set: being sent, placed and not
    final, of unknown outcome, waiting for an operator's eye."""

    inflight: int
    open: int
    unknown: int
    attention: int


@dataclass(frozen=True)
class Archived:
    moved: int
    before: str
    to: str


# -- admins and the audit log -----------------------------------------------------


@dataclass(frozen=True)
class NewAdmin:
    """An admin just added, with its token: shown this once, stored hashed."""

    name: str
    role: str
    expires: str  # "" never
    token: str


@dataclass(frozen=True)
class AdminView:
    """An admin in the registry, or an index entry without one (`registered`
    False: its token opens nothing; `admin remove` deletes it)."""

    name: str
    role: str
    expires: str  # "" never
    expired: bool
    last_used: str  # "" never (written at most once a minute)
    registered: bool

    @classmethod
    def of(cls, admin: Admin, now: float) -> AdminView:
        return cls(
            admin.name,
            admin.role,
            iso(admin.expires) if admin.expires is not None else "",
            admin.expired(now),
            iso(admin.last_used) if admin.last_used is not None else "",
            admin.registered,
        )


@dataclass(frozen=True)
class RemovedAdmin:
    name: str
    removed: bool = True


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log: its place in the chain, who, what, why."""

    seq: int
    time: str
    actor: str
    role: str
    action: str
    target: str
    reason: str
    detail: dict[str, Any]
    source: str
    request_id: str
    hash: str

    @classmethod
    def of(cls, record: Record) -> AuditEntry:
        try:
            at = iso(float(record.at))
        except ValueError:
            at = record.at
        return cls(
            record.seq,
            at,
            record.actor,
            record.role,
            record.action,
            record.target,
            record.reason,
            record.details,
            record.source,
            record.request_id,
            record.hash,
        )


@dataclass(frozen=True)
class AuditCheck:
    """What `audit verify` found: the chain `intact`, or its first bad entry."""

    intact: bool
    entries: int
    keyed: bool  # the hashes are keyed with SMM_PROXY_AUDIT_SECRET (someone with Redis alone cannot forge them)
    head: int
    bad_seq: int | None
    bad_id: str
    problem: str

    @classmethod
    def of(cls, check: Check) -> AuditCheck:
        return cls(check.intact, check.entries, check.keyed, check.head, check.bad_seq, check.bad_id, check.problem)


# -- events and the config ---------------------------------------------------------


@dataclass(frozen=True)
class EventView:
    """One event of the operators' stream (`proxy.ops.events`); also the body
    the webhook POSTs."""

    id: str
    time: str
    kind: str
    subject: str
    message: str
    detail: dict[str, Any]

    @classmethod
    def of_entry(cls, entry_id: str, fields: Mapping[str, str]) -> EventView:
        return cls(
            id=entry_id,
            time=iso(int(entry_id.split("-")[0]) / 1000),
            kind=fields.get("kind", ""),
            subject=fields.get("subject", ""),
            message=fields.get("message", ""),
            detail=json.loads(fields.get("detail") or "{}"),
        )


@dataclass(frozen=True)
class ConfigReload:
    """What a config reload did: a refused file's problems (the running config
    stays), or the providers a good one added, replaced and removed."""

    config: str  # the file
    ok: bool
    problems: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


# -- JSON ----------------------------------------------------------------------------


def as_json(answer: object) -> Any:
    """An answer as JSON-able data: a dataclass as an object of its fields, in
    order (nested ones too), a list as a list; anything else as it is."""
    if dataclasses.is_dataclass(answer) and not isinstance(answer, type):
        return _jsonable(dataclasses.asdict(answer))
    if isinstance(answer, list | tuple):
        return [as_json(item) for item in answer]
    return answer


def _jsonable(value: Any) -> Any:
    """asdict keeps tuples as tuples: JSON has lists."""
    if isinstance(value, dict):
        return {name: _jsonable(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
