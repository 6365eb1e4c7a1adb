"""Faults injected where they happen: the N-th Redis command, the N-th upstream call.

`FaultyRedis` is a real `redis.asyncio.Redis` whose N-th command (a script,
a plain command, or a whole pipeline) fails once the plan is armed:

- "error": it is never sent (a connection refused; nothing applied);
- "lost": it is applied, and its reply is lost (a timeout after sending).

`FaultyTransport` wraps an httpx transport the same way for upstream calls:

- "refused": the connection fails before the request leaves;
- "lost": the panel acts on the request, and the reply times out;
- "garbage": the panel acts on it, and answers an HTML page.

Tests walk a path by arming the plan at N = 1, 2, ... until the path
completes without reaching N.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


@dataclass
class FaultPlan:
    """Fail the `at`-th call counted while armed, in `mode`."""

    at: int = 0
    mode: str = ""
    armed: bool = False
    count: int = 0
    fired: bool = False
    seen: list[str] = field(default_factory=list)

    def arm(self, at: int, mode: str) -> None:
        self.at, self.mode, self.armed, self.count, self.fired, self.seen = at, mode, True, 0, False, []

    def disarm(self) -> None:
        self.armed = False

    def next(self, what: str) -> str | None:
        """Count one call; the fault to inject into it, if it is the one."""
        if not self.armed:
            return None
        self.count += 1
        self.seen.append(what)
        if self.count == self.at:
            self.fired = True
            return self.mode
        return None


class _FaultyPipeline(Pipeline):
    plan: FaultPlan

    async def execute(self, raise_on_error: bool = True):  # type: ignore[override]
        mode = self.plan.next("pipeline:" + ",".join(str(args[0]) for args, _ in self.command_stack))
        if mode == "error":
            await self.reset()
            raise RedisConnectionError("injected: connection refused")
        result = await super().execute(raise_on_error)
        if mode == "lost":
            raise RedisTimeoutError("injected: reply lost")
        return result


class FaultyRedis(aioredis.Redis):
    plan: FaultPlan

    @classmethod
    def with_plan(cls, pool: aioredis.ConnectionPool, plan: FaultPlan) -> FaultyRedis:
        client = cls.from_pool(pool)
        client.plan = plan
        return client

    async def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        mode = self.plan.next(str(args[0]))
        if mode == "error":
            raise RedisConnectionError("injected: connection refused")
        result = await super().execute_command(*args, **options)
        if mode == "lost":
            raise RedisTimeoutError("injected: reply lost")
        return result

    def pipeline(self, transaction: bool = True, shard_hint: object = None) -> Pipeline:  # type: ignore[override]
        pipe = _FaultyPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.plan = self.plan
        return pipe


HTML_PAGE = "<!DOCTYPE html><html><body><h1>We'll be back soon!</h1></body></html>"


class FaultyTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        mode = self.plan.next(f"{request.url.host} {request.method}")
        if mode == "refused":
            raise httpx.ConnectError("injected: connection refused", request=request)
        response = await self.inner.handle_async_request(request)
        if mode == "lost":
            await response.aclose()
            raise httpx.ReadTimeout("injected: no reply in time", request=request)
        if mode == "garbage":
            await response.aclose()
            return httpx.Response(200, text=HTML_PAGE, request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
