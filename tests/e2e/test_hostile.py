"""Hostile clients, generated: no request can break a reply, change state when
refused, or log an error.

Hypothesis builds requests across every action, encoding (url-encoded form,
multipart, JSON, GET query, a raw body under any Content-Type), field and
type: valid-looking values, huge numbers, control characters, lone
surrogates, invalid UTF-8, nested JSON, wrong keys. Each goes to the router's
ASGI app (simulated panels behind it) and after each:

- the reply is HTTP 200 JSON: `{"error": ...}` or a reply of the action's shape;
- no log record at ERROR or above was written;
- a refused request changed nothing: balances, ledger lengths, the order and
  refill sequences, the panels' orders.

CI runs the default profile; the long run is documented in the README:

    .venv/bin/python -m pytest tests/e2e/test_hostile.py --hypothesis-profile=long
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from decimal import Decimal
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from support import FakeClock, router_config

from proxy.config import parse_config
from proxy.edge.app import create_app
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.sim.app import create_app as create_panel_app
from proxy.sim.catalogs import build_panel
from proxy.store import connect

ACTIONS = ["services", "add", "status", "refill", "refill_status", "cancel", "balance"]
FIELDS = [
    "service",
    "link",
    "quantity",
    "runs",
    "interval",
    "comments",
    "usernames",
    "username",
    "hashtags",
    "hashtag",
    "media",
    "answer_number",
    "groups",
    "country",
    "device",
    "type_of_traffic",
    "google_keyword",
    "referring_url",
    "min",
    "max",
    "posts",
    "old_posts",
    "delay",
    "expiry",
    "order",
    "orders",
    "refill",
    "refills",
]
SERVICES = ["1", "2", "1001", "1002", "1003", "1005", "1009", "1010", "2101", "2104", "99999", "0", "-1"]


class World:
    """One router on two simulated panels, on a loop of its own (Hypothesis drives it)."""

    def __init__(self, redis_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.prefix = f"smm-test:{uuid.uuid4().hex[:12]}:"
        self.loop.run_until_complete(self._start(redis_url))

    async def _start(self, redis_url: str) -> None:
        clock = FakeClock()
        self.panels = {
            "echomark": build_panel("echomark", clock=clock, step_seconds=10, first_order_id=5000),
            "korean": build_panel("korean", clock=clock, step_seconds=10, first_order_id=9000, seed=1),
        }
        transports = {name: httpx.ASGITransport(app=create_panel_app(p)) for name, p in self.panels.items()}
        raw = router_config(
            imports=[{"provider": "echomark", "id_offset": 1000}, {"provider": "korean", "id_offset": 2000}]
        )
        self.runtime = Runtime(
            Settings(key_prefix=self.prefix, status_ttl=1),
            parse_config(raw, {}),
            connect(redis_url),
            transports=transports,
            clock=clock,
        )
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.runtime)), base_url="http://r")
        _, self.alice = await self.runtime.accounts.create("alice", Decimal("1000"))
        _, self.bob = await self.runtime.accounts.create("bob", Decimal("5"))
        for i in range(3):  # a few orders of each client to ask about
            for key in (self.alice, self.bob):
                await self.http.post(
                    "/api/v2",
                    data={
                        "key": key,
                        "action": "add",
                        "service": "1",
                        "link": f"https://instagram.com/p/{i}",
                        "quantity": "100",
                    },
                )

    async def digest(self) -> tuple:
        keys, redis = self.runtime.keys, self.runtime.redis
        return (
            await redis.get(keys.balance("alice")),
            await redis.get(keys.balance("bob")),
            await redis.xlen(keys.ledger("alice")),
            await redis.xlen(keys.ledger("bob")),
            await redis.get(keys.order_seq),
            await redis.get(keys.refill_seq),
            tuple(len(p.orders) for p in self.panels.values()),
        )

    def close(self) -> None:
        async def stop() -> None:
            await self.http.aclose()
            redis = self.runtime.redis
            stale = [key async for key in redis.scan_iter(match=f"{self.prefix}*", count=1000)]
            if stale:
                await redis.delete(*stale)
            await self.runtime.aclose()

        self.loop.run_until_complete(stop())
        self.loop.close()


@pytest.fixture(scope="module")
def world(redis_server):
    world = World(redis_server)
    yield world
    world.close()


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# Strategies.


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, odds: int = 8) -> st.SearchStrategy:
    """`common`, and one time in `odds` `rare`: hostile, but mostly plausible."""
    return st.integers(min_value=0, max_value=odds - 1).flatmap(lambda i: common if i else rare)


nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cs", "Cf", "Co", "Zl", "Zp"]), max_size=8),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u202e", "\ufffe", "\U0010ffff", "é", "e\u0301", "🙂", "\r\n"]),
)
numbers = st.one_of(
    st.integers(min_value=50, max_value=2000).map(str),
    st.integers(min_value=50, max_value=2000).map(str),
    st.integers(min_value=-10, max_value=200_000).map(str),
    st.sampled_from(["1e3", "0x10", "١٢٣", "9" * 40, "-0", "100.0", " 100 ", "NaN", "inf", ""]),
)
# The fields each action (and each kind of service) takes, to make plausible requests.
NEEDS = {
    "add": {
        "1": ["link", "quantity"],
        "1001": ["link", "quantity"],
        "2101": ["link", "quantity"],
        "1003": ["link", "quantity", "runs", "interval"],
        "1002": ["link", "comments"],
        "2104": ["link", "comments"],
        "1005": ["link"],
        "1010": ["username", "min", "max", "posts", "delay"],
        "1009": ["link", "quantity", "country", "device", "type_of_traffic", "google_keyword"],
    },
    "status": [["order"], ["orders"]],
    "refill": [["order"], ["orders"]],
    "cancel": [["orders"], ["order"]],
    "refill_status": [["refill"], ["refills"]],
}
links = mostly(
    st.sampled_from(["https://instagram.com/p/x", "instagram.com/p/y", "@user", "https://t.me/channel/5"]),
    st.sampled_from(
        ["not a link", "javascript:alert(1)", "https://" + "a" * 3000 + ".com", "http://[::1", "ftp://x.y"]
    ),
    odds=4,
)
lists = st.lists(st.sampled_from(["nice", "great", "@a", "#tag", "", " ", "t.me/x"]), max_size=15).map("\r\n".join)
ids = st.one_of(
    st.lists(
        st.one_of(st.integers(min_value=-3, max_value=12).map(str), st.sampled_from(["x", "", " 1", "1.0"])),
        max_size=105,
    ).map(",".join),
    st.integers(min_value=0, max_value=10).map(str),
)


def value_for(name: str) -> st.SearchStrategy[str]:
    specific = {
        "service": st.sampled_from(SERVICES),
        "link": links,
        "referring_url": links,
        "media": links,
        "comments": lists,
        "usernames": lists,
        "hashtags": lists,
        "groups": lists,
        "order": ids,
        "orders": ids,
        "refill": ids,
        "refills": ids,
        "expiry": st.sampled_from(["31/12/2030", "1/2/2031", "2030-01-01", "31/02/2030"]),
        "country": st.sampled_from(["US", "KR", "Germany", "1", ""]),
        "device": st.sampled_from(["1", "5", "6"]),
        "type_of_traffic": st.sampled_from(["1", "2", "3", "4"]),
        "google_keyword": st.sampled_from(["shoes", ""]),
        "runs": st.sampled_from(["2", "5", "1", "1001"]),
        "interval": st.sampled_from(["10", "0", "1441"]),
        "username": st.sampled_from(["nasa", "@nasa", ""]),
        "posts": st.sampled_from(["0", "5", "10001", ""]),
        "delay": st.sampled_from(["0", "30", "7"]),
        "min": st.sampled_from(["50", "100", "0"]),
        "max": st.sampled_from(["100", "200", "6000"]),
    }.get(name, numbers)
    return mostly(specific, nasty_text, odds=25)


@st.composite
def requests(draw) -> dict:
    key = draw(
        mostly(st.sampled_from(["alice", "alice", "alice", "bob", "header"]), st.sampled_from(["none", "wrong"]), 12)
    )
    action = draw(mostly(st.sampled_from(ACTIONS + ["add"] * 3), nasty_text, odds=12))
    names = draw(st.lists(mostly(st.sampled_from(FIELDS), st.text(max_size=12), odds=20), max_size=3, unique=True))
    fields = {name: draw(value_for(name)) for name in names}
    if action == "add":
        service = draw(st.sampled_from(sorted(NEEDS["add"])))
        fields["service"] = service
        names = NEEDS["add"][service]
    elif action in NEEDS:
        names = draw(st.sampled_from(NEEDS[action]))
    else:
        names = []
    for name in names:
        if draw(mostly(st.just(True), st.just(False), odds=12)):
            fields[name] = draw(value_for(name))
    encoding = draw(mostly(st.sampled_from(["form", "multipart", "json", "get"]), st.just("raw")))
    json_extras = (
        draw(
            mostly(
                st.just({}),
                st.dictionaries(
                    st.sampled_from(FIELDS),
                    st.one_of(
                        st.integers(min_value=-(10**30), max_value=10**30),
                        st.floats(allow_nan=True, allow_infinity=True),
                        st.booleans(),
                        st.none(),
                        st.lists(st.integers(min_value=0, max_value=20), max_size=5),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                    ),
                    max_size=3,
                ),
                odds=3,
            )
        )
        if encoding == "json"
        else {}
    )
    raw = draw(st.binary(max_size=200)) if encoding == "raw" else b""
    content_type = (
        draw(
            st.sampled_from(
                [
                    None,
                    "application/x-www-form-urlencoded",
                    "multipart/form-data; boundary=zz",
                    "multipart/form-data",
                    "application/json",
                    "text/plain",
                    "application/json; charset=latin-1",
                ]
            )
        )
        if encoding == "raw"
        else None
    )
    bad_bytes = (
        draw(mostly(st.none(), st.sampled_from([b"\xff", b"%FF%FE", b"\xc0\xaf"])))
        if encoding in ("form", "get")
        else None
    )
    return dict(
        key=key,
        action=action,
        fields=fields,
        encoding=encoding,
        json_extras=json_extras,
        raw=raw,
        content_type=content_type,
        bad_bytes=bad_bytes,
    )


def _form_bytes(pairs: dict[str, str], bad: bytes | None) -> bytes:
    def enc(text: str) -> str:
        return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")

    body = "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs.items()).encode()
    return body + (b"&x=" + bad if bad else b"")


def _multipart_bytes(pairs: dict[str, str]) -> bytes:
    body = b""
    for name, value in pairs.items():
        body += (
            b'--zz\r\nContent-Disposition: form-data; name="'
            + name.encode("utf-8", "surrogatepass")
            + b'"\r\n\r\n'
            + value.encode("utf-8", "surrogatepass")
            + b"\r\n"
        )
    return body + b"--zz--\r\n"


async def send(world: World, request: dict) -> httpx.Response:
    key = {"alice": world.alice, "bob": world.bob, "none": None, "wrong": "0" * 32, "header": None}[request["key"]]
    pairs = {**request["fields"], "action": request["action"]}
    if key:
        pairs["key"] = key
    headers = {"x-api-key": world.alice} if request["key"] == "header" else {}
    encoding = request["encoding"]
    if encoding == "get":
        query = _form_bytes(pairs, request["bad_bytes"]).decode("latin-1")
        return await world.http.get(f"/api/v2?{query}", headers=headers)
    if encoding == "form":
        content, headers["content-type"] = _form_bytes(pairs, request["bad_bytes"]), "application/x-www-form-urlencoded"
    elif encoding == "multipart":
        content, headers["content-type"] = _multipart_bytes(pairs), "multipart/form-data; boundary=zz"
    elif encoding == "json":
        body = {**pairs, **request["json_extras"]}
        content = json.dumps(body, ensure_ascii=True, allow_nan=True).encode()
        headers["content-type"] = "application/json"
    else:
        content = request["raw"]
        if request["content_type"]:
            headers["content-type"] = request["content_type"]
    return await world.http.post("/api/v2", content=content, headers=headers)


SHAPES = {
    "services": list,
    "balance": dict,
    "add": dict,
    "status": dict,
    "refill": (dict, list),
    "refill_status": (dict, list),
    "cancel": list,
}


@given(request=requests())
def test_no_request_breaks_a_reply_or_changes_state_when_refused(world, request):
    handler = ErrorLog()
    logging.getLogger().addHandler(handler)
    try:
        before = world.loop.run_until_complete(world.digest())
        response = world.loop.run_until_complete(send(world, request))
        after = world.loop.run_until_complete(world.digest())
    finally:
        logging.getLogger().removeHandler(handler)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert not handler.records, [r.getMessage() for r in handler.records]
    if isinstance(reply, dict) and set(reply) == {"error"}:
        event(f"refused: {reply['error'][:40]}")
        assert isinstance(reply["error"], str) and reply["error"]
        assert after == before, (request, reply)
    else:
        action = request["action"]
        event(f"answered: {action}")
        assert action in SHAPES and isinstance(reply, SHAPES[action]), (request, reply)
