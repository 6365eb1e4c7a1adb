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


@pytest.mark.parametrize("path", ["/api/v2", "/api/v2/", "/healthz", "/nowhere"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
async def test_a_request_id_sent_twice_is_the_last_one_on_every_path(make_router, path, method):
    """The last X-Request-ID is the request's (the hop nearest the router sent it),
    in the reply and in the access line alike, whichever app answers."""
    router = await make_router()
    with logs.captured("info") as lines:
        reply = await router.http.request(
            method, path, headers=[("X-Request-ID", "from-client"), ("X-Request-ID", "from-proxy")]
        )
    assert reply.headers.get_list("x-request-id") == ["from-proxy"]
    (access,) = [json.loads(line) for line in lines.getvalue().splitlines() if '"proxy.access"' in line]
    assert access["request_id"] == "from-proxy"


async def test_readyz_follows_redis_within_a_second(make_router, redis_url, caplog):
    async with RedisProxy(redis_url) as proxy:
        router = await make_router(url=proxy.url)
        token = (await router.runtime.operators.add_admin("cli", "monitor", "read")).token
        assert (await router.http.get("/healthz")).json() == {"status": "ok"}
        ready = await router.http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}  # no provider named
        details = await router.http.get("/admin/ready", headers={"Authorization": f"Bearer {token}"})
        assert details.json()["routable_providers"] == ["echomark", "korean"]
        await proxy.stop()
        started = asyncio.get_running_loop().time()
        down = await router.http.get("/readyz")
        assert down.status_code == 503 and down.json() == {"status": "not ready"}
        assert asyncio.get_running_loop().time() - started < 1.0
        assert (await router.http.get("/healthz")).status_code == 200  # alive all the same
        await proxy.start()
        assert (await router.http.get("/readyz")).status_code == 200
    assert not [r for r in caplog.records if (r.levelno >= logging.ERROR or r.exc_info) and not _collected(r)]


def _collected(record: logging.LogRecord) -> bool:
    """A client another test left open, reported when the garbage collector
    happens to take it during this one ("Unclosed RedisCluster client"): not this test's."""
    return record.name == "asyncio" and record.getMessage().startswith("Unclosed")


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
    router = await routed(make_router, metrics_token="scrape-token-1")
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    scraped = await router.http.get("/metrics", headers={"Authorization": "Bearer scrape-token-1"})
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
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


@pytest.mark.parametrize("token", [None, "", "   "])
async def test_metrics_are_closed_on_the_public_port_unless_a_token_is_set(make_router, token):
    settings = {} if token is None else {"metrics_token": token}  # an empty SMM_PROXY_METRICS_TOKEN= is unset
    router = await make_router(**settings)
    assert router.runtime.settings.metrics_token is None
    response = await router.http.get("/metrics")
    assert response.status_code == 404 and "smm_proxy" not in response.text


async def test_metrics_with_a_token_answer_only_those_that_carry_it(make_router):
    router = await make_router(metrics_token="scrape-me")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic c2NyYXBlLW1l"}):
        response = await router.http.get("/metrics", headers=headers)
        assert response.status_code == 401 and "smm_proxy" not in response.text
    assert (await router.http.get("/metrics", headers={"Authorization": "Bearer scrape-me"})).status_code == 200


async def test_the_metrics_listener_of_its_own_answers_metrics_alone(make_router):
    import httpx

    from proxy.edge.app import metrics_socket, serving_metrics

    router = await make_router()
    sock = metrics_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    async with serving_metrics(router.runtime, sock):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            scraped = await http.get("/metrics")
            assert scraped.status_code == 200 and "smm_proxy_orders_unknown" in scraped.text
            for path in ("/admin/clients", "/api/v2", "/readyz", "/metrics/"):
                response = await http.get(path)
                assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    sock.close()


async def test_the_worker_logs_its_rounds_and_measures_them(make_router, caplog):
    router = await make_router()
    caplog.set_level(logging.INFO, logger="proxy.ops.sync")
    async with router.runtime.sync.background(0.01):
        for _ in range(100):
            if await metric(router, "smm_proxy_sync_rounds_total"):
                break
            await asyncio.sleep(0.01)
    assert await metric(router, "smm_proxy_sync_rounds_total") >= 1
    assert await metric(router, "smm_proxy_sync_step_seconds_count", step="recover") >= 1
    assert await metric(router, "smm_proxy_sync_last_round_timestamp_seconds") > 0
    rounds = [r for r in caplog.records if r.getMessage().startswith("background round 1:")]
    assert rounds and "recover 0" in rounds[0].getMessage() and rounds[0].levelno == logging.INFO


async def test_admin_api_operator_lines_carry_the_order(make_router):
    router = await routed(make_router)
    key = await router.client(balance="10")
    fault(router.panels["echomark"], "html")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    token = (await router.runtime.operators.add_admin("cli", "desk", "operator")).token
    with logs.captured("info") as buffer:
        response = await router.http.post(
            "/admin/orders/1/resolve",
            json={"failed": True, "reason": "not at the provider"},
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-77"},
        )
    assert response.status_code == 200
    [line] = [json.loads(text) for text in buffer.getvalue().splitlines() if '"operator admin:desk' in text]
    assert (line["order"], line["action"], line["actor"], line["request_id"]) == (
        1,
        "order.resolve",
        "admin:desk",
        "req-77",
    )
    [entry, *_] = await router.runtime.operators.audit_log()
    assert (entry.request_id, entry.reason, entry.seq) == ("req-77", "not at the provider", line["audit_seq"])


async def test_the_admin_api_does_what_the_cli_does_and_audits_it(make_router):
    router = await routed(make_router, status_ttl=1)
    ops = router.runtime.operators
    token = (await ops.add_admin("cli", "backoffice", "owner")).token
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
    assert (await http.get("/admin/providers", params={"check": "1"}, headers=auth)).status_code == 400
    providers = (await http.post("/admin/providers/check", headers=auth)).json()
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
    assert "--requirepass ${REDIS_PASSWORD:?" in redis_command  # no Redis without its password
    assert "redis-data:/data" in services["redis"]["volumes"] and "redis-data" in compose["volumes"]
    replicas = [name for name in services if name.startswith("router-")]
    assert replicas == ["router-1", "router-2"]
    for name in replicas:
        assert services[name]["command"] == ["serve", "--no-background"]
    assert services["worker"]["command"] == ["worker"]
    assert "443:443" in services["caddy"]["ports"]
    for name in (*replicas, "worker"):
        environment = services[name]["environment"]
        assert environment["SMM_PROXY_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
        # The archive is absolute and on a volume every container shares.
        assert environment["SMM_PROXY_ARCHIVE_DIR"] == "/var/lib/smm-proxy/archive"
        assert "archive:/var/lib/smm-proxy/archive" in services[name]["volumes"]
        assert "ports" not in services[name]  # nothing but Caddy is published
    assert "archive" in compose["volumes"]
    assert "python" in " ".join(services["worker"]["healthcheck"]["test"])  # a check that runs: its metrics
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        checked = subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "deploy" / "compose.yaml"), "config", "-q"],
            capture_output=True,
            text=True,
            env={"REDIS_PASSWORD": "x", "PATH": "/usr/bin:/bin"},
        )
        assert checked.returncode == 0, checked.stderr


def test_every_container_is_hardened_and_rotates_its_logs():
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["logging"]["options"]["max-size"] and service["logging"]["options"]["max-file"], name
    assert services["caddy"]["cap_add"] == ["NET_BIND_SERVICE"]
    assert services["redis"]["user"] == "999:999"


def test_caddy_checks_readiness_of_named_upstreams_and_never_proxies_metrics():
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert not re.search(r"^\s*dynamic ", caddyfile, re.M)  # Caddy runs active health checks only for static upstreams
    assert re.search(r"^\s*to router-1:8080 router-2:8080$", caddyfile, re.M)
    assert "health_uri /readyz" in caddyfile and "replace key REDACTED" in caddyfile
    assert re.search(r"handle /metrics\*\s*\{\s*respond [^\n]* 404", caddyfile)
    env = (ROOT / "deploy" / "env.example").read_text()
    assert re.search(r"^REDIS_PASSWORD=$", env, re.M) and re.search(r"^SMM_PROXY_AUDIT_SECRET=$", env, re.M)
    assert not re.search(r"^SMM_PROXY_METRICS_TOKEN=", env, re.M)  # commented out: an empty one is unset anyway
    if shutil.which("caddy"):
        checked = subprocess.run(
            ["caddy", "adapt", "--config", str(ROOT / "deploy" / "Caddyfile"), "--adapter", "caddyfile"],
            capture_output=True,
            text=True,
            env={"SMM_PROXY_DOMAIN": "api.example.com", "PATH": "/usr/bin:/bin"},
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


@pytest.mark.parametrize("unit", ["smm-proxy.service", "smm-proxy-worker.service"])
def test_systemd_units_write_only_their_state_directory_and_hold_no_capabilities(unit):
    text = (ROOT / "deploy" / "systemd" / unit).read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    # ProtectSystem=strict makes / read-only: the archive must live where the unit may write.
    assert settings["ProtectSystem"] == "strict" and settings["StateDirectory"] == "smm-proxy"
    assert settings["WorkingDirectory"] == "/var/lib/smm-proxy"
    assert "Environment=SMM_PROXY_ARCHIVE_DIR=/var/lib/smm-proxy/archive" in text
    assert settings["CapabilityBoundingSet"] == "" and settings["NoNewPrivileges"] == "yes"
    assert re.search(r"^Environment=SMM_PROXY_METRICS_PORT=\d+$", text, re.M)
