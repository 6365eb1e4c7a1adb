"""Fixtures of the unit layer, on a real Redis and without HTTP: the order
layer's collaborators (a ledger with a client, the order book, provider
health, ...), the command line, and a whole runtime on scripted upstreams
for the modules that work through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis
from support import ROOT, FakeClock, router_config
from upstreams import ScriptedPanel

from proxy.accounts.clients import Accounts
from proxy.accounts.ledger import Ledger
from proxy.cli import main
from proxy.config import parse_config
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.due import DueIndex
from proxy.orders.leases import Leases
from proxy.orders.verdicts import Verdicts
from proxy.providers.funds import Funds
from proxy.providers.health import Health, Thresholds
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.store import connect


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(redis_client, keys) -> Ledger:
    return Ledger(redis_client, keys)


@pytest.fixture
async def alice(redis_client, keys, ledger) -> str:
    """A client with 10.00 on her balance."""
    await Accounts(redis_client, keys, ledger, "USD").create("alice", Decimal("10"))
    return "alice"


@pytest.fixture
def leases(redis_client, keys) -> Leases:
    return Leases(redis_client, keys, seconds=30)


@pytest.fixture
def due(redis_client, keys) -> DueIndex:
    return DueIndex(redis_client, keys)


@pytest.fixture
def book(redis_client, keys, leases, due, clock) -> OrderBook:
    return OrderBook(redis_client, keys, leases, due, clock)


@pytest.fixture
def claims(book) -> Claims:
    return Claims(book)


@pytest.fixture
def verdicts(book, claims) -> Verdicts:
    return Verdicts(book, claims)


@pytest.fixture
def funds(redis_client, keys, clock) -> Funds:
    """What we know of the two providers' balances; no low-balance threshold."""
    return Funds(redis_client, keys, {}, {"echomark": "USD", "korean": "KRW"}, clock)


@pytest.fixture
def health(redis_client, keys, clock, funds) -> Health:
    """Provider health with one failure enough to eject a provider, for 60 s
    (the config's default is 3), so a test sees a failure's effect at once."""
    one = Thresholds(consecutive_failures=1, base_ejection_seconds=60, max_ejection_seconds=900)
    return Health(redis_client, keys, {"echomark": one, "korean": one}, funds, clock)


# -- the command line ----------------------------------------------------------------


@pytest.fixture
def cli(redis_url, key_prefix, monkeypatch, capsys):
    """`smm-proxy` as an operator runs it (`code, out, err = cli("clients", "list")`),
    against this test's Redis and prefix, with config/example.yaml."""
    monkeypatch.setenv("SMM_PROXY_REDIS_URL", redis_url)
    monkeypatch.setenv("SMM_PROXY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("SMM_PROXY_CONFIG", str(ROOT / "config" / "example.yaml"))
    monkeypatch.setenv("ECHOMARK_API_KEY", "x")
    monkeypatch.setenv("KOREAN_PANEL_API_KEY", "y")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    sync = redis.Redis.from_url(redis_url)
    stale = list(sync.scan_iter(match=f"{key_prefix}*"))
    if stale:
        sync.delete(*stale)
    sync.close()


# -- a whole runtime, on scripted upstreams --------------------------------------------


def listing(*services: tuple[int, str]) -> list[dict[str, object]]:
    """A `services` reply: (ID, rate per 1000) each."""
    return [
        {
            "service": service,
            "name": f"Followers {service}",
            "type": "Default",
            "category": "Instagram",
            "rate": rate,
            "min": "10",
            "max": "10000",
            "refill": True,
            "cancel": True,
        }
        for service, rate in services
    ]


@pytest.fixture
def panels() -> dict[str, ScriptedPanel]:
    """The two providers of support.router_config, answering as scripted (services and balance to start)."""
    echomark = ScriptedPanel("echomark").on("services", listing((1, "0.90"), (3, "0.50")))
    korean = ScriptedPanel("korean").on("services", listing((101, "1250"), (102, "700")))
    echomark.on("balance", {"balance": "100.00", "currency": "USD"})
    korean.on("balance", {"balance": "100000", "currency": "KRW"})
    return {"echomark": echomark, "korean": korean}


@pytest.fixture
async def runtime(redis_url, key_prefix, redis_client, panels, clock, tmp_path) -> AsyncIterator[Runtime]:
    """Every component wired as `serve` wires them, on the scripted panels: no HTTP, no server."""
    # Its config is given, not read: the file its settings name does not exist (a reload is refused).
    settings = Settings(
        key_prefix=key_prefix, archive_dir=tmp_path / "archive", catalog_recheck=0, config=tmp_path / "none.yaml"
    )
    built = Runtime(
        settings,
        parse_config(router_config(), {}),
        connect(redis_url),
        transports={name: panel.transport() for name, panel in panels.items()},
        clock=clock,
    )
    yield built
    await built.aclose()
