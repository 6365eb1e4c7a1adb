"""Orders end to end: add, status, refunds, refill, cancel, routing, retries.

Against a real Redis and the simulated panels; money is checked to the last
minor unit through the ledger.
"""

import asyncio
from decimal import Decimal

import pytest
from support import fault, metric, on_every_store, router_config

from proxy.orders.states import FAILED, PLACED, UNKNOWN

LINK = "https://instagram.com/p/abc"

# Each scenario runs on one Redis server and on a Redis Cluster.
pytestmark = on_every_store


def config(**overrides):
    raw = router_config(
        imports=[
            {"provider": "echomark", "id_offset": 1000},
            {"provider": "korean", "id_offset": 2000},
        ]
    )
    raw.update(overrides)
    return raw


async def balance(router, name="alice"):
    return await router.runtime.ledger.balance(name)


async def order(router, order_id, name="alice"):
    return await router.runtime.book.get(name, order_id)


async def test_add_charges_exactly_and_hides_upstream_ids(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert reply == {"order": 1}
    assert await balance(router) == Decimal("8.83")  # 1.17 per 1000
    record = await order(router, 1)
    assert record.state == PLACED and record.provider == "echomark"
    assert record.upstream_order == 5000 and len(router.panels["echomark"].orders) == 1
    status = await router.call(key, action="status", order=1)
    assert status == {"charge": "1.17", "start_count": "0", "status": "Pending", "remains": "1000", "currency": "USD"}
    entries = await router.runtime.ledger.entries("alice")
    assert [(e.kind, e.amount, e.ref) for e in entries][-1] == ("charge", Decimal("-1.17"), "order:1:charge")


async def test_status_progresses_and_partial_refunds_once(make_router):
    router = await make_router(config(), status_ttl=5)
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    record = await order(router, 1)
    router.clock.advance(11)
    assert (await router.call(key, action="status", order=1))["status"] == "In progress"
    router.panels["echomark"].force(record.upstream_order, status="Partial", remains=157)
    router.clock.advance(6)
    for _ in range(3):
        reply = await router.call(key, action="status", order=1)
        router.clock.advance(6)
    # Refund 1.17 x 157 / 1000 = 0.18369: net charge 0.98631.
    assert reply == {
        "charge": "0.98631",
        "start_count": reply["start_count"],
        "status": "Partial",
        "remains": "157",
        "currency": "USD",
    }
    assert await balance(router) == Decimal("10") - Decimal("0.98631")
    refunds = [e for e in await router.runtime.ledger.entries("alice") if e.kind == "refund"]
    assert [e.amount for e in refunds] == [Decimal("0.18369")]


async def test_canceled_upstream_refunds_everything_exactly_once(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="5")
    await router.call(key, action="add", service=1, link=LINK, quantity=500)
    record = await order(router, 1)
    router.panels["echomark"].force(record.upstream_order, status="Canceled")
    router.clock.advance(2)
    replies = await asyncio.gather(*(router.call(key, action="status", order=1) for _ in range(20)))
    assert all(r["status"] == "Canceled" and r["charge"] == "0.00" for r in replies)
    assert await balance(router) == Decimal("5")
    assert router.panels["echomark"].calls["status"] == 1  # twenty readers, one upstream call


async def test_bulk_status_shares_calls_and_hides_foreign_orders(make_router):
    router = await make_router(config(), status_ttl=1)
    alice = await router.client("alice", balance="100")
    bob = await router.client("bob", balance="100")
    for _ in range(3):
        await router.call(alice, action="add", service=1, link=LINK, quantity=100 + _)
    await router.call(alice, action="add", service=2, link=LINK, quantity=100)  # korean route
    bobs = (await router.call(bob, action="add", service=1, link=LINK, quantity=100))["order"]
    router.clock.advance(2)
    reply = await router.call(alice, action="status", orders=f"1,2, 3,4,{bobs},abc,999")
    assert set(reply) == {"1", "2", "3", "4", str(bobs), "abc", "999"}
    for foreign in (str(bobs), "abc", "999"):
        assert reply[foreign] == {"error": "Incorrect order ID"}
    assert all(reply[i]["status"] == "Pending" for i in "1234")
    assert router.panels["echomark"].calls["status"] == 1
    assert router.panels["korean"].calls["status"] == 1
    assert await router.call(alice, action="status", orders=",".join(["1"] * 101)) == {
        "error": "Too many IDs: up to 100 in one request"
    }


async def test_three_hundred_concurrent_adds_spend_exactly_the_balance(make_router):
    router = await make_router(config(), duplicate_window=0)
    key = await router.client(balance="11.7")  # 100 orders of 100 at 1.17 per 1000
    replies = await asyncio.gather(
        *(router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=100) for i in range(300))
    )
    orders = [r["order"] for r in replies if "order" in r]
    refused = [r for r in replies if r == {"error": "Not enough funds on balance"}]
    assert len(orders) == 100 and len(set(orders)) == 100 and len(refused) == 200
    assert await balance(router) == 0
    assert len(router.panels["echomark"].orders) == 100
    charges = [e for e in await router.runtime.ledger.entries("alice") if e.kind == "charge"]
    assert len(charges) == 100 and sum(e.amount for e in charges) == Decimal("-11.7")


async def test_refused_input_changes_nothing(make_router):
    router = await make_router(config())
    key = await router.client(balance="1")
    before = await router.runtime.ledger.entries("alice")
    for params, error in [
        ({"service": 999, "link": LINK, "quantity": 100}, "Incorrect service ID"),
        ({"service": "x", "link": LINK, "quantity": 100}, "Incorrect service ID"),
        ({"service": 1, "link": LINK, "quantity": 10}, "Quantity less than minimal 50"),
        ({"service": 1, "link": LINK, "quantity": 10001}, "Quantity more than maximal 10000"),
        ({"service": 1, "link": "not a link", "quantity": 100}, "Incorrect link"),
        ({"service": 1, "quantity": 100}, "Missing field: link"),
        ({"service": 1, "link": LINK, "quantity": 1000}, "Not enough funds on balance"),
    ]:
        assert await router.call(key, action="add", **params) == {"error": error}
    assert await router.runtime.ledger.entries("alice") == before
    assert not router.panels["echomark"].orders and not router.panels["korean"].orders


async def test_an_identical_add_is_a_new_order_unless_the_client_chose_a_window(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    # A panel relaying two customers' identical orders gets two orders.
    first = await router.call(key, action="add", service=1, link=LINK, quantity=100)
    second = await router.call(key, action="add", service=1, link=LINK, quantity=100)
    assert first != second and len(router.panels["echomark"].orders) == 2
    # A client that chose a duplicate window gets its retries answered with the first order.
    await router.runtime.operators.set_terms("cli:test", "alice", duplicate_window="60")
    third = await router.call(key, action="add", service=1, link=LINK, quantity=100)
    assert await router.call(key, action="add", service=1, link=LINK, quantity=100) == third
    assert len(router.panels["echomark"].orders) == 3
    assert await balance(router) == Decimal("10") - 3 * Decimal("0.117")


async def test_repeated_add_returns_the_first_order(make_router):
    router = await make_router(config(), duplicate_window=60)
    key = await router.client(balance="10")
    first = await router.call(key, action="add", service=1, link=LINK, quantity=100)
    again = await router.call(key, action="add", service=1, link=LINK, quantity=100)
    other = await router.call(key, action="add", service=1, link=LINK, quantity=101)
    assert again == first and other != first
    router.clock.advance(61)  # the window is a real-time Redis TTL; a new key shows the same rule
    headers = {"Idempotency-Key": "abc-123"}
    data = {"action": "add", "service": "1", "link": LINK, "quantity": "200"}
    one = await router.call(key, headers=headers, **data)
    again = await router.call(key, headers=headers, **data)
    two = await router.call(key, headers=headers, **{**data, "quantity": "300"})
    assert one == again
    # A key reused for other fields is refused, as Stripe and the IETF draft do: it bought nothing.
    assert two == {"error": "Idempotency-Key already used for a different request"}
    assert len(router.panels["echomark"].orders) == 3
    # 100 at 0.117, 101 at 0.11817, 200 at 0.234.
    assert await balance(router) == Decimal("10") - Decimal("0.117") - Decimal("0.11817") - Decimal("0.234")


async def test_json_error_reply_fails_over_to_the_next_route(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    fault(router.panels["echomark"], "error", "Service is disabled")
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    record = await order(router, reply["order"])
    assert record.provider == "korean" and record.state == PLACED
    assert [(a.provider, a.outcome) for a in record.attempts] == [("echomark", "refused"), ("korean", "placed")]
    assert len(router.panels["korean"].orders) == 1 and not router.panels["echomark"].orders
    assert await balance(router) == Decimal("8.83")  # we still charge our own price


@pytest.mark.parametrize("mode", ["http_500", "html", "cloudflare", "malformed_json"])
async def test_garbled_reply_leaves_the_order_unknown_and_sends_it_nowhere_else(make_router, mode):
    router = await make_router(config())
    key = await router.client(balance="10")
    fault(router.panels["echomark"], mode)
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    record = await order(router, reply["order"])
    assert record.state == UNKNOWN
    assert not router.panels["korean"].orders  # never sent a second time
    assert (await router.call(key, action="status", order=reply["order"]))["status"] == "Pending"
    assert await balance(router) == Decimal("8.83")
    assert await router.runtime.book.count("unknown") == 1
    assert (await router.runtime.tallies.counts())["orders_unknown"] == 1
    assert await metric(router, "smm_proxy_orders_unknown") == 1
    assert await metric(router, "smm_proxy_orders_total", outcome="unknown") == 1


async def test_every_route_refusing_refunds_fully_with_a_clear_error(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    for panel in router.panels.values():
        fault(panel, "error", "Incorrect link")
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert reply == {"error": "Incorrect link"}
    assert await balance(router) == Decimal("10")
    kinds = [(e.kind, e.amount) for e in await router.runtime.ledger.entries("alice")]
    assert kinds[-2:] == [("charge", Decimal("-1.17")), ("refund", Decimal("1.17"))]
    failed = await router.runtime.book.find(1)
    assert failed.state == FAILED
    for panel in router.panels.values():
        panel.faults.error_message = "Our upstream balance is empty at panel-x.example"
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert reply == {"error": "Service temporarily unavailable, please try again later"}
    # The refused order can be retried at once: it did not count as a duplicate.
    for panel in router.panels.values():
        panel.faults.mode = None
    assert "order" in await router.call(key, action="add", service=1, link=LINK, quantity=1000)


async def test_route_at_a_loss_or_wrong_quantity_is_skipped(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    korean = router.panels["korean"].catalog[101]
    router.panels["korean"].catalog[101] = korean.__class__(**{**korean.__dict__, "rate": Decimal("2000")})
    fault(router.panels["echomark"], "error", "Service is disabled")  # "Incorrect request" refuses at once
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert reply == {"error": "Service temporarily unavailable, please try again later"}
    assert not router.panels["korean"].orders  # 2000 KRW = 1.45 USD > 1.17: skipped
    assert await balance(router) == Decimal("10")


async def test_cooling_provider_is_skipped(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    fault(router.panels["echomark"], "error", "Not enough funds on balance")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    router.panels["echomark"].faults.mode = None
    await router.call(key, action="add", service=1, link=LINK, quantity=2000)
    assert router.panels["echomark"].calls["add"] == 1  # cooling down: not asked again
    assert len(router.panels["korean"].orders) == 2


async def test_refill_and_refill_status_use_our_own_ids(make_router):
    router = await make_router(config(), status_ttl=1)
    router.panels["echomark"].reject_ratio = 0
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    await router.call(key, action="add", service=2, link=LINK, quantity=1000)  # no refill
    assert await router.call(key, action="refill", order=1) == {"error": "Order not eligible for refill."}
    router.clock.advance(25)  # completed upstream
    assert await router.call(key, action="refill", order=1) == {"refill": "1"}
    bulk = await router.call(key, action="refill", orders="1,2,77")
    assert bulk == [
        {"order": 1, "refill": {"error": "The refill task is not completed for this order"}},
        {"order": 2, "refill": {"error": "Refill is disabled for this service"}},
        {"order": 77, "refill": {"error": "Incorrect order ID"}},
    ]
    assert await router.call(key, action="refill_status", refill=1) == {"status": "Pending"}
    router.clock.advance(25)
    assert await router.call(key, action="refill_status", refills="1,5") == [
        {"refill": 1, "status": "Completed"},
        {"refill": 5, "status": {"error": "Refill not found"}},
    ]


async def test_cancel_then_refund_when_upstream_cancels(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    await router.call(key, action="add", service=2, link=LINK, quantity=1000)  # korean 102 cancels
    await router.call(key, action="add", service=1003, link=LINK, quantity=1000)  # no cancel
    reply = await router.call(key, action="cancel", orders="1,3,42")
    assert reply == [
        {"order": 1, "cancel": 1},
        {"order": 3, "cancel": {"error": "Cannot cancel"}},
        {"order": 42, "cancel": {"error": "Incorrect order ID"}},
    ]
    status = await router.call(key, action="status", order=1)
    assert status["status"] == "Canceled" and status["charge"] == "0.00"
    assert await balance(router) == Decimal("10") - Decimal("0.1696") - Decimal("0.156")
    assert await router.call(key, action="cancel", order=1) == [{"order": 1, "cancel": {"error": "Cannot cancel"}}]


ONE_OF_EACH = {
    1001: {"link": LINK, "quantity": "100"},
    1003: {"link": LINK, "quantity": "100", "runs": "3", "interval": "10"},
    1005: {"link": LINK},
    1002: {"link": LINK, "comments": "\r\n".join(f"comment {i}" for i in range(10)) + "\n\n"},
    1012: {"link": LINK, "comments": "a\nb"},
    1006: {"link": LINK, "quantity": "100", "usernames": "ann\nbob"},
    1013: {"link": LINK, "quantity": "100", "usernames": "ann", "hashtags": "#one\n#two"},
    1014: {"link": LINK, "usernames": "\n".join(f"user{i}" for i in range(12))},
    1015: {"link": LINK, "quantity": "100", "hashtag": "#sale"},
    1016: {"link": LINK, "quantity": "100", "username": "someone"},
    1017: {"link": LINK, "quantity": "100", "media": "https://instagram.com/p/xyz"},
    1007: {"link": LINK, "quantity": "100", "username": "owner"},
    1018: {"link": LINK, "username": "owner", "comments": "\n".join(f"reply {i}" for i in range(6))},
    1008: {"link": LINK, "quantity": "100", "answer_number": "2"},
    1019: {"link": LINK, "quantity": "100", "groups": "t.me/a\nt.me/b"},
    1009: {
        "link": LINK,
        "quantity": "1000",
        "country": "KR",
        "device": "2",
        "type_of_traffic": "1",
        "google_keyword": "smm",
    },
    1010: {"username": "someone", "min": "100", "max": "200", "posts": "5", "delay": "30"},
}


async def test_an_order_of_every_service_type_goes_through(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="1000")
    services = {s["service"]: s for s in await router.call(key, action="services")}
    assert {services[s]["type"] for s in ONE_OF_EACH} == {
        "Default",
        "Package",
        "Custom Comments",
        "Custom Comments Package",
        "Mentions",
        "Mentions with Hashtags",
        "Mentions Custom List",
        "Mentions Hashtag",
        "Mentions User Followers",
        "Mentions Media Likers",
        "Comment Likes",
        "Comment Replies",
        "Poll",
        "Invites from Groups",
        "Web Traffic",
        "Subscriptions",
    }
    spent = Decimal(0)
    for service, fields in ONE_OF_EACH.items():
        reply = await router.call(key, action="add", service=service, **fields)
        assert "order" in reply, (service, reply)
        record = await order(router, reply["order"])
        assert record.state == PLACED, service
        spent += record.charge
    assert await balance(router) == Decimal("1000") - spent
    router.clock.advance(30)
    ids = ",".join(str(i) for i in range(1, len(ONE_OF_EACH) + 1))
    statuses = await router.call(key, action="status", orders=ids)
    assert all(s["status"] in ("Completed", "Partial", "Canceled", "Active") for s in statuses.values()), statuses
    # Money: whatever the outcomes, the balance is the opening balance less the net charges.
    net = sum(Decimal(s["charge"]) for s in statuses.values())
    assert await balance(router) == Decimal("1000") - net


async def test_single_status_reads_carry_other_due_orders_along(make_router):
    router = await make_router(config(), status_ttl=5, duplicate_window=0)
    key = await router.client(balance="1000")
    ids = []
    for i in range(250):
        ids.append((await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=100))["order"])
    router.clock.advance(6)  # every status is stale
    import random

    rng = random.Random(7)
    for order_id in rng.sample(ids, 60):
        assert (await router.call(key, action="status", order=order_id))["status"] == "Pending"
    assert router.panels["echomark"].calls["status"] == 3  # 250 orders, 100 a call


async def test_two_instances_poll_due_orders_without_reading_them_twice(make_router):
    from invariants import fresh_prefix

    prefix = fresh_prefix()
    a = await make_router(config(), prefix=prefix, status_ttl=5, duplicate_window=0)
    b = await make_router(config(), prefix=prefix, status_ttl=5, panels=a.panels, clock=a.clock)
    key = await a.client(balance="1000")
    for i in range(250):
        await a.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=100)
    a.clock.advance(6)

    read = await asyncio.gather(a.runtime.sync.poll_due(), b.runtime.sync.poll_due())
    assert sum(read) == 250 and a.panels["echomark"].calls["status"] == 3
    assert await a.runtime.sync.poll_due() == 0  # nothing due until the statuses age again


async def test_finished_orders_are_archived_and_still_found(make_router, tmp_path):

    router = await make_router(config(), status_ttl=1, archive_dir=tmp_path)
    key = await router.client(balance="10")
    for i in range(3):
        await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000)
    router.panels["echomark"].force((await order(router, 1)).upstream_order, status="Partial", remains=100)
    router.panels["echomark"].force((await order(router, 2)).upstream_order, status="Completed")
    router.clock.advance(2)
    await router.call(key, action="status", orders="1,2,3")
    before = await balance(router)
    moved = await router.runtime.archive.archive(router.clock() + 1)
    assert moved == 2  # order 3 is still open
    assert await order(router, 1) is None and await router.runtime.book.ids_in("all", "alice") == [3]
    shown = await router.runtime.operators.order(1)
    assert shown.archived is True and shown.status == "Partial" and shown.refunded == "0.117"
    assert [e.kind for e in shown.ledger] == ["charge", "refund"]  # the ledger keeps them
    assert await balance(router) == before
    assert (await router.call(key, action="status", order=1))["status"] == "Partial"  # Redis keeps a view of it
    assert await router.runtime.archive.archive(router.clock() + 1) == 0  # nothing twice
