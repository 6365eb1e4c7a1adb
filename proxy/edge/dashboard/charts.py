"""Charts drawn on the server: a report by day as bars, for an inline SVG.

Only geometry is made here (the template writes the SVG elements); every
figure comes from the operators' report (`ReportView` by day) as it prints
it. Days without orders are drawn as empty days, not left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from proxy.ops.answers import ReportLine

WIDTH = 600
HEIGHT = 160
TOP = 12
BOTTOM = 20  # room for the day labels


@dataclass(frozen=True)
class Bar:
    day: str
    x: float
    width: float
    revenue_y: float
    revenue_height: float
    margin_y: float
    margin_height: float  # a loss is drawn below the zero line
    line: ReportLine | None  # the day's figures (None: no orders that day)
    label: str  # shown under some bars ("" for the others)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    zero_y: float
    bars: tuple[Bar, ...]
    top: str  # the largest amount the scale reaches


def by_day(lines: tuple[ReportLine, ...], first: date, days: int) -> Chart:
    """Bars of revenue and margin for `days` days from `first`, one per day."""
    found = {line.key: line for line in lines}
    span = [first + timedelta(days=n) for n in range(days)]
    revenues = [Decimal(found[d.isoformat()].revenue) if d.isoformat() in found else Decimal(0) for d in span]
    margins = [Decimal(found[d.isoformat()].margin) if d.isoformat() in found else Decimal(0) for d in span]
    high = max([*revenues, *margins, Decimal(0)])
    low = min([*margins, Decimal(0)])
    scale_span = (high - low) or Decimal(1)
    plot = HEIGHT - TOP - BOTTOM
    zero_y = TOP + float(high / scale_span) * plot

    def height(value: Decimal) -> float:
        return float(abs(value) / scale_span) * plot

    slot = WIDTH / days
    bars = []
    label_every = max(1, days // 6)
    for n, day in enumerate(span):
        revenue, margin = revenues[n], margins[n]
        revenue_h, margin_h = height(revenue), height(margin)
        key = day.isoformat()
        bars.append(
            Bar(
                day=key,
                x=round(n * slot + slot * 0.1, 2),
                width=round(slot * 0.8, 2),
                revenue_y=round(zero_y - revenue_h, 2),
                revenue_height=round(revenue_h, 2),
                margin_y=round(zero_y - margin_h if margin >= 0 else zero_y, 2),
                margin_height=round(margin_h, 2),
                line=found.get(key),
                label=day.strftime("%d %b") if (days - 1 - n) % label_every == 0 else "",
            )
        )
    return Chart(WIDTH, HEIGHT, round(zero_y, 2), tuple(bars), f"{high.normalize():f}")
