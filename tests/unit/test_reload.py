"""Reading the config file again while running (proxy/reload.py): a file that
does not load, or changes the deployment currency, is refused with its
problems and the running config stays; a good one is put in place piece by
piece, and providers whose connection changed get a new client."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import yaml
from support import router_config

from proxy.config import parse_config
from proxy.ops.answers import ConfigReload
from proxy.reload import reload_runtime
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.store import connect


def write(path, raw: dict) -> None:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(raw))))


@pytest.fixture
async def running(redis_url, key_prefix, redis_client, panels, clock, tmp_path):
    """A runtime whose config file is tmp_path/router.yaml, as it started."""
    path = tmp_path / "router.yaml"
    write(path, router_config())
    settings = Settings(key_prefix=key_prefix, config=path, catalog_recheck=0)
    runtime = Runtime(
        settings,
        parse_config(router_config(), {}),
        connect(redis_url),
        transports={name: panel.transport() for name, panel in panels.items()},
        clock=clock,
    )
    yield runtime, path
    await runtime.aclose()


async def test_a_file_that_does_not_load_keeps_the_running_config(running):
    runtime, path = running
    before = runtime.config
    path.write_text("providers: [this is not a mapping")
    result = await reload_runtime(runtime)
    assert result.ok is False and result.config == str(path) and result.problems
    assert runtime.config is before
    assert await runtime.events.read() == []


async def test_the_deployment_currency_cannot_change_while_running(running):
    runtime, path = running
    write(path, router_config(currency="EUR", exchange_rates={"KRW": "1500", "USD": "1.1"}))
    result = await reload_runtime(runtime)
    assert not result.ok and "cannot change while running" in result.problems[0]
    assert runtime.config.currency == "USD"


async def test_a_good_file_is_put_in_place_piece_by_piece(running):
    runtime, path = running
    old_echomark, old_korean = runtime.providers["echomark"], runtime.providers["korean"]
    raw = router_config(
        health={"consecutive_failures": 7, "max_ejected_percent": 100},
        prices={"change_percent": 5},
        routing={"explore_percent": 0, "outcome_window": 10, "stuck_after": 600},
        settlement={
            "charge_tolerance_percent": 3,
            "subscription_hold_posts": 4,
            "max_old_posts": 7,
            "unsettled_reads": 9,
            "slow_read_minutes": 5,
            "recheck_final_hours": 2,
        },
        fair_use={"requests": "5/second"},
        markup={"percent": 50},
    )
    raw["providers"]["echomark"]["timeout"] = 12  # a connection setting: a new client
    raw["providers"]["korean"]["low_balance"] = "1000"  # not one: the same client
    raw["providers"]["third"] = {"url": "https://third.test/api/v2", "key": "k", "currency": "USD"}
    write(path, raw)
    result = await reload_runtime(runtime)
    assert result == ConfigReload(str(path), ok=True, added=("third",), replaced=("echomark",))
    assert runtime.providers["echomark"] is not old_echomark and runtime.providers["korean"] is old_korean
    assert runtime.currencies["third"] == "USD"
    assert runtime.health.thresholds["korean"].consecutive_failures == 7
    assert runtime.funds.thresholds["korean"] == Decimal(1000)
    assert runtime.listings.change_percent["echomark"] == Decimal(5)
    assert (runtime.router.rules.max_ejected_percent, runtime.router.rules.explore_percent) == (100, 0.0)
    assert (runtime.outcomes.window, runtime.watch.stuck_after) == (10, 600)
    assert (runtime.refresher.tolerance_percent, runtime.actions.hold_posts) == (Decimal(3), 4)
    assert (runtime.actions.max_old_posts, runtime.refresher.unsettled_reads) == (7, 9)
    assert (runtime.refresher.slow_read, runtime.refresher.recheck_final) == (300, 7200)
    assert runtime.fair_use.requests[0].amount == 5
    assert runtime.catalog.config is runtime.config and runtime.config.markup.percent == Decimal(50)
    assert [e.kind for e in await runtime.events.read()] == ["config.reloaded"]
    del raw["providers"]["third"]
    write(path, raw)
    assert (await reload_runtime(runtime)).removed == ("third",)
    assert "third" not in runtime.providers and "third" not in runtime.currencies


async def test_an_operator_s_reload_is_audited_either_way(running):
    runtime, path = running
    path.write_text("currency: usd")
    refused = await runtime.operators.reload_config("admin:ops")
    write(path, router_config())
    done = await runtime.operators.reload_config("admin:ops")
    assert (refused.ok, done.ok) == (False, True)
    # The entry is written before the reload; a refused one is followed by a ".failed" entry saying why.
    entries = [(e.actor, e.action, e.target) for e in await runtime.operators.audit_log()]
    assert entries == [
        ("admin:ops", "config.reload", str(path)),
        ("admin:ops", "config.reload.failed", str(path)),
        ("admin:ops", "config.reload", str(path)),
    ]
    failed = (await runtime.operators.audit_log())[1]
    assert failed.detail["error"].startswith("config not reloaded, the running one stays: currency:")


async def test_a_provider_key_a_reload_brings_is_scrubbed_from_every_line_after_it(running):
    """The log scrubber knows the provider keys it started with; a key that a
    reload adds (a new provider, a rotated key) must be known from then on."""
    import logging

    from proxy import logs

    runtime, path = running
    raw = router_config()
    raw["providers"]["echomark"]["key"] = "rotated-echomark-key"
    raw["providers"]["third"] = {"url": "https://third.test/api/v2", "key": "third-provider-key", "currency": "USD"}
    with logs.captured("info", secrets=["sim-key"]) as buffer:
        write(path, raw)
        assert (await reload_runtime(runtime)).ok
        logging.getLogger("proxy.test").warning("upstream said: rotated-echomark-key third-provider-key sim-key")
    text = buffer.getvalue()
    assert "upstream said" in text
    assert "rotated-echomark-key" not in text and "third-provider-key" not in text and "sim-key" not in text
