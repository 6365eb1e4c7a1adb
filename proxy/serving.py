"""Running the router as a process: `serve` (one process, or N workers that
each build their app from the environment), the background `worker`, and
what every command shares: its settings, the validated config, the log
setup that knows every secret, and the check that Redis keeps what it is
given. `proxy.cli` parses the arguments and calls these.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from proxy import logs
from proxy.config import UNSET_KEY, Config, load_config
from proxy.errors import CommandError, StoreUnfit
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.store import check_store, connect, redacted_url

if TYPE_CHECKING:  # the app is imported when it is served, not for every command
    from proxy.edge.app import ApiFirst

log = logging.getLogger(__name__)


def settings_of(args: argparse.Namespace) -> Settings:
    if getattr(args, "config", None):
        return Settings(config=Path(args.config))
    return Settings()


def config_of(settings: Settings) -> Config:
    return load_config(settings.config, settings.environ())


def need_redis(settings: Settings) -> str:
    if not settings.redis_url:
        raise CommandError(
            "SMM_PROXY_REDIS_URL is not set: the router keeps balances and orders in Redis "
            "(try 'smm-proxy demo' for a self-contained demo)"
        )
    return settings.redis_url


def log_setup(settings: Settings, config: Config) -> None:
    secrets = [p.key for p in config.providers.values() if p.key != UNSET_KEY]
    secrets += [s.get_secret_value() for s in (settings.metrics_token, settings.audit_secret) if s is not None]
    secrets += [settings.webhook_secret] if settings.webhook_secret else []
    logs.configure(settings.log_format, settings.log_level, secrets)


def checked_store(settings: Settings, allow_volatile: bool) -> None:
    """Refuse a Redis that does not answer or may evict keys; warn if it keeps nothing."""
    url = need_redis(settings)

    async def probe() -> list[str]:
        redis = connect(url)
        try:
            return await check_store(redis, allow_volatile)
        finally:
            await redis.aclose()

    try:
        for warning in asyncio.run(probe()):
            log.warning(warning)
    except StoreUnfit as exc:
        raise CommandError(f"Redis at {redacted_url(url)}: {exc}") from None


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from proxy.edge.server import uvicorn_options

    settings = settings_of(args)
    config = config_of(settings)
    log_setup(settings, config)
    checked_store(settings, args.allow_volatile)
    served = {
        **uvicorn_options(settings.forwarded_allow_ips),
        "host": args.host or settings.host,
        "port": args.port or settings.port,
        # SIGTERM: requests in flight get half the grace; the app's shutdown
        # (orders being placed finish or are handed over) the other half.
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace / 2),
    }
    if args.workers > 1:
        # Each worker process builds its own app from the environment: hand it what the flags said.
        os.environ["SMM_PROXY_CONFIG"] = str(settings.config.resolve())
        if args.no_background:
            os.environ["SMM_PROXY_BACKGROUND"] = "false"
        uvicorn.run(
            "proxy.serving:app_from_environment",
            factory=True,
            workers=args.workers,
            **served,
        )
        return
    uvicorn.run(
        app_for(
            settings,
            config,
            background=settings.background and not args.no_background,
            metrics_listener=metrics_socket_of(settings),
        ),
        **served,
    )


def app_for(
    settings: Settings, config: Config, background: bool, metrics_listener: socket.socket | None = None
) -> ApiFirst:
    from proxy.edge.app import create_app

    return create_app(
        Runtime.from_settings(settings, config),
        close_runtime=True,
        background=background,
        metrics_listener=metrics_listener,
    )


def app_from_environment() -> ApiFirst:
    """The app of one `serve --workers N` process, from the environment alone."""
    settings = Settings()
    config = config_of(settings)
    log_setup(settings, config)
    if settings.metrics_port is not None:
        log.warning(
            "serve --workers: no metrics listener of its own (each process would want the port); "
            "/metrics needs SMM_PROXY_METRICS_TOKEN on the public port"
        )
    return app_for(settings, config, background=settings.background)


def metrics_socket_of(settings: Settings) -> socket.socket | None:
    """The metrics listener's socket, if SMM_PROXY_METRICS_PORT asks for one."""
    if settings.metrics_port is None:
        return None
    from proxy.edge.app import metrics_socket

    try:
        return metrics_socket(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        raise CommandError(
            f"cannot listen for metrics on {settings.metrics_host}:{settings.metrics_port}: {exc.strerror}"
        ) from None


def worker(args: argparse.Namespace) -> None:
    """The background work alone (recovery, status polling, provider checks)."""
    settings = settings_of(args)
    config = config_of(settings)
    log_setup(settings, config)
    checked_store(settings, args.allow_volatile)

    listener = metrics_socket_of(settings)

    async def run() -> None:
        from proxy.edge.app import serving_metrics
        from proxy.edge.signals import reload_on_hangup

        runtime = Runtime.from_settings(settings, config)
        stop_reloading = reload_on_hangup(runtime)
        try:
            async with serving_metrics(runtime, listener), runtime.sync.background(settings.sync_interval) as task:
                log.info("worker started: background work every %s s", settings.sync_interval)
                await task
        finally:
            stop_reloading()
            await runtime.aclose()

    asyncio.run(run())
