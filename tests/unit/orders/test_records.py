"""Order records (proxy/orders/records.py): what Redis keeps, read back whole."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from proxy.orders.records import Attempt, NewOrder, Order, attempts_json

NEW = NewOrder(
    client="alice",
    service=1,
    type="Default",
    quantity=100,
    fields={"link": "https://instagram.com/p/é", "quantity": "100"},
    charge=Decimal("1.17"),
    refill=True,
    cancel=False,
)


def test_an_order_read_from_its_record_is_the_order_its_constructor_makes():
    """`from_record` sets the fields at once, past the frozen dataclass' __init__:
    it must give every field, and the same values the constructor would hold."""
    record = {k: str(v) for k, v in NEW.record(7, 1_800_000_000.0).items()}
    record.update(attempts=attempts_json([Attempt("echomark", "refused", 'a "quoted" reason')]), cost="90")
    order = Order.from_record(record)
    names = {f.name for f in dataclasses.fields(Order)}
    assert set(vars(order)) == names
    assert order == Order(**{name: getattr(order, name) for name in names})
    assert order.attempts == (Attempt("echomark", "refused", 'a "quoted" reason'),)
    assert order.fields == {"link": "https://instagram.com/p/é", "quantity": "100"}
    assert (order.id, order.charge, order.upstream_charge, order.refill) == (7, Decimal("1.17"), None, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        order.state = "placed"  # type: ignore[misc]


def test_attempts_are_written_as_compact_json_whatever_their_text():
    assert (
        attempts_json([Attempt("a", "sent"), Attempt("b", "refused", "é\n")]) == '[["a","sent"],["b","refused","é\\n"]]'
    )
    # Text orjson refuses (a lone surrogate) is still written.
    assert attempts_json([Attempt("a", "refused", "\ud800")]) == '[["a","refused","\ud800"]]'
