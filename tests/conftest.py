"""Shared fixtures: a real Redis, a config, and a router wired to simulated panels.

Tests run against the Redis that SMM_PROXY_TEST_REDIS_URL names, else DB 15
of 127.0.0.1:6379 when one answers (never a user's DB 0), else against an
embedded redis-server started for the session. Each test writes under its own
key prefix and deletes its keys afterwards, so runs sharing a server do not
meet.

Which Redis a test gets is the `store` fixture: "single" (the server above)
unless the test is parametrised over `support.STORES` (`on_every_store`), in
which case it runs once more on a three-master Redis Cluster, started once
per session, the first time a test asks for it.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from cluster import LocalCluster
from hypothesis import HealthCheck, settings
from support import STORES, FakeClock, Harness, router_config

from proxy.embedded import EmbeddedRedis
from proxy.keys import Keys
from proxy.store import connect

LOCAL_REDIS = "redis://127.0.0.1:6379/15"

# Generated hostile requests (tests/e2e/test_hostile.py): a CI-sized run by
# default, a long one with --hypothesis-profile=long.
_HYPOTHESIS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", max_examples=1500, **_HYPOTHESIS)
settings.register_profile("long", max_examples=12_000, **_HYPOTHESIS)

# Adds placed by the long run (tests/e2e/test_long_run.py): a CI-sized run by
# default, tens of thousands with --long-run=50000.
LONG_RUN_ADDS = 600


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long-run",
        type=int,
        default=LONG_RUN_ADDS,
        metavar="ADDS",
        help=f"adds the long run of tests/e2e/test_long_run.py places (default {LONG_RUN_ADDS})",
    )


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> int:
    """How many adds the long run places (`--long-run`)."""
    adds = int(request.config.getoption("--long-run"))
    if adds < 1:
        raise pytest.UsageError("--long-run must be at least 1")
    return adds


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """One Redis server for the session: the configured one, else an embedded one."""
    url = os.environ.get("SMM_PROXY_TEST_REDIS_URL", LOCAL_REDIS)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        with EmbeddedRedis() as embedded:
            yield embedded
        return
    yield url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[str]:
    """A three-master Redis Cluster for the session (`redis-cluster://` URL)."""
    with LocalCluster() as url:
        yield url


@pytest.fixture
def store() -> str:
    """The kind of Redis a test runs on; tests parametrised over STORES override it."""
    return "single"


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, store: str) -> str:
    """The URL of the Redis this test runs on (the cluster is started only if asked for)."""
    if store not in STORES:
        raise ValueError(f"no store {store!r}: one of {STORES}")
    return str(request.getfixturevalue("redis_cluster" if store == "cluster" else "redis_server"))


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
    """Build a `Harness`; `make_router(config_raw, setting=value, ...)` in a test."""
    from faults import FaultPlan, FaultyRedis, FaultyTransport

    from proxy.config import parse_config
    from proxy.edge.app import create_app
    from proxy.runtime import Runtime
    from proxy.settings import Settings
    from proxy.sim.app import create_app as create_panel_app
    from proxy.sim.catalogs import build_panel

    opened = []

    async def build(
        raw: dict | None = None,
        *,
        prefix: str | None = None,
        redis_plan: FaultPlan | None = None,
        upstream_plan: FaultPlan | None = None,
        clock: FakeClock | None = None,
        panels: dict | None = None,
        url: str | None = None,
        upstream: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
        rng: random.Random | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        **settings: object,
    ) -> Harness:
        """A router on simulated panels, its settings given by name (`status_ttl=5`).

        `redis_plan` and `upstream_plan` inject faults; `upstream` wraps each
        provider's transport (a test's own hostile or chatty upstream); `rng`
        (a seeded `random.Random`) decides strategy best's exploring;
        `webhook_transport` answers the event webhook's POSTs;
        `prefix` (default: the test's) keeps several routers apart, or puts two
        on one Redis; `clock` may be shared or skewed; `panels` may be another
        harness's, for two instances of the router; `url` is another way to
        the same Redis (a proxy that can fail)."""
        clock = clock or FakeClock()
        panels = panels or {
            "echomark": build_panel("echomark", clock=clock, step_seconds=10, first_order_id=5000),
            "korean": build_panel("korean", clock=clock, step_seconds=10, first_order_id=9000, seed=1),
        }
        transports = {name: httpx.ASGITransport(app=create_panel_app(p)) for name, p in panels.items()}
        if upstream_plan is not None:
            transports = {name: FaultyTransport(t, upstream_plan) for name, t in transports.items()}
        if upstream is not None:
            transports = {name: upstream(t) for name, t in transports.items()}
        redis_client = connect(url or redis_url)
        if redis_plan is not None:
            redis_client = FaultyRedis.with_plan(redis_client.connection_pool, redis_plan)
        config = parse_config(raw or router_config(), {})
        settings.setdefault("catalog_recheck", 0)  # tests change panels' lists and look at once
        runtime = Runtime(
            Settings(key_prefix=prefix or key_prefix, **settings),
            config,
            redis_client,
            transports=transports,
            clock=clock,
            rng=rng,
            webhook_transport=webhook_transport,
        )
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://router")
        opened.append((runtime, http))
        await runtime.start()  # as a served router's lifespan does (ASGITransport runs none)
        return Harness(runtime, panels, clock, http)

    yield build
    for runtime, http in opened:
        await http.aclose()
        prefix = runtime.keys.prefix
        if prefix != key_prefix:
            stale = [key async for key in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
            if stale:
                await redis_client.delete(*stale)
        await runtime.aclose()
