"""A panel whose replies never end (hostile, or broken) cannot make the router
hold them: a reply is read up to its action's limit (`reply_bytes` in the
provider's config), then cut. An add cut so was sent: its order is unknown,
never failed over to the next route; a read cut so failed."""

from __future__ import annotations

import asyncio

import httpx
from support import router_config

from proxy.orders.states import UNKNOWN

CHUNK = b'[{"order": 1},' * 4096


class Endless(httpx.AsyncByteStream):
    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self):
        while self.sent < 256 * 2**20:  # "endless" (a runaway test stops here, not in swap)
            self.sent += len(CHUNK)
            yield CHUNK
            await asyncio.sleep(0)


class EndlessReplies:
    """Every provider's door: the replies to `actions` never end; the rest pass."""

    def __init__(self, *actions: str) -> None:
        self.actions = actions
        self.streams: list[tuple[str, Endless]] = []

    def __call__(self, inner):
        door = self

        class Door:
            async def handle_async_request(self, request):
                body = request.content.decode()
                action = next((a for a in door.actions if f"action={a}" in body or f'"action":"{a}"' in body), None)
                if action is None:
                    return await inner.handle_async_request(request)
                stream = Endless()
                door.streams.append((action, stream))
                return httpx.Response(200, headers={"Content-Type": "application/json"}, stream=stream)

            async def aclose(self) -> None:
                await inner.aclose()

        return Door()


async def test_an_add_whose_reply_never_ends_is_unknown_and_never_sent_again(make_router):
    door = EndlessReplies("add")
    raw = router_config()
    raw["providers"]["echomark"]["reply_bytes"] = {"others": 65536}
    router = await make_router(raw, upstream=door)
    key = await router.client(balance="10")
    reply = await router.call(key, action="add", service=1, link="https://instagram.com/p/huge", quantity=1000)
    order = await router.runtime.book.get("alice", reply["order"])
    assert order.state == UNKNOWN  # sent, its reply cut: it may exist upstream
    assert "reply larger than 65536 bytes" in order.attempts[-1].reason
    assert [action for action, _ in door.streams] == ["add"]  # never failed over to korean
    assert door.streams[0][1].sent <= 65536 + 2 * len(CHUNK)  # read no further than the limit


async def test_a_services_list_that_never_ends_is_a_failed_read(make_router, caplog):
    door = EndlessReplies("services")
    raw = router_config()
    raw["providers"]["korean"]["reply_bytes"] = {"services": 2**20}
    router = await make_router(raw, upstream=door)
    key = await router.client(balance="10")
    with caplog.at_level("WARNING"):
        await router.call(key, action="services")
    assert "ReplyTooLarge: korean: services: reply larger than 1048576 bytes" in caplog.text
    assert "service list of korean not refreshed" in caplog.text
    assert door.streams and all(stream.sent <= 64 * 2**20 + 2 * len(CHUNK) for _, stream in door.streams)
    assert any(stream.sent <= 2**20 + 2 * len(CHUNK) for _, stream in door.streams)
