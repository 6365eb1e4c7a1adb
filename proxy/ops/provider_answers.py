"""What operators are answered about providers and money: health, funds,
prices, routes' outcomes, calls over the last hour, and reports (typed
values; `proxy.ops.answers` has the others and makes the JSON of all)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from proxy.money import ceil_to, format_amount
from proxy.ops.reports import Line, Report
from proxy.providers.calls import CallWindow
from proxy.providers.health import Ejection
from proxy.providers.listings import ApprovedPrice, HeldPrice, PriceChange
from proxy.providers.outcomes import Rates
from proxy.providers.replies import DisabledService


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")


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
