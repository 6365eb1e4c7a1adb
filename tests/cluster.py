"""A real three-master Redis Cluster for tests, started from the redis-server binary.

No redis-cli is needed: slots are assigned and nodes introduced with CLUSTER
commands. Everything lives in a temporary folder and ends with the context.
"""

from __future__ import annotations

import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from proxy.embedded import redis_server_binary

SLOTS = 16384


def _free_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, as Redis needs."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports")


class LocalCluster:
    def __init__(self, masters: int = 3) -> None:
        self.masters = masters
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        self._dir = tempfile.TemporaryDirectory(prefix="smm-proxy-cluster-")
        binary = redis_server_binary()
        for _ in range(self.masters):
            port = _free_port()
            folder = Path(self._dir.name) / str(port)
            folder.mkdir()
            self.processes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--dir",
                        str(folder),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--maxmemory-policy",
                        "noeviction",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.ports.append(port)
        nodes = [redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1) for port in self.ports]
        deadline = time.monotonic() + 15
        for node in nodes:
            while True:
                try:
                    node.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.__exit__()
                        raise RuntimeError("the cluster's nodes did not start") from None
                    time.sleep(0.05)
        per = SLOTS // self.masters
        for i, node in enumerate(nodes):
            last = SLOTS - 1 if i == self.masters - 1 else (i + 1) * per - 1
            for start in range(i * per, last + 1, 1000):
                node.execute_command("CLUSTER", "ADDSLOTS", *range(start, min(start + 1000, last + 1)))
        for port in self.ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        while any(node.cluster("INFO")["cluster_state"] != "ok" for node in nodes):
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the cluster did not come up")
            time.sleep(0.05)
        for node in nodes:
            node.close()
        return f"redis-cluster://127.0.0.1:{self.ports[0]}/0"

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._dir is not None:
            self._dir.cleanup()
