"""Call IDs (proxy/orders/records.py, scripts/transition.lua): any retried
transition is idempotent, not only the last one applied.

Issue 12, case 7: the record remembered only the last call, so an `accept`
whose reply was lost, retried after a client's cancel had re-statused the
order, landed in the attention queue as "accepted upstream a second time".
Alice has 10.00; a new order charges 1.17 (support.new_order).
"""

from __future__ import annotations

from decimal import Decimal

from support import new_order

from proxy.ops.metrics import Tallies
from proxy.orders.records import RECENT_CALLS
from proxy.orders.states import ACCEPT, LOSE, PLACED, RESTATUS, SUBMIT, UNKNOWN


async def placed_order(book, call: str):
    order = (await book.reserve(new_order())).order
    order = await book.apply(order, SUBMIT, {"provider": "echomark"})
    return await book.apply(order, ACCEPT, {"upstream_order": 777}, call=call)


async def test_a_retried_accept_after_a_cancel_restatus_is_no_false_alarm(book, alice, ledger, redis_client, keys):
    accepted = await placed_order(book, call="accept-1")  # applied; its reply was "lost"
    await book.apply(accepted, RESTATUS, {"status_at": 0})  # the client cancels meanwhile
    retried = await book.apply(accepted, ACCEPT, {"upstream_order": 777}, call="accept-1")
    assert retried.state == PLACED and retried.attention == ""
    assert await book.ids_in("attention") == []
    assert (await Tallies(redis_client, keys, book.clients).counts()).get("orders_placed") == 1  # counted once
    assert await ledger.balance("alice") == Decimal("10") - retried.charge


async def test_a_call_is_recognised_among_the_recent_ones(book, alice):
    order = await placed_order(book, call="accept-1")
    for i in range(RECENT_CALLS - 1):  # as many other transitions as are remembered besides
        order = await book.apply(order, RESTATUS, {"status_at": i}, call=f"restatus-{i}")
    again = await book.apply(order, ACCEPT, {"upstream_order": 777}, call="accept-1")
    assert again.attention == ""
    for i in range(RECENT_CALLS - 1):  # and each of those, retried, changes nothing either
        assert (
            await book.apply(order, RESTATUS, {"status_at": 99}, call=f"restatus-{i}")
        ).status_at == RECENT_CALLS - 2


async def test_a_new_accept_of_a_placed_order_is_still_news(book, alice):
    order = await placed_order(book, call="accept-1")
    again = await book.apply(order, ACCEPT, {"upstream_order": 888}, call="accept-2")
    assert again.attention.startswith("accepted upstream a second time") and "888" in again.attention
    assert again.upstream_order == 777


async def test_a_retried_lose_after_a_late_accept_changes_nothing(book, alice):
    order = (await book.reserve(new_order())).order
    order = await book.apply(order, SUBMIT, {"provider": "echomark"})
    lost = await book.apply(order, LOSE, call="lose-1")
    assert lost.state == UNKNOWN
    placed = await book.apply(lost, ACCEPT, {"upstream_order": 777}, call="accept-late")
    again = await book.apply(lost, LOSE, call="lose-1")
    assert again.state == PLACED == placed.state and again.attention == ""


async def test_the_record_names_the_call_that_last_changed_it(book, alice):
    order = await placed_order(book, call="accept-1")
    assert order.call == "accept-1"
    again = await book.apply(order, ACCEPT, {"upstream_order": 777}, call="accept-1")  # a retry: no change
    assert again.call == "accept-1"
    assert (await book.apply(order, RESTATUS, call="restatus-1")).call == "restatus-1"
