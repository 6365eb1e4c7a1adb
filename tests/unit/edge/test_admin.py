"""The admin API (proxy/edge/admin.py) alone: its routes over the operators,
in process, without the router's API or any panel. Tokens, the bodies and
numbers it accepts, and which refusal is which status."""

from __future__ import annotations

import hashlib
import logging

import httpx
import pytest
from faults import FaultPlan, FaultyRedis
from starlette.applications import Starlette
from support import router_config

from proxy.config import parse_config
from proxy.edge import admin
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.store import connect


@pytest.fixture
async def api(runtime):
    app = Starlette(routes=admin.routes(runtime.operators))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as client:
        yield client


@pytest.fixture
async def auth(runtime) -> dict[str, str]:
    added = await runtime.operators.add_admin("cli", "backoffice", "owner")
    return {"Authorization": f"Bearer {added.token}"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}],
)
async def test_without_a_token_of_ours_nothing_is_answered(api, auth, headers):
    for method, path in [("GET", "/admin/clients"), ("POST", "/admin/clients"), ("GET", "/admin/audit")]:
        response = await api.request(method, path, headers=headers)
        assert (response.status_code, response.json()) == (401, {"error": "Unauthorized"})


async def test_changes_are_audited_under_the_admins_name(api, auth, runtime):
    token = auth["Authorization"].split()[1]
    response = await api.post(
        "/admin/clients", json={"name": "acme", "balance": 5}, headers={"Authorization": f"bearer  {token}"}
    )
    assert response.status_code == 200 and response.json()["balance"] == "5.00"
    [entry, *_] = await runtime.operators.audit_log()
    assert (entry.actor, entry.action, entry.target) == ("admin:backoffice", "client.create", "acme")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not json", "the body must be a JSON object"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'"acme"', "the body must be a JSON object"),
        (b"\xff\xfe", "the body must be a JSON object"),
        (b'{"name": {"nested": 1}}', "values must be text, numbers or booleans"),
        (b'{"name": ["a"]}', "values must be text, numbers or booleans"),
        (b'{"name": "a\\u0000b"}', None),  # refused by the input boundary's own words
        (b'{"name": "acme", "balance": NaN}', "values must be text, numbers or booleans"),
    ],
)
async def test_a_body_that_is_not_a_small_flat_json_object_is_a_400(api, auth, runtime, content, message):
    response = await api.post("/admin/clients", content=content, headers={**auth, "content-type": "application/json"})
    assert response.status_code == 400
    if message is not None:
        assert response.json() == {"error": message}
    assert await runtime.operators.clients() == []


async def test_an_empty_body_is_an_empty_object(api, auth):
    response = await api.post("/admin/clients", headers=auth)
    assert (response.status_code, response.json()) == (400, {"error": "name is required"})


@pytest.mark.parametrize(
    "path, message",
    [
        ("/admin/orders/abc", "id must be a whole number"),
        ("/admin/orders/-1", "id must be a whole number"),
        ("/admin/orders/١٢", "id must be a whole number"),  # digits, but not ASCII ones
        ("/admin/orders/" + "9" * 19, "id must be a whole number"),
        ("/admin/orders?limit=ten", "limit must be a whole number from 1 to 1000, not 'ten'"),
        ("/admin/audit?limit=1.5", "limit must be a whole number from 1 to 1000, not '1.5'"),
        ("/admin/orders?limit=0", "limit must be a whole number from 1 to 1000, not '0'"),
        ("/admin/orders?limit=-1", "limit must be a whole number from 1 to 1000, not '-1'"),
        ("/admin/orders?limit=1e999999", "limit must be a whole number from 1 to 1000, not '1e999999'"),
        ("/admin/clients/acme/ledger?limit=0", "limit must be a whole number from 1 to 1000, not '0'"),
        ("/admin/orders?state=bogus", None),
        ("/admin/orders?since=10000000d", None),
        ("/admin/report?since=10000000d", None),
        ("/admin/orders?upstream_order=-5", "upstream_order must be a whole number"),
        ("/admin/report?by=colour", "by must be one of provider, service, client, day"),
        ("/admin/report?since=last+week", None),
    ],
)
async def test_numbers_and_choices_are_checked(api, auth, path, message):
    response = await api.get(path, headers=auth)
    assert response.status_code == 400
    if message is not None:
        assert response.json() == {"error": message}


async def test_not_found_is_404_and_a_refused_action_409(api, auth):
    assert (await api.get("/admin/orders/42", headers=auth)).status_code == 404
    assert (await api.post("/admin/clients/nobody/disable", headers=auth)).status_code == 404
    await api.post("/admin/clients", json={"name": "acme"}, headers=auth)
    again = await api.post("/admin/clients", json={"name": "acme"}, headers=auth)
    assert (again.status_code, again.json()) == (409, {"error": "client 'acme' exists already"})
    topup = await api.post("/admin/clients/acme/topup", json={"amount": "-1"}, headers=auth)
    assert (topup.status_code, topup.json()) == (400, {"error": "a top-up must be a positive amount"})
    missing = await api.post("/admin/clients/acme/topup", json={}, headers=auth)
    assert (missing.status_code, missing.json()) == (400, {"error": "amount is required"})


async def test_reads_take_their_options_from_the_query(api, auth, runtime):
    for name in ("a1", "b2", "c3"):
        await runtime.operators.create_client("cli", name)
    assert [c["name"] for c in (await api.get("/admin/clients", headers=auth)).json()] == ["a1", "b2", "c3"]
    await runtime.operators.topup("cli", "a1", "5")
    ledger = (await api.get("/admin/clients/a1/ledger?limit=1", headers=auth)).json()
    assert [e["kind"] for e in ledger] == ["topup"]
    assert len((await api.get("/admin/audit?limit=2", headers=auth)).json()) == 2
    assert (await api.get("/admin/orders?state=&client=&limit=5", headers=auth)).json() == []
    assert (await api.get("/admin/report?since=7d&by=client", headers=auth)).json()["by"] == "client"
    assert [p["name"] for p in (await api.get("/admin/providers", headers=auth)).json()] == ["echomark", "korean"]


async def test_a_resolve_takes_an_upstream_id_or_failed_true_only(api, auth):
    response = await api.post("/admin/orders/1/resolve", json={"upstream_order": "x1"}, headers=auth)
    assert (response.status_code, response.json()) == (400, {"error": "upstream_order must be a whole number"})
    response = await api.post("/admin/orders/1/resolve", json={"failed": "yes"}, headers=auth)
    assert response.status_code == 400  # "yes" is not true: no verdict given


# -- roles, tokens, methods, bodies, outages ----------------------------------------------


async def token(runtime, name: str, role: str, expires: str | None = None) -> dict[str, str]:
    made = await runtime.operators.add_admin("cli", name, role, expires)
    return {"Authorization": f"Bearer {made.token}"}


CHANGES = [
    ("/admin/clients", {"name": "mallory", "balance": "5"}),
    ("/admin/clients/acme/topup", {"amount": "5"}),
    ("/admin/clients/acme/adjust", {"amount": "5", "reason": "x"}),
    ("/admin/clients/acme/disable", {}),
    ("/admin/clients/acme/enable", {}),
    ("/admin/clients/acme/rotate-key", {}),
    ("/admin/clients/acme/terms", {"markup": "0"}),
    ("/admin/clients/acme/rates", {"service": 1, "rate": "9"}),
    ("/admin/orders/1/resolve", {"failed": True}),
    ("/admin/orders/1/refund", {"total": "0"}),
    ("/admin/orders/1/ack", {}),
    ("/admin/providers/check", {}),
    ("/admin/admins", {"name": "eve", "role": "owner"}),
    ("/admin/admins/backoffice/remove", {}),
]


async def snapshot(runtime) -> tuple:
    return (
        await runtime.operators.clients(),
        await runtime.ledger.entries("acme"),
        [a.name for a in await runtime.admins.all()],
        [e.seq for e in await runtime.operators.audit_log()],
    )


async def test_a_read_token_reads_and_gets_403_on_every_change_which_changes_nothing(api, auth, runtime):
    await runtime.operators.create_client("cli", "acme", "10")
    reader = await token(runtime, "monitor", "read")
    for path in ("/admin/clients", "/admin/orders", "/admin/audit", "/admin/audit/verify", "/admin/report"):
        assert (await api.get(path, headers=reader)).status_code == 200, path
    assert (await api.get("/admin/admins", headers=reader)).status_code == 403  # who holds tokens: the owner's
    before = await snapshot(runtime)
    for path, body in CHANGES:
        response = await api.post(path, json=body, headers=reader)
        assert response.status_code == 403 and response.json()["error"].startswith("Forbidden"), path
    assert await snapshot(runtime) == before


async def test_an_operator_moves_money_and_settles_orders_but_makes_no_clients_keys_or_admins(api, runtime):
    await runtime.operators.create_client("cli", "acme", "10")
    operator = await token(runtime, "desk", "operator")
    adjusted = await api.post("/admin/clients/acme/adjust", json={"amount": "-4", "reason": "typo"}, headers=operator)
    assert adjusted.status_code == 200 and adjusted.json()["balance"] == "6.00"
    assert adjusted.json()["actor"] == "admin:desk"
    for path, body in [CHANGES[0], CHANGES[5], CHANGES[12], CHANGES[13]]:
        assert (await api.post(path, json=body, headers=operator)).status_code == 403, path
    [entry, *_] = await runtime.operators.audit_log()
    assert (entry.actor, entry.role, entry.action, entry.reason) == ("admin:desk", "operator", "client.adjust", "typo")
    assert entry.source == "127.0.0.1" and entry.request_id == ""


async def test_an_expired_token_opens_nothing(api, runtime, clock):
    expiring = await token(runtime, "temp", "owner", "1h")
    assert (await api.get("/admin/clients", headers=expiring)).status_code == 200
    clock.advance(3600)
    response = await api.get("/admin/clients", headers=expiring)
    assert (response.status_code, response.json()) == (401, {"error": "Unauthorized: this token has expired"})


async def test_a_token_hash_written_straight_into_redis_opens_nothing(api, auth, runtime):
    forged = "x" * 43
    await runtime.redis.hset(runtime.keys.admin_tokens, hashlib.sha256(forged.encode()).hexdigest(), "backoffice")
    assert (await api.get("/admin/clients", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
    listed = (await api.get("/admin/admins", headers=auth)).json()
    assert [(a["name"], a["registered"]) for a in listed] == [("backoffice", True), ("backoffice", False)]


async def test_last_use_is_written_at_most_once_a_minute(api, auth, runtime):
    for _ in range(5):
        assert (await api.get("/admin/clients", headers=auth)).status_code == 200
    [admin] = await runtime.operators.admins()
    assert admin.last_used != ""
    await runtime.redis.hdel(runtime.keys.admins_used, "backoffice")
    for _ in range(5):
        await api.get("/admin/clients", headers=auth)
    assert (await runtime.operators.admins())[0].last_used == ""  # within the minute: not written again


@pytest.mark.parametrize("method", ["HEAD", "GET"])
async def test_head_and_get_never_change_anything_on_any_route(api, auth, runtime, method):
    await runtime.operators.create_client("cli", "acme", "10")
    before = await snapshot(runtime)
    for path, body in CHANGES:
        if path in ("/admin/clients", "/admin/admins"):
            continue  # a read lives there too (below)
        response = await api.request(method, path, json=body, headers=auth)
        assert response.status_code == 405, (method, path)
    response = await api.request(method, "/admin/clients", json={"name": "mallory", "balance": "5"}, headers=auth)
    assert response.status_code == 200  # a read, whatever body it carries
    assert await snapshot(runtime) == before


async def test_a_huge_body_is_refused_once_it_passes_the_limit_without_being_read_whole(api, auth, runtime):
    sent = 0

    async def hundred_megabytes():
        nonlocal sent
        chunk = b"x" * 65536
        for _ in range(1600):
            sent += len(chunk)
            yield chunk

    response = await api.post("/admin/clients", content=hundred_megabytes(), headers=auth)
    assert (response.status_code, response.json()) == (413, {"error": "Request too large"})
    assert sent <= 3 * 65536  # read up to the limit, not 100 MB
    declared = await api.post("/admin/clients", content=b"{}", headers={**auth, "content-length": str(10**8)})
    assert declared.status_code == 413
    assert await runtime.operators.clients() == []


async def test_with_redis_down_the_admin_api_answers_json_503_and_warns_once(redis_url, key_prefix, clock, caplog):
    plan = FaultPlan()
    redis = FaultyRedis.with_plan(connect(redis_url).connection_pool, plan)
    runtime = Runtime(Settings(key_prefix=key_prefix), parse_config(router_config(), {}), redis, clock=clock)
    made = await runtime.operators.add_admin("cli", "backoffice", "owner")
    app = Starlette(routes=admin.routes(runtime.operators))

    class Down(FaultPlan):
        async def before(self, commands, pipeline=False):
            return "error"

    runtime.redis.plan = Down(armed=True)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as client:
            for headers in ({"Authorization": f"Bearer {made.token}"}, {"Authorization": "Bearer wrong"}, {}):
                for path in ("/admin/clients", "/admin/orders"):
                    response = await client.get(path, headers=headers)
                    if headers:
                        assert (response.status_code, response.json()) == (503, {"error": admin.UNAVAILABLE})
                    else:
                        assert response.status_code == 401  # no token: nothing to look up
    finally:
        runtime.redis.plan = plan
        await runtime.aclose()
    warnings = [r for r in caplog.records if r.name == "proxy.edge.admin"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING and not warnings[0].exc_info


AMOUNTS = ["1e999999", "-1e999999", "0", "", "NaN", "Infinity", "9" * 5000, "1.00000001", "abc", "1,5"]
# Each field of each change, with values it must refuse (a 4xx, nothing changed).
HOSTILE = [
    *[("/admin/clients/acme/adjust", {"reason": "x"}, "amount", v) for v in AMOUNTS],
    *[("/admin/clients/acme/adjust", {"amount": "1"}, "reason", v) for v in ["", "x" * 1001, "a\nb"]],
    *[("/admin/clients/acme/adjust", {"amount": "1", "reason": "x"}, "ref", v) for v in ["x" * 201, " pad"]],
    *[("/admin/clients/acme/topup", {}, "amount", v) for v in [*AMOUNTS, "-1"]],
    *[("/admin/clients/acme/terms", {}, "markup", v) for v in ["-1", "1e999999", "NaN", "", "1001", "1.00001"]],
    *[("/admin/clients/acme/terms", {}, "duplicate_window", v) for v in ["-1", "1e999999", "NaN", "", "604801"]],
    *[("/admin/clients/acme/terms", {}, "same_link", v) for v in ["", "maybe", "REFUSE"]],
    *[("/admin/clients/acme/rates", {"rate": "5"}, "service", v) for v in ["-1", "0", "", "1e999999", "9" * 30]],
    *[("/admin/clients/acme/rates", {"service": 1}, "rate", v) for v in AMOUNTS],
    *[("/admin/admins", {"name": "x", "role": "read"}, "expires", v) for v in ["0d", "-1d", "", "1e999999d", "3651d"]],
    *[("/admin/admins", {"name": "x"}, "role", v) for v in ["", "root", "OWNER"]],
    *[("/admin/admins", {"role": "read"}, "name", v) for v in ["", "-x", "a b", "x" * 65]],
    *[("/admin/clients", {"name": "new"}, "balance", v) for v in ["-1", "1e999999", "NaN", ""]],
    *[("/admin/orders/1/refund", {}, "total", v) for v in AMOUNTS],
]


@pytest.mark.parametrize("path, body, field, value", HOSTILE)
async def test_hostile_values_are_a_4xx_and_change_nothing(api, auth, runtime, path, body, field, value):
    await runtime.operators.create_client("cli", "acme", "10")
    before = await snapshot(runtime)
    response = await api.post(path, json={**body, field: value}, headers=auth)
    assert 400 <= response.status_code < 500 and set(response.json()) == {"error"}, response.text
    assert await snapshot(runtime) == before


@pytest.mark.parametrize("value", ["1e999999", "-1", "0", "", "NaN", "x" * 5000])
async def test_hostile_queries_are_a_400_or_an_answer_never_a_500(api, auth, runtime, value):
    for query in ("limit", "upstream_order", "since", "until", "state", "link", "client"):
        response = await api.get("/admin/orders", params={query: value}, headers=auth)
        assert response.status_code in (200, 400), (query, response.text)
    for path in ("/admin/audit", "/admin/clients/acme/ledger"):
        response = await api.get(path, params={"limit": value}, headers=auth)
        assert response.status_code in (200, 400, 404), (path, response.text)


async def test_an_approval_names_services_as_a_list_in_text_a_number_or_none(api, auth, runtime, panels, clock):
    await runtime.listings.refresh("echomark")
    same = {"name": "F", "type": "Default", "category": "C", "min": "10", "max": "10000"}
    panels["echomark"].on("services", [{**same, "service": 1, "rate": "2.00"}, {**same, "service": 3, "rate": "0.90"}])
    clock.advance(301)
    await runtime.listings.refresh("echomark")  # both held: +122 % and +80 %
    path = "/admin/providers/echomark/approve"
    bad = await api.post(path, json={"services": "1, x"}, headers=auth)
    assert (bad.status_code, bad.json()) == (400, {"error": "services must be a whole number"})
    assert (await api.post(path, json={"services": "7"}, headers=auth)).status_code == 409
    assert (await api.post("/admin/providers/nobody/approve", headers=auth)).status_code == 404
    one = await api.post(path, json={"services": 3}, headers=auth)
    assert [a["service"] for a in one.json()["approved"]] == [3]
    rest = await api.post(path, headers=auth)  # none named: every held one
    assert rest.json() == {"provider": "echomark", "approved": [{"service": 1, "from": "0.90", "to": "2.00"}]}


@pytest.mark.parametrize(
    "query, message",
    [
        ("limit=x", "limit must be a whole number"),
        ("limit=0", "limit must be between 1 and 10000"),
        ("since=soon", None),
    ],
)
async def test_events_take_their_options_from_the_query(api, auth, runtime, query, message):
    response = await api.get(f"/admin/events?{query}", headers=auth)
    assert response.status_code == 400
    if message is not None:
        assert response.json() == {"error": message}


async def test_events_answer_newest_first(api, auth, runtime):
    await runtime.events.emit("provider.ejected", "echomark", "ejected")
    await runtime.events.emit("price.held", "korean", "held")
    kinds = [e["kind"] for e in (await api.get("/admin/events?since=1h&kind=p", headers=auth)).json()]
    assert kinds == ["price.held", "provider.ejected"]


async def test_a_reload_refused_is_a_400_with_its_problems(api, auth):
    response = await api.post("/admin/config/reload", headers=auth)  # the runtime's config file does not exist
    assert response.status_code == 400
    assert response.json()["error"].startswith("config not reloaded, the running one stays: ")
    assert "cannot read the file" in response.json()["error"]


async def test_queues_previews_an_orders_actions_calls_and_reports_by_day(api, auth, runtime):
    from decimal import Decimal

    from support import new_order

    from proxy.orders.states import LOSE, SUBMIT

    await runtime.accounts.create("alice", Decimal("10"))
    book = runtime.book
    lost = await book.apply((await book.reserve(new_order())).order, SUBMIT, {"provider": "echomark"})
    lost = await book.apply(lost, LOSE)
    queues = await api.get("/admin/orders/queues", headers=auth)
    assert queues.json() == {"inflight": 0, "open": 0, "unknown": 1, "attention": 0}
    preview = await api.post(f"/admin/orders/{lost.id}/resolve", json={"failed": True, "dry_run": True}, headers=auth)
    assert preview.status_code == 200
    assert (preview.json()["credit"], preview.json()["balance_after"]) == ("1.17", "10.00")
    audited = [e.action for e in await runtime.operators.audit_log()]
    assert await runtime.ledger.balance("alice") == Decimal("8.83") and audited == ["admin.add"]
    refused = await api.post(f"/admin/orders/{lost.id}/refund", json={"total": "9", "dry_run": True}, headers=auth)
    assert refused.status_code == 409
    done = await api.post(f"/admin/orders/{lost.id}/resolve", json={"failed": True, "reason": "gone"}, headers=auth)
    assert done.json()["refunded"] == "1.17"
    actions = (await api.get(f"/admin/orders/{lost.id}/actions", headers=auth)).json()
    assert [(a["action"], a["reason"]) for a in actions] == [("order.resolve", "gone")]
    calls = (await api.get("/admin/providers/calls", headers=auth)).json()
    assert [c["provider"] for c in calls] == ["echomark", "korean"]
    assert list(calls[0]) == ["provider", "calls", "failures", "failure_pct", "refused", "mean_ms"]
    by_day = (await api.get("/admin/report?since=1d&by=day", headers=auth)).json()
    assert [(line["orders"], line["share_pct"]) for line in by_day["lines"]] == [(1, 100.0)]


async def test_one_client_is_shown_and_an_unknown_one_is_not_found(api, auth, runtime):
    from decimal import Decimal

    await runtime.accounts.create("alice", Decimal("10"))
    shown = await api.get("/admin/clients/alice", headers=auth)
    assert (shown.status_code, shown.json()["balance"], shown.json()["disabled"]) == (200, "10.00", False)
    missing = await api.get("/admin/clients/nobody", headers=auth)
    assert (missing.status_code, missing.json()) == (404, {"error": "no client 'nobody'"})


@pytest.mark.parametrize("flag", ["dry_run", "failed"])
@pytest.mark.parametrize("value", ["true", "yes", 1, 0, "false", ""])
async def test_a_verdict_flag_that_is_not_a_boolean_is_refused_and_nothing_moves(api, auth, runtime, flag, value):
    """`"dry_run": "true"` (a string, a 1) was read as no dry run: the verdict
    was done for real and money moved where a preview was asked for."""
    from decimal import Decimal

    from support import new_order

    from proxy.orders.states import LOSE, SUBMIT

    await runtime.accounts.create("alice", Decimal("10"))
    book = runtime.book
    lost = await book.apply((await book.reserve(new_order())).order, SUBMIT, {"provider": "echomark"})
    lost = await book.apply(lost, LOSE)
    audited = await runtime.operators.audit_log()
    for path, body in (
        ("resolve", {"failed": True, "dry_run": True}),
        ("refund", {"total": "1.17", "dry_run": True}),
        ("close", {"refund": "1.17", "dry_run": True}),
        ("ack", {"dry_run": True}),
    ):
        if flag not in body:
            continue
        answer = await api.post(f"/admin/orders/{lost.id}/{path}", json={**body, flag: value}, headers=auth)
        assert answer.status_code == 400 and f"{flag} is true or false" in answer.json()["error"]
    assert await runtime.ledger.balance("alice") == Decimal("8.83")
    assert (await runtime.book.find(lost.id)).state == "unknown"
    assert await runtime.operators.audit_log() == audited


async def test_the_audit_records_the_address_the_server_believes_not_a_header_sent(api, runtime):
    """X-Forwarded-For is believed by the server only from the proxies
    SMM_PROXY_FORWARDED_ALLOW_IPS names (uvicorn then makes it the client's
    address). Sent by anyone else, it is a claim: an operator could have had
    any address written beside their own in the audit's source."""
    await runtime.operators.create_client("cli", "acme", "10")
    operator = await token(runtime, "desk", "operator")
    claimed = {**operator, "X-Forwarded-For": "203.0.113.66"}
    answer = await api.post("/admin/clients/acme/topup", json={"amount": "1"}, headers=claimed)
    assert answer.status_code == 200
    [entry, *_] = await runtime.operators.audit_log()
    assert entry.action == "client.topup" and entry.source == "127.0.0.1"
