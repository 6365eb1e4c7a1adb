"""Shared fixtures: a real Redis, a config, and a router wired to simulated panels.

Tests run against the Redis at 127.0.0.1:6379 when one answers, else against
an embedded redis-server started for the session. Each test writes under its
own key prefix and deletes its keys afterwards, so runs sharing a server do
not meet.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis
from support import FakeClock, Harness, router_config

from proxy.store import EmbeddedRedis, Keys, connect

LOCAL_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    try:
        redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        with EmbeddedRedis() as url:
            yield url
        return
    yield LOCAL_REDIS


@pytest.fixture
def key_prefix() -> str:
    return f"smm-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_url)
    try:
        yield client
    finally:
        stale = [key async for key in client.scan_iter(match=f"{key_prefix}*", count=1000)]
        if stale:
            await client.delete(*stale)
        await client.aclose()


@pytest.fixture
async def make_router(redis_url, key_prefix, redis_client):
    """Build a `Harness`; `make_router(config_raw, settings=...)` in a test."""
    import httpx

    from proxy.config import parse_config
    from proxy.edge.app import create_app
    from proxy.runtime import Runtime
    from proxy.settings import Settings
    from proxy.sim.app import create_app as create_panel_app
    from proxy.sim.catalogs import build_panel

    opened = []

    async def build(raw: dict | None = None, **settings: object) -> Harness:
        clock = FakeClock()
        panels = {
            "echomark": build_panel("echomark", clock=clock, step_seconds=10, first_order_id=5000),
            "korean": build_panel("korean", clock=clock, step_seconds=10, first_order_id=9000, seed=1),
        }
        transports = {name: httpx.ASGITransport(app=create_panel_app(p)) for name, p in panels.items()}
        config = parse_config(raw or router_config(), {})
        runtime = Runtime(
            Settings(key_prefix=key_prefix, **settings),
            config,
            connect(redis_url),
            transports=transports,
            clock=clock,
        )
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://router")
        opened.append((runtime, http))
        return Harness(runtime, panels, clock, http)

    yield build
    for runtime, http in opened:
        await http.aclose()
        await runtime.aclose()
