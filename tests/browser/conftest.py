"""Fixtures of the browser tests (see `demo.py`): one demo and one chromium per module."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .demo import OUTPUT, START_SECONDS, Demo, chromium, free_port


@pytest.fixture(scope="module")
def demo(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    prefix = f"smm-test:{uuid.uuid4().hex[:12]}:"
    folder = tmp_path_factory.mktemp("demo")
    log = folder / "demo.log"
    env = {
        **os.environ,
        "SMM_PROXY_REDIS_URL": redis_server,
        "SMM_PROXY_KEY_PREFIX": prefix,
        "SMM_PROXY_SYNC_INTERVAL": "1",
        "SMM_PROXY_STATUS_TTL": "1",
        "SMM_PROXY_ARCHIVE_DIR": str(folder / "archive"),
        "SMM_PROXY_LOG_FORMAT": "json",
    }
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "demo", "--port", str(port), "--step", "2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parent.parent.parent,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        text = ""
        while "Press Ctrl+C" not in text:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the demo did not start:\n{log.read_text()}")
            time.sleep(0.1)
            text = log.read_text()
        token = re.search(r"admin token \(role owner\): (\S+)", text)
        key = re.search(r"API key\s+(\S+)", text)
        panels = re.search(r"Panels\s+echomark (\S+), korean (\S+) ", text)
        assert token and key and panels, text
        yield Demo(
            f"http://127.0.0.1:{port}",
            token.group(1),
            key.group(1),
            {"echomark": panels.group(1), "korean": panels.group(2)},
            process,
            log,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        client = redis.Redis.from_url(redis_server)
        stale = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if stale:
            client.delete(*stale)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the browser tests need Playwright: pip install -e '.[test]'")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(path), args=["--no-sandbox"])
        yield launched
        launched.close()
