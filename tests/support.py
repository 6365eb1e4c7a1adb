"""Helpers the tests share: a fake clock, a router config, a router harness."""

from __future__ import annotations

from pathlib import Path

import pytest

# The repository: config/, deploy/ and docs/ are read from here.
ROOT = Path(__file__).resolve().parent.parent

# The kinds of Redis the router runs on: one server, or a Redis Cluster.
STORES = ("single", "cluster")
# Runs a test (or, as `pytestmark`, a module) on every kind of Redis.
on_every_store = pytest.mark.parametrize("store", STORES)


class FakeClock:
    """A clock tests move by hand; shared by the router and the panels."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def router_config(**overrides: object) -> dict:
    """Two providers like the demo's: echomark (USD) and the Korean panel (KRW)."""
    raw = {
        "currency": "USD",
        "exchange_rates": {"KRW": "1380"},
        "markup": {"percent": 30},
        "providers": {
            "echomark": {"url": "https://echomark.test/api/v2", "key": "sim-key", "currency": "USD"},
            "korean": {"url": "https://오토스타그램.com/api/v2", "key": "sim-key", "currency": "KRW"},
        },
        "services": [
            {
                "id": 1,
                "name": "Followers",
                "routes": [{"provider": "echomark", "service": 1}, {"provider": "korean", "service": 101}],
            },
            {"id": 2, "routes": [{"provider": "korean", "service": 102}, {"provider": "echomark", "service": 3}]},
        ],
        "imports": [{"provider": "korean", "id_offset": 2000, "markup": {"percent": 35}}],
    }
    raw.update(overrides)
    return raw


class Harness:
    """A router wired to two simulated panels, all in process."""

    def __init__(self, runtime, panels, clock, http) -> None:
        self.runtime = runtime
        self.panels = panels
        self.clock = clock
        self.http = http

    async def call(self, key: str | None = None, *, headers: dict[str, str] | None = None, **params: object) -> object:
        data = {name: str(value) for name, value in params.items()}
        if key is not None:
            data["key"] = key
        response = await self.http.post("/api/v2", data=data, headers=headers)
        assert response.status_code == 200
        reply = response.json()
        if params.get("action") == "add" and isinstance(reply, dict) and isinstance(reply.get("order"), int):
            # An add is answered once a provider took the order; tests read what was recorded after.
            await self.runtime.actions.recorded(reply["order"])
        return reply

    async def client(self, name: str = "alice", balance: str = "100") -> str:
        from decimal import Decimal

        _, api_key = await self.runtime.accounts.create(name, Decimal(balance))
        return api_key


def fault(panel, mode, message=None):
    """Break only `add` at a panel: its service list stays readable."""
    panel.faults.mode = mode
    panel.faults.actions = frozenset({"add"})
    if message is not None:
        panel.faults.error_message = message


def new_order(client="alice", link="https://instagram.com/p/abc", quantity=1000, charge="1.17", **overrides):
    """An order as the order actions would open it, for tests that drive the book directly."""
    from decimal import Decimal

    from proxy.orders.records import NewOrder

    fields = {"link": link, "quantity": str(quantity)}
    values = dict(
        client=client,
        service=1,
        type="Default",
        quantity=quantity,
        fields=fields,
        charge=Decimal(charge),
        refill=False,
        cancel=False,
    )
    values.update(overrides)
    return NewOrder(**values)


async def expire_leases(router) -> int:
    """What time does to the lease of a task that died: it is gone."""
    keys = [key async for key in router.runtime.redis.scan_iter(match=f"{router.runtime.keys.prefix}lease:*")]
    if keys:
        await router.runtime.redis.delete(*keys)
    return len(keys)


async def metric(router, name: str, **labels: str) -> float | None:
    """One sample of the router's metrics (as /metrics renders them), read with
    prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (await router.runtime.metrics.render()).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None
