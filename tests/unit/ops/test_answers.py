"""What operator actions answer (proxy/ops/answers.py), and the one JSON of it."""

from __future__ import annotations

import json
from decimal import Decimal

from proxy.accounts.clients import Client
from proxy.ops.answers import (
    ClientView,
    EjectionView,
    EventView,
    NewClient,
    OrderDetail,
    ReportLine,
    ReportView,
    RouteOutcomes,
    as_json,
)
from proxy.ops.reports import Line, Report
from proxy.orders.records import Attempt, Order
from proxy.orders.states import PLACED
from proxy.providers.health import Ejection
from proxy.providers.outcomes import Rates


def test_a_new_client_is_the_client_and_its_key_in_that_order():
    client = Client(name="acme", balance=Decimal("20"), currency="USD", disabled=False, created=0.0)
    assert as_json(NewClient.of_new(client, "k" * 32)) == {
        "name": "acme",
        "balance": "20.00",
        "currency": "USD",
        "disabled": False,
        "markup": "",
        "duplicate_window": None,
        "same_link": "allow",
        "rates": {},
        "key": "k" * 32,
    }
    assert list(as_json([ClientView.of(client)])[0]) == [
        "name",
        "balance",
        "currency",
        "disabled",
        "markup",
        "duplicate_window",
        "same_link",
        "rates",
    ]


def test_nested_answers_become_objects_and_lists():
    order = Order(
        id=7,
        state=PLACED,
        status="Completed",
        charge=Decimal("1.17"),
        refunded=Decimal("0.1"),
        remains=0,
        start_count=0,
        status_at=0.0,
        provider="echomark",
        client="alice",
        service=1,
        type="Default",
        quantity=1000,
        fields={"link": "https://x.test/"},
        created=1_800_000_000.0,
        refill=False,
        cancel=False,
        attempts=(Attempt("korean", "refused", "Incorrect link"), Attempt("echomark", "placed")),
        cost=Decimal("0.9"),
        cost_currency="USD",
    )
    shown = as_json(OrderDetail.of_found(order, archived=True, entries=[]))
    assert shown["attempts"] == [
        {"provider": "korean", "outcome": "refused", "reason": "Incorrect link"},
        {"provider": "echomark", "outcome": "placed", "reason": ""},
    ]
    assert shown["ledger"] == [] and shown["archived"] is True
    assert (shown["charge"], shown["refunded"], shown["cost"], shown["upstream_charge"]) == (
        "1.17",
        "0.10",
        "0.90 USD",
        "",
    )
    assert shown["created"] == "2027-01-15T08:00:00+00:00"
    assert json.loads(json.dumps(shown)) == shown  # JSON as it is, nothing left to convert


def test_a_report_shows_cost_rounded_up_and_the_margin_from_it():
    line = Line("echomark", orders=2, revenue=Decimal("1"), refunds=Decimal("0"), cost=Decimal("0.123412341"))
    assert ReportLine.of(line) == ReportLine("echomark", 2, "1.00", "0.00", "0.1234124", "0.8765876", 100.0)
    assert ReportLine.of(line, all_orders=8).share_pct == 25.0
    assert ReportLine.of(Line("none")).share_pct is None
    report = ReportView.of(Report("provider", 5.0, "USD", [line], line))
    assert as_json(report)["lines"] == [as_json(report)["total"]]


def test_a_route_s_outcomes_are_shares_in_percent_none_before_any_history():
    rates = Rates(orders=4, delivered=3.5, completed=3, partial=1, canceled=0, stuck=0, seconds=90, timed=3)
    assert as_json(RouteOutcomes.of(rates)) == {
        "orders": 4.0,
        "completed_pct": 75.0,
        "partial_pct": 25.0,
        "canceled_pct": 0.0,
        "stuck_pct": 0.0,
        "delivered_pct": 87.5,
        "mean_completion_seconds": 30,
    }
    assert set(as_json(RouteOutcomes.of(Rates())).values()) == {0.0, None}


def test_an_event_is_its_stream_entry_with_its_time_and_detail_read():
    event = EventView.of_entry(
        "1800000000000-0", {"kind": "provider.ejected", "subject": "echomark", "detail": '{"a": 1}'}
    )
    assert as_json(event) == {
        "id": "1800000000000-0",
        "time": "2027-01-15T08:00:00+00:00",
        "kind": "provider.ejected",
        "subject": "echomark",
        "message": "",
        "detail": {"a": 1},
    }


def test_an_ejection_shows_until_when_only_while_it_lasts():
    assert as_json(EjectionView.of(Ejection(failures=2))) == {"failures": 2, "ejections": 0, "until": "", "reason": ""}
    assert (
        EjectionView.of(Ejection(ejections=1, until=1_800_000_000.0, reason="down")).until
        == "2027-01-15T08:00:00+00:00"
    )


def test_anything_else_is_answered_as_it_is():
    assert as_json(["a", "b"]) == ["a", "b"] and as_json({"x": 1}) == {"x": 1} and as_json(None) is None
