"""The new operator commands end to end: events, providers approve."""

import json
from pathlib import Path

import pytest
import redis

from proxy.cli import main
from proxy.store import Keys

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(redis_url, key_prefix, monkeypatch, capsys):
    monkeypatch.setenv("SMM_PROXY_REDIS_URL", redis_url)
    monkeypatch.setenv("SMM_PROXY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("SMM_PROXY_CONFIG", str(ROOT / "config" / "example.yaml"))
    monkeypatch.setenv("ECHOMARK_API_KEY", "x")
    monkeypatch.setenv("KOREAN_PANEL_API_KEY", "y")

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    sync = redis.Redis.from_url(redis_url)
    stale = list(sync.scan_iter(match=f"{key_prefix}*"))
    if stale:
        sync.delete(*stale)
    sync.close()


def test_events_and_price_approvals_from_the_command_line(cli, redis_url, key_prefix):
    keys = Keys(key_prefix)
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    held = {"approved": "0.90", "proposed": "2.00", "at": 1.0}
    store.hset(keys.held_prices("echomark"), "1", json.dumps(held))
    store.xadd(keys.events, {"kind": "price.held", "subject": "echomark", "message": "held", "detail": "{}"})
    store.close()
    code, out, _ = cli("events", "--json", "--since", "1h")
    assert code == 0 and [e["kind"] for e in json.loads(out)] == ["price.held"]
    code, out, _ = cli("events", "--kind", "provider.")
    assert code == 0 and out.strip() == "(none)"
    code, _, err = cli("providers", "approve", "echomark", "7")
    assert code == 2 and "no held price change of echomark service 7" in err
    code, _, err = cli("providers", "approve", "nobody")
    assert code == 2 and "no provider 'nobody'" in err
    code, out, _ = cli("providers", "approve", "echomark")
    assert code == 0 and "service 1: 0.90 -> 2.00 approved" in out
    code, out, _ = cli("audit", "--json")
    assert json.loads(out)[0]["action"] == "price.approve"
    code, out, _ = cli("events", "--json")
    assert [e["kind"] for e in json.loads(out)] == ["price.approved", "price.held"]
    code, _, err = cli("events", "--limit", "0")
    assert code == 2 and "limit" in err
