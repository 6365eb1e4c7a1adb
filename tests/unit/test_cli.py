"""The smm-proxy operator commands, end to end against a real Redis (the `cli`
fixture of tests/unit/conftest.py)."""

import json

import pytest
import redis

from proxy import commands
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
    assert json.loads(out) == [
        {
            "name": "acme",
            "balance": "75.50",
            "currency": "USD",
            "disabled": False,
            "markup": "",
            "duplicate_window": None,
            "same_link": "allow",
            "rates": {},
        }
    ]

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
    # A name typed with a line break (a shell's $'carol\n') is refused, not a second "carol".
    code, _, err = cli("clients", "add", "carol\n")
    assert code == 2 and "a client name is" in err
    code, _, err = cli("admin", "add", "boss\n", "--role", "owner")
    assert code == 2 and "an admin name is" in err


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
    from proxy.embedded import EmbeddedRedis

    monkeypatch.setenv("SMM_PROXY_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    code, _, err = cli("serve")
    assert code == 2 and "does not answer" in err and "hunter2" not in err and "Traceback" not in err
    with EmbeddedRedis() as url:
        redis.Redis.from_url(url).config_set("maxmemory-policy", "allkeys-lru")
        monkeypatch.setenv("SMM_PROXY_REDIS_URL", url)
        code, _, err = cli("serve")
        assert code == 2 and "maxmemory-policy is 'allkeys-lru'" in err


def test_admin_tokens_and_audit(cli):
    code, out, _ = cli("admin", "add", "backoffice", "--role", "operator", "--expires", "90d", "--json")
    token = json.loads(out)["token"]
    assert code == 0 and len(token) > 30
    [listed] = json.loads(cli("admin", "list", "--json")[1])
    assert (listed["name"], listed["role"], listed["expired"], listed["last_used"]) == (
        "backoffice",
        "operator",
        False,
        "",
    )
    assert listed["expires"] > listed["last_used"]
    cli("clients", "add", "erin", "--balance", "5", "--reason", "signed up")
    code, out, _ = cli("audit", "--json")
    actions = [(row["actor"], row["action"], row["target"], row["reason"]) for row in json.loads(out)]
    me = commands.ACTOR.name
    assert me.startswith("cli:") and len(me) > 4
    assert actions == [(me, "client.create", "erin", "signed up"), (me, "admin.add", "backoffice", "")]
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


# -- terms, undo, audit, search: the commands of issue 14 ---------------------------------


def test_a_wrong_topup_is_undone_with_a_reason_the_ledger_and_the_audit_show(cli):
    cli("clients", "add", "gina", "--balance", "10")
    cli("clients", "topup", "gina", "100")  # meant 10
    code, out, _ = cli(
        "clients", "adjust", "gina", "-90", "--reason", "top-up typed as 100", "--ref", "fix-1", "--json"
    )
    undone = json.loads(out)
    assert code == 0 and (undone["kind"], undone["amount"], undone["balance"]) == ("adjust", "-90.00", "20.00")
    assert undone["memo"] == "top-up typed as 100" and undone["actor"] == commands.ACTOR.name and undone["applied"]
    code, out, _ = cli("clients", "adjust", "gina", "-90", "--reason", "again", "--ref", "fix-1", "--json")
    assert code == 0 and json.loads(out)["applied"] is False and json.loads(out)["balance"] == "20.00"
    code, _, err = cli("clients", "adjust", "gina", "-20.01", "--reason", "too much")
    assert code == 2 and "would take it below zero" in err
    code, _, err = cli("clients", "adjust", "gina", "5")
    assert code == 2 and "--reason" in err
    ledger = json.loads(cli("clients", "ledger", "gina", "--json")[1])
    assert [(e["kind"], e["amount"], e["memo"]) for e in ledger][-1] == ("adjust", "-90.00", "top-up typed as 100")
    [entry, *_] = json.loads(cli("audit", "--json")[1])
    assert (entry["action"], entry["target"], entry["reason"], entry["detail"]["amount"]) == (
        "client.adjust",
        "gina",
        "top-up typed as 100",
        "-90.00",
    )


def test_a_client_is_enabled_again_and_its_key_rotated(cli, redis_url, key_prefix):
    key = json.loads(cli("clients", "add", "hana", "--json")[1])["key"]
    cli("clients", "disable", "hana", "--reason", "chargeback")
    assert json.loads(cli("clients", "enable", "hana", "--json")[1])["disabled"] is False
    code, out, _ = cli("clients", "rotate-key", "hana", "--json")
    new = json.loads(out)
    assert code == 0 and list(new) == ["key"] and len(new["key"]) == 32 and new["key"] != key
    code, out, _ = cli("clients", "rotate-key", "hana")
    assert "shown once" in out and new["key"] not in out


def test_terms_are_set_shown_and_refused_when_absurd(cli):
    cli("clients", "add", "ivy")
    code, out, _ = cli(
        "clients", "set", "ivy", "--markup", "12.5", "--duplicate-window", "60", "--same-link", "refuse", "--json"
    )
    shown = json.loads(out)
    assert code == 0 and (shown["markup"], shown["duplicate_window"], shown["same_link"]) == ("12.5", 60.0, "refuse")
    assert "markup 12.5%, window 60s, same link refused" in cli("clients", "list")[1]
    assert json.loads(cli("clients", "set", "ivy", "--markup", "default", "--json")[1])["markup"] == ""
    for option, value in [
        ("--markup", "-1"),
        ("--markup", "1e999999"),
        ("--markup", "NaN"),
        ("--markup", ""),
        ("--duplicate-window", "-1"),
        ("--duplicate-window", "1e999999"),
        ("--duplicate-window", "1.5"),
    ]:
        code, _, err = cli("clients", "set", "ivy", option, value)
        assert code == 2 and "Traceback" not in err, (option, value, err)
    code, _, err = cli("clients", "set", "ivy")
    assert code == 2 and "give at least one term" in err
    code, _, err = cli("clients", "rate", "ivy", "1", "5")
    assert code == 2 and "no service 1 is sold now" in err  # no service list cached: its cost is unknown
    for args in (["1"], ["1", "5", "--clear"], ["-1", "5"], ["1e999999", "5"], ["1", "NaN"], ["1", "1e999999"]):
        code, _, err = cli("clients", "rate", "ivy", *args)
        assert code == 2 and "Traceback" not in err, args


def test_hostile_values_are_a_message_and_exit_2_never_a_traceback(cli):
    cli("clients", "add", "jo", "--balance", "5")
    for argv in (
        ["clients", "topup", "jo", "1e999999"],
        ["clients", "adjust", "jo", "1e999999", "--reason", "x"],
        ["clients", "adjust", "jo", "NaN", "--reason", "x"],
        ["clients", "adjust", "jo", "0", "--reason", "x"],
        ["clients", "adjust", "jo", "1", "--reason", ""],
        ["clients", "add", "kim", "--balance", "1e999999"],
        ["orders", "refund", "1", "1e999999"],
        ["orders", "list", "--limit", "0"],
        ["orders", "list", "--limit", "-1"],
        ["orders", "list", "--limit", "1e999999"],
        ["orders", "list", "--state", "bogus"],
        ["orders", "list", "--since", "10000000d"],
        ["orders", "list", "--until", "yesterday"],
        ["orders", "list", "--upstream-order", "-5"],
        ["orders", "show", "-1"],
        ["orders", "show", "1e999999"],
        ["clients", "ledger", "jo", "--limit", "0"],
        ["report", "--since", "10000000d"],
        ["orders", "archive", "--older-than", "10000000d"],
        ["admin", "add", "x", "--expires", "1e999999d"],
        ["admin", "add", "x", "--role", "root"],
        ["audit", "--limit", "0"],
    ):
        code, out, err = cli(*argv)
        assert code == 2 and "Traceback" not in err and err.strip(), argv
    assert json.loads(cli("clients", "list", "--json")[1])[0]["balance"] == "5.00"


def test_orders_are_found_by_link_upstream_order_and_time(cli, redis_url, key_prefix):
    code, out, _ = cli("orders", "list", "--link", "https://instagram.com/p/x", "--since", "7d", "--until", "1m")
    assert code == 0 and out.strip() == "(none)"
    code, out, _ = cli("orders", "list", "--upstream-order", "5000", "--json")
    assert code == 0 and json.loads(out) == []


def test_the_audit_verifies_and_a_deleted_entry_is_caught(cli, redis_url, key_prefix):
    for name in ("lee", "max", "ned"):
        cli("clients", "add", name)
    code, out, _ = cli("audit", "verify")
    assert code == 0 and "audit log intact: 3 entries, head at 3" in out
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    [(second, _)] = sync.xrange(f"{key_prefix}{{audit}}:log", count=2)[1:]
    sync.xdel(f"{key_prefix}{{audit}}:log", second)
    sync.close()
    code, out, _ = cli("audit", "verify", "--json")
    check = json.loads(out)
    assert code == 1 and (check["intact"], check["bad_seq"]) == (False, 3)
    assert "entries before it are missing (2): deleted" in check["problem"]
    code, out, _ = cli("audit", "verify")
    assert code == 1 and "audit log BROKEN at entry 3" in out


def test_operator_commands_need_no_provider_keys_unless_they_call_a_provider(cli, monkeypatch):
    monkeypatch.delenv("ECHOMARK_API_KEY")
    monkeypatch.delenv("KOREAN_PANEL_API_KEY")
    assert cli("clients", "add", "olga", "--balance", "3")[0] == 0
    for argv in (["clients", "list"], ["orders", "list"], ["providers"], ["report"], ["audit", "verify"]):
        code, _, err = cli(*argv)
        assert code == 0, (argv, err)
    code, _, err = cli("providers", "--check")
    assert code == 2 and "set ECHOMARK_API_KEY, KOREAN_PANEL_API_KEY in the environment" in err


def test_an_operator_action_writes_a_log_line_and_a_read_writes_none(cli, monkeypatch):
    monkeypatch.setenv("SMM_PROXY_LOG_FORMAT", "json")
    _, _, err = cli("clients", "add", "pia", "--balance", "2", "--reason", "new reseller")
    [line] = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert (line["action"], line["target"], line["actor"], line["audit_seq"]) == (
        "client.create",
        "pia",
        commands.ACTOR.name,
        1,
    )
    assert len(line["audit_hash"]) == 64
    _, _, err = cli("clients", "list")
    assert err == ""


@pytest.mark.parametrize(
    "name, value",
    [
        ("SMM_PROXY_DASHBOARD_LOGINS", "garbage"),
        ("SMM_PROXY_DASHBOARD_LOGINS", ""),
        ("SMM_PROXY_DASHBOARD_LOGINS", "0/minute"),
        ("SMM_PROXY_DASHBOARD_SESSION_HOURS", "-1"),
        ("SMM_PROXY_REDIS_TIMEOUT", "soon"),
    ],
)
def test_a_setting_the_router_cannot_use_is_named_not_a_traceback(cli, monkeypatch, name, value):
    """A typo in the environment is refused by `check` as by every command,
    with the variable's name: exit 2, no traceback (a bad login limit passed
    `check` and then stopped `serve` with a traceback)."""
    monkeypatch.setenv(name, value)
    for command in (("check",), ("clients", "list")):
        code, out, err = cli(*command)
        assert code == 2 and name in err and "Traceback" not in err, (command, err)
