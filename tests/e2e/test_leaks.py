"""Nothing upstream reaches a client: names, hosts, ports, URLs, keys, upstream IDs.

A transport between the router and its simulated panels writes provider
details into every text an upstream sends: service names and categories,
error messages (of add, refill, cancel, status), status and currency fields.
Then every action is called, in every way it can fail, and every reply is
searched for any of it.
"""

import json
import re

import httpx
from support import FakeClock, fault, router_config

from proxy.sim.catalogs import build_panel

LINK = "https://instagram.com/p/abc"
BLAB = (
    " by echomark (http://echomark.test:8443/api/v2) key sim-key, order 731500, mail ops@echomark.test,"
    " @echomark_bot, t.me/echomark, 10.1.2.3:9000, 오토스타그램.com xn--9n2bp8qy8dca.com"
)
FORBIDDEN = re.compile(
    r"echomark|korean|오토스타그램|xn--|sim-key|http|://|@|t\.me|\.test|\.com|10\.1\.2\.3|:8443|:9000|\b7315\d\d\b|\b8426\d\d\b",
    re.IGNORECASE,
)


def blab(payload):
    """Every text a panel would show, with provider details written in."""
    if isinstance(payload, list):
        return [blab(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    out = {}
    for name, value in payload.items():
        if name in ("name", "category", "error", "currency") and isinstance(value, str):
            out[name] = value + BLAB
        elif name == "status" and isinstance(value, str):
            out[name] = value + BLAB  # an unknown spelling: must not be shown
        else:
            out[name] = blab(value)
    return out


class Blabbermouth(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request):
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        try:
            payload = json.loads(body)
        except ValueError:
            return httpx.Response(response.status_code, content=body, headers=response.headers)
        return httpx.Response(response.status_code, json=blab(payload))


async def test_no_reply_holds_anything_upstream(make_router):
    raw = router_config(
        imports=[{"provider": "echomark", "id_offset": 1000}, {"provider": "korean", "id_offset": 2000}]
    )
    clock = FakeClock()
    panels = {  # upstream order IDs no reply of ours could hold by chance
        "echomark": build_panel("echomark", clock=clock, step_seconds=10, first_order_id=731500),
        "korean": build_panel("korean", clock=clock, step_seconds=10, first_order_id=842600, seed=1),
    }
    router = await make_router(raw, status_ttl=1, panels=panels, clock=clock, upstream=Blabbermouth)
    key = await router.client(balance="100")
    replies = []

    async def call(**params):
        reply = await router.call(key, **params)
        replies.append(reply)
        return reply

    await call(action="services")
    await call(action="balance")
    placed = await call(action="add", service=1, link=LINK, quantity=1000)
    await call(action="add", service=1001, link=LINK + "2", quantity=1000)
    await call(action="add", service=2101, link=LINK + "3", quantity=1000)
    for panel in router.panels.values():  # every route refuses, with a chatty message
        fault(panel, "error", "Order 731500 refused by echomark.test:8443")
    await call(action="add", service=1, link=LINK + "4", quantity=1000)
    for panel in router.panels.values():
        fault(panel, "error", "Incorrect link at http://echomark.test/")
    await call(action="add", service=1, link=LINK + "5", quantity=1000)
    for panel in router.panels.values():
        panel.faults.mode = None
    router.clock.advance(2)
    await call(action="status", order=placed["order"])
    await call(action="status", orders="1,2,3,4,5,77")
    router.clock.advance(30)
    await call(action="status", orders="1,2,3")
    await call(action="refill", order=1)
    await call(action="refill", orders="1,2,3")
    await call(action="refill_status", refills="1,2")
    for panel in router.panels.values():
        panel.faults.mode, panel.faults.actions = "error", frozenset({"refill", "cancel"})
        panel.faults.error_message = "Order 731501 cannot be refilled now, see https://echomark.test/faq"
    await call(action="refill", orders="1,2,3")
    await call(action="refill", order=2)
    await call(action="cancel", orders="1,2,3")
    await call(action="add", service=1001, link=LINK + "6", quantity=1000)
    await call(action="cancel", orders=str(replies[-1]["order"]))
    text = json.dumps(replies, ensure_ascii=False)
    assert not FORBIDDEN.search(text), [text[max(0, m.start() - 80) : m.end() + 20] for m in FORBIDDEN.finditer(text)]
    assert "Service temporarily unavailable, please try again later" in text  # chatter became our words
    assert len(replies) >= 15
