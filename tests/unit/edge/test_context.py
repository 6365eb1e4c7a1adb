"""Per request (proxy/edge/context.py): an ID, and one access line without the query."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from proxy import logs
from proxy.edge.context import RequestContext, request_id


@pytest.mark.parametrize("given", [b"abc-123", b"a.b:c_d", b"x" * 42, b"0f8fad5b-d9cb-469f-a165-70867728950e"])
def test_a_sane_request_id_is_kept(given):
    assert request_id(given) == given.decode()


@pytest.mark.parametrize("given", [None, b"", b"x" * 65, b"has space", b"new\nline", b"caf\xe9"])
def test_any_other_gets_a_new_one(given):
    made = request_id(given)
    assert len(made) == 16 and made != request_id(given)


async def test_every_reply_carries_its_id_and_the_access_line_no_query():
    async def endpoint(request):
        logs.bind(client="alice")
        return JSONResponse({"ok": True})

    app = RequestContext(Starlette(routes=[Route("/api/v2", endpoint)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        with logs.captured("info", secrets=["supersecretkey"]) as lines:
            given = await http.get("/api/v2?key=supersecretkey&action=balance", headers={"X-Request-ID": "req-1"})
            made = await http.get("/api/v2")
    assert given.headers["x-request-id"] == "req-1" and len(made.headers["x-request-id"]) == 16
    access = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(a["event"], a["status"], a["request_id"]) for a in access] == [
        ("GET /api/v2 200", 200, "req-1"),
        ("GET /api/v2 200", 200, made.headers["x-request-id"]),
    ]
    assert access[0]["client"] == "alice" and "supersecretkey" not in lines.getvalue()
    assert "key=" not in lines.getvalue()


@pytest.mark.parametrize("given", [b"0123456789abcdef0123456789abcdef", b"key=abc", b"token=1"])
def test_a_given_id_a_log_line_would_scrub_is_replaced(given):
    """It is logged as it is: what holds a key (or looks like one) is not kept."""
    assert request_id(given) != given.decode()


def test_made_ids_come_from_a_counter_under_one_process_prefix():
    made = [request_id(None) for _ in range(10_000)]
    assert len(set(made)) == 10_000
    assert len({m[:8] for m in made}) == 1 and all(len(m) == 16 for m in made)
    assert int(made[-1][8:], 16) - int(made[0][8:], 16) == 9_999


@pytest.mark.parametrize(
    "given",
    [
        b"x_0123456789abcdef0123456789abcdef",  # an API key beside other characters
        b"0123456789abcdef0123456789abcdef0",
        b"In1nC-g8J_ZKDb5UWp3N8e-dkIgq4esgu49OeB-nc-8",  # shaped like an admin API token
        b"x" * 64,
    ],
)
def test_an_id_that_may_be_a_key_or_a_token_is_not_logged_but_replaced(given):
    made = request_id(given)
    assert len(made) == 16 and given.decode() not in made
