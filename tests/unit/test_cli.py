"""The smm-proxy operator commands, end to end against a real Redis (the `cli`
fixture of tests/unit/conftest.py)."""

import json

import pytest
import redis

from proxy.cli import main


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


def test_version_check_json_and_usage_errors(cli, monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("smm-proxy ")
    code, out, _ = cli("check", "--json")
    assert code == 0 and json.loads(out)["ok"] is True and json.loads(out)["providers"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("currency: usd\nproviders: {}\n")
    code, out, _ = cli("check", "--json", "--config", str(bad))
    assert code == 2 and json.loads(out)["ok"] is False and json.loads(out)["problems"]
    with pytest.raises(SystemExit) as exited:
        main(["orders", "resolve", "1"])  # neither --upstream-order nor --failed
    assert exited.value.code == 2 and "one of the arguments" in capsys.readouterr().err
    monkeypatch.delenv("SMM_PROXY_REDIS_URL")
    code, _, err = cli("clients", "add", "dora")
    assert code == 2 and "SMM_PROXY_REDIS_URL is not set" in err and "Traceback" not in err


def test_serve_refuses_a_redis_it_cannot_trust(cli, monkeypatch):
    from proxy.store import EmbeddedRedis

    monkeypatch.setenv("SMM_PROXY_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    code, _, err = cli("serve")
    assert code == 2 and "does not answer" in err and "hunter2" not in err and "Traceback" not in err
    with EmbeddedRedis() as url:
        redis.Redis.from_url(url).config_set("maxmemory-policy", "allkeys-lru")
        monkeypatch.setenv("SMM_PROXY_REDIS_URL", url)
        code, _, err = cli("serve")
        assert code == 2 and "maxmemory-policy is 'allkeys-lru'" in err


def test_admin_tokens_and_audit(cli):
    code, out, _ = cli("admin", "add", "backoffice", "--json")
    token = json.loads(out)["token"]
    assert code == 0 and len(token) > 30
    assert cli("admin", "list", "--json")[1].strip() == json.dumps(["backoffice"], indent=2)
    cli("clients", "add", "erin", "--balance", "5")
    code, out, _ = cli("audit", "--json")
    actions = [(row["actor"], row["action"], row["target"]) for row in json.loads(out)]
    assert actions == [("cli", "client.create", "erin"), ("cli", "admin.add", "backoffice")]
    assert cli("admin", "remove", "backoffice")[0] == 0
    assert cli("admin", "remove", "backoffice")[0] == 2


def test_demo_refuses_a_taken_port_before_its_banner(capsys):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        code = main(["demo", "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
    out, err = capsys.readouterr()
    assert code == 2 and "cannot listen" in err and "is running" not in out


def test_amounts_that_do_not_fit_the_ledger_are_refused(cli):
    code, _, err = cli("clients", "add", "frank", "--balance", "1000000000")
    assert code == 2 and "too large" in err and "Traceback" not in err
    code, _, err = cli("clients", "add", "frank", "--balance", "0.00000001")
    assert code == 2 and "decimal places" in err
