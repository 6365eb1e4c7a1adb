"""The config's policies: how the router treats providers and orders, one
section of the YAML file each (`proxy.config` reads the file and puts them
in `Config`; `config/example.yaml` explains every option).

- `health:` (`HealthPolicy`, per provider `HealthOverride`): when a failing
  provider is ejected and for how long (`proxy.providers.health`);
- `refusals:` (`RefusalRule`, also per provider): what an upstream refusal
  means (`proxy.providers.refusals`);
- `prices:` (`PricePolicy`): the gate on upstream price changes
  (`proxy.providers.listings`);
- `routing:` (`RoutingPolicy`): what `strategy: best` learns from, and when
  an order counts as stuck (`proxy.orders.routing`, `proxy.orders.observe`);
- `fair_use:` (`FairUsePolicy`): per-client limits (`proxy.accounts.fair_use`);
- `settlement:` (`SettlementPolicy`): tolerances, subscription holds, reads
  no rule settles and re-checks of final orders (`proxy.orders.settlement`,
  `proxy.orders.statuses`).

Each is a frozen pydantic model that refuses unknown fields (`Section`), with
a working default for every option.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proxy.vocabulary import known_error

# Posts an unlimited subscription is held for, unless the config says.
HOLD_POSTS = 10
# The most old posts (already published, delivered to as well) a subscription may ask for.
MAX_OLD_POSTS = 100
# What a refusal rule may tell a client: a panel string, or one of our own words.
REFUSAL_MESSAGE_CHARS = 200


class Section(BaseModel):
    """A part of the config file: frozen, and unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthPolicy(Section):
    """When a failing provider is ejected from routing, and for how long
    (the config's `health:`; `proxy.providers.health` applies it). Envoy's
    outlier detection is the model."""

    consecutive_failures: int = Field(
        3, ge=1, le=1000, description="Failures in a row (per provider, orders and reads apart) that eject it."
    )
    base_ejection_seconds: float | None = Field(
        None,
        ge=0,
        description="The first ejection's length, doubled with each ejection in a row; "
        "unset: SMM_PROXY_UPSTREAM_COOLDOWN (60). 0: never eject.",
    )
    max_ejection_seconds: float = Field(900.0, gt=0, description="The longest an ejection lasts.")
    max_ejected_percent: int = Field(
        50,
        ge=0,
        le=100,
        description="At most this share of a service's routes is left out for being ejected "
        "(at least one); the rest are still tried.",
    )


class HealthOverride(Section):
    """Per provider: any of the health policy's thresholds, else the global ones."""

    consecutive_failures: int | None = Field(None, ge=1, le=1000)
    base_ejection_seconds: float | None = Field(None, ge=0)
    max_ejection_seconds: float | None = Field(None, gt=0)


RefusalAction = Literal["next_route", "refuse", "hold"]


class RefusalRule(Section):
    """What one upstream refusal of an `add` means.

    Matched on the provider's words by exactly one of `exact` (whole text,
    case and spacing aside), `contains` (case-insensitive) or `pattern` (a
    regular expression, searched case-insensitively). `action`:

    - `next_route`: try the service's next route;
    - `refuse`: refund and tell the client `message` (a panel's standard
      words by default), trying no other route;
    - `hold`: keep the order (the client sees Pending) for an operator.

    `health`: whether it means "this provider cannot sell now" (counted
    towards its ejection) rather than "this order cannot be done there".
    `funds`: whether it says the provider's balance is short (it gets no
    order its balance as read does not cover until a read shows more).
    """

    exact: str | None = Field(None, min_length=1, max_length=500)
    contains: str | None = Field(None, min_length=1, max_length=500)
    pattern: str | None = Field(None, min_length=1, max_length=500)
    action: RefusalAction
    message: str | None = Field(None, min_length=1, max_length=REFUSAL_MESSAGE_CHARS)
    health: bool = False
    funds: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_match(self) -> RefusalRule:
        given = [name for name in ("exact", "contains", "pattern") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'exact', 'contains' or 'pattern'")
        if self.message is not None and self.action != "refuse":
            raise ValueError("'message' is for action 'refuse' only")
        if self.message is not None and (not self.message.isprintable() or "://" in self.message):
            raise ValueError("'message' must be one printable line without URLs")
        return self

    def matches(self, text: str) -> bool:
        if self.exact is not None:
            return _fold(text) == _fold(self.exact)
        if self.contains is not None:
            return _fold(self.contains) in _fold(text)
        assert self.pattern is not None
        return re.search(self.pattern, text, re.IGNORECASE) is not None

    def client_message(self, upstream: str) -> str:
        """What a `refuse` tells the client: the rule's words, or the panel's standard ones."""
        return self.message or known_error(upstream) or "Incorrect request"


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


class PricePolicy(Section):
    """How upstream price changes are followed (the config's `prices:`)."""

    change_percent: Decimal = Field(
        Decimal(20),
        ge=0,
        description="A cost change within this share follows with the markup; beyond it the "
        "service is held at its last approved cost until an operator approves.",
    )


class RoutingPolicy(Section):
    """What `strategy: best` learns from (the config's `routing:`)."""

    explore_percent: Decimal = Field(
        Decimal(5), ge=0, le=100, description="Orders sent to another route than the best, to keep learning."
    )
    outcome_window: int = Field(
        100, ge=1, le=100_000, description="About how many recent final orders a route's rates are drawn from."
    )
    stuck_after: float = Field(
        86400.0, gt=0, description="Seconds an order may stay Pending upstream before it counts as stuck."
    )


class FairUsePolicy(Section):
    """Limits per client, shared by every instance (the config's `fair_use:`),
    written as `limits` does: "600/minute", "10/second;600/minute"."""

    requests: str = Field("600/minute", description="API requests per client.")
    refills_per_order: str = Field("2/hour", description="refill requests per order.")
    cancels_per_order: str = Field("2/hour", description="cancel requests per order.")

    @field_validator("requests", "refills_per_order", "cancels_per_order")
    @classmethod
    def _parses(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate like '600/minute' ({exc})") from None
        return value


class SettlementPolicy(Section):
    """How orders are settled and checked against what providers charge
    (the config's `settlement:` section; the settling is `proxy.orders.settlement`)."""

    charge_tolerance_percent: Decimal = Field(
        Decimal(1),
        ge=0,
        description="An upstream charge further than this from the cost we recorded "
        "puts the order in the operator's attention queue.",
    )
    subscription_hold_posts: int = Field(
        HOLD_POSTS, ge=1, le=10_000, description="Posts an unlimited subscription is held for (max x this)."
    )
    unsettled_reads: int = Field(
        5,
        ge=1,
        le=100,
        description="Status reads in a row that no rule can settle (an unknown status word, Partial without "
        "remains, an error for the order) before it goes to an operator with the reply; then it is read at "
        "the slow rate.",
    )
    slow_read_minutes: float = Field(
        60,
        gt=0,
        le=10_080,
        description="Minutes between reads of an order no rule could settle, and of a final order re-checked.",
    )
    recheck_final_hours: float = Field(
        48,
        ge=0,
        le=8_760,
        description="Hours after it turned final that an order is still re-read (at the slow rate): a provider "
        "that changes a final status sends it to an operator. 0: never.",
    )
    max_old_posts: int = Field(
        MAX_OLD_POSTS,
        ge=0,
        le=10_000,
        description="The most old posts a subscription may ask for: the provider delivers to (and bills) "
        "each, so each is held like a new post; above this an add is refused.",
    )
