"""What operator actions answer (proxy/ops/answers.py), and the one JSON of it."""

from __future__ import annotations

import json
from decimal import Decimal

from proxy.accounts.clients import Client
from proxy.ops.answers import ClientView, NewClient, OrderDetail, ReportLine, ReportView, as_json
from proxy.ops.reports import Line, Report
from proxy.orders.records import Attempt, Order
from proxy.orders.states import PLACED


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
    assert ReportLine.of(line) == ReportLine("echomark", 2, "1.00", "0.00", "0.1234124", "0.8765876")
    report = ReportView.of(Report("provider", 5.0, "USD", [line], line))
    assert as_json(report)["lines"] == [as_json(report)["total"]]


def test_anything_else_is_answered_as_it_is():
    assert as_json(["a", "b"]) == ["a", "b"] and as_json({"x": 1}) == {"x": 1} and as_json(None) is None
