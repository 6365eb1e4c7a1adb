"""Run a simulated panel on real loopback HTTP.

httpx's ASGITransport calls the app directly and enforces no timeouts; tests of
timeouts, and the demo, need a real socket:

    async with serve_panel(create_app(panel)) as url:   # "http://127.0.0.1:PORT/api/v2"
        ...

    with serve_panel_in_thread(panel) as url:            # from sync code
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import uvicorn

from proxy.sim.app import create_app
from proxy.sim.panel import Panel


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host program."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _server(app: Any, host: str, port: int) -> _EmbeddedServer:
    if isinstance(app, Panel):
        app = create_app(app)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        # Hanging requests (fault modes) must not hold up shutdown.
        timeout_graceful_shutdown=1,
    )
    return _EmbeddedServer(config)


def _url(server: uvicorn.Server, host: str) -> str:
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://{host}:{port}/api/v2"


@contextlib.asynccontextmanager
async def serve_panel(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` (or a `Panel`) in a background task; yield its API v2 URL."""
    server = _server(app, host, port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"panel server failed to start on {host}:{port}")
        await asyncio.sleep(0.005)
    try:
        yield _url(server, host)
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def serve_panel_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` (or a `Panel`) from a thread with its own event loop; yield its URL."""
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name="sim-panel", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"panel server failed to start on {host}:{port}")
        thread.join(0.005)
    try:
        yield _url(server, host)
    finally:
        server.should_exit = True
        thread.join()
