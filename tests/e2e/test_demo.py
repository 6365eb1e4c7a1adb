"""`smm-proxy demo` as an operator runs it: started, then stopped (Ctrl+C or
SIGTERM), it leaves nothing running behind it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(tmp_path: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """`smm-proxy demo` as the README runs it, its output in a file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMM_PROXY_")}
    env["SMM_PROXY_ARCHIVE_DIR"] = str(tmp_path / "archive")
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "demo", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parent.parent.parent,
        )
    return process, log


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_demo_takes_its_embedded_redis_server_with_it(tmp_path: Path, stop: signal.Signals) -> None:
    """Its redis-server was left running (and its folder in /tmp): uvicorn
    raised the signal again as it stopped, which ended the process before the
    demo could stop what it had started."""
    process, log = start_demo(tmp_path, free_port())
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while "Press Ctrl+C" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        started = psutil.Process(process.pid).children(recursive=True)
        assert any("redis-server" in " ".join(child.cmdline()) for child in started)
        process.send_signal(stop)
        process.wait(timeout=30)
        time.sleep(0.2)
        left = [child for child in started if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
        assert left == [], [child.cmdline() for child in left]
        assert "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
        for child in started:  # what the demo started, if it left it running
            if child.is_running():
                child.kill()


def test_the_demo_router_names_no_server_software_in_its_replies(tmp_path: Path) -> None:
    """uvicorn's "server: uvicorn" told every scanner what answers; the reply
    (one send: proxy.edge.server) still carries its request ID."""
    port = free_port()
    process, log = start_demo(tmp_path, port)
    try:
        deadline = time.monotonic() + 60
        while "API key" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        key = next(line.split()[-1] for line in log.read_text().splitlines() if "API key" in line)
        reply = httpx.post(f"http://127.0.0.1:{port}/api/v2", data={"key": key, "action": "balance"})
        assert reply.json() == {"balance": "100.00", "currency": "USD"}
        assert "server" not in reply.headers
        assert reply.headers["x-request-id"]
    finally:
        process.terminate()
        process.wait(timeout=30)
