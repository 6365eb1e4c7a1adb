"""Money reports (proxy/ops/reports.py): revenue, cost, refunds and margin."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from support import new_order, router_config

from proxy.config import parse_config
from proxy.ops.reports import CLOCK_SLACK_SECONDS, day_of, order_cost, report, reports, since, start_of_day
from proxy.orders.records import Order
from proxy.orders.states import ACCEPT, EXHAUST, FAILED, LOSE, PLACED, RESERVED, STATUS, SUBMIT, SUBMITTED, UNKNOWN
from proxy.vocabulary import CANCELED, COMPLETED, IN_PROGRESS, PARTIAL

NOW = 1_800_000_000.0
CONFIG = parse_config(router_config(), {})  # USD; the Korean panel bills in KRW at 1380


def test_since_reads_spans_and_dates():
    assert since(None, NOW) == NOW - 7 * 86400
    assert since("24h", NOW) == NOW - 86400 and since("30m", NOW) == NOW - 1800 and since("2d", NOW) == NOW - 172800
    assert since("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    assert since("2026-11-01T12:00:00+02:00", NOW) == datetime(2026, 11, 1, 10, tzinfo=UTC).timestamp()
    for bad in ("7w", "yesterday", "-1d", "1.5d", "1e999999d", "", "NaN", "0001-01-01", "9" * 40 + "d"):
        if bad:
            with pytest.raises(ValueError, match="give a span like 7d|a date from 1970 on"):
                since(bad, NOW)
    # A span that reaches back further than any date we could print is refused, not an overflow.
    for far in ("10000000d", "999999999999d", "876000000h"):
        with pytest.raises(ValueError, match="a span reaches back at most 36600 days"):
            since(far, NOW)
    assert since("36600d", NOW) == NOW - 36600 * 86400


def order(state: str, status: str = COMPLETED, **overrides: object) -> Order:
    values: dict[str, object] = dict(
        id=1,
        state=state,
        status=status,
        charge=Decimal("1.17"),
        refunded=Decimal(0),
        remains=0,
        start_count=0,
        status_at=0.0,
        provider="echomark",
        client="alice",
        service=1,
        type="Default",
        quantity=1000,
        fields={},
        created=NOW,
        refill=False,
        cancel=False,
        cost=Decimal("0.90"),
        cost_currency="USD",
        cost_base=Decimal("0.90"),
    )
    values.update(overrides)
    return Order(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "o, cost",
    [
        (order(FAILED), "0"),  # never bought
        (order(RESERVED), "0.90"),  # may be bought yet
        (order(SUBMITTED), "0.90"),
        (order(UNKNOWN), "0.90"),  # may exist upstream
        (order(PLACED, IN_PROGRESS), "0.90"),
        (order(PLACED, COMPLETED, upstream_charge=Decimal("0.88")), "0.88"),  # what it said it charged
        (order(PLACED, PARTIAL, refunded=Decimal("0.585")), "0.45"),  # the refunded share costs nothing
        (order(PLACED, CANCELED, refunded=Decimal("1.17")), "0"),
        (order(PLACED, COMPLETED, upstream_charge=Decimal("9"), upstream_currency="EUR"), "0.90"),  # not comparable
        (
            order(PLACED, COMPLETED, provider="korean", cost_currency="KRW", upstream_charge=Decimal("1380")),
            "1",  # converted at the config's rate
        ),
        (order(PLACED, COMPLETED, cost_base=None), "0"),
        (order(PLACED, COMPLETED, charge=Decimal(0)), "0.90"),
    ],
)
def test_what_an_order_cost_us(o, cost):
    assert order_cost(CONFIG, o) == Decimal(cost)


async def test_a_report_adds_up_orders_by_provider_service_or_client(book, alice, clock, ledger):
    clock.advance(-CLOCK_SLACK_SECONDS - 10)
    await book.reserve(new_order(charge="5"))  # created before the report's start: left out
    clock.advance(CLOCK_SLACK_SECONDS + 10)
    fields = {"cost": 9_000_000, "cost_currency": "USD", "cost_base": 9_000_000}
    a = await book.apply((await book.reserve(new_order())).order, SUBMIT, {"provider": "echomark", **fields})
    a = await book.apply(a, ACCEPT, {"upstream_order": 1})
    await book.apply(a, STATUS, {"status": PARTIAL}, refund_to=Decimal("0.585"), version=a.version)
    b = await book.apply((await book.reserve(new_order(service=2))).order, SUBMIT, {"provider": "korean", **fields})
    await book.apply(b, LOSE)
    await book.apply((await book.reserve(new_order(service=2))).order, EXHAUST)
    by_provider = await report(book, CONFIG, since=NOW - 1)
    lines = {line.key: line for line in by_provider.lines}
    assert set(lines) == {"echomark", "korean", "(none)"}
    assert (lines["echomark"].revenue, lines["echomark"].refunds, lines["echomark"].cost) == (
        Decimal("0.585"),
        Decimal("0.585"),
        Decimal("0.45"),
    )
    assert (lines["korean"].revenue, lines["korean"].cost) == (Decimal("1.17"), Decimal("0.90"))  # unknown: cost all
    assert (lines["(none)"].revenue, lines["(none)"].cost, lines["(none)"].orders) == (0, 0, 1)
    assert by_provider.total.orders == 3 and by_provider.total.margin == Decimal("1.755") - Decimal("1.35")
    assert [line.key for line in by_provider.lines] == sorted(lines, key=lambda k: lines[k].margin, reverse=True)
    assert {line.key for line in (await report(book, CONFIG, NOW - 1, "service")).lines} == {"1", "2"}
    assert {line.key for line in (await report(book, CONFIG, NOW - 1, "client")).lines} == {"alice"}
    with pytest.raises(ValueError, match="group by one of"):
        await report(book, CONFIG, NOW, "colour")


async def test_a_report_by_day_has_a_line_per_utc_day_oldest_first_and_adds_up_to_the_total(book, alice, clock, ledger):
    midnight = start_of_day(NOW)
    clock.advance(midnight - 3600 - clock())  # 23:00 the day before
    await book.reserve(new_order(charge="2"))
    clock.advance(2 * 3600)  # 01:00
    await book.reserve(new_order(charge="3"))
    await book.reserve(new_order(charge="4"))
    by_day = await report(book, CONFIG, since=midnight - 86400, by="day")
    assert [(line.key, line.orders, line.revenue) for line in by_day.lines] == [
        (day_of(midnight - 1), 1, Decimal("2")),
        (day_of(midnight), 2, Decimal("7")),
    ]
    assert by_day.total.revenue == sum(line.revenue for line in by_day.lines) == Decimal("9")
    today = await report(book, CONFIG, since=start_of_day(clock()), by="day")
    assert [line.key for line in today.lines] == [day_of(clock())] and today.total.revenue == Decimal("7")


def test_days_are_utc():
    assert day_of(datetime(2026, 11, 1, 23, 59, tzinfo=UTC).timestamp()) == "2026-11-01"
    assert (
        start_of_day(datetime(2026, 11, 1, 23, 59, tzinfo=UTC).timestamp())
        == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    )


async def test_several_reports_from_one_pass_equal_each_made_alone(book, alice, clock, ledger):
    for hours in (50, 20, 1):
        clock.advance(-clock() + NOW - hours * 3600)
        await book.reserve(new_order(charge=f"0.{hours}"))
    clock.advance(-clock() + NOW)
    asked = [(NOW - 3600 * 2, "provider"), (NOW - 86400, "client"), (NOW - 3 * 86400, "day"), (NOW, "service")]
    together = await reports(book, CONFIG, asked)
    alone = [await report(book, CONFIG, since, by) for since, by in asked]
    assert together == alone
    assert [r.total.orders for r in together] == [1, 2, 3, 0]
    assert await reports(book, CONFIG, []) == []
    with pytest.raises(ValueError, match="group by one of"):
        await reports(book, CONFIG, [(NOW, "provider"), (NOW, "colour")])
