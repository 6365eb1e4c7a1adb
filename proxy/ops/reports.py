"""Money reports: revenue, upstream cost, refunds and margin, grouped.

`report(book, config, since, by)` reads every order created since `since` and adds
it up by provider, service, client or day (UTC, when the order was created),
in the deployment currency:

- revenue: what clients paid, net of refunds;
- refunds: what was given back;
- cost: what providers charged us. A final order whose provider reported its
  charge (in the currency the config expects) costs that, converted; any
  other placed order costs its recorded cost, less the share refunded to the
  client (a Partial order's undelivered part is refunded by the provider
  too; a closed order likewise); an order whose outcome is unknown costs its
  whole recorded cost (it may have been bought); a failed order costs nothing;
- margin: revenue less cost.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from proxy.config import Config
from proxy.money import convert
from proxy.orders.book import OrderBook
from proxy.orders.records import ArchivedOrder, Order
from proxy.orders.states import CLOSED, FAILED, IN_FLIGHT, PLACED, UNKNOWN

GROUPINGS = ("provider", "service", "client", "day")
# Orders are read newest first by ID: a higher ID may be older by an ID block's age
# (proxy.orders.ids.MAX_AGE, 60 s) plus the instances' clock difference; this covers both.
CLOCK_SLACK_SECONDS = 300.0


_SPAN = re.compile(r"^(\d{1,12})([dhm])$")
# How far back a span may reach: a century (a span further back names no date we can print).
MAX_SPAN_SECONDS = 100 * 366 * 86400


def since(text: str | None, now: float | None = None) -> float:
    """A report's start: a span back from now (7d, 24h, 30m; at most a
    century) or a date/time (2026-11-01, ISO; UTC unless it says, from 1970
    on). Default: seven days."""
    now = time.time() if now is None else now
    if not text:
        return now - 7 * 86400
    span = _SPAN.match(text.strip())
    if span:
        count, unit = int(span.group(1)), span.group(2)
        seconds = count * {"d": 86400, "h": 3600, "m": 60}[unit]
        if seconds > MAX_SPAN_SECONDS:
            raise ValueError(f"since {text!r}: a span reaches back at most {MAX_SPAN_SECONDS // 86400} days")
        return now - timedelta(seconds=seconds).total_seconds()
    try:
        moment = datetime.fromisoformat(text.strip())
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        stamp = moment.timestamp()
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"since {text!r}: give a span like 7d, 24h, 30m or a date like 2026-11-01") from None
    if stamp < 0:
        raise ValueError(f"since {text!r}: a date from 1970 on")
    return stamp


@dataclass
class Line:
    key: str
    orders: int = 0
    revenue: Decimal = Decimal(0)
    refunds: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost

    def add(self, revenue: Decimal, refunds: Decimal, cost: Decimal) -> None:
        self.orders += 1
        self.revenue += revenue
        self.refunds += refunds
        self.cost += cost


@dataclass
class Report:
    by: str
    since: float
    currency: str
    lines: list[Line] = field(default_factory=list)
    total: Line = field(default_factory=lambda: Line("total"))


def order_cost(config: Config, order: Order) -> Decimal:
    """What this order cost us upstream, in the deployment currency, as far as we know."""
    if order.state == FAILED:
        return Decimal(0)
    base = order.cost_base if order.cost_base is not None else Decimal(0)
    if order.state == UNKNOWN or order.state in IN_FLIGHT:
        return base
    provider = config.providers.get(order.provider)
    expected = provider.currency if provider is not None else order.cost_currency
    charged_in = order.upstream_currency or expected
    if order.state == PLACED and order.final and order.upstream_charge is not None and charged_in == expected:
        return convert(order.upstream_charge, config.rate_of(expected))
    if order.state in (PLACED, CLOSED) and order.charge > 0:
        return base * order.net_charge / order.charge
    return base


async def report(book: OrderBook, config: Config, since: float, by: str = "provider") -> Report:
    """The orders created since `since`, added up by provider, service,
    client or day; archived orders too, from what Redis keeps of them (their
    cost as counted when they were archived). Lines come best margin first;
    days come in order, oldest first."""
    return (await reports(book, config, [(since, by)]))[0]


async def reports(book: OrderBook, config: Config, asked: Sequence[tuple[float, str]]) -> list[Report]:
    """Several reports (each a start and a grouping, as `report` takes them)
    from one pass over the orders: a page that shows today, 7 and 30 days
    reads each order once."""
    for _, by in asked:
        if by not in GROUPINGS:
            raise ValueError(f"group by one of: {', '.join(GROUPINGS)}")
    made = [_Adding(Report(by, since, config.currency)) for since, by in asked]
    if not made:
        return []
    earliest = min(since for since, _ in asked)
    async for order in book.newest():
        if order.created < earliest - CLOCK_SLACK_SECONDS:
            break
        if order.created >= earliest:
            cost = order_cost(config, order)
            for adding in made:
                adding.count(order, cost)
    async for archived in book.newest_archived():
        if archived.created < earliest - CLOCK_SLACK_SECONDS:
            break
        for adding in made:
            adding.count(archived, archived.cost)
    return [adding.done() for adding in made]


class _Adding:
    """One report being added up."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.lines: dict[str, Line] = defaultdict(lambda: Line(""))

    def count(self, order: Order | ArchivedOrder, cost: Decimal) -> None:
        if order.created < self.report.since:
            return
        by = self.report.by
        if by == "provider":
            key = order.provider or "(none)"
        elif by == "service":
            key = str(order.service)
        elif by == "client":
            key = order.client
        else:
            key = day_of(order.created)
        self.lines[key].key = key
        self.lines[key].add(order.net_charge, order.refunded, cost)
        self.report.total.add(order.net_charge, order.refunded, cost)

    def done(self) -> Report:
        if self.report.by == "day":
            self.report.lines = sorted(self.lines.values(), key=lambda line: line.key)
        else:
            self.report.lines = sorted(self.lines.values(), key=lambda line: line.margin, reverse=True)
        return self.report


def day_of(timestamp: float) -> str:
    """The UTC day of a moment, as a report by day names it (2026-11-01)."""
    return datetime.fromtimestamp(timestamp, tz=UTC).date().isoformat()


def start_of_day(now: float | None = None) -> float:
    """Midnight UTC of the day `now` falls in."""
    now = time.time() if now is None else now
    return datetime.fromtimestamp(now, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
