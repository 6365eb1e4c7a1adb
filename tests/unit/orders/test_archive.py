"""The archive (proxy/orders/archive.py): finished orders out of Redis, still found."""

from __future__ import annotations

import json

import pytest
from faults import FaultPlan, FaultyRedis, script_call, script_sha
from support import new_order

from proxy.orders.archive import ARCHIVED, Archive
from proxy.orders.book import OrderBook
from proxy.orders.states import ACCEPT, EXHAUST, STATUS, SUBMIT, lua_values
from proxy.store import connect
from proxy.vocabulary import COMPLETED, IN_PROGRESS


@pytest.fixture
def archive(book, tmp_path) -> Archive:
    return Archive(book, tmp_path / "archive")


async def order_ending(book, clock, status: str | None, link: str):
    order = (await book.reserve(new_order(link=link, charge="0.5"))).order
    if status is None:
        return await book.apply(order, EXHAUST)
    order = await book.apply(order, SUBMIT, {"provider": "echomark"})
    order = await book.apply(order, ACCEPT, {"upstream_order": 5000 + order.id})
    return await book.apply(order, STATUS, {"status": status}, version=order.version)


async def test_only_finished_old_orders_without_a_note_leave_redis(archive, book, alice, clock, keys, claims, ledger):
    failed = await order_ending(book, clock, None, "https://x.test/1")
    done = await order_ending(book, clock, COMPLETED, "https://x.test/2")
    assert await claims.claim(done, "echomark", 5000 + done.id) is None  # as the router claims it
    running = await order_ending(book, clock, IN_PROGRESS, "https://x.test/3")
    noted = await book.apply(await order_ending(book, clock, COMPLETED, "https://x.test/4"), "ack")
    noted = await book.apply(noted, STATUS, {"status": COMPLETED}, attention="look at me")
    clock.advance(100)
    young = await order_ending(book, clock, COMPLETED, "https://x.test/5")
    entries = await ledger.entries("alice")

    assert await archive.archive(before=clock() - 50) == 2
    assert await book.ids_in("all", "alice") == [running.id, noted.id, young.id]
    assert await book.get("alice", failed.id) is None and await book.find(done.id) is None
    assert await book.redis.hget(keys.order_owner(done.id), str(done.id)) == ARCHIVED + "alice"
    assert await archive.find(done.id) == done and await archive.find(failed.id) == failed
    assert await archive.find(running.id) is None
    assert await ledger.entries("alice") == entries  # the ledger keeps every entry
    other = (await book.reserve(new_order(link="https://x.test/6"))).order
    # An archived order keeps its upstream order: no other order of ours may claim it.
    assert (
        await claims.claim(await book.apply(other, SUBMIT, {"provider": "echomark"}), "echomark", 5000 + done.id)
        == done.id
    )
    assert await archive.archive(before=clock() - 50) == 0  # nothing twice


async def test_an_order_that_changes_while_it_is_archived_stays(redis_url, keys, leases, due, clock, alice, tmp_path):
    forget = script_sha("proxy.orders", "forget", lua_values())

    class ChangedMeanwhile(FaultPlan):
        change = None

        async def before(self, commands, pipeline=False):
            if self.change and any((call := script_call(c)) and call.sha == forget for c in commands):
                change, self.change = self.change, None
                await change()
            return None

    plan = ChangedMeanwhile()
    redis = FaultyRedis.with_plan(connect(redis_url).connection_pool, plan)
    book = OrderBook(redis, keys, leases, due, clock)
    try:
        done = await order_ending(book, clock, COMPLETED, "https://x.test/1")
        clock.advance(10)
        plan.change = lambda: book.apply(done, "ack")  # an operator acts on it as it is archived
        assert await Archive(book, tmp_path).archive(before=clock()) == 0
        assert await book.get("alice", done.id) is not None and await book.find(done.id) is not None
    finally:
        await redis.aclose()
    assert Archive.archivable(done, clock()) and not Archive.archivable(done, done.created)


async def test_archived_files_hold_one_record_a_line(archive, book, alice, clock):
    done = await order_ending(book, clock, COMPLETED, "https://x.test/1")
    clock.advance(10)
    await archive.archive(before=clock())
    [line] = archive.path_for(done.id).read_text().splitlines()
    assert json.loads(line)["id"] == str(done.id)
    assert archive.path_for(done.id).name == "orders-000000.jsonl"
    assert archive.path_for(123_456).name == "orders-000001.jsonl"
