"""The simulated panel: seed shapes, validation, money, progression, faults, quirks."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import pytest

from proxy.sim import (
    DEFAULT_KEY,
    Faults,
    Panel,
    PanelError,
    SimService,
    build_panel,
    create_app,
    korean_services,
    serve_panel,
)
from proxy.sim.catalogs import echomark_services
from proxy.vocabulary import SERVICE_TYPES, Errors

KEY = DEFAULT_KEY


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def panel(clock: FakeClock) -> Panel:
    """Echomark with no randomness in outcomes, orders from 1, 100 USD."""
    return build_panel(
        "echomark",
        clock=clock,
        first_order_id=1,
        partial_ratio=0,
        cancel_ratio=0,
        reject_ratio=0,
        accounts={KEY: Decimal("100"), "other-key": Decimal("100")},
    )


def call(panel: Panel, action: str, **params: str) -> object:
    return panel.handle({"key": KEY, "action": action, **params})


def add_followers(panel: Panel, quantity: int = 1000, key: str = KEY) -> int:
    reply = panel.handle(
        {"key": key, "action": "add", "service": "1", "link": "https://instagram.com/x", "quantity": str(quantity)}
    )
    return reply["order"]


def client(panel: Panel) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(panel))
    return httpx.AsyncClient(transport=transport, base_url="http://panel.test")


# Seed shapes.


def test_services_reproduce_the_seed_listing() -> None:
    seed = Panel(
        [
            SimService(
                1, "Followers", "Default", "First Category", Decimal("0.90"), 50, 10000, refill=True, cancel=True
            ),
            SimService(2, "Comments", "Custom Comments", "Second Category", Decimal("8"), 10, 1500, cancel=True),
        ]
    )
    assert seed.handle({"key": KEY, "action": "services"}) == [
        {
            "service": 1,
            "name": "Followers",
            "type": "Default",
            "category": "First Category",
            "rate": "0.90",
            "min": "50",
            "max": "10000",
            "refill": True,
            "cancel": True,
        },
        {
            "service": 2,
            "name": "Comments",
            "type": "Custom Comments",
            "category": "Second Category",
            "rate": "8",
            "min": "10",
            "max": "1500",
            "refill": False,
            "cancel": True,
        },
    ]


def test_add_status_and_balance_shapes(panel: Panel) -> None:
    assert call(panel, "add", service="1", link="https://instagram.com/x", quantity="309") == {"order": 1}
    status = call(panel, "status", order="1")
    assert list(status) == ["charge", "start_count", "status", "remains", "currency"]
    assert status["charge"] == "0.2781"  # 309 × 0.90 / 1000
    assert status["status"] == "Pending" and status["remains"] == "309" and status["currency"] == "USD"
    assert status["start_count"].isdigit()
    assert call(panel, "balance") == {"balance": "99.7219", "currency": "USD"}


def test_bulk_status_is_keyed_by_the_ids_as_given(panel: Panel) -> None:
    mine = add_followers(panel)
    theirs = add_followers(panel, key="other-key")
    reply = call(panel, "status", orders=f"{mine}, 10,{theirs},abc")
    assert list(reply) == [str(mine), "10", str(theirs), "abc"]
    assert reply[str(mine)] == call(panel, "status", order=str(mine))
    for bad in ("10", str(theirs), "abc"):
        assert reply[bad] == {"error": "Incorrect order ID"}


def test_single_status_errors(panel: Panel) -> None:
    theirs = add_followers(panel, key="other-key")
    assert call(panel, "status", order=str(theirs)) == {"error": "Incorrect order ID"}
    assert call(panel, "status", order="999") == {"error": "Incorrect order ID"}
    assert call(panel, "status") == {"error": "Incorrect request"}


def test_bulk_limit_is_100_ids(panel: Panel) -> None:
    ids = [str(add_followers(panel, 50)) for _ in range(100)]
    panel.calls.clear()
    reply = call(panel, "status", orders=",".join(ids))
    assert len(reply) == 100 and panel.calls == {"status": 1}
    assert call(panel, "status", orders=",".join(ids + ["1"])) == {"error": "Incorrect request"}


def test_refill_shapes_single_and_bulk(panel: Panel, clock: FakeClock) -> None:
    first, second = add_followers(panel), add_followers(panel)
    pending = add_followers(panel)
    no_refill = call(panel, "add", service="4", link="https://instagram.com/p/1", quantity="100")["order"]
    panel.force(first, status="Completed")
    panel.force(second, status="Partial", remains=10)
    panel.force(no_refill, status="Completed")
    panel.force(pending, status="Pending")

    assert call(panel, "refill", order=str(first)) == {"refill": "1"}
    assert call(panel, "refill", orders=f"{second},{pending},{no_refill},77,{first}") == [
        {"order": second, "refill": 2},
        {"order": pending, "refill": {"error": "Order not eligible for refill."}},
        {"order": no_refill, "refill": {"error": "Refill is disabled for this service"}},
        {"order": 77, "refill": {"error": "Incorrect order ID"}},
        {"order": first, "refill": {"error": "The refill task is not completed for this order"}},
    ]


def test_refill_status_shapes_and_progression(panel: Panel, clock: FakeClock) -> None:
    order = add_followers(panel)
    panel.force(order, status="Completed")
    assert call(panel, "refill", order=str(order)) == {"refill": "1"}
    assert call(panel, "refill_status", refill="1") == {"status": "Pending"}
    clock.advance(5)
    assert call(panel, "refill_status", refill="1") == {"status": "In progress"}
    clock.advance(5)
    assert call(panel, "refill_status", refill="1") == {"status": "Completed"}
    assert call(panel, "refill", order=str(order)) == {"refill": "2"}
    panel.force_refill(2, status="Rejected")
    assert call(panel, "refill_status", refills="1,2,3") == [
        {"refill": 1, "status": "Completed"},
        {"refill": 2, "status": "Rejected"},
        {"refill": 3, "status": {"error": "Refill not found"}},
    ]
    assert call(panel, "refill_status", refill="3") == {"error": "Refill not found"}
    assert panel.handle({"key": "other-key", "action": "refill_status", "refill": "1"}) == {"error": "Refill not found"}


def test_cancel_shape_and_full_refund(panel: Panel) -> None:
    order = add_followers(panel, 1000)  # 0.90
    likes = call(panel, "add", service="3", link="https://instagram.com/p/1", quantity="100")["order"]
    assert panel.accounts[KEY] == Decimal("100") - Decimal("0.90") - Decimal("0.012")
    assert call(panel, "cancel", orders=f"9,{order},{likes}") == [
        {"order": 9, "cancel": {"error": "Incorrect order ID"}},
        {"order": order, "cancel": 1},
        {"order": likes, "cancel": {"error": "Cannot cancel"}},
    ]
    assert panel.accounts[KEY] == Decimal("100") - Decimal("0.012")
    assert call(panel, "status", order=str(order)) | {"start_count": "-"} == {
        "charge": "0.00",
        "start_count": "-",
        "status": "Canceled",
        "remains": "1000",
        "currency": "USD",
    }
    # A final order cannot be canceled again; single `order` is accepted too.
    assert call(panel, "cancel", order=str(order)) == [{"order": order, "cancel": {"error": "Cannot cancel"}}]


# Money.


def test_partial_refunds_charge_times_remains_over_quantity(panel: Panel) -> None:
    order = add_followers(panel, 309)  # charge 0.2781
    panel.force(order, status="Partial", remains=157)
    refund = Decimal("0.2781") * 157 / 309  # 0.14130..., floored to 5 places
    assert refund.quantize(Decimal("0.00001")) == Decimal("0.14130")
    assert panel.accounts[KEY] == Decimal("100") - Decimal("0.2781") + Decimal("0.1413")
    status = call(panel, "status", order=str(order))
    assert (status["status"], status["remains"], status["charge"]) == ("Partial", "157", "0.1368")


def test_charges_round_up_to_five_places_and_refunds_down(clock: FakeClock) -> None:
    panel = Panel([SimService(1, "x", "Default", "c", Decimal("0.12345"), 1, 100)], clock=clock, first_order_id=1)
    call(panel, "add", service="1", link="@handle", quantity="3")  # 0.00037035 -> 0.00038
    assert panel.orders[1].charge == Decimal("0.00038")
    panel.force(1, status="Partial", remains=1)  # 0.000126666 -> 0.00012
    assert panel.accounts[KEY] == Decimal("1000") - Decimal("0.00038") + Decimal("0.00012")


def test_not_enough_funds_changes_nothing(clock: FakeClock) -> None:
    panel = build_panel("echomark", clock=clock, accounts={KEY: Decimal("0.89999")})
    assert call(panel, "add", service="1", link="https://instagram.com/x", quantity="1000") == {
        "error": "Not enough funds on balance"
    }
    assert panel.orders == {} and panel.accounts[KEY] == Decimal("0.89999")
    assert "order" in call(panel, "add", service="1", link="https://instagram.com/x", quantity="999")
    assert panel.accounts[KEY] == Decimal("0.00089")


def test_package_is_charged_flat_and_drip_feed_times_runs(panel: Panel) -> None:
    call(panel, "add", service="5", link="https://instagram.com/x")
    call(panel, "add", service="3", link="https://instagram.com/p/1", quantity="500", runs="4", interval="30")
    assert [o.charge for o in panel.orders.values()] == [Decimal("1.50"), Decimal("0.24")]
    assert panel.orders[2].quantity == 2000


def test_list_fields_count_lines(panel: Panel) -> None:
    comments = "\r\n".join(f"nice {i}" for i in range(12)) + "\n"
    assert "order" in call(panel, "add", service="2", link="https://instagram.com/p/1", comments=comments)
    order = next(iter(panel.orders.values()))
    assert (order.quantity, order.charge) == (12, Decimal("0.096"))


def test_korean_panel_prices_in_krw(clock: FakeClock) -> None:
    panel = build_panel("korean", clock=clock)
    assert {s["service"] for s in call(panel, "services")} == set(range(101, 109))
    order = call(panel, "add", service="101", link="https://instagram.com/x", quantity="100")["order"]
    assert call(panel, "status", order=str(order))["charge"] == "125.00"
    assert call(panel, "balance") == {"balance": "999875.00", "currency": "KRW"}


def test_catalogs_use_known_service_types() -> None:
    for service in echomark_services() + korean_services():
        assert service.type in SERVICE_TYPES
        assert service.min <= service.max
    assert [s.service for s in echomark_services()] == list(range(1, 20))
    # Between them, the presets offer every service type of the contract.
    assert {s.type for s in echomark_services() + korean_services()} == set(SERVICE_TYPES)


# Validation.

LINK = "https://instagram.com/x"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"service": "999", "link": LINK, "quantity": "100"}, "Incorrect service ID"),
        ({"service": "x", "link": LINK, "quantity": "100"}, "Incorrect service ID"),
        ({"link": LINK, "quantity": "100"}, "Incorrect service ID"),
        ({"service": "1", "quantity": "100"}, "Incorrect request"),
        ({"service": "1", "link": LINK}, "Incorrect request"),
        ({"service": "1", "link": LINK, "quantity": "1e3"}, "Incorrect request"),
        ({"service": "1", "link": LINK, "quantity": "49"}, Errors.quantity_below(50)),
        ({"service": "1", "link": LINK, "quantity": "10001"}, Errors.quantity_above(10000)),
        ({"service": "1", "link": "not a link!", "quantity": "100"}, "Incorrect link"),
        ({"service": "1", "link": "https://", "quantity": "100"}, "Incorrect link"),
        ({"service": "1", "link": LINK, "quantity": "100", "runs": "2", "interval": "5"}, "Incorrect request"),
        ({"service": "3", "link": LINK, "quantity": "100", "runs": "2"}, "Incorrect request"),
        ({"service": "2", "link": LINK, "comments": "\n\r\n"}, "Incorrect request"),
        ({"service": "2", "link": LINK, "comments": "a\nb"}, Errors.quantity_below(10)),
        ({"service": "6", "link": LINK, "quantity": "100"}, "Incorrect request"),
        ({"service": "8", "link": LINK, "quantity": "100", "answer_number": "0"}, "Incorrect request"),
        (
            {"service": "9", "link": LINK, "quantity": "500", "country": "US", "device": "6", "type_of_traffic": "3"},
            "Incorrect request",
        ),
        (
            {"service": "9", "link": LINK, "quantity": "500", "country": "US", "device": "1", "type_of_traffic": "1"},
            "Incorrect request",
        ),
        ({"service": "10", "username": "bob", "min": "60", "max": "50"}, "Incorrect request"),
        ({"service": "10", "username": "bob", "min": "10", "max": "50"}, Errors.quantity_below(50)),
        ({"service": "10", "username": "bob", "min": "50", "max": "60", "delay": "7"}, "Incorrect request"),
        ({"service": "10", "username": "bob", "min": "50", "max": "60", "expiry": "2025-01-01"}, "Incorrect request"),
    ],
)
def test_add_validation(panel: Panel, fields: dict[str, str], error: str) -> None:
    assert call(panel, "add", **fields) == {"error": error}
    assert panel.orders == {} and panel.accounts[KEY] == Decimal("100")


def test_valid_orders_of_other_types(panel: Panel) -> None:
    accepted = [
        {"service": "6", "link": "@someone", "quantity": "100", "usernames": "a\nb"},
        {"service": "7", "link": LINK, "quantity": "20", "username": "owner"},
        {"service": "8", "link": LINK, "quantity": "100", "answer_number": "2"},
        {
            "service": "9",
            "link": LINK,
            "quantity": "500",
            "country": "KR",
            "device": "5",
            "type_of_traffic": "2",
            "referring_url": "https://naver.com",
            "runs": "2",
            "interval": "60",
        },
        {
            "service": "10",
            "username": "bob",
            "min": "50",
            "max": "100",
            "posts": "3",
            "delay": "30",
            "expiry": "31/12/2030",
        },
    ]
    for fields in accepted:
        assert "order" in call(panel, "add", **fields), fields
    assert panel.orders[5].charge == Decimal("0.045")  # 100 × 3 posts × 0.15 / 1000


def test_key_and_action_errors(panel: Panel) -> None:
    assert panel.handle({"action": "balance"}) == {"error": "Invalid API key"}
    assert panel.handle({"key": "nope", "action": "services"}) == {"error": "Invalid API key"}
    assert call(panel, "dance") == {"error": "Incorrect request"}
    assert panel.handle({"key": KEY}) == {"error": "Incorrect request"}
    with pytest.raises(PanelError, match="Invalid API key"):
        panel.balance("nope")


def test_unique_links_rejects_a_second_active_order(clock: FakeClock) -> None:
    panel = build_panel("echomark", clock=clock, unique_links=True)
    add_followers(panel)
    assert call(panel, "add", service="1", link=LINK, quantity="100") == {"error": Errors.ACTIVE_ORDER}
    clock.advance(10)
    assert "order" in call(panel, "add", service="1", link=LINK, quantity="100")


# Progression.


def test_orders_progress_with_the_clock(panel: Panel, clock: FakeClock) -> None:
    order = str(add_followers(panel, 1000))
    seen = []
    for _ in range(4):
        reply = call(panel, "status", order=order)
        seen.append((reply["status"], reply["remains"]))
        clock.advance(5)
    assert seen == [("Pending", "1000"), ("In progress", "500"), ("Completed", "0"), ("Completed", "0")]


def test_zero_step_seconds_finishes_at_once(clock: FakeClock) -> None:
    panel = build_panel("echomark", clock=clock, step_seconds=0, partial_ratio=0, cancel_ratio=0)
    order = add_followers(panel)
    assert call(panel, "status", order=str(order))["status"] == "Completed"


def test_random_outcomes_are_seeded_and_refunded(clock: FakeClock) -> None:
    def run(seed: int) -> tuple[list[tuple[str, int]], Decimal]:
        panel = build_panel("echomark", clock=clock, seed=seed, partial_ratio=0.3, cancel_ratio=0.2)
        ids = [add_followers(panel, 1000) for _ in range(40)]
        clock.advance(10)
        orders = panel.orders
        refunds = sum(Decimal("0.90") * orders[i].remains / 1000 for i in ids)
        assert panel.accounts[KEY] == Decimal(1000) - 40 * Decimal("0.90") + refunds
        return [(orders[i].status, orders[i].remains) for i in ids], panel.accounts[KEY]

    first = run(7)
    assert first == run(7)
    statuses = {status for status, _ in first[0]}
    assert statuses == {"Completed", "Partial", "Canceled"}
    assert all(0 < remains < 1000 for status, remains in first[0] if status == "Partial")


def test_unlimited_subscription_stays_active(panel: Panel, clock: FakeClock) -> None:
    order = call(panel, "add", service="10", username="bob", min="50", max="60")["order"]
    clock.advance(60)
    assert call(panel, "status", order=str(order))["status"] == "Active"
    assert call(panel, "cancel", orders=str(order)) == [{"order": order, "cancel": {"error": "Cannot cancel"}}]


def test_force_can_pin_a_running_status(panel: Panel, clock: FakeClock) -> None:
    order = add_followers(panel)
    panel.force(order, status="In progress", remains=300)
    clock.advance(60)
    assert call(panel, "status", order=str(order))["status"] == "In progress"
    with pytest.raises(ValueError):
        panel.force(order, status="Partial", remains=5000)


# HTTP.


async def test_every_way_of_sending_parameters(panel: Panel) -> None:
    async with client(panel) as http:
        replies = [
            await http.post("/api/v2", data={"key": KEY, "action": "balance"}),
            await http.post("/api/v2", files={"x": ("x", b"")}, data={"key": KEY, "action": "balance"}),
            await http.post("/api/v2", json={"key": KEY, "action": "balance"}),
            await http.get("/api/v2", params={"key": KEY, "action": "balance"}),
            await http.post("/api/v2", data={"action": "balance"}, headers={"X-Api-Key": KEY}),
        ]
        for reply in replies:
            assert reply.status_code == 200
            assert reply.json() == {"balance": "100.00", "currency": "USD"}
        bulk = await http.post("/api/v2", json={"key": KEY, "action": "status", "orders": [1, 2]})
        assert bulk.json() == {"1": {"error": "Incorrect order ID"}, "2": {"error": "Incorrect order ID"}}


async def test_api_errors_are_http_200(panel: Panel) -> None:
    async with client(panel) as http:
        reply = await http.post("/api/v2", data={"key": "wrong", "action": "balance"})
    assert (reply.status_code, reply.json()) == (200, {"error": "Invalid API key"})


async def test_korean_names_travel_as_utf8(clock: FakeClock) -> None:
    async with client(build_panel("korean", clock=clock)) as http:
        reply = await http.post("/api/v2", data={"key": KEY, "action": "services"})
    assert reply.json()[0]["name"] == "인스타그램 팔로워 [30일 리필]"


# Faults.


@pytest.mark.parametrize(
    ("mode", "status_code", "marker"),
    [
        ("http_500", 500, "500 Internal Server Error"),
        ("html", 200, "<!DOCTYPE html>"),
        ("cloudflare", 503, "Just a moment..."),
    ],
)
async def test_html_faults(panel: Panel, mode: str, status_code: int, marker: str) -> None:
    panel.faults.mode = mode
    async with client(panel) as http:
        reply = await http.post(
            "/api/v2", data={"key": KEY, "action": "add", "service": "1", "link": LINK, "quantity": "100"}
        )
    assert reply.status_code == status_code and marker in reply.text
    assert reply.headers["content-type"].startswith("text/html")
    assert panel.orders == {} and panel.calls["add"] == 1
    if mode == "cloudflare":
        assert reply.headers["server"] == "cloudflare"


async def test_malformed_json_fault(panel: Panel) -> None:
    panel.faults.mode = "malformed_json"
    async with client(panel) as http:
        reply = await http.post("/api/v2", data={"key": KEY, "action": "status", "order": "1"})
    assert reply.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        reply.json()


async def test_error_fault_only_for_chosen_actions_and_count(panel: Panel) -> None:
    panel.faults = Faults(
        mode="error", error_message="Service is under maintenance", actions=frozenset({"add"}), count=2
    )
    order = {"key": KEY, "action": "add", "service": "1", "link": LINK, "quantity": "100"}
    async with client(panel) as http:
        balance = await http.post("/api/v2", data={"key": KEY, "action": "balance"})
        first = await http.post("/api/v2", data=order)
        second = await http.post("/api/v2", data=order)
        third = await http.post("/api/v2", data=order)
    assert balance.json() == {"balance": "100.00", "currency": "USD"}
    assert first.json() == second.json() == {"error": "Service is under maintenance"}
    assert third.json() == {"order": 1}
    assert panel.faults.mode is None and list(panel.orders) == [1] and panel.calls["add"] == 3


async def test_timeout_fault_hangs_without_acting(panel: Panel) -> None:
    panel.faults = Faults(mode="timeout", hang_seconds=0.05)
    started = time.monotonic()
    async with client(panel) as http:
        reply = await http.post(
            "/api/v2", data={"key": KEY, "action": "add", "service": "1", "link": LINK, "quantity": "100"}
        )
    assert time.monotonic() - started >= 0.05
    assert reply.status_code == 504 and panel.orders == {}
    assert panel.accounts[KEY] == Decimal("100")


async def test_timeout_after_accept_acts_then_hangs(panel: Panel) -> None:
    panel.faults = Faults(mode="timeout_after_accept", hang_seconds=0.05)
    started = time.monotonic()
    async with client(panel) as http:
        reply = await http.post(
            "/api/v2", data={"key": KEY, "action": "add", "service": "1", "link": LINK, "quantity": "100"}
        )
    assert time.monotonic() - started >= 0.05
    assert reply.json() == {"order": 1} and panel.accounts[KEY] == Decimal("99.91")


async def test_latency_delays_every_reply(panel: Panel) -> None:
    panel.faults.latency = 0.05
    started = time.monotonic()
    async with client(panel) as http:
        reply = await http.post("/api/v2", data={"key": KEY, "action": "balance"})
    assert time.monotonic() - started >= 0.05 and reply.status_code == 200


async def test_timeout_after_accept_on_real_loopback(panel: Panel) -> None:
    panel.faults = Faults(mode="timeout_after_accept", hang_seconds=30)
    started = time.monotonic()
    async with serve_panel(create_app(panel)) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api/v2")
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.2)) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(
                    url, data={"key": KEY, "action": "add", "service": "1", "link": LINK, "quantity": "100"}
                )
            assert list(panel.orders) == [1] and panel.accounts[KEY] == Decimal("99.91")
            panel.faults.mode = None
            reply = await http.post(url, data={"key": KEY, "action": "status", "order": "1"})
            assert reply.json()["status"] == "Pending"
    assert time.monotonic() - started < 3  # the hanging request did not hold up shutdown


def test_faults_refuse_unknown_names() -> None:
    with pytest.raises(ValueError):
        Faults(mode="explode")
    with pytest.raises(ValueError):
        Faults.from_dict({"quirks": ["shouting"]})


async def test_admin_endpoints(panel: Panel) -> None:
    async with client(panel) as http:
        reply = await http.post("/_sim/faults", json={"mode": "html", "actions": ["add"], "quirks": ["funds_key"]})
        assert reply.status_code == 200 and reply.json()["actions"] == ["add"]
        assert panel.faults.mode == "html" and panel.faults.quirks == {"funds_key"}
        assert (await http.post("/_sim/faults", json={"mode": "nope"})).status_code == 400
        await http.post("/api/v2", data={"key": KEY, "action": "balance"})
        state = (await http.get("/_sim/state")).json()
    assert state["calls"] == {"balance": 1} and state["orders"] == 0
    assert state["balances"][KEY] == "100.00" and state["faults"]["mode"] == "html"


# Quirks.


def quirky(panel: Panel, *quirks: str) -> Panel:
    panel.faults.quirks = set(quirks)
    return panel


def test_quirk_string_ids(panel: Panel) -> None:
    quirky(panel, "string_ids")
    assert call(panel, "add", service="1", link=LINK, quantity="100") == {"order": "1"}
    assert call(panel, "services")[0]["service"] == "1"
    assert call(panel, "cancel", orders="1,5") == [
        {"order": "1", "cancel": "1"},
        {"order": "5", "cancel": {"error": "Incorrect order ID"}},
    ]


def test_quirk_numeric_values(panel: Panel) -> None:
    quirky(panel, "numeric_values")
    add_followers(panel, 309)
    panel.force(1, status="Completed")
    status = call(panel, "status", order="1")
    assert status["charge"] == 0.2781 and status["remains"] == 0 and isinstance(status["start_count"], int)
    assert call(panel, "balance") == {"balance": 99.7219, "currency": "USD"}
    assert call(panel, "services")[1] | {"name": ""} == {
        "service": 2,
        "name": "",
        "type": "Custom Comments",
        "category": "Instagram Comments",
        "rate": 8,
        "min": 10,
        "max": 1500,
        "refill": False,
        "cancel": True,
    }
    assert call(panel, "refill", order="1") == {"refill": 1}


def test_quirk_loose_flags(panel: Panel) -> None:
    quirky(panel, "loose_flags")
    assert {(s["refill"], s["cancel"]) for s in call(panel, "services")} <= {(0, 0), (0, 1), (1, 1)}
    add_followers(panel)
    assert call(panel, "cancel", orders="1") == [{"order": 1, "cancel": True}]


@pytest.mark.parametrize(
    ("quirk", "expected"),
    [
        ("status_spellings", ["pending", "Inprogress", "Complete", "Cancelled", "Partial"]),
        ("status_codes", [0, 1, 2, 4, 3]),
    ],
)
def test_quirk_status_words(panel: Panel, quirk: str, expected: list[object]) -> None:
    quirky(panel, quirk)
    ids = [str(add_followers(panel)) for _ in range(5)]
    panel.force(1, status="Pending")
    panel.force(2, status="In progress")
    panel.force(3, status="Completed")
    panel.force(4, status="Canceled")
    panel.force(5, status="Partial")
    reply = call(panel, "status", orders=",".join(ids))
    assert [reply[i]["status"] for i in ids] == expected


def test_quirk_refill_spellings(panel: Panel) -> None:
    quirky(panel, "status_spellings", "string_ids")
    add_followers(panel)
    panel.force(1, status="Completed")
    call(panel, "refill", order="1")
    assert call(panel, "refill_status", refills="1,2") == [
        {"refill": "1", "status": "pending"},
        {"refill": "2", "status": {"error": "Refill not found"}},
    ]


def test_quirks_on_remains_and_key_names(panel: Panel) -> None:
    add_followers(panel)
    panel.force(1, status="Completed")
    assert call(quirky(panel, "remains_negative"), "status", order="1")["remains"] == "-5"
    assert call(quirky(panel, "remains_unknown", "numeric_values"), "status", order="1")["remains"] == "Unknown"
    quirky(panel, "order_id_key", "funds_key")
    assert call(panel, "add", service="1", link=LINK, quantity="100") == {"order_id": 2}
    assert call(panel, "balance") == {"funds": "99.01", "currency": "USD"}
    assert call(panel, "status", order="99") == {"error": "Incorrect order ID"}


# Test controls: what tests of the router make a panel do.


def test_an_account_is_opened_or_its_balance_set(panel: Panel) -> None:
    panel.open_account("new-key", Decimal("7"))
    assert panel.handle({"key": "new-key", "action": "balance"}) == {"balance": "7.00", "currency": "USD"}
    panel.open_account("new-key", Decimal("2.5"))
    assert panel.handle({"key": "new-key", "action": "balance"})["balance"] == "2.50"


def test_a_panel_can_hand_out_an_id_again_once_or_always(panel: Panel) -> None:
    first = add_followers(panel)
    panel.hand_out_order_id(first)
    assert add_followers(panel) == first  # the next add only
    assert add_followers(panel) == first + 1
    panel.hand_out_order_id(500, always=True)
    assert [add_followers(panel) for _ in range(3)] == [500, 500, 500]


def test_a_forgotten_order_is_an_incorrect_order_id(panel: Panel) -> None:
    order = add_followers(panel)
    panel.forget_order(order)
    assert call(panel, "status", order=str(order)) == {"error": Errors.INCORRECT_ORDER}
    assert call(panel, "status", orders=str(order)) == {str(order): {"error": Errors.INCORRECT_ORDER}}


def test_a_final_order_can_be_revised_as_a_provider_that_changes_its_mind(panel: Panel) -> None:
    order = add_followers(panel)
    with pytest.raises(ValueError, match="not final"):
        panel.revise(order, status="Canceled")
    panel.force(order, status="Completed")
    balance = call(panel, "balance")["balance"]
    panel.revise(order, status="Canceled")
    assert call(panel, "status", order=str(order))["status"] == "Canceled"
    assert call(panel, "balance")["balance"] == balance  # no money moves on the panel
