"""A simulated SMM panel speaking API v2, for the demo, tests and benchmarks.

    panel = build_panel("echomark", clock=fake_clock)
    app = create_app(panel)                  # Starlette app: /api/v2, /_sim/faults, /_sim/state
    async with serve_panel(app) as url: ...  # real loopback HTTP

`panel.faults` switches transport faults and reply quirks at runtime.
"""

from proxy.sim.app import create_app
from proxy.sim.catalogs import build_panel, echomark_services, korean_services
from proxy.sim.faults import MODES, QUIRKS, Faults
from proxy.sim.panel import (
    DEFAULT_KEY,
    Panel,
    PanelError,
    SimOrder,
    SimRefill,
    SimService,
)
from proxy.sim.server import serve_panel, serve_panel_in_thread

__all__ = [
    "DEFAULT_KEY",
    "MODES",
    "QUIRKS",
    "Faults",
    "Panel",
    "PanelError",
    "SimOrder",
    "SimRefill",
    "SimService",
    "build_panel",
    "create_app",
    "echomark_services",
    "korean_services",
    "serve_panel",
    "serve_panel_in_thread",
]
