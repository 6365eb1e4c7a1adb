"""The state table (proxy/orders/states.py), and the scripts that apply it.

Three things are checked here: the table's own facts (final, what a client
is shown, the working sets, the due index, the outcomes the metrics count);
that the scripts hold exactly these facts, rendered from states.py and never
spelt by hand; and that every rule, applied by the transition script to a
real order in Redis, does to the money, the client's retry fingerprint, the
lease, the attention queue and the working sets what the rule says.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from importlib import resources

import pytest
from support import new_order

from proxy import scripts
from proxy.errors import StateChanged
from proxy.money import from_minor, to_minor
from proxy.orders import states
from proxy.orders.records import RECENT_CALLS, SUMMARY_FIELDS, Fingerprint, Order
from proxy.orders.states import (
    ABANDON,
    ACCEPT,
    ACK,
    CLEAR,
    CLOSE,
    CLOSED,
    DETAIL,
    EXHAUST,
    FAILED,
    FINAL_STATES,
    IN_FLIGHT,
    LOSE,
    OUTCOMES,
    PLACED,
    RECHECK,
    REFUND,
    REFUSE,
    RESERVED,
    RESOLVE_FAILED,
    RESOLVE_PLACED,
    RESTATUS,
    STATES,
    STATUS,
    STOP,
    SUBMIT,
    SUBMITTED,
    TABLE,
    UNKNOWN,
    WORKING_SETS,
    counter,
    due_change,
    final,
    lua_values,
    rule,
    shown_remains,
    shown_status,
)
from proxy.scripts import lua
from proxy.vocabulary import (
    CANCELED,
    COMPLETED,
    EXPIRED,
    FINAL_STATUSES,
    IN_PROGRESS,
    ORDER_STATUSES,
    PARTIAL,
    PENDING,
    SUBSCRIPTION_STATUSES,
)

EVENTS = (
    SUBMIT,
    REFUSE,
    ACCEPT,
    LOSE,
    EXHAUST,
    ABANDON,
    RESOLVE_PLACED,
    RESOLVE_FAILED,
    STATUS,
    REFUND,
    RESTATUS,
    ACK,
    STOP,
    CLOSE,
    RECHECK,
)
RULES = [(state, event) for state, events in TABLE.items() for event in events]
NOT_RULES = [(state, event) for state in STATES for event in EVENTS if event not in TABLE[state]]
STATUSES = sorted(set(ORDER_STATUSES) | set(SUBSCRIPTION_STATUSES))


# -- the table's own facts ---------------------------------------------------------


def test_every_state_has_a_row_and_every_rule_names_a_state_and_an_event():
    assert set(TABLE) == set(STATES)
    for state, event in RULES:
        assert event in EVENTS, (state, event)
        assert TABLE[state][event].target in STATES, (state, event)
        assert rule(state, event) is TABLE[state][event]
    assert rule(PLACED, SUBMIT) is None and rule("nonsense", ACCEPT) is None


def test_the_placing_task_alone_moves_an_order_in_flight():
    """Only events of the placing task hold the lease; only recovery's needs it lapsed;
    nothing but those leaves an order in flight, and nothing outside flight enters it
    except a refusal that sends it back for the next route."""
    for state, event in RULES:
        r = TABLE[state][event]
        if r.lease == "hold":
            assert state in IN_FLIGHT and event in (SUBMIT, REFUSE, EXHAUST), (state, event)
        if r.lease == "free":
            assert event == ABANDON and state in IN_FLIGHT, (state, event)
        if r.target in IN_FLIGHT:
            assert state in IN_FLIGHT and r.lease == "hold", (state, event)


def test_money_moves_only_where_the_table_says():
    refunding_all = {(s, e) for s, e in RULES if TABLE[s][e].refund == "all"}
    refunding_to = {(s, e) for s, e in RULES if TABLE[s][e].refund == "to"}
    assert refunding_all == {
        (RESERVED, EXHAUST),
        (RESERVED, ABANDON),
        (UNKNOWN, REFUSE),
        (UNKNOWN, RESOLVE_FAILED),
    }
    assert refunding_to == {(PLACED, STATUS), (PLACED, REFUND), (PLACED, CLOSE), (UNKNOWN, CLOSE), (CLOSED, REFUND)}
    # Every way into `failed` refunds the whole charge; nothing leaves `failed`.
    for state, event in RULES:
        if TABLE[state][event].target == FAILED and state != FAILED:
            assert TABLE[state][event].refund == "all", (state, event)
        if state == FAILED:
            assert TABLE[state][event].target == FAILED and TABLE[state][event].refund == ""
    # An operator closes an order with the refund they choose; nothing leaves `closed`, and
    # only an operator's refund moves its money after.
    assert {s for s, e in RULES if TABLE[s][e].target == CLOSED and s != CLOSED} == {PLACED, UNKNOWN}
    assert {e for s, e in RULES if TABLE[s][e].target == CLOSED and s != CLOSED} == {CLOSE}
    for event, r in TABLE[CLOSED].items():
        assert r.target == CLOSED and r.refund == ("to" if event == REFUND else ""), event


def test_a_failed_order_forgets_its_fingerprint_and_a_placed_one_starts_the_window():
    for state, event in RULES:
        r = TABLE[state][event]
        if r.target == FAILED and state != FAILED:
            assert r.duplicate == "drop", (state, event)
        if r.target == PLACED and state != PLACED:
            assert r.duplicate == "window", (state, event)
        if r.target == state:
            assert r.duplicate == "", (state, event)


def test_late_news_is_kept_out_of_the_record():
    """News about an order that has moved on is not written over it; an
    acceptance that comes too late asks for an operator."""
    for state, event in RULES:
        r = TABLE[state][event]
        if state in (PLACED, FAILED, CLOSED) and event in (ACCEPT, LOSE, REFUSE, ACK):
            assert not r.write, (state, event)
    assert TABLE[FAILED][ACCEPT].attention and TABLE[PLACED][ACCEPT].attention and TABLE[CLOSED][ACCEPT].attention
    assert {e for s, e in RULES if TABLE[s][e].attention == CLEAR} == {
        RESOLVE_PLACED,
        RESOLVE_FAILED,
        REFUND,
        ACK,
        CLOSE,
    }


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("state", STATES)
def test_final_and_what_a_client_is_shown(state, status):
    assert final(state, status) == (state in (FAILED, CLOSED) or (state == PLACED and status in FINAL_STATUSES))
    assert FINAL_STATES == {FAILED, CLOSED}
    expected = {PLACED: status, FAILED: CANCELED, CLOSED: CANCELED}.get(state, PENDING)  # nothing charged is kept
    assert shown_status(state, status) == expected


@pytest.mark.parametrize(
    "refunded, status, remains",
    [("1.17", CANCELED, 1000), ("0", COMPLETED, 0), ("0.39", PARTIAL, 333)],
)
def test_a_closed_order_is_shown_by_its_refund(refunded, status, remains):
    charge = Decimal("1.17")
    assert shown_status(CLOSED, PENDING, charge, Decimal(refunded)) == status
    assert shown_remains(CLOSED, 1000, 1000, charge, Decimal(refunded)) == remains
    assert shown_remains(PLACED, 250, 1000, charge, Decimal(refunded)) == 250  # others: the upstream's


def test_the_working_sets():
    assert list(WORKING_SETS) == ["inflight", "unknown", "open", "attention"]
    holds = {name: s.holds for name, s in WORKING_SETS.items()}
    assert holds["inflight"](RESERVED, PENDING, "") and holds["inflight"](SUBMITTED, PENDING, "")
    assert not holds["inflight"](PLACED, PENDING, "")
    assert holds["unknown"](UNKNOWN, PENDING, "") and not holds["unknown"](FAILED, PENDING, "")
    assert holds["open"](PLACED, IN_PROGRESS, "") and not holds["open"](PLACED, COMPLETED, "")
    assert not holds["open"](PLACED, EXPIRED, "") and not holds["open"](UNKNOWN, PENDING, "")
    for state in STATES:
        assert holds["attention"](state, COMPLETED, "why") and not holds["attention"](state, PENDING, "")


@pytest.mark.parametrize(
    "state, event, status, change",
    [
        (SUBMITTED, ACCEPT, None, True),  # placed: its status is to be read soon
        (UNKNOWN, ACCEPT, None, True),
        (UNKNOWN, RESOLVE_PLACED, None, True),
        (PLACED, RESTATUS, None, True),  # after a cancel request
        (PLACED, STATUS, IN_PROGRESS, True),  # still open: read again later
        (PLACED, STATUS, None, True),  # a read without a status leaves it open
        (PLACED, STATUS, COMPLETED, False),  # final: nothing more to read
        (PLACED, STATUS, CANCELED, False),
        (PLACED, REFUND, None, None),  # an operator's verdict leaves an open order where it is
        (PLACED, ACK, None, None),
        (PLACED, STOP, None, True),  # an unlimited subscription asked to stop: read soon
        (PLACED, RECHECK, None, False),  # the status refresher schedules its own re-checks
        (PLACED, CLOSE, None, False),  # closed: never read again
        (UNKNOWN, CLOSE, None, None),
        (SUBMITTED, LOSE, None, None),  # not placed: not in the index
        (RESERVED, SUBMIT, None, None),
        (UNKNOWN, RESOLVE_FAILED, None, None),
    ],
)
def test_which_events_move_an_order_in_the_due_index(state, event, status, change):
    assert due_change(state, event, status) is change


def test_the_outcomes_the_metrics_count_are_transitions_of_the_table():
    for outcome, transitions in OUTCOMES.items():
        for state, event in transitions:
            r = rule(state, event)
            assert r is not None, (outcome, state, event)
            assert r.target != state or r.attention, "counted only if it changes the state or asks an operator"
    assert {TABLE[s][e].target for s, e in OUTCOMES["placed"]} == {PLACED}
    assert {TABLE[s][e].target for s, e in OUTCOMES["unknown"]} == {UNKNOWN}
    assert {TABLE[s][e].target for s, e in OUTCOMES["failed"]} == {FAILED}
    assert {TABLE[s][e].target for s, e in OUTCOMES["closed"]} == {CLOSED}
    assert OUTCOMES["late_accept"] == ((FAILED, ACCEPT), (CLOSED, ACCEPT))
    # Every way an order ends its placing, and no other, is an outcome (and closing a placed one).
    ends = {(s, e) for s, e in RULES if s in IN_FLIGHT | {UNKNOWN} and TABLE[s][e].target not in IN_FLIGHT}
    ends -= {(s, e) for s, e in RULES if TABLE[s][e].target == s}
    counted = {t for transitions in OUTCOMES.values() for t in transitions}
    assert ends == counted - {(FAILED, ACCEPT), (CLOSED, ACCEPT), (PLACED, CLOSE)}
    assert counter(SUBMITTED, ACCEPT) == "n:submitted:accept"


# -- the scripts hold what states.py says ---------------------------------------------


async def test_the_scripts_hold_the_table_and_every_fact_of_states_py(redis_client):
    """The rendered Lua, evaluated by Redis, against the Python it came from."""
    fragment = scripts.source("proxy.orders", "states", lua_values())
    probe = fragment + (
        "\nlocal whole = {}"
        "\nfor state, rules in pairs(TABLE) do whole[state] = rules() end"  # each state's rules, built when asked for
        "\nreturn cjson.encode({whole, FINAL_STATUSES, IN_FLIGHT, PLACED, FINAL_STATES, CLEAR, DETAIL, COUNTED})"
    )
    table, final_statuses, in_flight, placed, final_states, clear, detail, counted = json.loads(
        await redis_client.eval(probe, 0)
    )
    assert table == {s: {e: vars(r) for e, r in events.items()} for s, events in TABLE.items()}
    assert set(final_statuses) == set(FINAL_STATUSES) and set(in_flight) == set(IN_FLIGHT)
    assert set(final_states) == set(FINAL_STATES)
    assert (placed, clear, detail, counted) == (PLACED, CLEAR, DETAIL, states.COUNTED)
    sets = json.loads(await redis_client.eval(fragment + "\nreturn cjson.encode(WORKING_SETS)", 0))
    assert [s["name"] for s in sets] == list(WORKING_SETS)
    for lua_set, (name, working_set) in zip(sets, WORKING_SETS.items(), strict=True):
        assert set(lua_set["states"]) == set(working_set.states), name
        assert (lua_set["open_only"], lua_set["attention"]) == (working_set.open_only, working_set.attention)


async def test_the_lua_belongs_agrees_with_python_holds(redis_client):
    fragment = scripts.source("proxy.orders", "states", lua_values())
    check = fragment + (
        "\nlocal out = {}"
        "\nfor i, set in ipairs(WORKING_SETS) do out[i] = belongs(set, ARGV[1], ARGV[2], ARGV[3]) and 1 or 0 end"
        "\nreturn out"
    )
    for state in STATES:
        for status in STATUSES:
            for attention in ("", "why"):
                got = await redis_client.eval(check, 0, state, status, attention)
                expected = [int(s.holds(state, status, attention)) for s in WORKING_SETS.values()]
                assert got == expected, (state, status, attention)


def _lua_sources() -> dict[str, str]:
    found = {}
    for package in ("proxy.orders", "proxy.accounts"):
        for path in resources.files(package).joinpath("scripts").iterdir():
            if path.name.endswith(".lua"):
                found[f"{package}/{path.name}"] = path.read_text(encoding="utf-8")
    return found


def test_no_script_spells_a_state_a_status_or_a_working_set():
    record_fields = set(SUMMARY_FIELDS) | {"attention"}
    words = set(STATES) | set(STATUSES) | {name for name in WORKING_SETS if name not in record_fields}
    for name, source in _lua_sources().items():
        code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())  # comments aside
        literals = set(re.findall(r"'([^']*)'", code)) | set(re.findall(r'"([^"]*)"', code))
        assert not literals & words, (name, literals & words)


def test_every_value_a_script_asks_for_comes_from_its_owner():
    """Rendering fails on a {{ NAME }} nobody gives; the order scripts take states.py's."""
    given = {
        "summaries": {"SUMMARY_FIELDS": lua(SUMMARY_FIELDS)},
        **{
            name: {**lua_values(), "RECENT_CALLS": lua(RECENT_CALLS)}
            for name in ("transition", "accept", "apply_event")
        },
    }
    for name in _lua_sources():
        package, _, file = name.partition("/")
        script = file.removesuffix(".lua")
        rendered = scripts.source(package, script, given.get(script, lua_values()))
        assert not re.search(r"\{\{ *\w+ *\}\}", rendered), name
    with pytest.raises(LookupError):
        scripts.source("proxy.orders", "transition", {})


# -- every rule, as the transition script applies it ---------------------------------------

COST = Decimal("0.9")
NOTE = "earlier note"


async def order_in(book, state: str, *, attention: str = "") -> Order:
    """A new order of alice's (1.17 charged, with a retry fingerprint), brought to `state`."""
    order = (await book.reserve(new_order(), Fingerprint("same:test", 60))).order
    if state == RESERVED:
        return order
    if state == FAILED:
        return await book.apply(order, EXHAUST, attention=attention)
    sent = {"provider": "echomark", "cost": to_minor(COST), "cost_currency": "USD", "cost_base": to_minor(COST)}
    order = await book.apply(order, SUBMIT, sent, attention=attention if state == SUBMITTED else "")
    if state == SUBMITTED:
        return order
    if state == UNKNOWN:
        return await book.apply(order, LOSE, attention=attention)
    if state == CLOSED:  # closed by an operator (which clears any note), then news for one
        order = await book.apply(await book.apply(order, ACCEPT, {"upstream_order": 5000}), CLOSE)
        return await book.apply(order, LOSE, attention=attention) if attention else order
    return await book.apply(order, ACCEPT, {"upstream_order": 5000}, attention=attention)


async def snapshot(book, order: Order) -> dict:
    """What one transition may change; expiries as whether there is one (they tick)."""
    redis, keys, client = book.redis, book.keys, order.client
    return {
        "record": await redis.hgetall(keys.order(client, order.id)),
        "balance": from_minor(await redis.get(keys.balance(client)) or 0),
        "entries": await redis.xlen(keys.ledger(client)),
        "totals": await redis.hgetall(keys.totals(client)),
        "fingerprint": await redis.get(order.duplicate_key),
        "fingerprint_expires": await redis.pttl(order.duplicate_key) > 0,
        "lease": await redis.get(keys.lease(client, order.id)),
        "lease_expires": await redis.pttl(keys.lease(client, order.id)) > 0,
        "sets": {name: await redis.zscore(keys.orders_of(client, name), order.id) is not None for name in WORKING_SETS},
    }


@pytest.mark.parametrize("state, event", RULES, ids=[f"{s}-{e}" for s, e in RULES])
async def test_each_rule_does_what_the_table_says(book, alice, state, event):
    r = TABLE[state][event]
    order = await order_in(book, state, attention=NOTE if state != RESERVED else "")
    if r.lease == "free":
        await book.redis.delete(book.keys.lease(alice, order.id))  # the placing task's lease lapsed
    before = await snapshot(book, order)
    refund_to = Decimal("0.5")

    after = await book.apply(order, event, {"remark": "r1"}, refund_to=refund_to)
    now = await snapshot(book, after)

    assert after.state == r.target
    # The money.
    expected_refund = {"all": order.charge, "to": max(order.refunded, refund_to), "": order.refunded}[r.refund]
    assert after.refunded == expected_refund
    assert now["balance"] - before["balance"] == expected_refund - order.refunded
    assert now["entries"] - before["entries"] == (1 if expected_refund != order.refunded else 0)
    # The client's retry fingerprint.
    if r.duplicate == "drop":
        assert now["fingerprint"] is None
    elif r.duplicate == "window":
        assert now["fingerprint"] == str(order.id) and 0 < await book.redis.pttl(order.duplicate_key) <= 60_000
    else:
        assert now["fingerprint"] == before["fingerprint"]
        assert now["fingerprint_expires"] == before["fingerprint_expires"]
    # The placing task's lease.
    if r.target not in IN_FLIGHT:
        assert now["lease"] is None
    elif r.lease == "hold":
        assert now["lease"] == book.leases.token
        assert await book.redis.pttl(book.keys.lease(alice, order.id)) > 29_000
    else:
        assert now["lease"] == before["lease"]
    # The fields, and the operator's queue.
    assert (now["record"].get("remark") == "r1") == r.write
    note = "" if r.write else " remark=r1"
    expected_attention = {CLEAR: "", "": order.attention}.get(r.attention, r.attention + note)
    assert after.attention == expected_attention
    # The working sets follow the record; the transition is counted if it changes something.
    for name, working_set in WORKING_SETS.items():
        assert now["sets"][name] == working_set.holds(after.state, after.status, after.attention), name
    counted = int(now["totals"].get(counter(state, event), 0)) - int(before["totals"].get(counter(state, event), 0))
    assert counted == (1 if r.target != state or r.attention else 0)
    paid = int(now["totals"].get("paid", 0)) - int(before["totals"].get("paid", 0))
    assert paid == (to_minor(COST) if r.target == PLACED and state != PLACED else 0) + (
        -int(to_minor(COST) * (expected_refund - order.refunded) / order.charge) if state == PLACED else 0
    )


@pytest.mark.parametrize("state, event", NOT_RULES, ids=[f"{s}-{e}" for s, e in NOT_RULES])
async def test_an_event_the_table_does_not_list_changes_nothing(book, alice, state, event):
    order = await order_in(book, state)
    before = await snapshot(book, order)
    with pytest.raises(StateChanged) as refused:
        await book.apply(order, event, {"remark": "r1"}, refund_to=Decimal("1"), attention="why")
    assert refused.value.state == state
    assert await snapshot(book, order) == before


async def test_a_callers_reason_queues_the_order_where_the_rule_has_none(book, alice):
    order = await order_in(book, PLACED)
    after = await book.apply(order, STATUS, {"status": COMPLETED}, attention="charged twice upstream")
    assert after.attention == "charged twice upstream"
    assert await book.ids_in("attention", alice) == [order.id]
    cleared = await book.apply(after, ACK)
    assert cleared.attention == "" and await book.ids_in("attention", alice) == []


async def test_the_lease_decides_who_may_move_an_order_in_flight(book, alice, leases):
    order = await order_in(book, SUBMITTED)
    lease_key = book.keys.lease(alice, order.id)
    with pytest.raises(StateChanged) as refused:
        await book.apply(order, ABANDON)  # the placing task is alive
    assert refused.value.reason == "leased"
    await book.redis.set(lease_key, "another instance", px=30_000)
    with pytest.raises(StateChanged) as refused:
        await book.apply(order, REFUSE)  # another instance holds it now
    assert refused.value.reason == "lease"
    await book.redis.delete(lease_key)
    assert (await book.apply(order, ABANDON)).state == UNKNOWN  # lapsed: recovery takes it


async def test_a_refund_to_never_lowers_the_refund_nor_passes_the_charge(book, alice):
    order = await order_in(book, PLACED)
    order = await book.apply(order, REFUND, refund_to=Decimal("0.4"))
    assert order.refunded == Decimal("0.4")
    assert (await book.apply(order, REFUND, refund_to=Decimal("0.1"))).refunded == Decimal("0.4")
    assert (await book.apply(order, REFUND, refund_to=Decimal("99"))).refunded == order.charge
    assert (await book.apply(order, REFUND, refund_to=Decimal("-5"))).refunded == order.charge
