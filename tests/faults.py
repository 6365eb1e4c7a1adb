"""Faults injected where they happen: the N-th Redis command, the N-th upstream call.

`FaultyRedis` is a real `redis.asyncio.Redis` whose N-th command (a script,
a plain command, or a whole pipeline) fails once the plan is armed:

- "error": it is never sent (a connection refused; nothing applied);
- "lost": it is applied, and its reply is lost (a timeout after sending);
- "bug": it is never sent, and an unexpected exception (RuntimeError)
  comes back instead, as a bug in our code would raise;
- "late": it is not sent now, and its reply times out; the command is kept
  in `FaultPlan.held`, for the test to send later (`send_held`), as a
  request held up in a socket buffer reaches Redis after its caller gave up.

A plan sees every command before it is sent (`FaultPlan.before`, with the
whole command: `script_call` reads a script's keys and arguments), so a
test can also make a given command wait, or make something else happen
just before it: the interleavings of a race, injected at the store instead
of patched into the code.

`FaultyTransport` wraps an httpx transport the same way for upstream calls:

- "refused": the connection fails before the request leaves;
- "lost": the panel acts on the request, and the reply times out;
- "garbage": the panel acts on it, and answers an HTML page.

Tests walk a path by arming the plan at N = 1, 2, ... until the path
completes without reaching N (`walk_ready` makes the router they walk).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import redis.asyncio as aioredis
from invariants import fresh_prefix
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from support import router_config

from proxy import scripts
from proxy.connection import Client

Command = Sequence[object]  # ("EVALSHA", sha, 2, key, key, arg, ...), ("GET", key), ...


@dataclass
class FaultPlan:
    """Fail the `at`-th call counted while armed, in `mode`."""

    at: int = 0
    mode: str = ""
    armed: bool = False
    count: int = 0
    fired: bool = False
    seen: list[str] = field(default_factory=list)
    held: list[Command] = field(default_factory=list)

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

    async def before(self, commands: Sequence[Command], pipeline: bool = False) -> str | None:
        """Called before a Redis command (or a pipeline of them) is sent; the
        fault to inject. Counts it (`next`); a subclass may wait or act first."""
        if pipeline:
            return self.next("pipeline:" + ",".join(str(command[0]) for command in commands))
        return self.next(str(commands[0][0]))


@dataclass(frozen=True)
class ScriptCall:
    sha: str
    keys: list[str]
    args: list[str]


def script_call(command: Command) -> ScriptCall | None:
    """A script's call (EVALSHA), read from a command; None for any other command."""
    if str(command[0]).upper() != "EVALSHA":
        return None
    sha, count, rest = str(command[1]), int(str(command[2])), [str(part) for part in command[3:]]
    return ScriptCall(sha, rest[:count], rest[count:])


def script_sha(package: str, name: str, values: dict[str, str] | None = None) -> str:
    """The SHA a script of ours is called by (EVALSHA), to tell its calls apart."""
    return hashlib.sha1(scripts.source(package, name, values).encode()).hexdigest()


def _injected(mode: str | None) -> None:
    if mode == "error":
        raise RedisConnectionError("injected: connection refused")
    if mode == "bug":
        raise RuntimeError("injected: a bug")


class _FaultyPipeline(Pipeline):
    plan: FaultPlan

    async def execute(self, raise_on_error: bool = True):  # type: ignore[override]
        mode = await self.plan.before([args for args, _ in self.command_stack], pipeline=True)
        if mode in ("error", "bug"):
            await self.reset()
            _injected(mode)
        result = await super().execute(raise_on_error)
        if mode == "lost":
            raise RedisTimeoutError("injected: reply lost")
        return result


class FaultyRedis(Client):
    plan: FaultPlan

    @classmethod
    def with_plan(cls, pool: aioredis.ConnectionPool, plan: FaultPlan) -> FaultyRedis:
        client = cls.from_pool(pool)
        client.plan = plan
        return client

    async def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        mode = await self.plan.before([args])
        _injected(mode)
        if mode == "late":
            self.plan.held.append(args)
            raise RedisTimeoutError("injected: no reply in time (the command is still on its way)")
        result = await super().execute_command(*args, **options)
        if mode == "lost":
            raise RedisTimeoutError("injected: reply lost")
        return result

    def pipeline(self, transaction: bool = True, shard_hint: object = None) -> Pipeline:  # type: ignore[override]
        pipe = _FaultyPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.plan = self.plan
        return pipe


async def send_held(redis: aioredis.Redis, plan: FaultPlan) -> list[object]:
    """Send the commands a "late" fault held back, in order, now; their replies."""
    replies = [await redis.execute_command(*command) for command in plan.held]
    plan.held.clear()
    return replies


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


async def walk_ready(make_router, raw=None, *, redis_plan=None, upstream_plan=None, balance="10", **settings):
    """A router to walk: on a key prefix of its own, with these plans at Redis
    and upstream (none where not given), no cooldown after an upstream
    failure, alice holding `balance`, and the service lists fetched (so no
    upstream call of their own lands in a walk). The router and alice's key."""
    router = await make_router(
        raw or router_config(),
        prefix=fresh_prefix(),
        redis_plan=redis_plan,
        upstream_plan=upstream_plan,
        upstream_cooldown=0,
        **settings,
    )
    key = await router.client(balance=balance)
    await router.call(key, action="services")
    return router, key
