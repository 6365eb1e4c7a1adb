"""Reading what panels answer (proxy/providers/replies.py): a service whose
price we cannot use is kept apart, not dropped and not sold; a status item
keeps its raw text, redacted and bounded, for an operator."""

from __future__ import annotations

from decimal import Decimal

import pytest

from proxy.providers.replies import (
    MOST_ONE_ORDER_COSTS,
    RAW_CHARS,
    DisabledService,
    ItemError,
    Items,
    UpstreamService,
    UpstreamStatus,
    parse_service,
    price_problem,
    read_service,
)


def entry(rate: object, kind: str = "Default", maximum: str = "1000") -> dict[str, object]:
    return {
        "service": 7,
        "name": "Likes",
        "type": kind,
        "category": "Instagram",
        "rate": rate,
        "min": "10",
        "max": maximum,
    }


@pytest.mark.parametrize(
    "rate, problem",
    [
        ("0.90", ""),
        ("0", ""),
        ("1e25", "the rate is too large for any order to be charged"),
        ("1e400", "the rate is too large for any order to be charged"),
        ("NaN", "the rate is not a number"),
        ("Infinity", "the rate is not a number"),
        ("cheap", "the rate is not a number"),
        ("-1", "the rate is below zero"),
    ],
)
def test_a_price_we_cannot_use_is_named(rate, problem):
    read = read_service(entry(rate))
    if problem:
        assert isinstance(read, DisabledService) and read.reason == problem
        assert (read.service, read.name, read.category) == (7, "Likes", "Instagram")
        assert parse_service(entry(rate)) is None  # never sold
    else:
        assert isinstance(read, UpstreamService) and read.rate == Decimal(rate)


def test_too_large_is_what_one_order_of_the_most_units_could_not_be_charged():
    most = MOST_ONE_ORDER_COSTS
    assert price_problem(most * 1000 / 10_000, 10_000, "Default") == ""  # per 1000: 10,000 units cost the most
    assert price_problem(most * 1000 / 10_000 * 2, 10_000, "Default") != ""
    assert price_problem(most, 10_000, "Package") == ""  # a package costs its rate, whatever the units
    assert price_problem(most * 2, 1, "Package") != ""


def test_the_rate_shown_to_operators_is_shortened():
    read = read_service(entry("9" * 100))
    assert isinstance(read, DisabledService) and len(read.rate) == 40 and read.rate.endswith("...")


def test_an_entry_without_an_id_or_limits_is_skipped_not_disabled():
    assert read_service({**entry("1e25"), "service": "x"}) is None
    assert read_service({**entry("0.9"), "max": None}) is None
    assert read_service("not an entry") is None


def test_a_status_item_keeps_its_raw_text_redacted_and_bounded():
    items = Items(lambda text: text.replace("sim-key", "***"))
    read = items.status({"status": "Partial", "remains": "Unknown", "note": "key sim-key"})
    assert isinstance(read, UpstreamStatus) and read.raw == '{"status":"Partial","remains":"Unknown","note":"key ***"}'
    assert read == UpstreamStatus("Partial", None, None, None, None, "Partial")  # raw is not part of the value
    long = items.status({"status": "Completed", "note": "x" * 1000})
    assert isinstance(long, UpstreamStatus) and len(long.raw) == RAW_CHARS and long.raw.endswith("…")
    unreadable = items.status({"state": "what"})
    assert isinstance(unreadable, ItemError) and unreadable.message.endswith('{"state":"what"}')
