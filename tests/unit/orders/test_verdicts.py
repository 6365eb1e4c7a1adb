"""An operator's verdicts (proxy/orders/verdicts.py): resolve, refund, acknowledge."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support import new_order

from proxy.errors import ClaimConflict, NotFound, StateChanged
from proxy.orders.states import ACCEPT, FAILED, LOSE, PLACED, STATUS, SUBMIT
from proxy.vocabulary import CANCELED

CHARGE = Decimal("1.17")


async def unknown(book, link="https://x.test/u"):
    order = await book.apply((await book.reserve(new_order(link=link))).order, SUBMIT, {"provider": "echomark"})
    return await book.apply(order, LOSE)


async def test_an_unknown_order_resolved_as_placed_takes_the_upstream_id(verdicts, book, alice, claims):
    order = await unknown(book)
    resolved = await verdicts.resolve(order.id, upstream_order=88231)
    assert resolved.state == PLACED and resolved.upstream_order == 88231 and resolved.status_at == 0
    other = await unknown(book, "https://x.test/other")
    with pytest.raises(ClaimConflict) as refused:
        await verdicts.resolve(other.id, upstream_order=88231)  # a typo there would refund twice
    assert refused.value.owner == order.id
    assert (await book.get("alice", other.id)).state == "unknown"
    assert await claims.claim(other, "echomark", 88231) == order.id


async def test_an_unknown_order_resolved_as_failed_is_refunded_once(verdicts, book, alice, ledger):
    order = await unknown(book)
    assert (await verdicts.resolve(order.id, failed=True)).state == FAILED
    assert await ledger.balance("alice") == Decimal("10")
    with pytest.raises(StateChanged):
        await verdicts.resolve(order.id, failed=True)
    assert await ledger.balance("alice") == Decimal("10")


@pytest.mark.parametrize(
    "options",
    [{}, {"upstream_order": 5, "failed": True}, {"upstream_order": 0}, {"upstream_order": -3}],
)
async def test_a_verdict_is_exactly_one_of_the_two(verdicts, book, alice, options):
    order = await unknown(book)
    with pytest.raises(ValueError):
        await verdicts.resolve(order.id, **options)
    assert (await book.get("alice", order.id)) == order


async def test_only_an_unknown_order_is_resolved(verdicts, book, alice):
    order = await book.apply(await unknown(book), ACCEPT, {"upstream_order": 5000})
    with pytest.raises(StateChanged):
        await verdicts.resolve(order.id, upstream_order=5001)
    with pytest.raises(NotFound):
        await verdicts.resolve(999, failed=True)


async def test_an_operator_refund_is_bounded_by_what_was_refunded_and_charged(verdicts, book, alice, ledger):
    order = await book.apply(await unknown(book), ACCEPT, {"upstream_order": 5000})
    order = await book.apply(order, STATUS, {"status": CANCELED}, attention="charge unknown", version=order.version)
    for wrong in (Decimal("-1"), CHARGE + Decimal("0.0000001")):
        with pytest.raises(ValueError):
            await verdicts.refund(order.id, wrong)
    refunded = await verdicts.refund(order.id, Decimal("0.5"))
    assert refunded.refunded == Decimal("0.5") and refunded.attention == ""
    with pytest.raises(ValueError):
        await verdicts.refund(order.id, Decimal("0.4"))  # never lowers a refund
    assert await ledger.balance("alice") == Decimal("10") - CHARGE + Decimal("0.5")


async def test_acknowledging_clears_the_note_and_moves_no_money(verdicts, book, alice, ledger):
    order = await book.apply(await unknown(book), ACCEPT, {"upstream_order": 5000})
    order = await book.apply(order, STATUS, {"status": CANCELED}, attention="look", version=order.version)
    before = await ledger.balance("alice")
    acknowledged = await verdicts.acknowledge(order.id)
    assert acknowledged.attention == "" and await ledger.balance("alice") == before
    assert await book.ids_in("attention", "alice") == []
