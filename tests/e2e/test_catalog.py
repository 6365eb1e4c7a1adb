"""The merged catalog: caching in Redis, stale fallback, vanished services, merge rules."""

from decimal import Decimal

from support import router_config


async def rates(router, key):
    return {s["service"]: s["rate"] for s in await router.call(key, action="services")}


async def test_lists_are_cached_in_redis_and_shared_by_instances(make_router):
    router = await make_router()
    key = await router.client()
    first = await rates(router, key)
    await rates(router, key)
    assert router.panels["echomark"].calls["services"] == 1
    assert router.panels["korean"].calls["services"] == 1
    # A second router instance on the same Redis uses the cached lists.
    other = await make_router(clock=router.clock)
    assert (await other.runtime.catalog.current()).get(1).rate == Decimal(first[1])
    assert other.panels["echomark"].calls["services"] == 0


async def test_stale_list_is_served_while_it_refreshes(make_router):
    router = await make_router()
    key = await router.client()
    await rates(router, key)
    router.panels["echomark"].catalog[1] = (
        router.panels["echomark"]
        .catalog[1]
        .__class__(**{**router.panels["echomark"].catalog[1].__dict__, "rate": Decimal("1.00")})
    )
    router.clock.advance(301)
    assert (await rates(router, key))[1] == "1.17"  # stale answer, at once
    await router.runtime.listings.wait_for_refreshes()
    assert (await rates(router, key))[1] == "1.30"  # refreshed: 1.00 + 30 %
    assert router.panels["echomark"].calls["services"] == 2


async def test_provider_down_serves_the_last_good_list(make_router):
    router = await make_router()
    key = await router.client()
    before = await rates(router, key)
    for mode in ("html", "cloudflare", "malformed_json", "http_500"):
        router.panels["echomark"].faults.mode = mode
        router.clock.advance(700)  # stale, and not yet too old to sell from (3600 s)
        assert await rates(router, key) == before
        await router.runtime.listings.wait_for_refreshes()
        assert await rates(router, key) == before


async def test_a_list_too_old_to_price_from_is_not_sold(make_router):
    router = await make_router(catalog_max_age=1000)
    key = await router.client(balance="10")
    before = await rates(router, key)
    router.panels["echomark"].faults.mode = "html"
    router.clock.advance(1001)
    after = await rates(router, key)
    # Echomark's own services are gone; service 1 is now sold through its korean route.
    assert not any(1000 <= service < 2000 for service in after) and after[1] != before[1]
    assert 2101 in after  # the korean list refreshed and is sold as before


async def test_a_service_sold_only_from_a_list_too_old_is_unavailable(make_router):
    only_echomark = {"services": [{"id": 7, "routes": [{"provider": "echomark", "service": 3}]}]}
    router = await make_router(router_config(**only_echomark), catalog_max_age=1000)
    key = await router.client(balance="10")
    assert 7 in await rates(router, key)
    router.panels["echomark"].faults.mode = "html"
    router.clock.advance(1001)
    assert 7 not in await rates(router, key)
    reply = await router.call(key, action="add", service=7, link="https://instagram.com/p/x", quantity=100)
    assert reply == {"error": "Service temporarily unavailable, please try again later"}
    assert await router.runtime.ledger.balance("alice") == Decimal("10")
    router.panels["echomark"].faults.mode = None
    router.clock.advance(31)  # the failed fetch is retried after 30 s
    assert 7 in await rates(router, key)


async def test_failed_provider_is_not_asked_again_at_once(make_router):
    router = await make_router()
    key = await router.client()
    await rates(router, key)
    router.panels["echomark"].faults.mode = "html"
    router.clock.advance(301)
    for _ in range(5):
        await rates(router, key)
        await router.runtime.listings.wait_for_refreshes()
    assert router.panels["echomark"].calls["services"] == 2


async def test_never_fetched_provider_down_leaves_only_its_services_out(make_router):
    router = await make_router()
    router.panels["korean"].faults.mode = "cloudflare"
    key = await router.client()
    found = await rates(router, key)
    assert not any(service >= 2000 for service in found)
    # Service 2's primary route (korean 102) is unavailable: priced from echomark 3.
    assert found[2] == "0.156"
    assert found[1] == "1.17"


async def test_vanished_upstream_service_drops_its_route_then_the_service(make_router):
    router = await make_router()
    key = await router.client()
    assert (await rates(router, key))[1] == "1.17"
    del router.panels["echomark"].catalog[1]
    router.clock.advance(301)
    await router.runtime.listings.refresh("echomark")
    # Now priced from the Korean route: 1250 KRW / 1380 x 1.3, rounded up.
    assert (await rates(router, key))[1] == "1.1776"
    await router.runtime.listings.wait_for_refreshes()  # the korean list's background refresh, started above
    del router.panels["korean"].catalog[101]
    await router.runtime.listings.refresh("korean")
    found = await rates(router, key)
    assert 1 not in found and 2101 not in found
