"""The input boundary: every way a hostile client found to break a reply or change state."""

import logging
from decimal import Decimal

import pytest

from proxy.edge.inputs import MAX_FIELDS
from proxy.vocabulary import Errors

LINK = "https://instagram.com/p/abc"


async def digest(router):
    """What a refused request must leave as it was."""
    runtime = router.runtime
    keys = runtime.keys
    return (
        await runtime.ledger.balance("alice"),
        await runtime.redis.xlen(keys.ledger("alice")),
        await runtime.redis.get(keys.order_seq),
        await runtime.redis.get(keys.refill_seq),
        tuple(len(p.orders) for p in router.panels.values()),
    )


async def post(router, content: bytes, content_type: str | None):
    headers = {"content-type": content_type} if content_type else {}
    response = await router.http.post("/api/v2", content=content, headers=headers)
    assert response.status_code == 200
    return response.json()


def multipart(boundary: str, *parts: tuple[bytes, bytes]) -> bytes:
    body = b""
    for disposition, value in parts:
        body += f"--{boundary}\r\n".encode() + b"Content-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


@pytest.fixture
async def world(make_router):
    router = await make_router()
    key = await router.client(balance="10")
    return router, key


async def test_form_parser_errors_are_one_panel_error(world):
    router, key = world
    before = await digest(router)
    urlencoded = f"key={key}&action=balance".encode()
    cases = [
        (urlencoded, "multipart/form-data"),  # no boundary
        (urlencoded, "multipart/form-data; boundary=xyz"),  # not multipart at all
        (multipart("b", (b'form-data; name="key"', key.encode()))[:-10], "multipart/form-data; boundary=b"),  # cut
        (multipart("b", (b"form-data", key.encode())), "multipart/form-data; boundary=b"),  # a part without a name
        (b"&".join(b"f%d=1" % i for i in range(1001)), "application/x-www-form-urlencoded"),
        (b"{not json", "application/json"),
        (b'{"key": "\\ud800", "action": "balance"}', "application/json"),  # a lone surrogate
        (b'{"key": 1e999, "action": "balance"}', "application/json"),
        (b'{"key": NaN}', "application/json"),
        (b'{"key": ' + b"1" * 5000 + b"}", "application/json"),
        (f"key={key}&action=balance\x00".encode(), None),
    ]
    for body, content_type in cases:
        reply = await post(router, body, content_type)
        assert set(reply) == {"error"} and reply["error"] in (
            Errors.INCORRECT_REQUEST,
            f"Too many fields: up to {MAX_FIELDS} in one request",
        ), (body[:60], reply)
    assert await digest(router) == before


async def test_invalid_utf8_is_refused_not_bought(world):
    router, key = world
    before = await digest(router)
    add = f"key={key}&action=add&service=1004&link={LINK}&comments=".encode()
    assert await post(router, add + b"%FF%FE", "application/x-www-form-urlencoded") == {"error": "Incorrect request"}
    assert await post(router, add + b"\xff\xfe", "application/x-www-form-urlencoded") == {"error": "Incorrect request"}
    body = multipart(
        "b",
        (b'form-data; name="key"', key.encode()),
        (b'form-data; name="action"', b"add"),
        (b'form-data; name="service"', b"1"),
        (b'form-data; name="link"', LINK.encode()),
        (b'form-data; name="comments"', b"caf\xe9"),  # Latin-1, not UTF-8
    )
    assert await post(router, body, "multipart/form-data; boundary=b") == {"error": "Incorrect request"}
    response = await router.http.get(f"/api/v2?key={key}&action=balance&x=%C0%AF")
    assert response.json() == {"error": "Incorrect request"}
    assert await digest(router) == before


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "status", "orders": "1,\ud800,3"},
        {"action": "add", "service": "1", "link": LINK, "quantity": "100", "comments": "ok\ud800"},
        {"action": "add", "service": "1", "link": LINK + "\u0007", "quantity": "100"},
        {"action": "add", "service": "1", "link": LINK, "quantity": "100\u202e"},  # validation refuses this one
        {"action": "balance\x1b[2J"},
    ],
)
async def test_text_that_is_not_clean_is_refused(world, fields):
    router, key = world
    before = await digest(router)
    import json

    body = json.dumps({"key": key, **fields}).encode()  # \ud800 travels as an escape
    reply = await post(router, body, "application/json")
    assert set(reply) == {"error"}
    assert await digest(router) == before


async def test_line_breaks_and_tabs_are_kept_in_list_fields_and_text_is_nfc(world):
    router, key = world
    decomposed = "cafe\u0301"  # é as e + combining accent
    lines = [f"comment {i}" for i in range(10)]
    reply = await router.call(
        key, action="add", service=2104, link=LINK, comments="\r\n".join(lines) + f"\r\ntab\there\n{decomposed}"
    )
    order = await router.runtime.book.get("alice", reply["order"])
    assert order.fields["comments"] == "\n".join(lines) + "\ntab\there\ncaf\u00e9"


async def test_a_client_hanging_up_mid_body_is_a_debug_line(world, caplog):
    router, key = world

    async def receive():
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v2",
        "raw_path": b"/api/v2",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("router", 80),
        "client": ("1.2.3.4", 5),
        "root_path": "",
    }
    from proxy.edge.app import create_app

    with caplog.at_level(logging.DEBUG):
        await create_app(router.runtime)(scope, receive, send)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("hung up" in r.getMessage() for r in caplog.records)


async def test_every_path_and_method_answers_json_without_redirects(world):
    router, key = world
    http = router.http
    for method, path, status in [
        ("GET", "/", 404),
        ("GET", "/api/v2//", 404),
        ("POST", "/api/v1", 404),
        ("GET", "/api", 404),
        ("PUT", "/api/v2", 405),
        ("DELETE", "/api/v2/", 405),
        ("GET", "/favicon.ico", 404),
    ]:
        response = await http.request(method, path)
        assert (response.status_code, response.json()) == (status, {"error": "Incorrect request"}), (method, path)
    assert (await http.get("/api/v2/", params={"key": key, "action": "balance"})).json()["currency"] == "USD"


async def test_metrics_can_be_guarded_by_a_bearer_token(make_router):
    router = await make_router(metrics_token="s3cret")
    assert (await router.http.get("/metrics")).status_code == 401
    assert (await router.http.get("/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
    ok = await router.http.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and "smm_proxy_orders_total" in ok.text


async def test_headers_we_read_must_be_plain_ascii(world):
    router, key = world
    reply = await router.http.post(
        "/api/v2", data={"key": key, "action": "balance"}, headers={"Idempotency-Key": "a\tb"}
    )
    assert reply.json() == {"error": "Incorrect request"}
    reply = await router.http.post("/api/v2", data={"action": "balance"}, headers={"X-Api-Key": "k\u00e9y".encode()})
    assert reply.json() == {"error": "Incorrect request"}


# Labels from the config.


async def test_config_can_template_imported_labels(make_router):
    from support import router_config

    raw = router_config(
        imports=[{"provider": "korean", "id_offset": 2000, "name": "{name} #{id}", "category": "Korea"}]
    )
    router = await make_router(raw)
    key = await router.client()
    services = {s["service"]: s for s in await router.call(key, action="services")}
    assert services[2101]["name"] == "인스타그램 팔로워 [30일 리필] #2101"
    assert services[2101]["category"] == "Korea"
    assert await router.runtime.ledger.balance("alice") == Decimal("100")
