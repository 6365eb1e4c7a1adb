"""Running it for money: logs without keys, readiness, metrics, the admin API, deploy/."""

import asyncio
import configparser
import json
import logging
import re
import shutil
import subprocess
from decimal import Decimal

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support import ROOT, fault, metric, router_config
from tcpproxy import RedisProxy

from proxy import logs

LINK = "https://instagram.com/p/abc"


async def routed(make_router, **settings):
    """A router on the panels, the korean one reached by GET with a key of its own."""
    router = await make_router(config(), **settings)
    router.panels["korean"].open_account("korean-secret-key", Decimal(1_000_000))
    return router


def config(**overrides):
    raw = router_config(
        imports=[{"provider": "echomark", "id_offset": 1000}, {"provider": "korean", "id_offset": 2000}]
    )
    raw["providers"]["korean"]["method"] = "GET"  # its key travels in the URL's query
    raw["providers"]["korean"]["key"] = "korean-secret-key"
    raw.update(overrides)
    return raw


async def test_no_log_line_or_reply_holds_a_key(make_router):
    with logs.captured("debug", secrets=["sim-key", "korean-secret-key"]) as buffer:
        router = await routed(make_router, status_ttl=1)
        alice = await router.client("alice", balance="50")
        bob = await router.client("bob", balance="50")
        http, replies = router.http, []

        async def both(**params):
            get = await http.get("/api/v2", params={"key": alice, **params})
            post = await http.post("/api/v2", data=params, headers={"X-Api-Key": bob})
            replies.extend([get.text, post.text])

        await both(action="services")
        await both(action="balance")
        await both(action="add", service=1, link=LINK, quantity=1000)
        await both(action="add", service=2101, link=LINK, quantity=1000)
        router.clock.advance(30)
        await both(action="status", orders="1,2,3,4")
        await both(action="refill", orders="1,2,3,4")
        await both(action="refill_status", refills="1,2")
        await both(action="cancel", orders="1,2,3,4")
        fault(router.panels["korean"], "html")
        await both(action="add", service=2101, link=LINK, quantity=1000)
        replies.append((await http.get("/api/v2", params={"key": "0" * 32, "action": "balance"})).text)
        replies.append((await http.get("/api/v2?key=bad%FF&action=balance")).text)
        logging.getLogger("proxy.test").warning("a stray key=%s and %s", alice, "sim-key")
    text = buffer.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) > 30
    for secret in (alice, bob, "sim-key", "korean-secret-key"):
        assert secret not in text, secret
        assert all(secret not in reply for reply in replies)
    assert not re.search(r"key=(?!\*\*\*)\w", text)
    assert all({"timestamp", "level", "event"} <= set(line) for line in lines)
    access = [line for line in lines if line.get("logger") == "proxy.access"]
    assert access and all(line["path"] == "/api/v2" and "?" not in line["event"] for line in access)
    assert all(line.get("request_id") for line in access)
    placed = [line for line in lines if line.get("order") == 1]
    assert {"client", "request_id"} <= set(placed[0]) and any("reserved" in line["event"] for line in placed)


async def test_a_request_id_is_taken_or_made_and_returned(make_router):
    router = await make_router()
    mine = await router.http.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    made = await router.http.get("/healthz", headers={"X-Request-ID": "bad id\u00e9".encode()})
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])


async def test_readyz_follows_redis_within_a_second(make_router, redis_url, caplog):
    async with RedisProxy(redis_url) as proxy:
        router = await make_router(url=proxy.url)
        assert (await router.http.get("/healthz")).json() == {"status": "ok"}
        ready = await router.http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        await proxy.stop()
        started = asyncio.get_running_loop().time()
        down = await router.http.get("/readyz")
        assert down.status_code == 503 and down.json()["redis"].startswith("unavailable")
        assert asyncio.get_running_loop().time() - started < 1.0
        assert (await router.http.get("/healthz")).status_code == 200  # alive all the same
        await proxy.start()
        assert (await router.http.get("/readyz")).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_redis_outage_is_one_warning_not_a_traceback_per_request(make_router, redis_url, caplog):
    async with RedisProxy(redis_url) as proxy:
        router = await make_router(url=proxy.url)
        key = await router.client()
        await proxy.stop()
        replies = [await router.call(key, action="balance") for _ in range(5)]
        await proxy.start()
    # Not the no-route message (which comes with a refund): nothing was charged, try again.
    assert all(r == {"error": "Internal error, please try again later"} for r in replies)
    warnings = [r for r in caplog.records if r.name == "proxy.edge.app"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING and not warnings[0].exc_info


async def test_metrics_parse_and_show_upstream_latency_and_money(make_router):
    router = await routed(make_router)
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    families = {f.name: f for f in text_string_to_metric_families((await router.http.get("/metrics")).text)}
    assert {
        "smm_proxy_requests",
        "smm_proxy_upstream_seconds",
        "smm_proxy_money",
        "smm_proxy_orders_unknown",
        "smm_proxy_provider_blocked",
        "smm_proxy_catalog_age_seconds",
    } <= set(families)
    assert await metric(router, "smm_proxy_upstream_seconds_count", provider="echomark", action="add") == 1
    assert await metric(router, "smm_proxy_upstream_calls_total", provider="echomark", action="add", outcome="ok") == 1
    assert await metric(router, "smm_proxy_money_total", kind="charged") == 1.17
    assert await metric(router, "smm_proxy_money_total", kind="paid_upstream") == 0.9
    assert await metric(router, "smm_proxy_requests_total", action="add", outcome="ok") == 1


async def test_the_admin_api_does_what_the_cli_does_and_audits_it(make_router):
    router = await routed(make_router, status_ttl=1)
    ops = router.runtime.operators
    token = (await ops.add_admin("cli", "backoffice")).token
    http = router.http
    auth = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/admin/clients")).status_code == 401
    assert (await http.get("/admin/clients", headers={"Authorization": "Bearer nope"})).status_code == 401
    created = (await http.post("/admin/clients", json={"name": "acme", "balance": "20"}, headers=auth)).json()
    assert created["balance"] == "20.00" and len(created["key"]) == 32
    topped = await http.post("/admin/clients/acme/topup", json={"amount": "5", "ref": "inv-1"}, headers=auth)
    assert topped.json()["balance"] == "25.00"
    assert (await http.post("/admin/clients", json={"name": "acme"}, headers=auth)).status_code == 409
    assert (await http.post("/admin/clients/nobody/topup", json={"amount": "5"}, headers=auth)).status_code == 404
    key = created["key"]
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    fault(router.panels["echomark"], "html")
    await router.call(key, action="add", service=1, link=LINK + "2", quantity=1000)
    unknown = (await http.get("/admin/orders", params={"state": "unknown"}, headers=auth)).json()
    assert [o["id"] for o in unknown] == [2]
    resolved = await http.post("/admin/orders/2/resolve", json={"failed": True}, headers=auth)
    assert resolved.json()["state"] == "failed" and resolved.json()["refunded"] == "1.17"
    assert (await http.post("/admin/orders/2/resolve", json={"failed": True}, headers=auth)).status_code == 409
    shown = (await http.get("/admin/orders/1", headers=auth)).json()
    assert shown["provider"] == "echomark" and [e["kind"] for e in shown["ledger"]] == ["charge"]
    refund = await http.post("/admin/orders/1/refund", json={"total": "0.5"}, headers=auth)
    assert refund.json()["refunded"] == "0.50"
    assert (await http.post("/admin/orders/1/ack", headers=auth)).status_code == 200
    ledger = (await http.get("/admin/clients/acme/ledger", headers=auth)).json()
    assert [e["kind"] for e in ledger] == ["topup", "topup", "charge", "charge", "refund", "refund"]
    providers = (await http.get("/admin/providers", params={"check": "1"}, headers=auth)).json()
    assert {p["name"]: p["currency_read"] for p in providers} == {"echomark": "USD", "korean": "KRW"}
    report = (await http.get("/admin/report", params={"since": "1d", "by": "client"}, headers=auth)).json()
    assert report["total"]["revenue"] == "0.67" and report["lines"][0]["key"] == "acme"
    assert (await http.get("/admin/report", params={"by": "color"}, headers=auth)).status_code == 400
    assert (await http.post("/admin/clients/acme/disable", headers=auth)).json()["disabled"] is True
    audit = (await http.get("/admin/audit", headers=auth)).json()
    assert [(a["actor"], a["action"]) for a in audit][:4] == [
        ("admin:backoffice", "client.disable"),
        ("admin:backoffice", "order.ack"),
        ("admin:backoffice", "order.refund"),
        ("admin:backoffice", "order.resolve"),
    ]
    assert (await http.post("/admin/clients", content=b"[1]", headers=auth)).status_code == 400
    assert await router.runtime.ledger.balance("acme") == Decimal("25") - Decimal("1.17") + Decimal("0.5")


async def test_report_answers_what_each_provider_made_this_week(make_router):
    router = await routed(make_router, status_ttl=1)
    key = await router.client(balance="100")
    for i, service in enumerate((1, 1, 2101)):
        await router.call(key, action="add", service=service, link=f"{LINK}{i}", quantity=1000)
    router.clock.advance(30)
    await router.call(key, action="status", orders="1,2,3")
    data = await router.runtime.operators.report(router.clock() - 7 * 86400, "provider")
    lines = {line.key: line for line in data.lines}
    assert set(lines) == {"echomark", "korean"} and lines["echomark"].orders == 2
    for line in lines.values():
        assert Decimal(line.margin) == Decimal(line.revenue) - Decimal(line.cost)
        assert Decimal(line.margin) >= 0
    assert Decimal(data.total.revenue) == Decimal(100) - await router.runtime.ledger.balance("alice")


# deploy/


def test_compose_brings_up_durable_redis_two_replicas_a_worker_and_tls():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--appendfsync everysec" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert "redis-data:/data" in services["redis"]["volumes"] and "redis-data" in compose["volumes"]
    assert services["router"]["deploy"]["replicas"] == 2
    assert services["router"]["command"] == ["serve", "--no-background"]
    assert services["worker"]["command"] == ["worker"]
    assert "443:443" in services["caddy"]["ports"]
    assert "redis://redis:6379/0" == services["router"]["environment"]["SMM_PROXY_REDIS_URL"]
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy" in caddyfile and "health_uri /readyz" in caddyfile and "replace key REDACTED" in caddyfile
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        checked = subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "deploy" / "compose.yaml"), "config", "-q"],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr


def test_the_image_is_multi_stage_non_root_with_a_healthcheck():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) == 2
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M) and "HEALTHCHECK" in dockerfile
    assert "/healthz" in dockerfile


@pytest.mark.parametrize("unit", ["smm-proxy.service", "smm-proxy-worker.service"])
def test_systemd_units_restart(unit):
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read(ROOT / "deploy" / "systemd" / unit)
    assert parsed["Service"]["Restart"] in ("on-failure", "always")
    assert parsed["Service"]["User"] == "smm-proxy" and "smm-proxy" in parsed["Service"]["ExecStart"]
