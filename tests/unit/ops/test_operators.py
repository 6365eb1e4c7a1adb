"""What operators do (proxy/ops/operators.py): every action once, refusals as
messages, every change audited. The CLI and the admin API are thin over this."""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal

import pytest
from faults import FaultPlan, FaultyRedis, script_call, script_sha
from redis.exceptions import RedisError
from support import new_order, router_config

from proxy.config import parse_config
from proxy.errors import Forbidden, Invalid, NotFound, OperatorError
from proxy.ops.answers import Queues
from proxy.ops.operators import amount
from proxy.ops.roles import Actor
from proxy.orders.states import ACCEPT, LOSE, STATUS, SUBMIT
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.store import connect
from proxy.vocabulary import CANCELED

ACTOR = "cli"


@pytest.mark.parametrize("text, value", [("5", "5"), (" 0.5 ", "0.5"), ("1e2", "100"), (7, "7")])
def test_an_amount_an_operator_typed(text, value):
    assert amount(text) == Decimal(value)


@pytest.mark.parametrize("text", ["abc", "", "0.00000001", "1e20", "NaN", "-Infinity"])
def test_an_amount_that_does_not_fit_the_ledger_is_refused(text):
    with pytest.raises(OperatorError):
        amount(text)


async def audit(runtime):
    return [(entry.actor, entry.action, entry.target, entry.detail) for entry in await runtime.operators.audit_log()]


async def test_clients_are_opened_topped_up_and_disabled_and_each_step_is_audited(runtime):
    ops = runtime.operators
    created = await ops.create_client(ACTOR, "acme", "20")
    assert (created.name, created.balance, created.currency, created.disabled) == ("acme", "20.00", "USD", False)
    assert await runtime.accounts.authenticate(created.key) == "acme"
    topped = await ops.topup(ACTOR, "acme", "5", ref="inv-1", memo="invoice 1")
    again = await ops.topup(ACTOR, "acme", "5", ref="inv-1", memo="invoice 1")
    assert topped.applied and not again.applied and again.id == topped.id and again.balance == "25.00"
    assert [c.name for c in await ops.clients()] == ["acme"]
    assert [e.kind for e in await ops.ledger("acme")] == ["topup", "topup"]
    assert [e.ref for e in await ops.ledger("acme", limit=1)] == ["topup:inv-1"]
    assert (await ops.disable_client(ACTOR, "acme")).disabled
    assert await runtime.accounts.authenticate(created.key) is None
    assert await audit(runtime) == [
        (ACTOR, "client.disable", "acme", {}),
        (ACTOR, "client.topup", "acme", {"amount": "5.00", "ref": "inv-1", "memo": "invoice 1"}),
        (ACTOR, "client.create", "acme", {"balance": "20.00"}),
    ]  # the repeated top-up changed nothing and is not audited


async def test_refusals_are_messages_and_an_unknown_client_is_not_found(runtime):
    ops = runtime.operators
    await ops.create_client(ACTOR, "acme")
    for attempt in (
        ops.create_client(ACTOR, "acme"),
        ops.create_client(ACTOR, "bad name!"),
        ops.create_client(ACTOR, "neg", "-1"),
        ops.topup(ACTOR, "acme", "-5"),
        ops.topup(ACTOR, "acme", "lots"),
        ops.topup(ACTOR, "acme", "1e999999"),
        ops.create_client(ACTOR, "huge", "1e999999"),
    ):
        with pytest.raises(OperatorError) as refused:
            await attempt
        assert not isinstance(refused.value, NotFound)
    for attempt in (ops.topup(ACTOR, "nobody", "5"), ops.ledger("nobody"), ops.disable_client(ACTOR, "nobody")):
        with pytest.raises(NotFound, match="no client 'nobody'"):
            await attempt
    with pytest.raises(NotFound, match="no order 42"):
        await ops.order(42)
    assert await audit(runtime) == [(ACTOR, "client.create", "acme", {"balance": "0.00"})]  # refusals write nothing


@pytest.mark.parametrize(
    "typed",
    ["1_000", "\u0661\u0662", "\uff11\uff12", "1_0e1", "0x10", "1,5", "+-1", ".5.", "\u2212" + "5"],
)
async def test_an_amount_an_operator_types_is_plain_decimal_notation(runtime, typed):
    """What a person types is money only as written: ASCII digits, one point,
    an optional sign (and exponent). Python's Decimal would read "1_000" as 1000 and Arabic
    or full-width digits as ours; an operator seeing "1_000" or "١٢" on a
    confirmation could not tell what moves."""
    ops = runtime.operators
    await ops.create_client(ACTOR, "acme", "10")
    for attempt in (
        lambda: ops.topup(ACTOR, "acme", typed),
        lambda: ops.adjust(ACTOR, "acme", typed, "why"),
        lambda: ops.create_client(ACTOR, "other", typed),
    ):
        with pytest.raises(Invalid, match="not an amount"):
            await attempt()
    assert (await ops.client("acme")).balance == "10.00"
    assert len(await audit(runtime)) == 1  # the opening alone


async def test_plain_amounts_are_read_as_written(runtime):
    ops = runtime.operators
    await ops.create_client(ACTOR, "acme", "10")
    for typed, moved in (("5", "15.00"), (" 2.5 ", "17.50"), ("+0.5", "18.00"), (".25", "18.25"), ("1.", "19.25")):
        await ops.topup(ACTOR, "acme", typed)
        assert (await ops.client("acme")).balance == moved
    await ops.adjust(ACTOR, "acme", "-9.25", "undo")
    assert (await ops.client("acme")).balance == "10.00"


async def orders_of_every_kind(runtime):
    await runtime.accounts.create("alice", Decimal("10"))
    await runtime.accounts.create("bob", Decimal("10"))
    book = runtime.book
    reserved = (await book.reserve(new_order())).order
    lost = await book.apply((await book.reserve(new_order(link="x2"))).order, SUBMIT, {"provider": "echomark"})
    lost = await book.apply(lost, LOSE)
    placed = await book.apply((await book.reserve(new_order(client="bob"))).order, SUBMIT, {"provider": "echomark"})
    placed = await book.apply(placed, ACCEPT, {"upstream_order": 5000})
    canceled = await book.apply(placed, STATUS, {"status": CANCELED}, attention="look", version=placed.version)
    return reserved, lost, canceled


async def test_orders_are_listed_by_working_set_status_or_client_newest_first(runtime):
    reserved, lost, canceled = await orders_of_every_kind(runtime)
    ops = runtime.operators
    assert [o.id for o in await ops.orders()] == [canceled.id, lost.id, reserved.id]
    assert [o.id for o in await ops.orders("unknown")] == [lost.id]
    assert [o.id for o in await ops.orders("inflight")] == [reserved.id]
    assert [o.id for o in await ops.orders("attention")] == [canceled.id]
    assert [o.id for o in await ops.orders("canceled")] == [canceled.id]  # a status, any case
    assert [o.id for o in await ops.orders("PLACED")] == [canceled.id]
    assert [o.id for o in await ops.orders(client="alice")] == [lost.id, reserved.id]
    assert [o.id for o in await ops.orders(limit=1)] == [canceled.id]
    for state in ("nonsense", "bogus", ""):
        if state:
            with pytest.raises(Invalid, match=f"state '{state}': one of reserved, submitted"):
                await ops.orders(state)
    for limit in (0, -1, "1e999999", "", 1001, "NaN"):
        with pytest.raises(Invalid, match="limit must be a whole number from 1 to 1000"):
            await ops.orders(limit=limit)
    shown = await ops.order(lost.id)
    assert (shown.state, shown.status, shown.provider, shown.archived) == ("unknown", "Pending", "echomark", False)
    assert [e.kind for e in shown.ledger] == ["charge"]


async def test_verdicts_are_audited_and_their_refusals_explained(runtime):
    _, lost, canceled = await orders_of_every_kind(runtime)
    ops = runtime.operators
    with pytest.raises(OperatorError, match="give the upstream order ID, or declare the order failed"):
        await ops.resolve(ACTOR, lost.id)
    with pytest.raises(OperatorError, match=f"order {canceled.id} is placed, not unknown: nothing to resolve"):
        await ops.resolve(ACTOR, canceled.id, failed=True)
    await runtime.claims.claim(canceled, "echomark", 5000)  # bob's placed order owns upstream order 5000
    with pytest.raises(OperatorError, match=f"already belongs to order {canceled.id}"):
        await ops.resolve(ACTOR, lost.id, upstream_order=5000)
    resolved = await ops.resolve(ACTOR, lost.id, failed=True)
    assert resolved.state == "failed" and resolved.refunded == resolved.charge
    with pytest.raises(OperatorError, match="the total refund must be between"):
        await ops.refund(ACTOR, canceled.id, "99")
    assert (await ops.refund(ACTOR, canceled.id, "0.5")).refunded == "0.50"
    assert (await ops.acknowledge(ACTOR, canceled.id)).attention == ""
    # Refusals a read can tell write nothing; the claim conflict is found once the
    # entry is written, so a ".failed" entry follows it, naming it.
    entries = await runtime.operators.audit_log()
    assert [(e.action, e.target) for e in entries] == [
        ("order.ack", str(canceled.id)),
        ("order.refund", str(canceled.id)),
        ("order.resolve", str(lost.id)),
        ("order.resolve.failed", str(lost.id)),
        ("order.resolve", str(lost.id)),
    ]
    assert entries[3].detail == {
        "entry": entries[4].seq,
        "error": f"upstream order 5000 at echomark already belongs to order {canceled.id}",
    }


async def admin_of(runtime, token):
    found = await runtime.admins.authenticate(token)
    return None if found is None else (found.name, found.role)


async def test_admin_tokens_are_shown_once_and_stored_hashed(runtime):
    ops = runtime.operators
    added = await ops.add_admin(ACTOR, "backoffice", "operator")
    assert await admin_of(runtime, added.token) == ("backoffice", "operator")
    stored = await runtime.redis.hget(runtime.keys.admins, "backoffice")
    assert hashlib.sha256(added.token.encode()).hexdigest() in stored and added.token not in stored
    for name in ("", "a" * 65, "back office", "-x", "backoffice\n", "x\n"):
        with pytest.raises(Invalid, match="an admin name is"):
            await ops.add_admin(ACTOR, name)
    for role in ("", "root", "OWNER"):
        with pytest.raises(Invalid, match="a role is one of read, operator, owner"):
            await ops.add_admin(ACTOR, "x", role)
    for expires in ("0d", "-1d", "1e999999d", "", "NaN", "forever", "3651d"):
        with pytest.raises(Invalid, match="expires"):
            await ops.add_admin(ACTOR, "x", "read", expires)
    with pytest.raises(OperatorError, match="exists already"):
        await ops.add_admin(ACTOR, "backoffice")
    for token in ("", "x" * 201, added.token + "x"):
        assert await admin_of(runtime, token) is None
    assert [(a.name, a.role, a.registered) for a in await ops.admins()] == [("backoffice", "operator", True)]
    assert (await ops.remove_admin(ACTOR, "backoffice")).removed
    assert await admin_of(runtime, added.token) is None and await ops.admins() == []
    with pytest.raises(NotFound):
        await ops.remove_admin(ACTOR, "backoffice")


async def test_a_token_counts_only_through_the_registry_and_only_until_it_expires(runtime, clock):
    ops = runtime.operators
    made = await ops.add_admin(ACTOR, "temp", "owner", "1h")
    assert (await runtime.admins.authenticate(made.token)).expired(clock()) is False
    clock.advance(3601)
    assert (await runtime.admins.authenticate(made.token)).expired(clock()) is True
    assert [(a.name, a.expired) for a in await ops.admins()] == [("temp", True)]
    # A token hash written straight into Redis opens nothing, and is shown and removable.
    forged = "forged-token-" + "x" * 30
    await runtime.redis.hset(runtime.keys.admin_tokens, hashlib.sha256(forged.encode()).hexdigest(), "temp")
    await runtime.redis.hset(runtime.keys.admin_tokens, hashlib.sha256(b"other").hexdigest(), "ghost")
    assert await admin_of(runtime, forged) is None and await admin_of(runtime, "other") is None
    shown = [(a.name, a.registered) for a in await ops.admins()]
    assert shown == [("ghost", False), ("temp", True), ("temp", False)]
    await ops.remove_admin(ACTOR, "ghost")
    await ops.remove_admin(ACTOR, "temp")
    assert await ops.admins() == [] and await runtime.redis.hlen(runtime.keys.admin_tokens) == 0


async def test_providers_and_reports_for_operators(runtime, panels):
    ops = runtime.operators
    rows = {p.name: p for p in await ops.providers(check=True)}
    assert (rows["echomark"].health, rows["echomark"].balance, rows["echomark"].currency_read) == (
        "ok",
        "100.00",
        "USD",
    )
    assert rows["korean"].catalog_age is None and rows["korean"].services == 0  # never fetched
    with pytest.raises(OperatorError, match="group by one of"):
        await ops.report(0, "colour")
    assert (await ops.report(0, "client")).total.orders == 0


async def test_no_action_happens_when_its_audit_entry_cannot_be_written(redis_url, key_prefix, redis_client, clock):
    audit_append = script_sha("proxy.ops", "audit_append")

    class AuditDown(FaultPlan):
        async def before(self, commands, pipeline=False):
            call = None if pipeline else script_call(commands[0])
            return "error" if call is not None and call.sha == audit_append else None

    redis = FaultyRedis.with_plan(connect(redis_url).connection_pool, AuditDown())
    runtime = Runtime(Settings(key_prefix=key_prefix), parse_config(router_config(), {}), redis, clock=clock)
    try:
        with pytest.raises(RedisError):
            await runtime.operators.add_admin(ACTOR, "backoffice")
        with pytest.raises(RedisError):
            await runtime.operators.create_client(ACTOR, "acme", "5")
        assert await runtime.admins.all() == [] and await runtime.accounts.all() == []
        assert await runtime.operators.audit_log() == []
    finally:
        await runtime.aclose()


async def a_held_price_change(runtime, panels, clock) -> None:
    """echomark's service 1 moves from 0.90 to 2.00 between two reads of its list: held."""
    await runtime.listings.refresh("echomark")
    same = {"name": "F", "type": "Default", "category": "C", "min": "10", "max": "10000"}
    panels["echomark"].on("services", [{**same, "service": 1, "rate": "2.00"}, {**same, "service": 3, "rate": "0.50"}])
    clock.advance(301)
    await runtime.listings.refresh("echomark")


async def test_held_price_changes_are_shown_and_approved_audited_and_told(runtime, panels, clock):
    ops = runtime.operators
    await a_held_price_change(runtime, panels, clock)
    [row] = [p for p in await ops.providers() if p.name == "echomark"]
    assert [(h.service, h.approved, h.proposed) for h in row.held_prices] == [(1, "0.90", "2.00")]
    with pytest.raises(NotFound, match="no provider 'nobody'"):
        await ops.approve_prices(ACTOR, "nobody")
    with pytest.raises(OperatorError, match="no held price change of echomark service 3"):
        await ops.approve_prices(ACTOR, "echomark", [3])
    approved = await ops.approve_prices(ACTOR, "echomark", [1])
    assert (approved.provider, approved.approved) == ("echomark", ({"service": 1, "from": "0.90", "to": "2.00"},))
    assert (await ops.approve_prices(ACTOR, "echomark")).approved == ()  # nothing held any more
    assert (await audit(runtime))[0] == (
        ACTOR,
        "price.approve",
        "echomark:1",
        {"service": 1, "from": "0.90", "to": "2.00"},
    )
    assert [e.kind for e in await ops.events()] == ["price.approved", "price.held"]


async def test_events_are_read_within_bounds(runtime):
    ops = runtime.operators
    await runtime.events.emit("provider.ejected", "echomark", "ejected")
    assert [e.kind for e in await ops.events(kind="provider.")] == ["provider.ejected"]
    for limit in (0, 10_001):
        with pytest.raises(OperatorError, match="limit must be between 1 and 10000"):
            await ops.events(limit=limit)


async def test_a_provider_row_shows_its_ejections_funds_and_routes(runtime, panels):
    ops = runtime.operators
    await runtime.health.fail("korean", "down")
    await runtime.health.fail("korean", "down")
    await runtime.health.fail("korean", "down")  # the config's default: three in a row
    await runtime.outcomes.record("echomark", 1, "c", 1.0, 40)
    rows = {p.name: p for p in await ops.providers(check=True)}
    korean, echomark = rows["korean"], rows["echomark"]
    assert korean.health == "ejected: orders" and korean.ejections["orders"].reason == "down"
    assert korean.ejections["orders"].until and not korean.ejections["reads"].until
    assert (echomark.health, echomark.funds, echomark.low, echomark.balance_age) == ("ok", "100.00", False, 0)
    assert echomark.outcomes["1"].completed_pct == 100.0 and echomark.outcomes["1"].mean_completion_seconds == 40


async def test_a_verdict_previewed_shows_the_money_it_would_move_and_changes_nothing(runtime):
    _, lost, canceled = await orders_of_every_kind(runtime)
    ops = runtime.operators
    before = (await ops.ledger("alice"), await ops.ledger("bob"), await ops.audit_log())
    failed = await ops.preview(ACTOR, lost.id, "order.resolve", failed=True)
    assert (failed.client, failed.credit, failed.balance, failed.verdict) == ("alice", "1.17", "7.66", "failed")
    assert failed.balance_after == "8.83"
    placed = await ops.preview(ACTOR, lost.id, "order.resolve", upstream_order=777)
    assert (placed.credit, placed.balance_after) == ("0.00", "7.66")
    refund = await ops.preview(ACTOR, canceled.id, "order.refund", total="0.5")
    assert (refund.client, refund.refunded, refund.credit, refund.balance, refund.balance_after) == (
        "bob",
        "0.00",
        "0.50",
        "8.83",
        "9.33",
    )
    assert (await ops.preview(ACTOR, canceled.id, "order.ack")).credit == "0.00"
    assert (await ops.preview(ACTOR, lost.id, "order.close", total="0.5")).credit == "0.50"
    # The same refusals as the verdicts themselves, the role included.
    with pytest.raises(OperatorError, match="nothing to resolve"):
        await ops.preview(ACTOR, canceled.id, "order.resolve", failed=True)
    with pytest.raises(OperatorError, match="the total refund must be between"):
        await ops.preview(ACTOR, canceled.id, "order.refund", total="99")
    await runtime.claims.claim(canceled, "echomark", 5000)
    with pytest.raises(OperatorError, match=f"already belongs to order {canceled.id}"):
        await ops.preview(ACTOR, lost.id, "order.resolve", upstream_order=5000)
    with pytest.raises(Forbidden):
        await ops.preview(Actor("admin:viewer", "read"), lost.id, "order.resolve", failed=True)
    with pytest.raises(Invalid, match="a verdict is one of"):
        await ops.preview(ACTOR, lost.id, "client.topup")
    assert (await ops.ledger("alice"), await ops.ledger("bob"), await ops.audit_log()) == before
    # What the preview said is what the verdict moves.
    done = await ops.resolve(ACTOR, lost.id, failed=True)
    assert (await ops.ledger("alice"))[-1].amount == failed.credit and done.refunded == done.charge
    assert (await runtime.ledger.balance("alice")) == Decimal(failed.balance_after)


async def test_queues_count_the_working_sets_and_an_orders_actions_come_from_the_audit(runtime):
    reserved, lost, canceled = await orders_of_every_kind(runtime)
    ops = runtime.operators
    assert await ops.queues() == Queues(inflight=1, open=0, unknown=1, attention=1)
    await ops.resolve(ACTOR, lost.id, failed=True, reason="not at the panel")
    await ops.acknowledge(ACTOR, canceled.id)
    assert await ops.queues() == Queues(inflight=1, open=0, unknown=0, attention=0)
    assert [(e.action, e.reason) for e in await ops.order_actions(lost.id)] == [("order.resolve", "not at the panel")]
    assert [e.action for e in await ops.order_actions(canceled.id)] == ["order.ack"]
    assert await ops.order_actions(reserved.id) == []


async def test_an_orders_events_are_those_about_it(runtime, clock):
    clock.advance(time.time() - clock())  # events are stamped by Redis' clock, orders by ours: the same here
    reserved, lost, canceled = await orders_of_every_kind(runtime)
    ops = runtime.operators
    await runtime.events.emit("order.attention", str(lost.id), f"order {lost.id}: look")
    await runtime.events.emit("order.stuck", str(canceled.id), f"order {canceled.id} stuck")
    await runtime.events.emit("provider.ejected", "echomark", "echomark ejected")
    assert [e.message for e in await ops.order_events(lost.id)] == [f"order {lost.id}: look"]
    assert [e.kind for e in await ops.order_events(canceled.id)] == ["order.stuck"]
    assert await ops.order_events(reserved.id) == []
    with pytest.raises(NotFound, match="no order 4242"):
        await ops.order_events(4242)
