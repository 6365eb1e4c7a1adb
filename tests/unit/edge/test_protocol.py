"""API v2 requests as typed values (proxy/edge/protocol.py)."""

from __future__ import annotations

import pytest

from proxy.edge.protocol import (
    AddRequest,
    BalanceRequest,
    CancelRequest,
    RefillRequest,
    RefillStatusRequest,
    ServicesRequest,
    StatusRequest,
    action_of,
    parse_request,
)
from proxy.errors import ProtocolError


@pytest.mark.parametrize(
    "params, request_",
    [
        ({"action": "services"}, ServicesRequest()),
        ({"action": " BALANCE "}, BalanceRequest()),
        (
            {"key": "k", "action": "add", "service": "7", "link": "L", "quantity": "100"},
            AddRequest(7, {"link": "L", "quantity": "100"}),
        ),
        ({"action": "status", "order": " 12 "}, StatusRequest(("12",), False)),
        ({"action": "status", "orders": "1, 2,,x ,3"}, StatusRequest(("1", "2", "x", "3"), True)),
        ({"action": "status", "order": "5", "orders": "6"}, StatusRequest(("6",), True)),  # bulk wins
        ({"action": "refill", "orders": "4"}, RefillRequest(("4",), True)),
        ({"action": "refill_status", "refill": "9"}, RefillStatusRequest(("9",), False)),
        ({"action": "refill_status", "refills": "9,10"}, RefillStatusRequest(("9", "10"), True)),
        ({"action": "cancel", "order": "3"}, CancelRequest(("3",))),
        ({"action": "cancel", "orders": "3,4"}, CancelRequest(("3", "4"))),
    ],
)
def test_each_action_becomes_its_typed_request(params, request_):
    parsed = parse_request(params)
    assert parsed == request_
    assert action_of(parsed) == params["action"].strip().lower()


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "Incorrect request"),
        ({"action": "rm -rf"}, "Incorrect request"),
        ({"action": "add"}, "Incorrect service ID"),
        ({"action": "add", "service": "0"}, "Incorrect service ID"),
        ({"action": "add", "service": "-1"}, "Incorrect service ID"),
        ({"action": "add", "service": "1e3"}, "Incorrect service ID"),
        ({"action": "add", "service": "9" * 19}, "Incorrect service ID"),
        ({"action": "status"}, "Incorrect request"),
        ({"action": "status", "order": "  ", "orders": " "}, "Incorrect request"),
        ({"action": "status", "orders": ",".join(["1"] * 101)}, "Too many IDs: up to 100 in one request"),
        ({"action": "refill_status", "order": "1"}, "Incorrect request"),  # a refill is asked by its own ID
    ],
)
def test_a_request_that_is_not_one_is_refused_in_the_panels_words(params, message):
    with pytest.raises(ProtocolError) as refused:
        parse_request(params)
    assert refused.value.message == message
