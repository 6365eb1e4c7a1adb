"""The downstream API v2 edge: services, balance, keys and request shapes."""

import json

from faults import FaultPlan

SEED_SERVICE_KEYS = ["service", "name", "type", "category", "rate", "min", "max", "refill", "cancel"]


async def test_services_are_merged_priced_and_in_the_seed_shape(make_router):
    router = await make_router()
    key = await router.client()
    services = await router.call(key, action="services")
    by_id = {s["service"]: s for s in services}
    assert all(list(s) == SEED_SERVICE_KEYS for s in services)
    # Local service 1: primary route echomark 1 at 0.90 USD, +30 %.
    assert by_id[1] == {
        "service": 1,
        "name": "Followers",
        "type": "Default",
        "category": "Instagram Followers",
        "rate": "1.17",
        "min": "50",
        "max": "10000",
        "refill": True,
        "cancel": True,
    }
    # Local service 2: primary route korean 102 at 180 KRW = 0.13043.. USD, +30 %, rounded up.
    assert by_id[2]["rate"] == "0.1696"
    # Imported Korean services at offset 2000 with their own markup: 1250 KRW +35 %.
    assert by_id[2101]["rate"] == "1.2229"
    assert by_id[2101]["name"] == "인스타그램 팔로워 [30일 리필]"
    assert {2101, 2102, 2108} <= set(by_id)
    assert not any(1 <= s < 1000 and s not in (1, 2) for s in by_id)


async def test_services_never_show_provider_details(make_router):
    router = await make_router()
    key = await router.client()
    text = json.dumps(await router.call(key, action="services"), ensure_ascii=False)
    for secret in ("echomark", "korean", "오토스타그램", "sim-key", "https://"):
        assert secret not in text


async def test_balance_in_the_seed_shape(make_router):
    router = await make_router()
    key = await router.client(balance="100.84292")
    assert await router.call(key, action="balance") == {"balance": "100.84292", "currency": "USD"}


async def test_missing_or_wrong_key_and_unknown_action(make_router):
    router = await make_router()
    key = await router.client()
    assert await router.call(action="balance") == {"error": "Invalid API key"}
    assert await router.call("nope", action="balance") == {"error": "Invalid API key"}
    assert await router.call(key, action="frobnicate") == {"error": "Incorrect request"}
    assert await router.call(key) == {"error": "Incorrect request"}
    await router.runtime.accounts.disable("alice")
    assert await router.call(key, action="balance") == {"error": "Invalid API key"}


async def test_get_json_multipart_and_header_key(make_router):
    router = await make_router()
    key = await router.client(balance="7")
    expected = {"balance": "7.00", "currency": "USD"}
    http = router.http
    assert (await http.get("/api/v2", params={"key": key, "action": "balance"})).json() == expected
    assert (await http.post("/api/v2", json={"key": key, "action": "balance"})).json() == expected
    multipart = await http.post("/api/v2", files={"key": (None, key), "action": (None, "balance")})
    assert multipart.json() == expected
    header = await http.post("/api/v2", data={"action": "balance"}, headers={"X-Api-Key": key})
    assert header.json() == expected
    assert (await http.post("/api/v2/", data={"key": key, "action": "balance"})).json() == expected


async def test_bad_bodies_get_a_clean_error_with_http_200(make_router):
    router = await make_router()
    await router.client()
    http = router.http
    for body, content_type in [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"key": {"nested": 1}}', "application/json"),
        (b"\xff\xfe", "application/json"),
    ]:
        response = await http.post("/api/v2", content=body, headers={"content-type": content_type})
        assert response.status_code == 200
        assert response.json() == {"error": "Incorrect request"}


async def test_unexpected_failure_is_an_error_reply_not_a_500(make_router):
    class BrokenBalance(FaultPlan):  # reading a balance raises what no code expects
        async def before(self, commands, pipeline=False):
            return "bug" if self.armed and ("GET", balance_key) in [tuple(c) for c in commands] else None

    plan = BrokenBalance()
    router = await make_router(redis_plan=plan)
    balance_key = router.runtime.keys.balance("alice")
    key = await router.client()
    plan.armed = True
    response = await router.http.post("/api/v2", data={"key": key, "action": "balance"})
    assert response.status_code == 200
    assert response.json() == {"error": "Internal error, please try again later"}
    assert "injected" not in response.text and "bug" not in response.text


async def test_health(make_router):
    router = await make_router()
    assert (await router.http.get("/healthz")).json() == {"status": "ok"}


async def test_oversized_body_is_refused_with_an_error_reply(make_router):
    router = await make_router()
    key = await router.client()
    big = "x" * (1024 * 1024 + 1)

    async def chunked():  # no Content-Length: the limit must hold while streaming
        for _ in range(3):
            yield big.encode()[: 512 * 1024]

    for send in (
        lambda: router.http.post("/api/v2", data={"key": key, "action": "balance", "pad": big}),
        lambda: router.http.post("/api/v2", json={"key": key, "action": "balance", "pad": big}),
        lambda: router.http.post(
            "/api/v2", content=chunked(), headers={"content-type": "application/x-www-form-urlencoded"}
        ),
    ):
        response = await send()
        assert response.status_code == 200
        assert response.json() == {"error": "Request too large"}
