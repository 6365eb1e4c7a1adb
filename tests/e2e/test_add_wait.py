"""How an add waits for its order to be placed, attacked at every moment.

An add whose client's money moved answers with the order's ID, whatever
settles its wait first: a provider's answer (the router settles the add's
`answered` future before it records the provider's ID, and yields once so
the add's answer is written first), the placing task ending, `add_wait`
passing, or a shutdown (`OrderActions.stop_waiting`). Here the client hangs
up at the wait, the shutdown lands before and at each step of an add, the
timer wins at once, the placing task raises, and a shutdown cancels a
placing task parked right after the provider's answer: the reply is the
order's ID (or a refusal with no money moved), the placing task is never
cancelled by a client, the money invariants hold, and nothing is left on the
long-lived stop future, the loop's timers or the actions' books.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest
from faults import FaultPlan, walk_ready
from invariants import check_money
from support import expire_leases, on_every_store

from proxy.orders import routing
from proxy.orders.actions import OrderRefused
from proxy.orders.states import FAILED, PLACED, SUBMITTED, UNKNOWN

LINK = "https://instagram.com/p/add-wait"
OPENING = {"alice": Decimal("10")}
FIELDS = {"link": LINK, "quantity": "1000"}
# An add_wait no other timer of the router shares: its timers are told apart by when they are due.
LONG_WAIT = 987.0
NO_ROUTE = "Service temporarily unavailable, please try again later"


def leftovers(actions) -> dict[str, object]:
    """What an add may leave behind once every add returned and every placing
    task ended: callbacks on the long-lived stop future, `add_wait` timers
    still scheduled, entries in the actions' books. Empty when nothing leaked."""
    loop = asyncio.get_running_loop()
    stopping = actions._stopping
    left: dict[str, object] = {}
    if stopping is not None and stopping._callbacks:
        left["stop callbacks"] = list(stopping._callbacks)
    timers = [
        h for h in getattr(loop, "_scheduled", ()) if not h.cancelled() and h.when() - loop.time() > LONG_WAIT / 2
    ]
    if timers:
        left["add_wait timers"] = timers
    if actions._placing:
        left["placing"] = dict(actions._placing)
    if actions._recording:
        left["recording"] = dict(actions._recording)
    return left


async def prepared(make_router, **settings):
    settings.setdefault("add_wait", LONG_WAIT)
    return await walk_ready(make_router, **settings)


async def placing_ended(actions) -> None:
    while actions._placing:
        await asyncio.wait(list(actions._placing))


async def settle(router) -> None:
    """The world settles: shutdown (hands over what is still being placed), leases lapse, recovery runs."""
    await router.runtime.actions.aclose(timeout=1.0)
    await expire_leases(router)
    await router.runtime.sync.recover()


async def until(predicate, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


class Yield:
    """`proxy.orders.routing`'s `asyncio`, with its `sleep(0)` (the yield after a
    provider's answer settles the add) replaced by `at_yield`."""

    def __init__(self, at_yield) -> None:
        self.at_yield = at_yield
        self.reached = 0

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, result: object = None) -> object:
        if delay == 0:
            self.reached += 1
            return await self.at_yield()
        return await asyncio.sleep(delay, result)


# -- the client hangs up ---------------------------------------------------------


async def test_a_client_hanging_up_at_the_wait_never_cancels_the_placing(make_router):
    router, _ = await prepared(make_router)
    router.panels["echomark"].faults.latency = 0.3
    actions = router.runtime.actions
    adding = asyncio.create_task(actions.add("alice", 1, FIELDS))

    async def sent() -> bool:
        order = await router.runtime.book.get("alice", 1)
        return order is not None and order.state == SUBMITTED

    await until(sent)
    placing = list(actions._placing)
    assert len(placing) == 1
    adding.cancel()  # the client hung up
    with pytest.raises(asyncio.CancelledError):
        await adding
    assert not placing[0].done()  # the order is still being placed
    assert "stop callbacks" not in leftovers(actions)
    await placing_ended(actions)
    assert not placing[0].cancelled() and placing[0].exception() is None
    order = await router.runtime.book.get("alice", 1)
    assert order.state == PLACED and order.upstream_order in router.panels["echomark"].orders
    assert leftovers(actions) == {}
    await check_money(router, OPENING)


async def test_a_placing_task_that_fails_after_its_client_hung_up_is_logged(make_router, monkeypatch, caplog):
    """Nobody waits for the placing task of an add whose client hung up: its
    failure is said in our log, not only by asyncio's "never retrieved"."""
    router, _ = await prepared(make_router)
    actions = router.runtime.actions
    release = asyncio.Event()

    async def broken(order, service, per_run, routes, taken):
        await release.wait()
        raise RuntimeError("a bug after the client hung up")

    monkeypatch.setattr(actions.router, "place", broken)
    adding = asyncio.create_task(actions.add("alice", 1, FIELDS))
    await until(lambda: _placing_started(actions))
    placing = list(actions._placing)
    adding.cancel()  # the client hung up
    with pytest.raises(asyncio.CancelledError):
        await adding
    with caplog.at_level(logging.ERROR, logger="proxy.orders.actions"):
        release.set()
        await placing_ended(actions)
        await asyncio.sleep(0)  # the task's done callbacks run
    assert placing[0].exception() is not None
    assert any("failed after its client was answered" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    await settle(router)
    await check_money(router, OPENING)


async def _placing_started(actions) -> bool:
    return bool(actions._placing)


@on_every_store
async def test_a_client_hanging_up_as_the_provider_answers_never_cancels_the_placing(make_router, monkeypatch):
    """The hang-up lands in the loop turn the provider's answer settled the add:
    the add is cancelled with its answer in hand; the placing task goes on and
    records the provider's ID."""
    router, _ = await prepared(make_router)
    actions = router.runtime.actions
    adding = asyncio.create_task(actions.add("alice", 1, FIELDS))

    async def hang_up() -> None:
        adding.cancel()
        await asyncio.sleep(0)

    shim = Yield(hang_up)
    monkeypatch.setattr(routing, "asyncio", shim)
    with pytest.raises(asyncio.CancelledError):
        await adding
    assert shim.reached == 1
    placing = list(actions._placing)
    await placing_ended(actions)
    assert all(not task.cancelled() for task in placing)
    order = await router.runtime.book.get("alice", 1)
    assert order.state == PLACED
    assert leftovers(actions) == {}
    await check_money(router, OPENING)


# -- the shutdown --------------------------------------------------------------


async def test_an_add_after_the_shutdown_began_is_refused_before_any_money_moves(make_router):
    router, key = await prepared(make_router)
    actions = router.runtime.actions
    actions.stop_waiting()
    assert await router.call(key, action="add", service=1, link=LINK, quantity=1000) == {"error": NO_ROUTE}
    assert await router.runtime.ledger.balance("alice") == OPENING["alice"]
    assert not any(panel.orders for panel in router.panels.values())
    assert leftovers(actions) == {}


class StopAt(FaultPlan):
    """The shutdown begins (`stop_waiting`) just before the N-th Redis command."""

    actions = None

    async def before(self, commands, pipeline=False):  # type: ignore[no-untyped-def]
        if self.next("") is not None:
            self.actions.stop_waiting()
        return None


class StopAtUpstream(FaultPlan):
    """The shutdown begins just before the N-th upstream call."""

    actions = None

    def next(self, what: str) -> str | None:
        if super().next(what) is not None:
            self.actions.stop_waiting()
        return None


# A fault plan at Redis needs one server; the upstream's runs on every store.
@pytest.mark.parametrize("store, where", [("single", "redis"), ("single", "upstream"), ("cluster", "upstream")])
async def test_a_shutdown_at_each_step_of_an_add_answers_its_id_or_moves_no_money(make_router, where):
    for n in range(1, 100):
        plan = StopAt() if where == "redis" else StopAtUpstream()
        router, key = await prepared(
            make_router, **({"redis_plan": plan} if where == "redis" else {"upstream_plan": plan})
        )
        actions = plan.actions = router.runtime.actions
        plan.arm(n, "stop")
        reply = await asyncio.wait_for(router.call(key, action="add", service=1, link=LINK, quantity=1000), 5)
        plan.disarm()
        if "order" in reply:
            order = await router.runtime.book.find(reply["order"])
            assert order is not None and order.client == "alice"
        else:  # refused: nothing charged, nothing sent
            assert reply == {"error": NO_ROUTE}, (n, reply)
            assert await router.runtime.ledger.balance("alice") == OPENING["alice"]
            assert not any(panel.orders for panel in router.panels.values())
        assert "stop callbacks" not in leftovers(actions)
        await settle(router)
        assert leftovers(actions) == {}, n
        await check_money(router, OPENING)
        if not plan.fired:
            assert reply == {"order": 1}
            break
    assert n > (3 if where == "redis" else 1)  # the path was walked


async def test_many_adds_with_a_shutdown_in_the_middle_each_answer_the_id_of_the_money_they_moved(make_router):
    router, key = await prepared(make_router, balance="100", duplicate_window=0)
    for panel, latency in zip(router.panels.values(), (0.05, 0.2), strict=True):
        panel.faults.latency = latency
    actions = router.runtime.actions

    async def add(i: int) -> dict:
        await asyncio.sleep(0.002 * i)
        return await router.call(key, action="add", service=1 + i % 2, link=f"{LINK}/{i}", quantity=1000)

    adds = [asyncio.create_task(add(i)) for i in range(40)]
    await asyncio.sleep(0.04)
    actions.stop_waiting()
    replies = await asyncio.wait_for(asyncio.gather(*adds), 10)
    assert "stop callbacks" not in leftovers(actions)
    answered = sorted(r["order"] for r in replies if "order" in r)
    refused = [r for r in replies if "order" not in r]
    assert answered and refused, replies  # the shutdown fell in the middle
    assert all(r == {"error": NO_ROUTE} for r in refused)
    ids = sorted([o.id async for o in router.runtime.book.newest()])
    assert answered == ids  # every order whose money moved was answered with its ID, once
    await settle(router)
    assert leftovers(actions) == {}
    await check_money(router, {"alice": Decimal("100")})


async def test_many_adds_leave_nothing_on_the_stop_future_or_the_loop(make_router):
    router, key = await prepared(make_router, balance="100", duplicate_window=0)
    actions = router.runtime.actions
    actions._stop_signal()  # the long-lived future every add waits on
    replies = await asyncio.gather(
        *(router.call(key, action="add", service=1, link=f"{LINK}/{i}", quantity=1000) for i in range(50))
    )
    assert all("order" in r for r in replies)
    await placing_ended(actions)
    assert leftovers(actions) == {}
    assert not actions._stopping.done()
    await check_money(router, {"alice": Decimal("100")})


# -- the timer wins ------------------------------------------------------------


@pytest.mark.parametrize("wait", [0, 0.001])
async def test_a_tiny_add_wait_answers_the_id_and_placing_goes_on(make_router, wait, caplog):
    router, _ = await prepared(make_router)
    actions = router.runtime.actions
    actions.add_wait = wait
    with caplog.at_level(logging.WARNING, logger="proxy.orders.actions"):
        order_id = await actions.add("alice", 1, FIELDS)
    assert order_id == 1
    timer_won = any("still being placed" in r.getMessage() for r in caplog.records)
    if wait == 0:  # due at once: the timer wins over any provider
        assert timer_won
    if timer_won:
        assert not actions._recording  # the timer answered, not a provider
    await placing_ended(actions)
    assert (await router.runtime.book.get("alice", 1)).state == PLACED
    assert leftovers(actions) == {}
    await check_money(router, OPENING)


async def test_a_tiny_add_wait_answers_the_id_of_an_order_every_route_refuses_then_refunds_it(make_router):
    router, _ = await prepared(make_router)
    for panel in router.panels.values():
        panel.faults.mode, panel.faults.actions = "error", frozenset({"add"})
    actions = router.runtime.actions
    with pytest.raises(OrderRefused):  # the refusal, when the add waited for it
        await actions.add("alice", 1, FIELDS)
    assert await router.runtime.ledger.balance("alice") == OPENING["alice"]
    actions.add_wait = 0
    order_id = await actions.add("alice", 1, {**FIELDS, "link": LINK + "/2"})  # the money moved: its ID
    await placing_ended(actions)
    order = await router.runtime.book.get("alice", order_id)
    assert order.state == FAILED and order.refunded == order.charge
    assert leftovers(actions) == {}
    await check_money(router, OPENING)


# -- the placing task raises, or ends as it settles the add --------------------


async def test_a_placing_task_that_raises_at_once_is_answered_with_the_id(make_router, monkeypatch, caplog):
    router, _ = await prepared(make_router)
    actions = router.runtime.actions

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug in the router")

    monkeypatch.setattr(actions.router, "place", broken)
    with caplog.at_level(logging.ERROR, logger="proxy.orders.actions"):
        assert await actions.add("alice", 1, FIELDS) == 1
    assert any("placing failed after the charge" in r.getMessage() for r in caplog.records)
    assert leftovers(actions) == {}
    monkeypatch.undo()
    await settle(router)
    order = await router.runtime.book.get("alice", 1)
    assert order.state == FAILED and order.refunded == order.charge  # never sent: refunded
    await check_money(router, OPENING)


async def test_a_placing_task_that_raises_after_the_providers_answer_is_answered_with_the_id(
    make_router, monkeypatch, caplog
):
    router, _ = await prepared(make_router)
    actions = router.runtime.actions

    async def broken(order, service, per_run, routes, taken):
        taken.set_result(None)  # as the router does when a provider answered
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        raise RuntimeError("a bug after the provider's answer")

    monkeypatch.setattr(actions.router, "place", broken)
    with caplog.at_level(logging.ERROR, logger="proxy.orders.actions"):
        assert await actions.add("alice", 1, FIELDS) == 1
        assert set(actions._recording) == {1}
        await actions.recorded(1)
    assert any("failed after its client was answered" in r.getMessage() for r in caplog.records)
    assert leftovers(actions) == {}
    monkeypatch.undo()
    await settle(router)
    await check_money(router, OPENING)


async def test_a_placing_task_that_ends_as_it_settles_the_add(make_router, monkeypatch):
    """The provider's answer settles the add and the task ends in the same loop
    turn: the add answers with the ID (a provider took it), and nothing is left
    waiting to be recorded."""
    router, _ = await prepared(make_router)
    actions = router.runtime.actions
    real = actions.router.place

    async def ends_at_once(order, service, per_run, routes, taken):
        placement = await real(order, service, per_run, routes)
        taken.set_result(None)
        return placement

    monkeypatch.setattr(actions.router, "place", ends_at_once)
    assert await actions.add("alice", 1, FIELDS) == 1
    assert not actions._recording  # the task ended: nothing left to wait for
    await asyncio.sleep(0)  # the task's own done callbacks run
    assert leftovers(actions) == {}
    assert (await router.runtime.book.get("alice", 1)).state == PLACED
    monkeypatch.undo()
    await check_money(router, OPENING)


# -- a shutdown cancels a placing task at its yield after the provider's answer --


@on_every_store
async def test_a_shutdown_cancelling_the_placing_at_its_yield_leaves_the_order_for_an_operator(
    make_router, monkeypatch
):
    router, _ = await prepared(make_router)
    actions = router.runtime.actions
    parked = asyncio.Event()

    async def park() -> None:  # the task is at its yield when the shutdown's cancel lands
        parked.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(routing, "asyncio", Yield(park))
    assert await asyncio.wait_for(actions.add("alice", 1, FIELDS), 5) == 1
    assert parked.is_set()
    actions.stop_waiting()
    await asyncio.wait_for(actions.aclose(timeout=0.4), 5)  # half waiting, then cancelled and handed over
    assert leftovers(actions) == {}
    order = await router.runtime.book.get("alice", 1)
    assert order.state == UNKNOWN  # it exists upstream: for an operator, its money held
    assert len(router.panels["echomark"].orders) == 1
    monkeypatch.undo()
    await expire_leases(router)
    await router.runtime.sync.recover()
    await check_money(router, OPENING)


@on_every_store
async def test_a_cancel_at_the_yield_not_handed_over_is_taken_over_by_recovery(make_router, monkeypatch):
    router, _ = await prepared(make_router)
    actions = router.runtime.actions

    async def cancelled() -> None:
        asyncio.current_task().cancel()
        await asyncio.sleep(0)

    monkeypatch.setattr(routing, "asyncio", Yield(cancelled))
    assert await actions.add("alice", 1, FIELDS) == 1
    await placing_ended(actions)
    assert leftovers(actions) == {}
    monkeypatch.undo()
    assert (await router.runtime.book.get("alice", 1)).state == SUBMITTED
    await expire_leases(router)
    await router.runtime.sync.recover()
    order = await router.runtime.book.get("alice", 1)
    assert order.state == UNKNOWN
    await check_money(router, OPENING)


@pytest.mark.parametrize("mode", ["error", "lost"])
async def test_a_hand_over_of_a_placing_parked_at_its_yield_that_redis_fails_loses_no_money(
    make_router, monkeypatch, mode
):
    """As above, with the N-th Redis command of the shutdown failing, for N = 1, 2, ...:
    what the hand-over leaves, recovery takes; the order waits for an operator."""
    for n in range(1, 100):
        plan = FaultPlan()
        router, _ = await prepared(make_router, redis_plan=plan)
        actions = router.runtime.actions

        async def park() -> None:
            await asyncio.Event().wait()

        monkeypatch.setattr(routing, "asyncio", Yield(park))
        assert await asyncio.wait_for(actions.add("alice", 1, FIELDS), 5) == 1
        actions.stop_waiting()
        plan.arm(n, mode)
        await asyncio.wait_for(actions.aclose(timeout=0.4), 5)
        plan.disarm()
        monkeypatch.undo()
        assert leftovers(actions) == {}
        await expire_leases(router)
        await router.runtime.sync.recover()
        order = await router.runtime.book.get("alice", 1)
        assert order.state == UNKNOWN, (n, order)
        await check_money(router, OPENING)
        if not plan.fired:
            break
    assert n > 2  # the path was walked
