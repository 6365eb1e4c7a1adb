"""What each operator action answers: typed values, and the JSON of them.

Every action of `proxy.ops.operators` answers one of these frozen
dataclasses (or a list of them). Their fields, in order, are the JSON that
both the CLI's `--json` and the admin API print (`as_json`, the one place it
is made); the CLI's tables read the same fields by name. Amounts are already
formatted as the ledger shows them (`money.format_amount`), times as ISO 8601
in UTC.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from proxy.accounts.clients import Client
from proxy.accounts.ledger import Entry
from proxy.money import ceil_to, format_amount
from proxy.ops.admins import Admin
from proxy.ops.audit import Check, Record
from proxy.ops.reports import Line, Report
from proxy.orders.records import Attempt, Order
from proxy.orders.states import CLOSED
from proxy.providers.calls import CallWindow
from proxy.providers.health import Ejection
from proxy.providers.listings import ApprovedPrice, HeldPrice, PriceChange
from proxy.providers.outcomes import Rates
from proxy.providers.replies import DisabledService


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")


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


# -- providers and reports -----------------------------------------------------------


@dataclass(frozen=True)
class EjectionView:
    """A provider's health in one scope (orders or reads)."""

    failures: int  # in a row
    ejections: int  # in a row
    until: str  # while ejected: when a probe may bring it back; "" when it is not
    reason: str

    @classmethod
    def of(cls, ejection: Ejection) -> EjectionView:
        until = iso(ejection.until) if ejection.ejected else ""
        return cls(ejection.failures, ejection.ejections, until, ejection.reason)


@dataclass(frozen=True)
class HeldPriceView:
    """An upstream price change beyond the gate, waiting for an operator."""

    service: int
    approved: str  # the rate our price is still made from
    proposed: str  # the provider's new rate
    at: float  # since when

    @classmethod
    def of(cls, service: int, held: HeldPrice) -> HeldPriceView:
        return cls(service, held["approved"], held["proposed"], held["at"])


@dataclass(frozen=True)
class RouteOutcomes:
    """What became of the orders one route (provider, upstream service) took,
    about its last `routing.outcome_window` final ones: shares in percent
    (None: no history yet)."""

    orders: float
    completed_pct: float | None
    partial_pct: float | None
    canceled_pct: float | None
    stuck_pct: float | None
    delivered_pct: float | None
    mean_completion_seconds: int | None

    @classmethod
    def of(cls, rates: Rates) -> RouteOutcomes:
        def pct(count: float) -> float | None:
            share = rates.share(count)
            return None if share is None else round(100 * share, 1)

        mean = rates.mean_seconds
        return cls(
            orders=round(rates.orders, 1),
            completed_pct=pct(rates.completed),
            partial_pct=pct(rates.partial),
            canceled_pct=pct(rates.canceled),
            stuck_pct=pct(rates.stuck),
            delivered_pct=pct(rates.delivered),
            mean_completion_seconds=None if mean is None else round(mean),
        )


@dataclass(frozen=True)
class ProviderView:
    """A provider's health (ejections for orders and reads), its balance and
    currency as last read and what we know of its funds since, its catalog,
    its price changes (recent, and held for approval) and its routes' outcomes."""

    name: str
    health: str  # "ok", "blocked", "low balance", or "ejected: " and the scopes
    blocked: str  # why it is blocked; "" when it is not
    ejections: dict[str, EjectionView]  # by scope
    currency: str  # the config's
    currency_read: str  # what its balance reply said
    balance: str  # as last read
    funds: str  # the balance as read, less what we sent it since; "" unknown
    low_balance: str  # below this it gets no new orders
    low: bool
    balance_age: int | None  # seconds since the balance was read; None: never
    checked: str  # when its balance was last read; "" never
    check_error: str
    services: int
    disabled: tuple[DisabledService, ...]  # listed with a price we cannot use: not sold
    catalog_age: int | None  # seconds; None: never fetched
    price_changes: tuple[PriceChange, ...]
    held_prices: tuple[HeldPriceView, ...]
    outcomes: dict[str, RouteOutcomes]  # by upstream service ID


@dataclass(frozen=True)
class CallsView:
    """A provider's upstream calls over the last hour: how many, the share
    that got no usable answer, answered refusals, and the mean time a call took."""

    provider: str
    calls: int
    failures: int
    failure_pct: float | None
    refused: int
    mean_ms: int | None

    @classmethod
    def of(cls, provider: str, window: CallWindow) -> CallsView:
        rate, mean = window.failure_rate, window.mean_ms
        return cls(
            provider,
            window.calls,
            window.failures,
            None if rate is None else round(100 * rate, 1),
            window.refused,
            None if mean is None else round(mean),
        )


@dataclass(frozen=True)
class PriceApproval:
    """Held price changes an operator approved: the catalog follows them at once."""

    provider: str
    approved: tuple[ApprovedPrice, ...]


@dataclass(frozen=True)
class ReportLine:
    key: str
    orders: int
    revenue: str
    refunds: str
    cost: str
    margin: str
    share_pct: float | None  # this line's share of all the report's orders, in percent (None: no orders)

    @classmethod
    def of(cls, line: Line, all_orders: int | None = None) -> ReportLine:
        cost = ceil_to(line.cost)  # what we paid, never shown as less: the margin is never flattered
        total = line.orders if all_orders is None else all_orders
        return cls(
            key=line.key,
            orders=line.orders,
            revenue=format_amount(line.revenue),
            refunds=format_amount(line.refunds),
            cost=format_amount(cost),
            margin=format_amount(line.revenue - cost),
            share_pct=round(100 * line.orders / total, 1) if total else None,
        )


@dataclass(frozen=True)
class ReportView:
    by: str
    since: float
    currency: str
    lines: tuple[ReportLine, ...]
    total: ReportLine

    @classmethod
    def of(cls, report: Report) -> ReportView:
        return cls(
            by=report.by,
            since=report.since,
            currency=report.currency,
            lines=tuple(ReportLine.of(line, report.total.orders) for line in report.lines),
            total=ReportLine.of(report.total),
        )


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
