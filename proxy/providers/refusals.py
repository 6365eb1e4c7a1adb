"""What an upstream refusal of an `add` means, and so what to do with the order.

A provider that answers `{"error": ...}` provably did not create the order,
but its words say why, and the why decides what happens next:

- "this provider cannot sell now" (no funds, a bad key, rate limited): try
  the next route, and count it against the provider's health;
- "this order cannot be done there" (the service is off there, the quantity
  is out of its range, an order on this link is still running there): try
  the next route, the provider's health untouched;
- "this order cannot be done at all" (the link is wrong, a field the service
  does not take): refund and tell the client, in the panels' standard words,
  without trying elsewhere: a retry could never succeed;
- or hold the order for an operator, where a reseller knows a message of
  some provider needs a person.

Rules are checked in order: the provider's own (`providers.NAME.refusals`),
the config's global ones (`refusals`), then `DEFAULT_RULES`, written for the
strings panels really send (docs/api-v2.md). Words no rule knows mean "try
the next route" and count against the provider: a panel that refuses every
order in words of its own is ejected all the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from proxy.config import Config
from proxy.policies import RefusalRule
from proxy.vocabulary import Errors

DEFAULT_RULES: tuple[RefusalRule, ...] = (
    RefusalRule(contains="not enough funds", action="next_route", health=True, funds=True),
    RefusalRule(contains="insufficient", action="next_route", health=True, funds=True),
    RefusalRule(pattern=r"\blow balance\b|\bbalance is (too )?low\b", action="next_route", health=True, funds=True),
    RefusalRule(pattern=r"invalid (api )?key|api key (is )?(invalid|disabled)", action="next_route", health=True),
    RefusalRule(pattern=r"too many requests|rate limit|slow down", action="next_route", health=True),
    RefusalRule(pattern=r"maintenance|temporarily unavailable", action="next_route", health=True),
    RefusalRule(pattern=r"service (is )?(disabled|not active|inactive|unavailable|paused)", action="next_route"),
    RefusalRule(exact=Errors.INCORRECT_SERVICE, action="next_route"),
    RefusalRule(pattern=r"quantity (is )?(less|more|lower|greater|higher) than", action="next_route"),
    RefusalRule(pattern=r"(min|max)(imum|imal)? (quantity|amount)", action="next_route"),
    RefusalRule(contains="active order with this link", action="next_route"),
    RefusalRule(exact=Errors.INCORRECT_LINK, action="refuse", message=Errors.INCORRECT_LINK),
    RefusalRule(pattern=r"^\s*(bad|invalid|wrong) link\b", action="refuse", message=Errors.INCORRECT_LINK),
    RefusalRule(exact=Errors.INCORRECT_REQUEST, action="refuse", message=Errors.INCORRECT_REQUEST),
)
# Words no rule knows: try elsewhere, and count it against the provider.
UNKNOWN = RefusalRule(pattern=".*", action="next_route", health=True)


class Refusals:
    """The rules of every provider, in the order they are checked."""

    def __init__(self, per_provider: Mapping[str, Sequence[RefusalRule]], shared: Sequence[RefusalRule] = ()) -> None:
        self._rules = {name: (*rules, *shared, *DEFAULT_RULES) for name, rules in per_provider.items()}
        self._fallback = (*shared, *DEFAULT_RULES)

    @classmethod
    def from_config(cls, config: Config) -> Refusals:
        return cls({name: p.refusals for name, p in config.providers.items()}, config.refusals)

    def meaning(self, provider: str, message: str) -> RefusalRule:
        """The first rule that matches the provider's words."""
        for rule in self._rules.get(provider, self._fallback):
            if rule.matches(message):
                return rule
        return UNKNOWN
