"""Events for operators (proxy/ops/events.py): one bounded Redis stream, read
newest first, and a webhook that delivers it signed, once between instances,
retried with growing pauses and given up in the end."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import httpx
import pytest
from faults import FaultPlan, FaultyRedis

from proxy.ops.events import MAX_ATTEMPTS, SIGNATURE_HEADER, STOP_SECONDS, EventLog, Webhook, sign
from proxy.store import connect


@pytest.fixture
def events(redis_client, keys) -> EventLog:
    return EventLog(redis_client, keys, length=1000)


async def test_events_are_read_newest_first_by_kind_and_age(events):
    await events.emit("provider.ejected", "echomark", "echomark ejected", scope="orders", seconds=60)
    await events.emit("price.held", "korean", "held", service=101)
    await events.emit("provider.back", "echomark", "echomark is back", scope="orders")
    found = await events.read()
    assert [e.kind for e in found] == ["provider.back", "price.held", "provider.ejected"]
    assert found[2].detail == {"scope": "orders", "seconds": 60} and found[2].subject == "echomark"
    assert [e.kind for e in await events.read(kind="provider.")] == ["provider.back", "provider.ejected"]
    assert [e.kind for e in await events.read(limit=1)] == ["provider.back"]
    assert await events.read(since=time.time() + 3600) == []  # none that recent (entry IDs are Redis' clock)
    assert len(await events.read(since=time.time() - 3600)) == 3


async def test_a_kind_is_found_beyond_the_first_page(events):
    await events.emit("order.stuck", "1", "stuck")
    for i in range(250):
        await events.emit("price.held", "echomark", f"held {i}")
    assert [e.subject for e in await events.read(kind="order.")] == ["1"]


async def test_an_event_that_cannot_be_written_is_no_error(redis_url, keys, caplog):
    class Down(FaultPlan):
        async def before(self, commands, pipeline=False):
            return "error" if str(commands[0][0]).upper() == "XADD" else None

    broken = FaultyRedis.with_plan(connect(redis_url).connection_pool, Down())
    try:
        await EventLog(broken, keys).emit("provider.ejected", "echomark", "x")
    finally:
        await broken.aclose()
    assert "event provider.ejected about echomark not recorded" in caplog.text


async def test_the_stream_keeps_about_its_length_and_messages_are_cut(redis_client, keys):
    short = EventLog(redis_client, keys, length=10)
    for _ in range(300):
        await short.emit("price.held", "echomark", "m" * 600)
    assert 10 <= await redis_client.xlen(keys.events) < 300
    assert len((await short.read(limit=1))[0].message) == 500


class Hook:
    """The receiving end: answers each POST with the next status given."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200)


def webhook(redis_client, keys, hook: Hook, consumer: str) -> Webhook:
    transport = httpx.MockTransport(hook)
    return Webhook(
        redis_client, keys, "https://ops.test/hook", "s3cret", transport=transport, consumer=consumer, retry_base=0
    )


async def test_each_event_is_posted_signed_once_between_instances(events, redis_client, keys):
    hook = Hook()
    one, two = webhook(redis_client, keys, hook, "one"), webhook(redis_client, keys, hook, "two")
    try:
        await one.deliver()
        await two.deliver()  # both join the group; what was written before is not sent
        await events.emit("provider.ejected", "echomark", "ejected", scope="orders")
        await events.emit("provider.back", "echomark", "back")
        delivered = [(await one.deliver()).delivered, (await two.deliver()).delivered]
    finally:
        await one.aclose()
        await two.aclose()
    assert delivered == [2, 0]
    first = hook.seen[0]
    assert first.headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(b"s3cret", first.content, hashlib.sha256).hexdigest()
    assert sign(first.content, "s3cret") == first.headers[SIGNATURE_HEADER]
    body = json.loads(first.content)
    assert list(body) == ["id", "time", "kind", "subject", "message", "detail"]
    assert (body["kind"], body["detail"], first.headers["X-Smm-Proxy-Event"]) == (
        "provider.ejected",
        {"scope": "orders"},
        "provider.ejected",
    )


async def test_a_failed_delivery_is_retried_then_given_up(events, redis_client, keys, caplog):
    hook = Hook(*([503] * (MAX_ATTEMPTS + 5)))
    sender = webhook(redis_client, keys, hook, "one")
    try:
        await sender.deliver()
        await events.emit("price.held", "echomark", "held")
        rounds = [await sender.deliver() for _ in range(MAX_ATTEMPTS + 1)]
    finally:
        await sender.aclose()
    assert [r.failed for r in rounds] == [1] * MAX_ATTEMPTS + [0] and rounds[-1].dropped == 1
    assert len(hook.seen) == MAX_ATTEMPTS and len({r.content for r in hook.seen}) == 1
    assert (await redis_client.xpending(keys.events, "webhook"))["pending"] == 0
    assert "given up after" in caplog.text


async def test_an_unreachable_hook_is_a_failed_delivery(events, redis_client, keys):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sender = Webhook(
        redis_client, keys, "https://ops.test/hook", "s", transport=httpx.MockTransport(down), retry_base=0
    )
    try:
        await sender.deliver()
        await events.emit("price.held", "echomark", "held")
        assert (await sender.deliver()).failed == 1
    finally:
        await sender.aclose()


async def test_stopping_the_delivery_loop_never_hangs_a_shutdown(events, redis_client, keys):
    """A delivery stuck when the process stops, its cancel swallowed (as one that lands
    inside a Redis command can be): leaving `running` waits a second at most, and the
    loop ends at its next round."""
    posting = asyncio.Event()

    async def stuck(request: httpx.Request) -> httpx.Response:
        posting.set()
        try:
            await asyncio.sleep(1.5)
        except asyncio.CancelledError:  # swallowed
            await asyncio.sleep(1.5)
        return httpx.Response(200)

    sender = Webhook(redis_client, keys, "https://ops.test/hook", "s", transport=httpx.MockTransport(stuck))
    try:
        await sender.deliver()  # joins the group
        await events.emit("price.held", "echomark", "held")
        async with sender.running(interval=0.01):
            await asyncio.wait_for(posting.wait(), 2)
            stopping_at = time.monotonic()
        assert time.monotonic() - stopping_at < STOP_SECONDS + 0.2
        (loop,) = [t for t in asyncio.all_tasks() if t.get_name() == "smm-proxy-webhook"]
        await asyncio.wait({loop}, timeout=3)
        assert loop.done()  # it stopped at its next round, not in a loop forever
    finally:
        await sender.aclose()
