"""What the browser tests stand on: the demo as a process, chromium, where screenshots go.

`demo` starts `smm-proxy demo` (its simulated panels included) once per
module, on the test Redis under a key prefix of its own, with orders that
move quickly, and reads its banner: the dashboard's URL, the owner's login
token, the demo client's API key and the panels' URLs (to break one).
`browser` is one chromium for the module (`executable_path=/usr/bin/chromium`:
Playwright never downloads a browser here). If chromium is missing, it is
installed with apt-get when we may (root, Debian); if it cannot be, the
tests are skipped saying so. Screenshots go to tests/output/dashboard/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parent.parent / "output" / "dashboard"
PHONE = {"width": 390, "height": 844}
START_SECONDS = 60


def chromium() -> Path:
    """Debian's chromium: installed now if it is missing and we may, else the tests skip."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        subprocess.run([apt, "install", "-y", "-q", "chromium"], capture_output=True, timeout=900, check=False)
    if not CHROMIUM.exists():
        pytest.skip(
            f"the browser tests need Debian's chromium at {CHROMIUM} and it could not be installed "
            "(run: apt-get install -y chromium)"
        )
    return CHROMIUM


@dataclass
class Demo:
    base: str  # http://127.0.0.1:PORT
    token: str  # the owner's admin token
    api_key: str  # the demo client's
    panels: dict[str, str]  # name -> base URL of the simulated panel
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def dashboard(self) -> str:
        return f"{self.base}/dashboard"

    def add(self, service: int, link: str, quantity: int = 500, key: str | None = None) -> dict[str, object]:
        """An add as a client sends it: the demo client's, or the one `key` names."""
        data = {"key": key or self.api_key, "action": "add", "service": service, "link": link, "quantity": quantity}
        return httpx.post(f"{self.base}/api/v2", data=data, timeout=60).json()

    def new_client(self, name: str, balance: str) -> str:
        """A client of the test's own (its API key): its balance moves only with its own
        orders, while the demo's panels go on moving the orders other tests placed."""
        answer = httpx.post(
            f"{self.base}/admin/clients",
            json={"name": name, "balance": balance},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return str(answer.json()["key"])

    def admin(self, path: str) -> object:
        """The admin API, with the same token: what the dashboard shows is checked against it."""
        answer = httpx.get(f"{self.base}/admin{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def fault(self, panel: str, **faults: object) -> None:
        httpx.post(f"{self.panels[panel]}/_sim/faults", json=faults, timeout=10).raise_for_status()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
