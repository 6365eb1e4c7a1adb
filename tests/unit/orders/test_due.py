"""The due index of status reads (proxy/orders/due.py)."""

from __future__ import annotations

from support import new_order

from proxy.orders.records import Order
from proxy.orders.states import ACCEPT, LOSE, STATUS, SUBMIT
from proxy.vocabulary import COMPLETED, IN_PROGRESS


async def test_a_placed_order_is_due_until_final(book, alice, due, keys):
    order = await book.apply((await book.reserve(new_order())).order, SUBMIT, {"provider": "echomark"})
    assert due.change(order, LOSE, {}) is None  # not placed: not due
    placed = await book.apply(order, ACCEPT, {"upstream_order": 5000, "status_at": "100"})
    assert await due.claim("echomark", 101, 200, 10) == [("alice", placed.id)]
    assert await due.claim("echomark", 101, 200, 10) == []  # read at 200 now: not due before 200
    assert await due.claim("echomark", 201, 300, 10) == [("alice", placed.id)]
    read = await book.apply(placed, STATUS, {"status": IN_PROGRESS, "status_at": "300"}, version=placed.version)
    await book.apply(read, STATUS, {"status": COMPLETED, "remains": 0, "status_at": "400"}, version=read.version)
    assert await due.claim("echomark", 1e12, 1e12, 10) == []
    assert await book.redis.zcard(keys.due("echomark")) == 0


async def test_a_round_claims_no_more_than_its_limit_oldest_first(redis_client, keys, due):
    await redis_client.zadd(keys.due("echomark"), {"alice:1": 30, "bob:2": 10, "alice:3": 20})
    assert await due.claim("echomark", 50, 100, 2) == [("bob", 2), ("alice", 3)]
    assert await due.claim("echomark", 50, 100, 2) == [("alice", 1)]


def test_an_order_without_a_provider_is_never_due(due):
    order = new_order()
    record = Order.from_record({k: str(v) for k, v in order.record(1, 0).items()})
    assert due.change(record, ACCEPT, {}) is None
