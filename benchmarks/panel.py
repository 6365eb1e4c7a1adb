"""A fast simulated panel for benchmarks: no latency, an optional big catalog.

python benchmarks/panel.py --port 18001 --services 5000 --currency USD
"""

from __future__ import annotations

import argparse
from decimal import Decimal

import uvicorn

from proxy.sim.app import create_app
from proxy.sim.catalogs import build_panel
from proxy.sim.panel import SimService


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--preset", default="echomark")
    parser.add_argument("--services", type=int, default=0, help="add this many extra Default services")
    parser.add_argument("--first-order", type=int, default=100000)
    args = parser.parse_args()
    panel = build_panel(
        args.preset, step_seconds=3600, first_order_id=args.first_order, accounts={"sim-key": Decimal(10**9)}
    )
    for i in range(args.services):
        service = 100_000 + i
        panel.catalog[service] = SimService(
            service,
            f"Instagram Followers {i} [Refill {i % 60}D]",
            "Default",
            f"Instagram Followers {i % 40}",
            Decimal("0.5") + Decimal(i % 100) / 100,
            10,
            100_000,
            refill=bool(i % 2),
            cancel=bool(i % 3),
        )
    uvicorn.run(create_app(panel), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
