"""What operators are told and what they decide: events, the webhook, the price gate, config reloads."""

import hashlib
import hmac
import json
from decimal import Decimal

import httpx
import yaml
from support import fault, router_config

from proxy.ops.events import SIGNATURE_HEADER, Webhook

LINK = "https://instagram.com/p/abc"


async def admin(router) -> dict:
    token = (await router.runtime.operators.add_admin("cli", "ops")).token
    return {"Authorization": f"Bearer {token}"}


def reprice(panel, service: int, rate: str) -> None:
    found = panel.catalog[service]
    panel.catalog[service] = found.__class__(**{**found.__dict__, "rate": Decimal(rate)})


async def test_events_are_one_stream_for_the_cli_and_the_admin_api(make_router):
    raw = router_config(health={"consecutive_failures": 1, "base_ejection_seconds": 30})
    router = await make_router(raw)
    key = await router.client(balance="10")
    fault(router.panels["echomark"], "error", "Panel overloaded")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    found = await router.runtime.operators.events()
    assert [e.kind for e in found] == ["provider.ejected"]
    assert found[0].subject == "echomark" and found[0].detail["scope"] == "orders"
    headers = await admin(router)
    answer = await router.http.get("/admin/events?since=1h&kind=provider.", headers=headers)
    assert answer.status_code == 200 and [e["kind"] for e in answer.json()] == ["provider.ejected"]
    assert (await router.http.get("/admin/events?limit=x", headers=headers)).status_code == 400
    assert (await router.http.get("/admin/events?since=yesterday", headers=headers)).status_code == 400
    assert (await router.http.get("/admin/events")).status_code == 401
    # Nothing of it reaches the public API.
    assert "echomark" not in (await router.http.post("/api/v2", data={"key": key, "action": "services"})).text


async def test_the_webhook_is_signed_and_retried_until_it_answers(make_router):
    seen: list[httpx.Request] = []
    answers = [500, 200]

    def hook(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answers.pop(0) if answers else 200)

    raw = router_config(health={"consecutive_failures": 1, "base_ejection_seconds": 30})
    router = await make_router(
        raw,
        webhook_url="https://ops.example/hook",
        webhook_secret="s3cret",
        webhook_transport=httpx.MockTransport(hook),
    )
    assert router.runtime.webhook is not None  # the worker delivers with it
    # A second instance's deliverer, retrying at once rather than after 5 s, 10 s, 20 s...
    webhook = Webhook(
        router.runtime.redis,
        router.runtime.keys,
        "https://ops.example/hook",
        "s3cret",
        transport=httpx.MockTransport(hook),
        retry_base=0,
    )
    await webhook.deliver()  # the consumer group starts here
    key = await router.client(balance="10")
    fault(router.panels["echomark"], "error", "Panel overloaded")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    first = await webhook.deliver()
    assert (first.delivered, first.failed) == (0, 1)
    retried = await webhook.deliver()
    assert (retried.delivered, retried.failed) == (1, 0)
    await webhook.aclose()
    body = seen[-1].content
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert seen[-1].headers[SIGNATURE_HEADER] == expected
    assert json.loads(body)["kind"] == "provider.ejected" and seen[0].content == body
    assert (await router.runtime.redis.xpending(router.runtime.keys.events, "webhook"))["pending"] == 0


async def test_a_price_rise_beyond_the_gate_is_held_until_approved(make_router, capsys):
    raw = router_config(prices={"change_percent": 10})
    router = await make_router(raw, catalog_ttl=1)
    key = await router.client(balance="10")
    services = {s["service"]: s for s in await router.call(key, action="services")}
    assert services[1]["rate"] == "1.17"
    echomark = router.panels["echomark"]
    reprice(echomark, 1, "0.95")  # +5.6 %: followed
    router.clock.advance(2)
    await router.runtime.listings.refresh("echomark")
    assert {s["service"]: s for s in await router.call(key, action="services")}[1]["rate"] == "1.235"
    reprice(echomark, 1, "2.00")  # +110 %: held at 0.95 x 1.3, and never sold there below cost
    router.clock.advance(2)
    await router.runtime.listings.refresh("echomark")
    assert {s["service"]: s for s in await router.call(key, action="services")}[1]["rate"] == "1.235"
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    order = await router.runtime.book.find(reply["order"])
    assert order.provider == "korean"  # echomark would cost 2.00 > 1.235 charged
    held = await router.runtime.operators.events(kind="price.held")
    assert len(held) == 1 and held[0].detail == {"service": 1, "approved": "0.95", "proposed": "2.00"}
    router.clock.advance(2)
    await router.runtime.listings.refresh("echomark")  # still held: not told twice
    assert len(await router.runtime.operators.events(kind="price.held")) == 1
    rows = {r.name: r for r in await router.runtime.operators.providers()}
    assert rows["echomark"].held_prices[0].proposed == "2.00"
    headers = await admin(router)
    bad = await router.http.post("/admin/providers/echomark/approve", json={"services": "77"}, headers=headers)
    assert bad.status_code == 409
    done = await router.http.post("/admin/providers/echomark/approve", json={"services": 1}, headers=headers)
    assert done.status_code == 200 and done.json()["approved"] == [{"service": 1, "from": "0.95", "to": "2.00"}]
    assert {s["service"]: s for s in await router.call(key, action="services")}[1]["rate"] == "2.60"
    audit = await router.runtime.operators.audit_log()
    assert (audit[0].action, audit[0].actor) == ("price.approve", "admin:ops")


async def test_removed_and_readded_services_are_reported(make_router):
    router = await make_router(router_config(), catalog_ttl=1)
    key = await router.client(balance="10")
    await router.call(key, action="services")
    echomark = router.panels["echomark"]
    gone = echomark.catalog.pop(4)
    router.clock.advance(2)
    await router.runtime.listings.refresh("echomark")
    echomark.catalog[4] = gone
    router.clock.advance(2)
    await router.runtime.listings.refresh("echomark")
    kinds = [e.kind for e in reversed(await router.runtime.operators.events())]
    assert kinds == ["service.removed", "service.readded"]


async def test_a_config_reload_takes_a_good_file_and_keeps_the_running_one_for_a_bad_one(make_router, tmp_path):
    path = tmp_path / "router.yaml"
    raw = router_config()
    path.write_text(yaml.safe_dump(json.loads(json.dumps(raw))))
    router = await make_router(raw, config=path)
    key = await router.client(balance="10")
    headers = await admin(router)
    assert {s["service"] for s in await router.call(key, action="services")} >= {1, 2}
    path.write_text("providers: [this is not a mapping")
    bad = await router.http.post("/admin/config/reload", headers=headers)
    assert bad.status_code == 400 and "not reloaded" in bad.json()["error"]
    assert {s["service"] for s in await router.call(key, action="services")} >= {1, 2}  # still serving
    changed = json.loads(json.dumps(raw))
    changed["services"] = [changed["services"][0]]
    changed["markup"] = {"percent": 50}
    changed["providers"]["echomark"]["timeout"] = 12
    changed["health"] = {"consecutive_failures": 7}
    path.write_text(yaml.safe_dump(changed))
    good = await router.http.post("/admin/config/reload", headers=headers)
    assert good.status_code == 200 and good.json()["replaced"] == ["echomark"]
    services = {s["service"]: s for s in await router.call(key, action="services")}
    assert 2 not in services and services[1]["rate"] == "1.35"
    assert router.runtime.health.thresholds["echomark"].consecutive_failures == 7
    assert "order" in await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    changed["currency"] = "EUR"
    changed["exchange_rates"] = {"KRW": "1500", "USD": "1.1"}
    path.write_text(yaml.safe_dump(changed))
    refused = await router.http.post("/admin/config/reload", headers=headers)
    assert refused.status_code == 400 and "cannot change while running" in refused.json()["error"]
    kinds = [e.kind for e in await router.runtime.operators.events()]
    assert kinds == ["config.reloaded"]
    assert [a.action for a in await router.runtime.operators.audit_log()][:3] == ["config.reload"] * 3
