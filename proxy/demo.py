"""`smm-proxy demo`: the whole router on one machine, with nothing to set up.

It starts an embedded Redis (unless `SMM_PROXY_REDIS_URL` is set), two
simulated panels on loopback standing in for echomark.store (USD) and the
Korean panel (KRW), the router with `config/demo.yaml`, and a demo client
with a balance, and the operators' dashboard with an owner's login, then
prints what to paste into a terminal and where to log in.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import uvicorn

from proxy.config import load_config
from proxy.edge.app import create_app
from proxy.edge.server import uvicorn_options
from proxy.embedded import EmbeddedRedis
from proxy.errors import AccountError
from proxy.ops.roles import OWNER
from proxy.runtime import Runtime
from proxy.settings import Settings
from proxy.sim.app import create_app as create_panel_app
from proxy.sim.catalogs import build_panel
from proxy.sim.panel import DEFAULT_KEY
from proxy.sim.server import serve_panel
from proxy.store import connect, redacted_url

DEMO_CLIENT = "demo"
DEMO_ADMIN = "demo"
DEMO_BALANCE = Decimal("100")
# Simulated orders move one status every this many seconds.
DEMO_STEP_SECONDS = 20.0


async def demo_admin(runtime: Runtime) -> str:
    """An owner's admin token for the dashboard (a demo admin left in a real Redis is made anew)."""
    registry = runtime.admins
    if any(admin.name == DEMO_ADMIN for admin in await registry.all()):
        await registry.remove(DEMO_ADMIN)
    _, token = await registry.add(DEMO_ADMIN, OWNER)
    return token


def demo_config_path() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base / "config" / "demo.yaml"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("config/demo.yaml not found: run the demo from the project folder")


def instructions(
    url: str, api_key: str, redis_note: str, dashboard: str = "", token: str = "", panels: str = ""
) -> str:
    curl = f"curl -s {url}"
    return f"""
smm-proxy demo is running.

  Router     {url}
  Storage    {redis_note}
  Client     {DEMO_CLIENT}, balance {DEMO_BALANCE} USD
  API key    {api_key}
  Dashboard  {dashboard}
  Login      paste this admin token (role owner): {token}
  Panels     {panels} (simulated: POST /_sim/faults to break one)

Try:
  {curl} -d key={api_key} -d action=services
  {curl} -d key={api_key} -d action=balance
  {curl} -d key={api_key} -d action=add -d service=1 -d link=https://instagram.com/demo -d quantity=500
  {curl} -d key={api_key} -d action=status -d order=1

Press Ctrl+C to stop.
"""


class _DemoServer(uvicorn.Server):
    """Stops at SIGINT or SIGTERM and returns, so the demo stops what it
    started (its embedded redis-server, its panels). uvicorn raises the
    signal again as it returns: SIGTERM's default action would end the
    process there, leaving the redis-server running."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


async def run_demo(settings: Settings, listener: socket.socket, step_seconds: float = DEMO_STEP_SECONDS) -> None:
    """Run the demo on an already bound `listener`; the banner comes once it serves.
    Simulated orders move one status every `step_seconds`."""
    host, port = listener.getsockname()[:2]
    settings = settings.model_copy(update={"dashboard": True})
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url
        redis_note = redis_url and redacted_url(redis_url) or "embedded redis-server (kept in memory, gone at exit)"
        if not redis_url:
            redis_url = stack.enter_context(EmbeddedRedis())
        echomark = build_panel("echomark", step_seconds=step_seconds)
        korean = build_panel("korean", step_seconds=step_seconds, seed=1)
        async with (
            serve_panel(create_panel_app(echomark)) as echomark_url,
            serve_panel(create_panel_app(korean)) as korean_url,
        ):
            environ = {
                **settings.environ(),
                "DEMO_ECHOMARK_URL": echomark_url,
                "DEMO_ECHOMARK_KEY": DEFAULT_KEY,
                "DEMO_KOREAN_URL": korean_url,
                "DEMO_KOREAN_KEY": DEFAULT_KEY,
            }
            config = load_config(demo_config_path(), environ)
            runtime = Runtime(settings, config, connect(redis_url))
            try:
                try:
                    _, api_key = await runtime.accounts.create(DEMO_CLIENT, DEMO_BALANCE)
                except AccountError:  # a demo client left in a real Redis
                    api_key = await runtime.accounts.rotate_key(DEMO_CLIENT)
                token = await demo_admin(runtime)
                await runtime.catalog.current()  # fetch both service lists before the first client does
                server = _DemoServer(
                    uvicorn.Config(
                        create_app(runtime, background=True), **uvicorn_options(settings.forwarded_allow_ips)
                    )
                )
                serving = asyncio.create_task(server.serve(sockets=[listener]))
                while not server.started:
                    if serving.done():
                        return await serving
                    await asyncio.sleep(0.01)
                base = f"http://{host}:{port}"
                panels = f"echomark {echomark_url.removesuffix('/api/v2')}, korean {korean_url.removesuffix('/api/v2')}"
                banner = instructions(f"{base}/api/v2", api_key, redis_note, f"{base}/dashboard", token, panels)
                print(banner, flush=True)
                await serving
            finally:
                await runtime.aclose()
