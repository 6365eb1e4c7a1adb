"""deploy/Caddyfile, run by a real Caddy (Debian's `caddy` package; skipped
without it): its readiness checks really run, and /metrics never passes."""

import http.server
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import ROOT

pytestmark = pytest.mark.skipif(shutil.which("caddy") is None, reason="no caddy binary (apt-get install caddy)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replica(name: str, ready: bool) -> tuple[http.server.ThreadingHTTPServer, int]:
    """A stand-in for a router replica: /readyz says whether it is ready; anything else names it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            status = (200 if ready else 503) if self.path == "/readyz" else 200
            body = name.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_only_ready_replicas_take_requests_and_metrics_never_pass(tmp_path: Path):
    ready, ready_port = replica("ready", True)
    unready, unready_port = replica("unready", False)
    port = free_port()
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "{$SMM_PROXY_DOMAIN} {" in caddyfile and "to router-1:8080 router-2:8080" in caddyfile
    local = "{\n\tadmin off\n}\n" + caddyfile.replace("{$SMM_PROXY_DOMAIN} {", f"http://127.0.0.1:{port} {{")
    local = local.replace("to router-1:8080 router-2:8080", f"to 127.0.0.1:{unready_port} 127.0.0.1:{ready_port}")
    local = local.replace("health_interval 5s", "health_interval 200ms")
    (tmp_path / "Caddyfile").write_text(local)
    caddy = subprocess.Popen(
        ["caddy", "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v2", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "caddy did not start"
                time.sleep(0.1)
        time.sleep(0.6)  # a few rounds of health checks
        answered = {httpx.get(f"http://127.0.0.1:{port}/api/v2", timeout=2).text for _ in range(20)}
        assert answered == {"ready"}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        assert metrics.status_code == 404 and "ready" not in metrics.text
    finally:
        caddy.terminate()
        caddy.wait(timeout=10)
        ready.shutdown()
        unready.shutdown()
