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
