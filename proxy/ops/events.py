"""Events for operators: one Redis stream, read by the CLI, the admin API and
the dashboard, and optionally POSTed to a webhook.

What is told here: a provider ejected and back, low on funds and recovered,
a price change held for approval, an order stuck upstream or queued for an
operator's attention, order IDs skipped because they numbered other orders
(the ID sequence fell behind), a config reload. `EventLog.emit` is the domain's
`proxy.logs.Emit`: one XADD to a bounded stream (MAXLEN ~), best effort, so
it never stands in the way of an order.

`Webhook` delivers the stream to `SMM_PROXY_WEBHOOK_URL`, in the background:
each event is POSTed as JSON (`proxy.ops.answers.EventView`, as operators
read it) with `X-Smm-Proxy-Signature: sha256=<HMAC-SHA256 of the body with
SMM_PROXY_WEBHOOK_SECRET>`, through a consumer group so that
every instance shares the work and each event is delivered (at least) once;
a failed delivery is retried with growing pauses, then given up and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx
from redis.exceptions import ResponseError

from proxy.keys import Keys
from proxy.ops.answers import EventView, as_json
from proxy.store import Field, Store, claimed_entries, group_entries, stream_entries

log = logging.getLogger(__name__)

STREAM_LENGTH = 10_000
# The most events one read answers.
READ_LIMIT = 10_000
GROUP = "webhook"
SIGNATURE_HEADER = "X-Smm-Proxy-Signature"
# Retries: the n-th waits base x 2^(n-1) seconds, at most the cap, up to MAX_ATTEMPTS deliveries.
RETRY_BASE_SECONDS = 5.0
RETRY_CAP_SECONDS = 600.0
MAX_ATTEMPTS = 10
BATCH = 50
# Seconds a stopping delivery loop is waited for (shutdown never hangs on it).
STOP_SECONDS = 1.0


class EventLog:
    """The event stream: written by the domain (`emit`), read by operators."""

    def __init__(self, redis: Store, keys: Keys, length: int = STREAM_LENGTH) -> None:
        self.redis = redis
        self.keys = keys
        self.length = length

    async def emit(self, kind: str, subject: str, message: str, **detail: object) -> None:
        fields: dict[str, Field] = {
            "kind": kind,
            "subject": subject,
            "message": message[:500],
            "detail": json.dumps(detail, default=str),
        }
        try:
            await self.redis.xadd(self.keys.events, fields, maxlen=self.length, approximate=True)
        except Exception as exc:  # an event is news, not money: never in the way
            log.warning("event %s about %s not recorded: %s", kind, subject, type(exc).__name__)

    async def read(self, since: float | None = None, limit: int = 100, kind: str | None = None) -> list[EventView]:
        """Events newest first: at most `limit`, none older than `since` (a
        timestamp), only those whose kind starts with `kind` if given."""
        low = "-" if since is None else f"{max(0, int(since * 1000))}-0"
        found: list[EventView] = []
        high = "+"
        while len(found) < limit:
            rows = stream_entries(
                await self.redis.xrevrange(self.keys.events, max=high, min=low, count=max(limit, 100))
            )
            if not rows:
                break
            for entry_id, fields in rows:
                if kind is None or fields.get("kind", "").startswith(kind):
                    found.append(EventView.of_entry(entry_id, fields))
                    if len(found) >= limit:
                        break
            last = rows[-1][0]
            millis, _, seq = last.partition("-")
            if int(seq) > 0:
                high = f"{millis}-{int(seq) - 1}"
            elif int(millis) > 0:
                high = f"{int(millis) - 1}-18446744073709551615"
            else:
                break
        return found


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0


class Webhook:
    """Delivers the event stream to one URL, shared by every instance."""

    def __init__(
        self,
        redis: Store,
        keys: Keys,
        url: str,
        secret: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        consumer: str | None = None,
        retry_base: float = RETRY_BASE_SECONDS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.url = url
        self.secret = secret
        self.consumer = consumer or uuid.uuid4().hex[:12]
        self.retry_base = retry_base
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)
        self._grouped = False
        self._stopping = False

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _group(self) -> None:
        if self._grouped:
            return
        try:  # from now on: events written before the webhook was set up are not sent
            await self.redis.xgroup_create(self.keys.events, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped = True

    async def deliver(self) -> Delivery:
        """One round: retries that are due, then new events."""
        await self._group()
        delivered = failed = dropped = 0
        pending = await self.redis.xpending_range(self.keys.events, GROUP, min="-", max="+", count=BATCH)
        for item in pending:
            entry_id, times, idle = (
                str(item["message_id"]),
                int(item["times_delivered"]),
                int(item["time_since_delivered"]),
            )
            if times >= MAX_ATTEMPTS:
                await self.redis.xack(self.keys.events, GROUP, entry_id)
                log.error("webhook: event %s given up after %d deliveries", entry_id, times)
                dropped += 1
                continue
            wait = min(RETRY_CAP_SECONDS, self.retry_base * 2 ** (times - 1))
            if idle < wait * 1000:
                continue
            claimed = await self.redis.xclaim(self.keys.events, GROUP, self.consumer, int(wait * 1000), [entry_id])
            for claimed_id, fields in claimed_entries(claimed):
                if fields is None:  # trimmed away meanwhile
                    await self.redis.xack(self.keys.events, GROUP, claimed_id)
                    continue
                if await self._post(claimed_id, fields):
                    delivered += 1
                else:
                    failed += 1
        replies = await self.redis.xreadgroup(GROUP, self.consumer, {self.keys.events: ">"}, count=BATCH)
        for new_id, fields in group_entries(replies):
            if await self._post(new_id, fields):
                delivered += 1
            else:
                failed += 1
        return Delivery(delivered, failed, dropped)

    async def _post(self, entry_id: str, fields: Mapping[str, str]) -> bool:
        body = json.dumps(as_json(EventView.of_entry(entry_id, fields)), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self.secret),
            "X-Smm-Proxy-Event": fields.get("kind", ""),
            "X-Smm-Proxy-Delivery": entry_id,
        }
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("webhook: event %s not delivered: %s", entry_id, type(exc).__name__)
            return False
        if not 200 <= response.status_code < 300:
            log.warning("webhook: event %s not delivered: HTTP %s", entry_id, response.status_code)
            return False
        await self.redis.xack(self.keys.events, GROUP, entry_id)
        return True

    async def run_forever(self, interval: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        while not self._stopping:
            try:
                await self.deliver()
            except Exception as exc:
                log.warning("webhook round failed: %s", type(exc).__name__)
            await sleep(interval)

    @contextlib.asynccontextmanager
    async def running(self, interval: float) -> AsyncIterator[None]:
        """Deliver in the background while the block runs. Leaving it stops
        the loop within STOP_SECONDS: a cancel that lands inside a Redis
        command may be swallowed, so the loop also stops at its next round,
        and nobody waits for it longer."""
        self._stopping = False
        task = asyncio.create_task(self.run_forever(interval), name="smm-proxy-webhook")
        try:
            yield
        finally:
            self._stopping = True
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_SECONDS)
            if not task.done():
                log.warning("webhook: delivery still under way at shutdown; left behind")
