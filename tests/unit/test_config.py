import re
from decimal import Decimal

import pytest
from support import ROOT

from proxy.cli import main
from proxy.config import load_config, parse_config
from proxy.errors import ConfigError
from proxy.policies import FairUsePolicy, HealthPolicy, PricePolicy, RoutingPolicy, SettlementPolicy

EXAMPLE_ENV = {"ECHOMARK_API_KEY": "echo-secret", "KOREAN_PANEL_API_KEY": "kr-secret"}


def minimal(**overrides):
    raw = {
        "providers": {
            "echo": {"url": "https://echomark.store/api/v2", "key": "k", "currency": "USD"},
        },
        "services": [{"id": 1, "routes": [{"provider": "echo", "service": 1}]}],
    }
    raw.update(overrides)
    return raw


def problems(raw, environ=None):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ or {})
    return caught.value.problems


def test_example_config_is_valid_and_uses_every_section():
    config = load_config(ROOT / "config" / "example.yaml", EXAMPLE_ENV)
    assert set(config.providers) == {"echomark", "korean"}
    assert config.providers["echomark"].key == "echo-secret"
    assert config.providers["korean"].url == "https://오토스타그램.com/api/v2"
    assert config.providers["korean"].currency == "KRW"
    assert config.exchange_rates == {"KRW": Decimal("1380")}
    assert config.services[0].markup.percent == Decimal(40)
    assert config.services[1].markup.per_1000 == Decimal("1.00")
    assert config.services[1].strategy == "cheapest"
    assert config.imports[0].selects(5, "instagram likes")
    assert not config.imports[0].selects(5, "YouTube")
    assert config.imports[1].selects(2, "anything") and not config.imports[1].selects(3, "x")


def test_the_example_explains_every_option_of_every_policy():
    """Each policy's options appear in config/example.yaml (its comments explain them)."""
    text = (ROOT / "config" / "example.yaml").read_text()
    sections = {"health": HealthPolicy, "prices": PricePolicy, "routing": RoutingPolicy, "fair_use": FairUsePolicy}
    for name, model in {**sections, "settlement": SettlementPolicy}.items():
        assert re.search(rf"^#? ?{name}:", text, re.MULTILINE), name
        for option in model.model_fields:
            assert re.search(rf"^\s*#? ?{option}:", text, re.MULTILINE), f"{name}.{option}"


def test_settlement_options_are_checked():
    config = parse_config(minimal(settlement={"max_old_posts": 0, "recheck_final_hours": 0}), {})
    assert (config.settlement.max_old_posts, config.settlement.recheck_final_hours) == (0, 0)
    assert (config.settlement.unsettled_reads, config.settlement.slow_read_minutes) == (5, 60)
    refused = problems(minimal(settlement={"unsettled_reads": 0, "slow_read_minutes": 0, "max_old_posts": -1}))
    assert {p.split(":")[0] for p in refused} == {
        "settlement.unsettled_reads",
        "settlement.slow_read_minutes",
        "settlement.max_old_posts",
    }


def test_check_command_accepts_the_example(capsys, monkeypatch):
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check", "--config", str(ROOT / "config" / "example.yaml")]) == 0
    assert "OK - 2 providers" in capsys.readouterr().out


def test_check_command_names_the_field_and_reason(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("providers:\n  p:\n    url: ftp://x\n    key: k\n    currency: usd\n")
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "providers.p.url: must be an http:// or https:// URL with a host" in err
    assert "providers.p.currency" in err


def test_unset_secret_is_named():
    raw = minimal()
    raw["providers"]["echo"]["key"] = "${ECHO_KEY}"
    assert problems(raw) == ["providers.echo.key: environment variable ECHO_KEY is not set"]
    config = parse_config(raw, {"ECHO_KEY": "s3cret"})
    assert config.providers["echo"].key == "s3cret"


def test_route_to_unknown_provider_is_refused():
    raw = minimal(services=[{"id": 1, "routes": [{"provider": "nope", "service": 1}]}])
    assert problems(raw) == ["services[0].routes[0].provider: unknown provider 'nope'"]


def test_provider_currency_needs_an_exchange_rate():
    raw = minimal()
    raw["providers"]["echo"]["currency"] = "KRW"
    assert any("no exchange rate for KRW" in p for p in problems(raw))


def test_markup_takes_exactly_one_form():
    assert any("exactly one" in p for p in problems(minimal(markup={"percent": 10, "per_1000": 1})))
    assert any("exactly one" in p for p in problems(minimal(markup={})))
    assert any("markup.percent" in p for p in problems(minimal(markup={"percent": -5})))


def test_duplicate_service_ids_and_bad_overrides():
    route = [{"provider": "echo", "service": 1}]
    found = problems(minimal(services=[{"id": 1, "routes": route}, {"id": 1, "routes": route, "type": "Nonsense"}]))
    assert any(p.startswith("services[1].type: unknown service type 'Nonsense'") for p in found)
    found = problems(minimal(services=[{"id": 1, "routes": route}, {"id": 1, "routes": route}]))
    assert found == ["services[1].id: 1 is used twice"]
    found = problems(minimal(services=[{"id": 1, "routes": route, "min": 10, "max": 5}]))
    assert found == ["services[0]: min (10) is above max (5)"]


def test_unknown_fields_are_refused_not_ignored():
    raw = minimal()
    raw["providers"]["echo"]["timeot"] = 5
    assert any(p.startswith("providers.echo.timeot") for p in problems(raw))


def test_import_rule_takes_ids_or_categories():
    raw = minimal(imports=[{"provider": "echo", "id_offset": 100, "ids": [1], "categories": ["x"]}])
    assert any("not both" in p for p in problems(raw))


def test_timeout_as_one_number_and_request_options():
    raw = minimal()
    raw["providers"]["echo"].update(timeout=20, format="json", method="GET")
    provider = parse_config(raw, {}).providers["echo"]
    assert (provider.timeout.connect, provider.timeout.read) == (5.0, 20)
    assert (provider.format, provider.method) == ("json", "GET")
    raw["providers"]["echo"]["format"] = "xml"
    assert any(p.startswith("providers.echo.format") for p in problems(raw))


def test_reply_limits_per_action_have_defaults_and_are_checked():
    provider = parse_config(minimal(), {}).providers["echo"]
    assert (provider.reply_bytes.services, provider.reply_bytes.others) == (64 * 2**20, 2**20)
    raw = minimal()
    raw["providers"]["echo"]["reply_bytes"] = {"services": 256 * 2**20, "others": 2**16}
    provider = parse_config(raw, {}).providers["echo"]
    assert (provider.reply_bytes.services, provider.reply_bytes.others) == (256 * 2**20, 2**16)
    for bad in ({"services": 0}, {"others": -1}, {"others": "lots"}, {"services": 2**40}, {"add": 1}):
        raw["providers"]["echo"]["reply_bytes"] = bad
        assert any(p.startswith("providers.echo.reply_bytes") for p in problems(raw)), bad


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, {})
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(bad, {})


def test_unreadable_refusal_rules_are_refused():
    found = problems(
        minimal(
            refusals=[
                {"pattern": "(unclosed", "action": "refuse"},
                {"contains": "x", "action": "hold", "message": "y"},
            ]
        )
    )
    text = "\n".join(found)
    assert "refusals[0].pattern" in text and "not a regular expression" in text
    assert "'message' is for action 'refuse' only" in text
