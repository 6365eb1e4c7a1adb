"""The smm-proxy operator commands, end to end against a real Redis."""

import json
from pathlib import Path

import pytest
import redis

from proxy.cli import main

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


def test_clients_lifecycle_with_json(cli):
    code, out, _ = cli("clients", "add", "acme", "--balance", "50", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["balance"] == "50.00" and created["currency"] == "USD" and len(created["key"]) == 32

    code, out, _ = cli("clients", "topup", "acme", "25.5", "--ref", "inv-1", "--json")
    assert json.loads(out)["balance"] == "75.50" and json.loads(out)["applied"] is True
    code, out, _ = cli("clients", "topup", "acme", "25.5", "--ref", "inv-1", "--json")
    assert json.loads(out)["balance"] == "75.50" and json.loads(out)["applied"] is False

    code, out, _ = cli("clients", "list", "--json")
    assert json.loads(out) == [{"name": "acme", "balance": "75.50", "currency": "USD", "disabled": False}]

    code, out, _ = cli("clients", "ledger", "acme", "--json")
    ledger = json.loads(out)
    assert [(e["kind"], e["amount"], e["balance"]) for e in ledger] == [
        ("topup", "50.00", "50.00"),
        ("topup", "25.50", "75.50"),
    ]

    code, out, _ = cli("clients", "disable", "acme", "--json")
    assert json.loads(out)["disabled"] is True


def test_human_output_and_key_shown_once(cli):
    code, out, _ = cli("clients", "add", "bob")
    assert code == 0 and "API key (shown once, stored hashed):" in out
    code, out, _ = cli("clients", "list")
    assert "bob" in out and "0.00" in out and "active" in out


def test_refusals_are_clean(cli):
    cli("clients", "add", "carol")
    code, _, err = cli("clients", "add", "carol")
    assert code == 2 and "exists already" in err
    code, _, err = cli("clients", "topup", "carol", "abc")
    assert code == 2 and "not an amount" in err
    code, _, err = cli("clients", "topup", "nobody", "5")
    assert code == 2 and "no client 'nobody'" in err
    code, _, err = cli("clients", "topup", "carol", "-5")
    assert code == 2 and "positive" in err
    code, _, err = cli("clients", "ledger", "nobody")
    assert code == 2
