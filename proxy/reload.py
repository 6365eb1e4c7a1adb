"""Reading the config file again while the router runs (SIGHUP, `POST /admin/config/reload`).

The new file is validated first: a file that does not load is refused with
its problems, and the running config stays. A valid one is put in place
piece by piece, without dropping an order in flight:

- providers whose connection settings changed get a new client; an order
  being placed keeps the client it started with (the old one is closed a
  grace period later), and a removed provider's open orders are read no more
  (as after any removal);
- the catalog is rebuilt from the new services, routes and markups at its
  next read;
- health thresholds, refusal rules, funds thresholds, the price gate, the
  routing policy (explore share, outcome window, stuck thresholds), the
  settlement policy and the per-client limits take effect for the next call.

The deployment currency cannot change this way: every balance is kept in
it. Environment settings (`SMM_PROXY_*`) are not re-read: they need a
restart. Each instance reloads itself: with replicas, signal each one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from proxy import logs
from proxy.config import UNSET_KEY, Config, Provider, load_config
from proxy.errors import ConfigError
from proxy.ops.answers import ConfigReload
from proxy.providers.upstream import ProviderClient

if TYPE_CHECKING:
    from proxy.runtime import Runtime

log = logging.getLogger(__name__)

# Seconds a replaced provider client stays open for the calls under way on it.
CLOSE_AFTER_SECONDS = 120.0
_CONNECTION = ("url", "key", "currency", "timeout", "format", "method", "max_connections")
_BUDGET = ("requests_per_minute", "read_share_percent", "order_wait")


def _same_client(old: Provider, new: Provider) -> bool:
    return all(getattr(old, name) == getattr(new, name) for name in (*_CONNECTION, *_BUDGET))


async def reload_runtime(runtime: Runtime) -> ConfigReload:
    """Load the config file again and put it in place; what happened."""
    path = runtime.settings.config
    try:
        config = load_config(path, runtime.settings.environ())
    except ConfigError as exc:
        log.error("config %s not reloaded, the running one stays:\n%s", path, exc)
        return ConfigReload(str(path), ok=False, problems=tuple(exc.problems))
    if config.currency != runtime.config.currency:
        problem = (
            f"currency: {runtime.config.currency} -> {config.currency} cannot change while running "
            "(every balance is kept in it)"
        )
        log.error("config %s not reloaded, the running one stays: %s", path, problem)
        return ConfigReload(str(path), ok=False, problems=(problem,))
    changed = apply(runtime, config)
    log.warning("config %s reloaded: %s", path, ", ".join(f"{k} {v}" for k, v in changed.items() if v) or "no change")
    await runtime.events.emit("config.reloaded", str(path), f"config {path} reloaded", **changed)
    return ConfigReload(str(path), ok=True, **changed)


def apply(runtime: Runtime, config: Config) -> dict[str, tuple[str, ...]]:
    """Put a validated config in place; the providers added, replaced and removed."""
    from proxy.providers.health import thresholds_from
    from proxy.runtime import price_limits, provider_client, routing_rules

    old = runtime.config
    added = [name for name in config.providers if name not in old.providers]
    removed = [name for name in old.providers if name not in config.providers]
    replaced = [
        name
        for name in config.providers
        if name in old.providers and not _same_client(old.providers[name], config.providers[name])
    ]
    retired = [runtime.providers[name] for name in (*removed, *replaced) if name in runtime.providers]
    for name in removed:
        runtime.providers.pop(name, None)
        runtime.currencies.pop(name, None)
    for name in (*added, *replaced):  # the same dict every component holds: they all see the new clients
        runtime.providers[name] = provider_client(runtime, name, config.providers[name])
    for name, provider in config.providers.items():
        runtime.currencies[name] = provider.currency
    if retired:
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(_close_later(retired))
        runtime.background_tasks.add(task)
        task.add_done_callback(runtime.background_tasks.discard)

    runtime.config = config
    # A new provider's key, or a rotated one, is scrubbed from every line from now on.
    logs.add_secrets(p.key for p in config.providers.values() if p.key != UNSET_KEY)
    runtime.health.thresholds = thresholds_from(config, runtime.settings.upstream_cooldown)
    runtime.funds.thresholds = {n: p.low_balance for n, p in config.providers.items()}
    runtime.listings.change_percent = price_limits(config)
    runtime.router.rules = routing_rules(config)
    runtime.outcomes.window = config.routing.outcome_window
    runtime.watch.stuck_after = config.routing.stuck_after
    runtime.watch.stuck_after_by_service = {s.id: s.stuck_after for s in config.services if s.stuck_after}
    runtime.refresher.tolerance_percent = config.settlement.charge_tolerance_percent
    runtime.refresher.unsettled_reads = config.settlement.unsettled_reads
    runtime.refresher.slow_read = config.settlement.slow_read_minutes * 60
    runtime.refresher.recheck_final = config.settlement.recheck_final_hours * 3600
    runtime.actions.hold_posts = config.settlement.subscription_hold_posts
    runtime.actions.max_old_posts = config.settlement.max_old_posts
    runtime.fair_use.configure(config.fair_use)
    runtime.catalog.replace(config)
    runtime.operators.replace_config(config)
    return {"added": tuple(added), "replaced": tuple(replaced), "removed": tuple(removed)}


async def _close_later(clients: Sequence[ProviderClient]) -> None:
    await asyncio.sleep(CLOSE_AFTER_SECONDS)
    for client in clients:
        try:
            await client.aclose()
        except Exception as exc:
            log.warning("a replaced provider client did not close cleanly: %s", type(exc).__name__)
