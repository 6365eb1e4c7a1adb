"""One absurd upstream price disables only that upstream service.

Issue 12, case 6: a single upstream service listed with rate 1e25 made
`services` and every `add` answer "Internal error", for every service on
every provider, until that provider fixed its list. Now a service listed
with a price we cannot use (not a number, negative, too large for any order
to be charged) is kept apart: not sold, logged, counted in
`smm_proxy_upstream_services_disabled`, shown in `smm-proxy providers`;
everything else keeps selling. Such a price is not a price change either:
the price gate (issue 15) neither holds it for approval nor reports the
service removed; an event says it is disabled, and the next usable price is
judged against the last usable one.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from support import metric, router_config

from proxy.sim.panel import SimService

LINK = "https://instagram.com/p/abc"
ABSURD = {97: Decimal("1e25"), 98: Decimal("NaN"), 99: Decimal("-1")}


def config() -> dict[str, object]:
    raw = router_config(
        imports=[{"provider": "echomark", "id_offset": 1000}, {"provider": "korean", "id_offset": 2000}]
    )
    raw["services"].append({"id": 7, "routes": [{"provider": "echomark", "service": 97}]})
    return raw


def list_absurd_prices(panel) -> None:
    for service, rate in ABSURD.items():
        panel.catalog[service] = SimService(service, f"Odd {service}", "Default", "Instagram Odd", rate, 10, 1000)


async def test_an_absurd_price_disables_only_its_service(make_router, caplog):
    router = await make_router(config())
    list_absurd_prices(router.panels["echomark"])
    key = await router.client(balance="10")
    with caplog.at_level(logging.WARNING):
        services = await router.call(key, action="services")
    assert isinstance(services, list) and len(services) > 20
    listed = {s["service"] for s in services}
    assert {1, 2, 1001, 1003, 2101} <= listed and not listed & {7, 1097, 1098, 1099}
    assert "service 97 not sold, the rate is too large for any order to be charged" in caplog.text
    assert await router.call(key, action="add", service=1, link=LINK, quantity=1000) == {"order": 1}
    assert await router.call(key, action="add", service=1001, link=LINK + "2", quantity=1000) == {"order": 2}
    assert await router.call(key, action="add", service=2101, link=LINK + "3", quantity=1000) == {"order": 3}
    for service in (7, 1097, 1098, 1099):  # ours, but not sellable now: no money moves
        reply = await router.call(key, action="add", service=service, link=LINK, quantity=100)
        assert reply == {"error": "Service temporarily unavailable, please try again later"}
    assert await metric(router, "smm_proxy_upstream_services_disabled", provider="echomark") == 3
    assert await metric(router, "smm_proxy_upstream_services_disabled", provider="korean") == 0
    (echomark,) = [p for p in await router.runtime.operators.providers() if p.name == "echomark"]
    assert {(d.service, d.reason) for d in echomark.disabled} == {
        (97, "the rate is too large for any order to be charged"),
        (98, "the rate is not a number"),
        (99, "the rate is below zero"),
    }
    assert echomark.services == 19  # the rest of its list
    token = (await router.runtime.operators.add_admin("cli", "ops")).token
    shown = await router.http.get("/admin/providers", headers={"Authorization": f"Bearer {token}"})
    (listed_disabled,) = [p["disabled"] for p in shown.json() if p["name"] == "echomark"]
    assert [list(d) for d in listed_disabled] == [["service", "name", "category", "rate", "reason"]] * 3


@pytest.mark.parametrize("rate", ["1e25", "1e400", "99999999999999999999"])
async def test_a_price_fixed_upstream_sells_again(make_router, rate):
    router = await make_router(config(), catalog_ttl=1)
    panel = router.panels["echomark"]
    panel.catalog[97] = SimService(97, "Odd", "Default", "Instagram Odd", Decimal(rate), 10, 1000)
    key = await router.client(balance="10")
    assert 7 not in {s["service"] for s in await router.call(key, action="services")}
    panel.catalog[97] = SimService(97, "Odd", "Default", "Instagram Odd", Decimal("2"), 10, 1000)
    router.clock.advance(3600)
    await router.runtime.listings.refresh("echomark")
    assert 7 in {s["service"] for s in await router.call(key, action="services")}
    assert "order" in await router.call(key, action="add", service=7, link=LINK, quantity=100)


async def test_a_price_that_overflows_once_marked_up_disables_only_that_service(make_router):
    raw = config()
    raw["services"].append({"id": 8, "routes": [{"provider": "echomark", "service": 4}], "markup": {"percent": "1e30"}})
    router = await make_router(raw)
    key = await router.client(balance="10")
    listed = {s["service"] for s in await router.call(key, action="services")}
    assert 8 not in listed and {1, 2, 1004} <= listed
    reply = await router.call(key, action="add", service=8, link=LINK, quantity=100)
    assert reply == {"error": "Service temporarily unavailable, please try again later"}


async def test_an_absurd_price_is_no_price_change_for_the_gate(make_router):
    """1.00, then 1e25 (disabled: not held, not removed), then 1.50: judged against 1.00, held."""
    router = await make_router(config(), catalog_ttl=1)
    panel = router.panels["echomark"]
    panel.catalog[97] = SimService(97, "Odd", "Default", "Instagram Odd", Decimal("1.00"), 10, 1000)
    key = await router.client(balance="10")
    assert {s["service"]: s for s in await router.call(key, action="services")}[7]["rate"] == "1.30"
    listings = router.runtime.listings

    panel.catalog[97] = SimService(97, "Odd", "Default", "Instagram Odd", Decimal("1e25"), 10, 1000)
    router.clock.advance(2)
    await listings.refresh("echomark")
    assert 7 not in {s["service"] for s in await router.call(key, action="services")}
    assert await listings.held("echomark") == {}  # not a price change waiting for approval
    events = await router.runtime.operators.events()
    assert [e.kind for e in events] == ["service.disabled"]
    assert events[0].detail == {
        "service": 97,
        "reason": "the rate is too large for any order to be charged",
        "rate": "10000000000000000000000000",
        "was": "1.00",
    }
    router.clock.advance(2)
    await listings.refresh("echomark")  # still absurd: told once
    assert len(await router.runtime.operators.events()) == 1

    panel.catalog[97] = SimService(97, "Odd", "Default", "Instagram Odd", Decimal("1.50"), 10, 1000)
    router.clock.advance(2)
    await listings.refresh("echomark")
    assert [e.kind for e in await router.runtime.operators.events()] == ["price.held", "service.disabled"]
    assert {s: (h["approved"], h["proposed"]) for s, h in (await listings.held("echomark")).items()} == {
        97: ("1.00", "1.50")
    }
    assert {s["service"]: s for s in await router.call(key, action="services")}[7]["rate"] == "1.30"  # as approved
