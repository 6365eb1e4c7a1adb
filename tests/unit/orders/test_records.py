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
    # Text orjson refuses (a lone surrogate, from a provider's JSON "\\ud800") is still
    # written, as text Redis takes (UTF-8): the surrogate escaped, as json.dumps escapes it.
    text = attempts_json([Attempt("a", "refused", "\ud800 é")])
    assert text == '[["a","refused","\\ud800 \\u00e9"]]'
    text.encode("utf-8")  # what the store sends: a raw surrogate raised UnicodeEncodeError here


def record_with(**fields: str) -> dict[str, str]:
    record = {k: str(v) for k, v in NEW.record(7, 1_800_000_000.0).items()}
    record.update(fields)
    return record


def test_attempts_with_a_lone_surrogate_are_read_back_as_written():
    attempts = (Attempt("a", "refused", "\ud800"), Attempt("b", "placed"))
    order = Order.from_record(record_with(attempts=attempts_json(attempts)))
    assert order.attempts == attempts


def test_an_old_record_is_read_as_before_escaped_surrogates_included():
    """Records written before attempts were compact kept them as objects, by
    json.dumps' defaults (every non-ASCII character escaped): orjson refuses
    an escaped lone surrogate that json reads."""
    old = '[{"provider": "a", "outcome": "refused", "reason": "bad \\ud800 \\u00e9"}, {"provider": "b", "outcome": "sent"}]'
    order = Order.from_record(record_with(attempts=old, fields='{"link": "https://x.test/\\udcff"}'))
    assert order.attempts == (Attempt("a", "refused", "bad \ud800 é"), Attempt("b", "sent"))
    assert order.fields == {"link": "https://x.test/\udcff"}
