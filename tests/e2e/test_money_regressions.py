"""The ten ways money went wrong in failure paths (issue 6), each a test.

Each of these failed against the order core before the state table, leases
and in-script settlement; each checks the money invariants at the end.
"""

import asyncio
import json
from decimal import Decimal

import pytest
from faults import FaultPlan, script_call, script_sha
from invariants import check_money, fresh_prefix
from support import FakeClock, expire_leases, fault, metric, new_order, router_config
from tcpproxy import RedisProxy

from proxy.cli import main
from proxy.errors import ClaimConflict, StateChanged
from proxy.money import ceil_to
from proxy.orders.states import ACCEPT, FAILED, LOSE, PLACED, SUBMIT, SUBMITTED, UNKNOWN, lua_values
from proxy.providers.replies import UpstreamStatus
from proxy.vocabulary import CANCELED, COMPLETED, PARTIAL

LINK = "https://instagram.com/p/abc"


def config(**overrides):
    raw = router_config(
        imports=[{"provider": "echomark", "id_offset": 1000}, {"provider": "korean", "id_offset": 2000}]
    )
    raw.update(overrides)
    return raw


async def settle(router):
    await router.runtime.actions.aclose()
    await expire_leases(router)
    await router.runtime.sync.recover()


RESERVE = script_sha("proxy.orders", "reserve", lua_values())
CLAIM = script_sha("proxy.orders", "claim")
RENEW_LEASE = script_sha("proxy.orders", "renew_lease")


def calls(commands):
    """The script calls among commands about to be sent."""
    return [call for call in map(script_call, commands) if call is not None]


# 1. An error after the money moved never reaches the client as an error.


async def test_redis_stopped_under_traffic_every_charge_is_answered_with_its_order(make_router, redis_url):
    async with RedisProxy(redis_url) as proxy:
        router = await make_router(config(), url=proxy.url, duplicate_window=0)
        key = await router.client(balance="100")
        await router.call(key, action="services")
        for panel in router.panels.values():
            panel.faults.latency = 0.02

        async def add(i):
            return await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=100)

        tasks = [asyncio.create_task(add(i)) for i in range(80)]
        await asyncio.sleep(0.05)
        await proxy.stop()  # Redis goes away mid-traffic ...
        await asyncio.sleep(0.5)
        await proxy.start()  # ... and comes back
        replies = await asyncio.gather(*tasks)
        await settle(router)
        orders = await check_money(router, {"alice": Decimal("100")})
        answered = {r["order"] for r in replies if "order" in r}
        assert all(set(r) in ({"order"}, {"error"}) for r in replies)
        kept = {o.id for o in orders if o.net_charge > 0}
        assert kept <= answered, "money kept for an order the client was not told of"
        assert {o.id for o in orders if o.state == PLACED} <= answered
        assert answered <= {o.id for o in orders}
        assert len(answered) < 80  # the outage did refuse some


async def test_a_failure_after_the_charge_is_answered_with_the_order(make_router):
    class AfterTheDebit(FaultPlan):
        """Counters fail; once `bug_after_reserve`, everything after a reservation raises a bug
        (until `bug_now` is put down)."""

        counters_down = bug_after_reserve = bug_now = False

        async def before(self, commands, pipeline=False):
            if self.counters_down and [str(c[0]).upper() for c in commands] == ["HINCRBY"]:
                return "error"
            if self.bug_now:
                return "bug"
            if self.bug_after_reserve and any(call.sha == RESERVE for call in calls(commands)):
                self.bug_after_reserve, self.bug_now = False, True
            return None

    plan = AfterTheDebit()
    router = await make_router(config(), redis_plan=plan)
    key = await router.client(balance="10")
    await router.call(key, action="services")
    plan.counters_down = True  # counters fail: not money
    assert await router.call(key, action="add", service=1, link=LINK, quantity=1000) == {"order": 1}
    assert (await router.runtime.book.get("alice", 1)).state == PLACED
    plan.bug_after_reserve = True  # placing the order fails with a bug, after the debit
    assert await router.call(key, action="add", service=1, link=LINK + "2", quantity=1000) == {"order": 2}
    plan.bug_now = False
    await settle(router)  # never sent: refunded once its lease lapses
    order = await router.runtime.book.get("alice", 2)
    assert order.state == FAILED and order.refunded == order.charge
    await check_money(router, {"alice": Decimal("10")})


# 2. The retry fingerprint lives while the first add is in flight.


async def test_a_retry_while_the_first_add_is_in_flight_returns_the_first_order(make_router):
    router = await make_router(config(), duplicate_window=0.3)
    key = await router.client(balance="10")
    await router.call(key, action="services")
    router.panels["echomark"].faults.latency = 0.8
    first = asyncio.create_task(router.call(key, action="add", service=1, link=LINK, quantity=1000))
    await asyncio.sleep(0.5)  # longer than the window, and the first add is still in flight
    retry = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert retry == await first == {"order": 1}
    assert len(router.panels["echomark"].orders) == 1
    # The window starts when the client has its answer.
    router.panels["echomark"].faults.latency = 0
    assert await router.call(key, action="add", service=1, link=LINK, quantity=1000) == {"order": 1}
    await asyncio.sleep(0.4)
    again = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert "order" in again and again != {"order": 1}
    assert len(router.panels["echomark"].orders) == 2


# 3. An Idempotency-Key reused with different fields is refused.


async def test_an_idempotency_key_reused_for_another_order_is_refused(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    headers = {"Idempotency-Key": "order-7"}
    a = {"key": key, "action": "add", "service": "1", "link": LINK, "quantity": "100"}
    b = {**a, "link": "https://instagram.com/p/other", "quantity": "5000"}
    first = (await router.http.post("/api/v2", data=a, headers=headers)).json()
    assert (await router.http.post("/api/v2", data=a, headers=headers)).json() == first
    assert (await router.http.post("/api/v2", data=b, headers=headers)).json() == {
        "error": "Idempotency-Key already used for a different request"
    }
    assert len(router.panels["echomark"].orders) == 1
    assert await router.runtime.ledger.balance("alice") == Decimal("10") - Decimal("0.117")


# 4. A final order that needs an operator is queued in the same step as its status.


@pytest.mark.parametrize("mode", ["error", "lost"])
async def test_a_final_order_is_never_left_out_of_the_attention_queue(make_router, mode):
    for n in range(1, 20):
        plan = FaultPlan()
        router = await make_router(config(), prefix=fresh_prefix(), redis_plan=plan)
        key = await router.client(balance="10")
        reply = await router.call(key, action="add", service=1005, link=LINK)  # a package
        order = await router.runtime.book.get("alice", reply["order"])
        no_charge = UpstreamStatus(PARTIAL, None, 10, 500, None, "Partial")
        plan.arm(n, mode)
        try:
            await router.runtime.refresher.apply(order, no_charge)
        except Exception:
            pass
        plan.disarm()
        after = await router.runtime.book.get("alice", order.id)
        if after.status == PARTIAL:
            assert after.attention and await router.runtime.book.ids_in("attention") == [order.id]
        else:
            assert not after.attention  # not applied at all: the next read applies it
            after = await router.runtime.refresher.apply(after, no_charge)
            assert after.attention
        await check_money(router, {"alice": Decimal("10")})
        if not plan.fired:
            break


# 5. Leases, not clocks; late news is recorded.


async def test_two_instances_with_clocks_minutes_apart(make_router):
    prefix = fresh_prefix()
    a = await make_router(config(), prefix=prefix, status_ttl=5)
    b_clock = FakeClock(a.clock.now + 600)  # ten minutes ahead
    b = await make_router(config(), prefix=prefix, status_ttl=5, panels=a.panels, clock=b_clock)
    key = await a.client(balance="20")
    await a.call(key, action="services")
    a.panels["echomark"].faults.latency = 0.5
    slow = asyncio.create_task(a.call(key, action="add", service=1, link=LINK, quantity=1000))
    await asyncio.sleep(0.2)
    assert (await a.runtime.book.get("alice", 1)).state == SUBMITTED
    assert await b.runtime.sync.recover() == 0  # B's clock says nothing about A's live order
    assert await slow == {"order": 1}
    a.panels["echomark"].faults.latency = 0
    orders = [(await b.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000))["order"] for i in range(3)]
    for order_id in [1, *orders]:
        record = await a.runtime.book.get("alice", order_id)
        a.panels["echomark"].force(record.upstream_order, status=PARTIAL, remains=100)
    a.clock.advance(6)
    b.clock.advance(6)
    ids = ",".join(map(str, [1, *orders]))
    replies = await asyncio.gather(*(router.call(key, action="status", orders=ids) for router in (a, b) * 5))
    replies += [await a.call(key, action="status", orders=ids)]
    await a.runtime.sync.poll_open_orders()
    await b.runtime.sync.poll_open_orders()
    assert all(r[i]["status"] == PARTIAL for r in replies[-1:] for i in ids.split(","))
    refunds = [e for e in await a.runtime.ledger.entries("alice") if e.kind == "refund"]
    assert len(refunds) == 4 and all(e.amount == Decimal("0.117") for e in refunds)
    await check_money(a, {"alice": Decimal("20")})


class HeldAdds:
    """Every provider's door: an add waits there (sent, from the router's side)
    until the test lets it through; everything else passes."""

    def __init__(self) -> None:
        self.sent, self.let_through = asyncio.Event(), asyncio.Event()

    def __call__(self, inner):
        held = self

        class Door:
            async def handle_async_request(self, request):
                body = request.content.decode().replace(" ", "")
                if "action=add" in body or '"action":"add"' in body:
                    held.sent.set()
                    await held.let_through.wait()
                return await inner.handle_async_request(request)

            async def aclose(self) -> None:
                await inner.aclose()

        return Door()


async def test_a_late_acceptance_after_a_failed_resolve_goes_to_the_operator(make_router):
    door = HeldAdds()
    router = await make_router(config(), upstream=door)
    key = await router.client(balance="10")
    await router.call(key, action="services")
    adding = asyncio.create_task(router.call(key, action="add", service=1, link=LINK, quantity=1000))
    await door.sent.wait()  # the add has left (the order is submitted) ...
    await expire_leases(router)  # ... its placing task stalls past its lease ...
    assert [o.state for o in await router.runtime.book.recover()] == [UNKNOWN]
    book = router.runtime.book
    await router.runtime.verdicts.resolve(1, failed=True)  # ... an operator gives up on it ...
    door.let_through.set()
    assert await adding == {"order": 1}  # ... and then the provider's reply arrives
    order = await book.get("alice", 1)
    assert order.state == FAILED and order.refunded == order.charge
    assert order.attention.startswith("accepted upstream after it failed and was refunded")
    assert "upstream_order=5000" in order.attention
    assert await book.ids_in("attention") == [1]
    assert (await router.runtime.tallies.counts())["orders_late_accept"] == 1
    await router.runtime.verdicts.acknowledge(1)
    assert await book.ids_in("attention") == []


# 6. Subscriptions settle to what the provider charged.


async def test_a_subscription_settles_to_the_provider_charge_plus_markup(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="100")
    reply = await router.call(key, action="add", service=1010, username="nasa", min=100, max=200, posts=5)
    order = await router.runtime.book.get("alice", reply["order"])
    assert order.charge == Decimal("0.195")  # 5 posts x 200 at 0.15 per 1000, +30 %
    router.clock.advance(25)
    await router.call(key, action="status", order=order.id)
    order = await router.runtime.book.get("alice", order.id)
    upstream = router.panels["echomark"].orders[order.upstream_order]
    provider_charged = upstream.charge - upstream.refund
    assert order.status == COMPLETED and order.upstream_charge == provider_charged < order.cost
    billed = ceil_to(order.charge * provider_charged / order.cost)
    assert order.net_charge == billed and order.refunded > 0
    assert await router.runtime.ledger.balance("alice") == Decimal("100") - billed
    await check_money(router, {"alice": Decimal("100")})


async def test_an_unlimited_subscription_is_held_then_settled(make_router):
    router = await make_router(config(settlement={"subscription_hold_posts": 4}), status_ttl=1)
    key = await router.client(balance="100")
    reply = await router.call(key, action="add", service=1010, username="nasa", min=100, max=200, posts=0)
    order = await router.runtime.book.get("alice", reply["order"])
    assert order.charge == Decimal("0.156")  # held: 4 posts x 200 at 0.15 per 1000, +30 %
    upstream = router.panels["echomark"].orders[order.upstream_order]
    assert upstream.fields["posts"] == "0" and upstream.charge == 0  # billed per post upstream
    router.clock.advance(35)  # active, two posts delivered
    router.panels["echomark"].force(order.upstream_order, status=CANCELED)
    router.clock.advance(2)
    assert (await router.call(key, action="status", order=order.id))["status"] == CANCELED
    order = await router.runtime.book.get("alice", order.id)
    billed = ceil_to(order.charge * upstream.charge / order.cost)
    assert 0 < billed < order.charge and order.net_charge == billed
    await check_money(router, {"alice": Decimal("100")})


async def test_a_provider_charging_more_than_the_hold_goes_to_the_operator(make_router):
    router = await make_router(config(settlement={"subscription_hold_posts": 1}), status_ttl=1)
    key = await router.client(balance="100")
    reply = await router.call(key, action="add", service=1010, username="nasa", min=100, max=200)
    order = await router.runtime.book.get("alice", reply["order"])
    router.clock.advance(100)  # many posts delivered, far past the one post held
    router.panels["echomark"].force(order.upstream_order, status=CANCELED)
    router.clock.advance(2)
    await router.call(key, action="status", order=order.id)
    order = await router.runtime.book.get("alice", order.id)
    assert order.refunded == 0 and "more than the" in order.attention
    await check_money(router, {"alice": Decimal("100")})


# 7. What providers charge, and in which currency, is checked.


async def test_a_provider_billing_in_another_currency_is_never_routed_to(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    router.panels["echomark"].currency = "EUR"
    await router.runtime.sync.check_providers()
    state = await router.runtime.health.state("echomark")
    assert state.currency == "EUR" and "EUR" in state.blocked
    services = {s["service"] for s in await router.call(key, action="services")}
    assert 1 in services and not any(1000 <= s < 2000 for s in services)
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert (await router.runtime.book.get("alice", reply["order"])).provider == "korean"
    assert not router.panels["echomark"].orders
    assert await metric(router, "smm_proxy_provider_blocked", provider="echomark") == 1
    router.panels["echomark"].currency = "USD"
    await router.runtime.sync.check_providers()
    assert not (await router.runtime.health.state("echomark")).blocked


async def test_an_upstream_charge_off_the_recorded_cost_goes_to_the_operator(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="10")
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    order = await router.runtime.book.get("alice", reply["order"])
    upstream = router.panels["echomark"].orders[order.upstream_order]
    upstream.charge *= 2  # the provider bills double its rate
    router.panels["echomark"].force(order.upstream_order, status=COMPLETED)
    router.clock.advance(2)
    await router.call(key, action="status", order=order.id)
    order = await router.runtime.book.get("alice", order.id)
    assert order.attention == "the provider charged 1.80 USD for this Completed order, expected about 0.90 USD"
    assert order.net_charge == order.charge  # the client pays our price all the same
    assert await metric(router, "smm_proxy_orders_attention") == 1


# 8. An operator cannot give one upstream order to two of our orders.


async def test_resolve_refuses_an_upstream_order_another_order_owns(
    make_router, redis_url, key_prefix, monkeypatch, capsys, tmp_path
):
    router = await make_router(config())
    key = await router.client(balance="10")
    placed = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    fault(router.panels["echomark"], "html")
    unknown = await router.call(key, action="add", service=1, link=LINK + "2", quantity=1000)
    owner = await router.runtime.book.get("alice", placed["order"])
    with pytest.raises(ClaimConflict):
        await router.runtime.verdicts.resolve(unknown["order"], upstream_order=owner.upstream_order)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(json.dumps(config()))
    monkeypatch.setenv("SMM_PROXY_REDIS_URL", redis_url)
    monkeypatch.setenv("SMM_PROXY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("SMM_PROXY_CONFIG", str(cfg))
    argv = ["orders", "resolve", str(unknown["order"]), "--upstream-order", str(owner.upstream_order)]
    assert await asyncio.to_thread(main, argv) == 2
    assert f"already belongs to order {owner.id}" in capsys.readouterr().err
    assert (await router.runtime.book.get("alice", unknown["order"])).state == UNKNOWN
    router.panels["echomark"].force(owner.upstream_order, status=CANCELED)
    router.clock.advance(61)
    await router.call(key, action="status", orders=f"{placed['order']},{unknown['order']}")
    assert await router.runtime.ledger.balance("alice") == Decimal("10") - Decimal("1.17")  # one refund, not two


async def test_an_upstream_id_answered_twice_is_not_believed(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    first = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    first_upstream = (await router.runtime.book.get("alice", first["order"])).upstream_order
    router.panels["echomark"].hand_out_order_id(first_upstream)  # the panel hands out the same ID again
    second = await router.call(key, action="add", service=1, link=LINK + "2", quantity=1000)
    order = await router.runtime.book.get("alice", second["order"])
    assert order.state == UNKNOWN and f"which order {first['order']} owns" in order.attention
    assert (await router.runtime.tallies.counts())["orders_claimed_twice"] == 1


# 9. Orders that never left are refunded, not left unknown; every order is listed.


async def test_an_order_that_died_waiting_for_a_connection_is_refunded_not_unknown(make_router):
    raw = config()
    raw["providers"]["echomark"].update(max_connections=1, order_wait=5)
    router = await make_router(raw)
    key = await router.client(balance="10")
    await router.call(key, action="services")
    router.panels["echomark"].faults.latency = 0.5
    requests = [asyncio.create_task(router.call(key, action="add", service=1, link=LINK, quantity=1000))]
    await asyncio.sleep(0.1)
    requests.append(asyncio.create_task(router.call(key, action="add", service=1, link=LINK + "2", quantity=1000)))
    await asyncio.sleep(0.1)
    waiting = await router.runtime.book.get("alice", 2)
    assert waiting.state == "reserved"  # waiting for a connection, not yet submitted
    dying = asyncio.all_tasks() - {asyncio.current_task()}
    for task in dying:  # the process dies: every task it runs stops where it is
        task.cancel()
    await asyncio.gather(*dying, return_exceptions=True)
    assert all(request.done() for request in requests)
    await expire_leases(router)
    await router.runtime.sync.recover()
    order = await router.runtime.book.get("alice", 2)
    assert order.state == FAILED and order.refunded == order.charge
    listed = [o.id async for o in router.runtime.book.newest()]
    assert listed == [2, 1]


# 10. The time an order waits for a connection is bounded; then it fails over.


async def test_an_order_waits_for_a_connection_no_longer_than_its_deadline(make_router):
    raw = config()
    raw["providers"]["echomark"].update(max_connections=2, order_wait=0.2)
    router = await make_router(raw, duplicate_window=0)
    key = await router.client(balance="100")
    await router.call(key, action="services")
    router.panels["echomark"].faults.latency = 1.0
    replies = await asyncio.gather(
        *(router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000) for i in range(10))
    )
    orders = [await router.runtime.book.get("alice", r["order"]) for r in replies]
    assert all(o.state == PLACED for o in orders)
    assert sorted(o.provider for o in orders) == ["echomark"] * 2 + ["korean"] * 8
    waited = [o for o in orders if o.provider == "korean"]
    assert all(o.attempts[0].reason == "add: not sent: no free connection in time" for o in waited)
    await check_money(router, {"alice": Decimal("100")})


# Small protocol gaps.


async def test_a_body_without_a_content_type_is_read_as_a_form(make_router):
    router = await make_router(config())
    key = await router.client(balance="7")
    response = await router.http.post("/api/v2", content=f"key={key}&action=balance".encode())
    assert response.json() == {"balance": "7.00", "currency": "USD"}


async def test_internal_words_never_reach_a_client(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    await router.call(key, action="add", service=1, link=LINK + "2", quantity=1000)
    router.clock.advance(30)
    await router.call(key, action="status", orders="1,2")
    panel = router.panels["echomark"]
    original = panel.refill_many

    def forgetful(key_, ids):
        return original(key_, ids)[:1]  # the panel drops the second item from its reply

    panel.refill_many = forgetful
    reply = await router.call(key, action="refill", orders="1,2")
    assert "missing" not in json.dumps(reply) and "unreadable" not in json.dumps(reply)


async def test_services_carry_dripfeed_where_the_service_takes_it(make_router):
    router = await make_router(config())
    key = await router.client()
    services = {s["service"]: s for s in await router.call(key, action="services")}
    assert services[1003]["dripfeed"] is True  # echomark's drip-feed likes
    assert "dripfeed" not in services[1001]


# Found in review: each failed before its fix.


async def test_a_live_order_keeps_its_claim_while_it_records_it(make_router):
    router = await make_router(config())
    await router.client(balance="10")
    book = router.runtime.book
    x = (await book.reserve(new_order(link=LINK + "x"))).order
    y = (await book.reserve(new_order(link=LINK + "y"))).order
    x = await book.apply(x, SUBMIT, {"provider": "echomark"})
    y = await book.apply(y, SUBMIT, {"provider": "echomark"})
    assert await router.runtime.claims.claim(x, "echomark", 777) is None  # X claimed it; its accept is one step behind
    assert await router.runtime.claims.claim(y, "echomark", 777) == x.id


async def test_two_concurrent_adds_answered_with_one_upstream_id(make_router):
    class SlowAccepts(FaultPlan):
        async def before(self, commands, pipeline=False):
            if any(call.args[:1] == [ACCEPT] for call in calls(commands)):
                await asyncio.sleep(0.05)  # an accept is recorded a moment after its claim
            return None

    router = await make_router(config(), duplicate_window=0, redis_plan=SlowAccepts())
    key = await router.client(balance="10")
    await router.call(key, action="services")
    router.panels["echomark"].hand_out_order_id(5000, always=True)  # the panel hands the same ID to every add
    await asyncio.gather(
        *(router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000) for i in range(2))
    )
    orders = await check_money(router, {"alice": Decimal("10")})
    assert sorted(o.state for o in orders) == [PLACED, UNKNOWN]


class Meanwhile(FaultPlan):
    """Runs `action` once, just before the first command `when(commands)` picks is sent."""

    when = action = None

    async def before(self, commands, pipeline=False):
        if self.action is not None and self.when(commands):
            action, self.action = self.action, None
            await action()
        return None


async def test_a_claim_released_while_another_order_looks_at_it(make_router):
    meanwhile = Meanwhile()
    router = await make_router(config(), redis_plan=meanwhile)
    await router.client(balance="10")
    book, claims = router.runtime.book, router.runtime.claims
    x = await book.apply((await book.reserve(new_order(link=LINK + "x"))).order, SUBMIT, {"provider": "echomark"})
    y = (await book.reserve(new_order(link=LINK + "y"))).order
    assert await claims.claim(x, "echomark", 777) is None
    x = await book.apply(x, LOSE)  # its accept never recorded: the claim is stale
    record_of_x = router.runtime.keys.order("alice", x.id)
    meanwhile.when = lambda commands: ("HGETALL", record_of_x) in [tuple(c) for c in commands]
    meanwhile.action = lambda: claims.release(x, "echomark", 777)  # while y's claim reads x, x lets go
    assert await claims.claim(y, "echomark", 777) is None


async def test_a_resolve_that_loses_a_race_keeps_the_placed_orders_claim(make_router):
    meanwhile = Meanwhile()
    router = await make_router(config(), redis_plan=meanwhile)
    await router.client(balance="10")
    book, verdicts = router.runtime.book, router.runtime.verdicts
    x = await book.apply((await book.reserve(new_order(link=LINK + "x"))).order, SUBMIT, {"provider": "echomark"})
    x = await book.apply(x, LOSE)

    async def the_late_reply_lands():
        assert await router.runtime.claims.claim(x, "echomark", 777) is None
        await book.apply(x, ACCEPT, {"upstream_order": 777})

    # The operator's resolve has read the order; before it claims 777, the late reply lands.
    meanwhile.when = lambda commands: any(call.sha == CLAIM for call in calls(commands))
    meanwhile.action = the_late_reply_lands
    with pytest.raises(StateChanged):
        await verdicts.resolve(x.id, upstream_order=777)
    y = await book.apply((await book.reserve(new_order(link=LINK + "y"))).order, SUBMIT, {"provider": "echomark"})
    assert await router.runtime.claims.claim(y, "echomark", 777) == x.id


@pytest.mark.parametrize("charge", ["1e30", "123456789012", "-0.05"])
async def test_an_unusable_upstream_charge_still_settles_by_rate(make_router, charge):
    router = await make_router(config())
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    order = await router.runtime.book.get("alice", 1)
    order = await router.runtime.refresher.apply(order, UpstreamStatus(CANCELED, Decimal(charge), 0, 1000, "USD", "x"))
    assert order.status == CANCELED and order.refunded == order.charge
    assert "a charge we cannot use" in order.attention


async def test_a_negative_upstream_charge_does_not_refund_a_subscription_silently(make_router):
    router = await make_router(config())
    key = await router.client(balance="10")
    reply = await router.call(key, action="add", service=1010, username="someone", min=100, max=200, posts=5)
    order = await router.runtime.book.get("alice", reply["order"])
    done = UpstreamStatus(COMPLETED, Decimal("-0.05"), 0, 0, "USD", "Completed")
    order = await router.runtime.refresher.apply(order, done)
    assert order.refunded == 0 and "to be decided" in order.attention


async def test_a_reservation_whose_every_reply_was_lost_is_answered_with_its_id(make_router):
    class EveryReserveLost(FaultPlan):
        async def before(self, commands, pipeline=False):
            return "lost" if self.armed and any(call.sha == RESERVE for call in calls(commands)) else None

    plan = EveryReserveLost()
    router = await make_router(config(), redis_plan=plan)
    key = await router.client(balance="10")
    await router.call(key, action="services")
    plan.armed = True  # the reservation applies every time, and its reply is lost every time
    assert await router.call(key, action="add", service=1, link=LINK, quantity=1000) == {"order": 1}
    plan.armed = False
    await settle(router)
    order = await router.runtime.book.get("alice", 1)
    assert order.state == FAILED and order.refunded == order.charge  # never sent: refunded
    await check_money(router, {"alice": Decimal("10")})


async def test_a_reply_that_drips_a_byte_at_a_time_ends_as_unknown():
    from proxy.errors import OutcomeUnknown
    from proxy.providers.upstream import ProviderClient

    async def drip(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"order": 123}' + b" " * 40
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(len(body)):
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, ProviderClient("p", f"http://127.0.0.1:{port}/api/v2", "k", timeout=0.3) as client:
        sent = []

        async def before_send():
            sent.append(True)

        with pytest.raises(OutcomeUnknown, match="no complete reply"):
            await client.add({"service": 1}, before_send=before_send)  # every byte within 0.3 s; 5 s in all
    assert sent == [True]


async def test_a_balance_reply_without_a_currency_keeps_a_block(make_router):
    router = await make_router(config())
    router.panels["echomark"].currency = "EUR"
    await router.runtime.sync.check_providers()
    original = router.panels["echomark"].balance
    router.panels["echomark"].balance = lambda key: {"balance": original(key)["balance"]}
    await router.runtime.sync.check_providers()
    assert "EUR" in (await router.runtime.health.state("echomark")).blocked


async def test_an_order_the_provider_stops_knowing_goes_to_the_operator(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    order = await router.runtime.book.get("alice", 1)
    router.panels["echomark"].forget_order(order.upstream_order)  # "Incorrect order ID" now
    for _ in range(5):
        router.clock.advance(2)
        await router.call(key, action="status", order=1)
    order = await router.runtime.book.get("alice", 1)
    assert order.attention == (
        "5 status reads in a row could not be settled (nothing usable on this order) | "
        "the provider said: Incorrect order ID"
    )
    assert order.refunded == 0  # the operator decides


class RandomFaults:
    """Upstream at its worst, once armed: random latency, refusals, lost replies and HTML pages."""

    def __init__(self, inner, rng) -> None:
        self.inner, self.rng, self.armed = inner, rng, False

    async def handle_async_request(self, request):
        import httpx
        from faults import HTML_PAGE

        if not self.armed:
            return await self.inner.handle_async_request(request)
        roll = self.rng.random()
        await asyncio.sleep(self.rng.random() * 0.6)
        if roll < 0.15:
            raise httpx.ConnectError("refused", request=request)
        response = await self.inner.handle_async_request(request)
        if roll < 0.25:
            await response.aclose()
            raise httpx.ReadTimeout("lost", request=request)
        if roll < 0.32:
            await response.aclose()
            return httpx.Response(200, text=HTML_PAGE, request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("seed", range(2))
async def test_two_instances_with_lapsing_leases_and_a_hostile_upstream(make_router, seed):
    """Instance A cannot renew its leases; B runs recovery ten times a second."""
    import random

    class NoRenewals(FaultPlan):
        async def before(self, commands, pipeline=False):
            return "error" if any(call.sha == RENEW_LEASE for call in calls(commands)) else None

    rng = random.Random(seed)
    hostile = []

    def upstream(inner):
        hostile.append(RandomFaults(inner, rng))
        return hostile[-1]

    prefix = fresh_prefix()
    options = dict(prefix=prefix, upstream_cooldown=0, order_lease=1, duplicate_window=0, upstream=upstream)
    a = await make_router(config(), **options, redis_plan=NoRenewals())  # A cannot renew its leases
    b = await make_router(config(), **options, panels=a.panels, clock=a.clock)
    key = await a.client(balance="100")
    for router in (a, b):
        await router.call(key, action="services")
    for transport in hostile:
        transport.armed = True
    stop = asyncio.Event()

    async def recovery():
        while not stop.is_set():
            await b.runtime.sync.recover()
            await asyncio.sleep(0.1)

    loop = asyncio.create_task(recovery())
    replies = await asyncio.gather(
        *(a.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000) for i in range(40))
    )
    await a.runtime.actions.aclose()
    stop.set()
    await loop
    await settle(a)
    orders = await check_money(a, {"alice": Decimal("100")})
    answered = {r["order"] for r in replies if "order" in r}
    assert {o.id for o in orders if o.net_charge > 0} <= answered
