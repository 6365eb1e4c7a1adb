"""The order book against Redis, without HTTP: reserving, applying, reading, recovering.

Alice has 10.00; a new order charges 1.17 (support.new_order).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from faults import FaultPlan, FaultyRedis, script_call, script_sha, send_held
from redis.exceptions import ConnectionError as RedisConnectionError
from support import new_order

from proxy import scripts
from proxy.accounts.clients import Accounts
from proxy.errors import DuplicateMismatch, InsufficientFunds, StateChanged, UnknownClient
from proxy.orders.book import RESERVE_TRIES, OrderBook
from proxy.orders.records import Fingerprint
from proxy.orders.states import (
    ACCEPT,
    EXHAUST,
    FAILED,
    LOSE,
    PLACED,
    RESERVED,
    STATUS,
    SUBMIT,
    UNKNOWN,
    lua_values,
)
from proxy.store import connect
from proxy.vocabulary import CANCELED, COMPLETED, IN_PROGRESS, PENDING

LINK = "https://instagram.com/p/book"
CHARGE = Decimal("1.17")


async def placed(book, **new) -> object:
    order = (await book.reserve(new_order(**new))).order
    order = await book.apply(order, SUBMIT, {"provider": "echomark", "cost": 9_000_000, "cost_currency": "USD"})
    return await book.apply(order, ACCEPT, {"upstream_order": 5000})


# -- reserving --------------------------------------------------------------------------


async def test_a_reservation_debits_and_records_the_order_in_one_step(book, alice, ledger, keys, clock):
    reservation = await book.reserve(new_order())
    order = reservation.order
    assert reservation.order_id == order.id == 1 and not reservation.duplicate
    assert (order.state, order.status, order.charge, order.refunded) == (RESERVED, PENDING, CHARGE, 0)
    assert order.created == clock() and order.remains == order.quantity == 1000
    assert await ledger.balance("alice") == Decimal("10") - CHARGE
    [entry] = [e for e in await ledger.entries("alice") if e.kind == "charge"]
    assert (entry.amount, entry.ref, entry.order) == (-CHARGE, "order:1:charge", 1)
    assert await book.get("alice", 1) == order
    assert await book.owner(1) == "alice"
    assert await book.ids_in("all", "alice") == [1] and await book.ids_in("inflight", "alice") == [1]
    assert await book.redis.get(keys.lease("alice", 1)) == book.leases.token


async def test_not_enough_funds_leaves_no_trace(book, alice, ledger, keys):
    with pytest.raises(InsufficientFunds):
        await book.reserve(new_order(charge="10.01"))
    assert await ledger.balance("alice") == Decimal("10")
    # An ID of this instance's block went unused (a gap); no record, owner entry or index holds it.
    assert not await book.redis.exists(keys.order("alice", 1), keys.order_owner(1))
    assert await book.ids_in("all", "alice") == []
    assert [e.kind for e in await ledger.entries("alice")] == ["topup"]


async def test_the_whole_balance_can_be_spent_but_not_a_unit_more(book, alice, ledger):
    await book.reserve(new_order(charge="9.9999999"))
    with pytest.raises(InsufficientFunds):
        await book.reserve(new_order(charge="0.0000002"))
    await book.reserve(new_order(charge="0.0000001"))
    assert await ledger.balance("alice") == 0


async def test_an_unknown_or_disabled_client_is_refused_and_its_owner_entry_removed(book, alice, redis_client, keys):
    for charge in ("1.17", "0"):  # the script knows no mallory, whatever the charge
        with pytest.raises(UnknownClient):
            await book.reserve(new_order(client="mallory", charge=charge))
    await redis_client.hset(keys.client("alice"), "disabled", "1")
    with pytest.raises(UnknownClient):
        await book.reserve(new_order())
    assert await redis_client.hgetall(keys.order_owner(1)) == {}
    assert await book.ids_in("all", "alice") == []


async def test_a_retry_with_the_same_fingerprint_answers_the_first_order(book, alice, ledger):
    fingerprint = Fingerprint("same:abc", 60)
    first = await book.reserve(new_order(), fingerprint)
    again = await book.reserve(new_order(), fingerprint)
    assert again.order_id == first.order_id and again.duplicate and again.order is None
    assert await ledger.balance("alice") == Decimal("10") - CHARGE


async def test_an_idempotency_key_with_other_fields_is_refused(book, alice, ledger):
    first = await book.reserve(new_order(), Fingerprint("key:k1", 86400, payload="fields-a"))
    with pytest.raises(DuplicateMismatch) as refused:
        await book.reserve(new_order(quantity=2000), Fingerprint("key:k1", 86400, payload="fields-b"))
    assert refused.value.order_id == first.order_id
    assert (await book.reserve(new_order(), Fingerprint("key:k1", 86400, payload="fields-a"))).duplicate
    assert await ledger.balance("alice") == Decimal("10") - CHARGE


async def test_a_reservation_whose_reply_was_lost_is_asked_again_and_applies_once(
    redis_url, keys, alice, leases, due, clock, ledger
):
    plan = FaultPlan()
    faulty = FaultyRedis.with_plan(connect(redis_url).connection_pool, plan)
    book = OrderBook(faulty, keys, leases, due, clock)
    await faulty.script_load(scripts.source("proxy.orders", "reserve", lua_values()))
    plan.arm(2, "lost")  # a block of IDs, then the script (the owner entry with it): applied, and the reply lost
    try:
        reservation = await book.reserve(new_order())
    finally:
        await faulty.aclose()
    assert plan.fired and plan.seen == ["INCRBY", "EVALSHA", "EVALSHA"]
    assert reservation.order is not None and reservation.order.id == 1
    assert await ledger.balance("alice") == Decimal("10") - CHARGE
    assert [e.kind for e in await ledger.entries("alice")] == ["topup", "charge"]


class ReserveLateThenRefused(FaultPlan):
    """Every try of the reserve script fails with no reply: the first is held
    back and reaches Redis later; the others are refused. Nothing else fails."""

    def __init__(self) -> None:
        super().__init__()
        self.reserve = script_sha("proxy.orders", "reserve", lua_values())
        self.tries = 0

    async def before(self, commands, pipeline=False):  # type: ignore[no-untyped-def]
        call = script_call(commands[0]) if not pipeline else None
        if call is None or call.sha != self.reserve:
            return None
        self.tries += 1
        return "late" if self.tries == 1 else "error"


async def test_a_reservation_that_reaches_redis_after_the_client_was_told_error_moves_no_money(
    redis_url, keys, alice, leases, due, clock, ledger
):
    plan = ReserveLateThenRefused()
    redis = connect(redis_url)
    faulty = FaultyRedis.with_plan(redis.connection_pool, plan)
    book = OrderBook(faulty, keys, leases, due, clock)
    await faulty.script_load(scripts.source("proxy.orders", "reserve", lua_values()))
    try:
        with pytest.raises(RedisConnectionError):
            await book.reserve(new_order())  # the client hears an error: no order was made
        late = await send_held(redis, plan)  # and then the first try arrives
    finally:
        await faulty.aclose()
    assert plan.tries == RESERVE_TRIES and len(late) == 1
    assert late[0] == ["fenced"]
    assert await ledger.balance("alice") == Decimal("10")
    assert [e.kind for e in await ledger.entries("alice")] == ["topup"]
    assert await book.get("alice", 1) is None


# -- applying ------------------------------------------------------------------------------


async def test_a_repeated_call_applies_once(book, alice, ledger):
    order = await placed(book)
    canceled = {"status": CANCELED, "remains": 1000}
    first = await book.apply(order, STATUS, canceled, refund_to=CHARGE, version=order.version, call="call-1")
    again = await book.apply(order, STATUS, canceled, refund_to=CHARGE, version=order.version, call="call-1")
    assert first.refunded == again.refunded == CHARGE
    assert await ledger.balance("alice") == Decimal("10")
    assert [e.kind for e in await ledger.entries("alice")].count("refund") == 1


async def test_a_status_read_before_another_was_applied_is_dropped(book, alice, ledger):
    order = await placed(book)
    newer = await book.apply(order, STATUS, {"status": IN_PROGRESS, "remains": 600}, version=order.version)
    stale = await book.apply(
        order, STATUS, {"status": CANCELED, "remains": 1000}, refund_to=CHARGE, version=order.version
    )
    assert stale == newer and stale.status == IN_PROGRESS
    assert await ledger.balance("alice") == Decimal("10") - CHARGE


async def test_nothing_follows_a_final_status(book, alice):
    order = await placed(book)
    done = await book.apply(order, STATUS, {"status": COMPLETED, "remains": 0}, version=order.version)
    later = await book.apply(done, STATUS, {"status": IN_PROGRESS}, version=done.version)
    assert later.status == COMPLETED and later.final


async def test_an_order_that_is_not_there_is_refused(book, alice):
    order = (await book.reserve(new_order())).order
    await book.redis.delete(book.keys.order("alice", order.id))
    with pytest.raises(StateChanged) as refused:
        await book.apply(order, SUBMIT)
    assert refused.value.state is None


async def test_the_due_index_follows_the_transitions(book, alice, keys):
    order = await placed(book)
    assert await book.redis.zscore(keys.due("echomark"), f"alice:{order.id}") is not None
    await book.apply(order, STATUS, {"status": COMPLETED, "remains": 0, "status_at": "5"}, version=order.version)
    assert await book.redis.zscore(keys.due("echomark"), f"alice:{order.id}") is None


# -- reading ---------------------------------------------------------------------------------


async def test_the_readers_of_orders(book, alice, redis_client, keys, ledger):
    await Accounts(redis_client, keys, ledger, "USD").create("bob", Decimal("5"))
    a1 = (await book.reserve(new_order())).order
    b2 = (await book.reserve(new_order(client="bob"))).order
    a3 = (await book.reserve(new_order(link="https://instagram.com/p/other"))).order
    assert await book.clients() == ["alice", "bob"]
    assert await book.get("alice", b2.id) is None  # by (client, ID): bob's order is not alice's
    assert await book.get_many("alice", [a1.id, b2.id, a3.id, 99]) == {a1.id: a1, a3.id: a3}
    assert await book.load([("bob", b2.id), ("alice", a1.id), ("alice", 99)]) == [b2, a1]
    assert await book.find(b2.id) == b2 and await book.find(99) is None
    assert [o.id async for o in book.newest()] == [3, 2, 1]
    assert [o.id async for o in book.newest("alice")] == [3, 1]
    assert await book.ids_in("inflight") == [1, 2, 3] and await book.count("inflight") == 3
    summaries = await book.summaries("alice", [a1.id, a3.id, b2.id])
    assert set(summaries) == {a1.id, a3.id}
    assert summaries[a1.id].charge == CHARGE and summaries[a1.id].public_status == PENDING
    assert await book.records([]) == []


# -- recovery ----------------------------------------------------------------------------------


async def test_recovery_takes_only_the_orders_whose_lease_lapsed(book, alice, keys, ledger):
    never_sent = (await book.reserve(new_order())).order
    maybe_sent = await book.apply((await book.reserve(new_order(link="https://x.test/2"))).order, SUBMIT)
    alive = (await book.reserve(new_order(link="https://x.test/3"))).order
    done = await book.apply((await book.reserve(new_order(link="https://x.test/4"))).order, EXHAUST)
    for order in (never_sent, maybe_sent, done):
        await book.redis.delete(keys.lease("alice", order.id))
    settled = {order.id: order.state for order in await book.recover()}
    assert settled == {never_sent.id: FAILED, maybe_sent.id: UNKNOWN}
    assert (await book.get("alice", alive.id)).state == RESERVED
    assert (await book.get("alice", never_sent.id)).refunded == CHARGE
    assert (await book.get("alice", maybe_sent.id)).refunded == 0  # it may exist upstream
    assert await ledger.balance("alice") == Decimal("10") - 2 * CHARGE  # the live one and the unknown one
    assert await book.recover() == []


async def test_late_news_about_a_lost_order_places_it(book, alice):
    order = await book.apply((await book.reserve(new_order())).order, SUBMIT, {"provider": "echomark"})
    lost = await book.apply(order, LOSE)
    late = await book.apply(lost, ACCEPT, {"upstream_order": 777})
    assert late.state == PLACED and late.upstream_order == 777 and late.provider == "echomark"


async def test_every_order_of_a_client_is_listed_in_its_buckets_or_before_them(book, alice, keys):
    first = (await book.reserve(new_order(link=LINK + "1"))).order
    second = (await book.reserve(new_order(link=LINK + "2"))).order
    assert await book.redis.smembers(keys.all_orders("alice", second.id)) == {str(first.id), str(second.id)}
    # An order opened before the buckets is listed in the client's sorted set of every order.
    await book.redis.srem(keys.all_orders("alice", first.id), first.id)
    await book.redis.zadd(keys.orders_of("alice", "all"), {str(first.id): first.id})
    assert await book.ids_in("all", "alice") == [first.id, second.id]
    assert [order.id async for order in book.newest("alice")] == [second.id, first.id]
