"""What an upstream refusal means (proxy/providers/refusals.py): the provider's
own rules first, then the config's, then the defaults for the words panels
really send; words no rule knows try the next route and count against the
provider."""

from __future__ import annotations

import pytest

from proxy.policies import RefusalRule
from proxy.providers.refusals import UNKNOWN, Refusals
from proxy.vocabulary import Errors

DEFAULTS = Refusals({"echomark": []})


@pytest.mark.parametrize(
    "words, action, health, funds",
    [
        ("Not enough funds on balance", "next_route", True, True),
        ("Insufficient balance", "next_route", True, True),
        ("Your balance is too low", "next_route", True, True),
        ("Invalid API key", "next_route", True, False),
        ("Too many requests", "next_route", True, False),
        ("Site under maintenance", "next_route", True, False),
        ("Service is disabled", "next_route", False, False),
        ("Incorrect service ID", "next_route", False, False),
        ("Quantity less than minimal 5000", "next_route", False, False),
        ("Maximum quantity is 100", "next_route", False, False),
        ("You have active order with this link. Please wait until order being completed.", "next_route", False, False),
        ("Incorrect link", "refuse", False, False),
        ("  incorrect   LINK ", "refuse", False, False),  # case and spacing aside
        ("Invalid link format", "refuse", False, False),
        ("Incorrect request", "refuse", False, False),
    ],
)
def test_the_default_rules_read_the_words_panels_send(words, action, health, funds):
    rule = DEFAULTS.meaning("echomark", words)
    assert (rule.action, rule.health, rule.funds) == (action, health, funds)


def test_words_no_rule_knows_try_elsewhere_and_count_against_the_provider():
    rule = DEFAULTS.meaning("echomark", "Panel overloaded, come back later")
    assert rule is UNKNOWN and (rule.action, rule.health) == ("next_route", True)


def test_a_provider_s_rules_come_before_the_shared_ones_and_those_before_the_defaults():
    own = RefusalRule(contains="incorrect link", action="next_route")
    shared = [
        RefusalRule(pattern="^link .* private$", action="refuse", message=Errors.INCORRECT_LINK),
        RefusalRule(contains="review", action="hold"),
    ]
    refusals = Refusals({"echomark": [own], "korean": []}, shared)
    assert refusals.meaning("echomark", "Incorrect link").action == "next_route"
    assert refusals.meaning("korean", "Incorrect link").action == "refuse"
    assert refusals.meaning("korean", "Link instagram.com/x is private").message == Errors.INCORRECT_LINK
    assert refusals.meaning("nowhere", "Under manual review").action == "hold"  # a provider not configured
    assert refusals.meaning("nowhere", "Not enough funds").funds


def test_a_refusal_tells_the_client_the_rule_s_words_else_the_panels_standard_ones():
    assert (
        RefusalRule(contains="x", action="refuse", message="Incorrect link").client_message("x y") == "Incorrect link"
    )
    assert RefusalRule(contains="req", action="refuse").client_message("incorrect request") == "Incorrect request"
    assert RefusalRule(contains="zz", action="refuse").client_message("zz top") == "Incorrect request"
