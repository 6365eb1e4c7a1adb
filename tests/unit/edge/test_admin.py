"""The admin API (proxy/edge/admin.py) alone: its routes over the operators,
in process, without the router's API or any panel. Tokens, the bodies and
numbers it accepts, and which refusal is which status."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from proxy.edge import admin


@pytest.fixture
async def api(runtime):
    app = Starlette(routes=admin.routes(runtime.operators))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as client:
        yield client


@pytest.fixture
async def auth(runtime) -> dict[str, str]:
    added = await runtime.operators.add_admin("cli", "backoffice")
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
        (b"{" + b'"pad": "' + b"x" * (64 * 1024) + b'"}', "Request too large"),
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
        ("/admin/orders?limit=ten", "limit must be a whole number"),
        ("/admin/audit?limit=1.5", "limit must be a whole number"),
        ("/admin/report?by=colour", "by must be one of provider, service, client"),
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
    assert topup.status_code == 409
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
    assert response.status_code == 409  # "yes" is not true: no verdict given


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
