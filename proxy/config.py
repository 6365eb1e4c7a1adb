"""The YAML provider config: typed models, `${ENV}` secrets, clear refusals.

A config names the upstream panels (providers), the deployment's currency
and exchange rates, the markup, the local services with their routes, and
import rules that expose whole provider catalogs under an ID offset; the
policies (health, refusals, prices, routing, fair use, settlement) are
sections of their own, modelled in `proxy.policies`.
`config/example.yaml` shows every option.

`load_config(path, environ)` returns a validated `Config` or raises
`ConfigError`, whose lines each name the field and the reason.
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from proxy.errors import ConfigError, LabelError
from proxy.policies import (
    FairUsePolicy,
    HealthOverride,
    HealthPolicy,
    PricePolicy,
    RefusalRule,
    RoutingPolicy,
    Section,
    SettlementPolicy,
)
from proxy.vocabulary import SERVICE_TYPES

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CURRENCY = r"^[A-Z]{3}$"
# What a label template may name: the primary route's cleaned upstream
# labels and our service ID (filled in by `proxy.catalog.catalog`).
TEMPLATE_FIELDS = frozenset({"name", "category", "type", "id"})
# The most bytes of one upstream reply read, unless a provider's config says
# (`reply_bytes`): a services list may run to several MB, anything else is small.
SERVICES_BYTES = 64 * 2**20
REPLY_BYTES = 2**20


class Markup(Section):
    """Exactly one of a percentage of cost, or a fixed amount per 1000 units.

    The fixed amount is in the deployment currency; for packages (charged
    flat) it is added to the package price.
    """

    percent: Decimal | None = Field(None, ge=0)
    per_1000: Decimal | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> Markup:
        if (self.percent is None) == (self.per_1000 is None):
            raise ValueError("give exactly one of 'percent' or 'per_1000'")
        return self

    def apply(self, cost: Decimal) -> Decimal:
        if self.percent is not None:
            return cost * (1 + self.percent / 100)
        assert self.per_1000 is not None
        return cost + self.per_1000


class Timeouts(Section):
    connect: float = Field(5.0, gt=0)
    read: float = Field(30.0, gt=0)
    write: float = Field(10.0, gt=0)
    pool: float = Field(5.0, gt=0)

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


class ReplyLimits(Section):
    """The most bytes of one upstream reply read, by action: past it the reply
    is cut, its connection closed, and the call fails (an `add`'s outcome is
    then unknown, never failed over)."""

    services: int = Field(
        SERVICES_BYTES, ge=1024, le=2**30, description="The services list: several MB at some panels."
    )
    others: int = Field(REPLY_BYTES, ge=1024, le=2**30, description="Every other action's reply.")


class Provider(Section):
    """One upstream panel. `name` is filled in from its key in `providers`."""

    name: str
    url: str
    key: str = Field(min_length=1)
    currency: str = Field(pattern=_CURRENCY)
    timeout: Timeouts = Timeouts()
    format: Literal["form", "json"] = "form"
    method: Literal["POST", "GET"] = "POST"
    max_connections: int = Field(20, ge=1)
    requests_per_minute: int | None = Field(
        None, ge=1, description="The panel's rate limit per key; unset: no limit of ours."
    )
    order_wait: float = Field(
        5.0,
        gt=0,
        description="Seconds an order may wait for a request budget or a free connection, "
        "before it fails over to the next route.",
    )
    read_share_percent: int = Field(
        50,
        ge=0,
        le=100,
        description="The share of `requests_per_minute` reads (status, refill, cancel, lists, "
        "balance) may use; the rest is kept for orders.",
    )
    low_balance: Decimal = Field(
        Decimal(0),
        ge=0,
        description="In the provider's currency: below this balance (as last read, less what we "
        "sent it since) it gets no new orders.",
    )
    health: HealthOverride = Field(default_factory=lambda: HealthOverride())
    reply_bytes: ReplyLimits = ReplyLimits()
    refusals: list[RefusalRule] = Field(
        default_factory=list, description="What its refusals mean, checked before the global and default rules."
    )
    price_change_percent: Decimal | None = Field(
        None, ge=0, description="Overrides the global `prices.change_percent` for this provider."
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _single_number(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"connect": min(float(value), 5.0), "read": value, "write": value, "pool": value}
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise ValueError(f"not a usable URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


Strategy = Literal["ordered", "cheapest", "best"]


class Route(Section):
    provider: str
    service: int = Field(ge=1, description="The service ID at the provider.")


def check_template(template: str) -> str:
    """A label template, if its fields are ones we fill in."""
    try:
        fields = {field for _, field, spec, conv in string.Formatter().parse(template) if field is not None}
        specs = [spec or conv for _, field, spec, conv in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise LabelError(f"not a usable template ({exc})") from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown or any(specs):
        raise LabelError(
            f"a template may use only {{name}}, {{category}}, {{type}} and {{id}}, not {', '.join(sorted(unknown)) or 'formats'}"
        )
    return template


def _label_template(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_template(value)
    except LabelError as exc:
        raise ValueError(str(exc)) from None


class LocalService(Section):
    """A service we sell under our own ID, bought through its routes in order.

    `name` and `category` are literal, or templates over the primary route's
    cleaned upstream labels: `{name}`, `{category}`, `{type}`, `{id}`.
    """

    id: int = Field(ge=1)
    routes: list[Route] = Field(min_length=1)
    strategy: Strategy | None = None
    stuck_after: float | None = Field(None, gt=0, description="Overrides routing.stuck_after for this service.")
    markup: Markup | None = None
    name: str | None = None
    category: str | None = None
    type: str | None = None
    min: int | None = Field(None, ge=1)
    max: int | None = Field(None, ge=1)
    refill: bool | None = None
    cancel: bool | None = None

    _templates = field_validator("name", "category")(_label_template)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in SERVICE_TYPES:
            raise ValueError(f"unknown service type {value!r}; one of: {', '.join(SERVICE_TYPES)}")
        return value

    @model_validator(mode="after")
    def _min_below_max(self) -> LocalService:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class ImportRule(Section):
    """Expose a provider's services as ours under `id_offset + upstream ID`.

    Without `ids` or `categories` every service of the provider is imported.
    `categories` are shell-style patterns ("Instagram*"), case-insensitive.
    `name` and `category` template the labels shown to clients (see
    `proxy.catalog.labels`); by default the upstream's own, cleaned.
    """

    provider: str
    id_offset: int = Field(ge=0)
    ids: list[int] | None = None
    categories: list[str] | None = None
    markup: Markup | None = None
    name: str | None = None
    category: str | None = None

    _templates = field_validator("name", "category")(_label_template)

    @model_validator(mode="after")
    def _one_selector(self) -> ImportRule:
        if self.ids is not None and self.categories is not None:
            raise ValueError("give 'ids' or 'categories', not both")
        return self

    def selects(self, service_id: int, category: str) -> bool:
        if self.ids is not None:
            return service_id in self.ids
        if self.categories is not None:
            folded = category.casefold()
            return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in self.categories)
        return True


class Config(Section):
    currency: str = Field("USD", pattern=_CURRENCY)
    exchange_rates: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Units of each currency per one unit of `currency` (KRW: 1380 means 1 USD = 1380 KRW).",
    )
    rate_decimals: int = Field(4, ge=0, le=7, description="Decimal places of the rates we quote.")
    markup: Markup = Markup(percent=Decimal(0))
    strategy: Strategy = "ordered"
    providers: dict[str, Provider] = Field(min_length=1)
    services: list[LocalService] = Field(default_factory=list)
    imports: list[ImportRule] = Field(default_factory=list)
    settlement: SettlementPolicy = SettlementPolicy()
    health: HealthPolicy = HealthPolicy()
    refusals: list[RefusalRule] = Field(
        default_factory=list, description="What refusals mean at every provider, before the built-in rules."
    )
    routing: RoutingPolicy = RoutingPolicy()
    prices: PricePolicy = PricePolicy()
    fair_use: FairUsePolicy = FairUsePolicy()
    # Provider keys whose environment variables were not set, where a command
    # that calls no provider loaded the config anyway (`load_config(..., keys_optional=True)`).
    _missing_keys: tuple[str, ...] = PrivateAttr(default=())

    @property
    def missing_keys(self) -> tuple[str, ...]:
        """The environment variables of provider keys this config was loaded without."""
        return self._missing_keys

    @field_validator("providers", mode="before")
    @classmethod
    def _name_providers(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {name: {**body, "name": name} if isinstance(body, Mapping) else body for name, body in value.items()}
        return value

    @field_validator("exchange_rates")
    @classmethod
    def _positive_rates(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, rate in value.items():
            if not re.match(_CURRENCY, currency):
                raise ValueError(f"{currency!r} is not a three-letter currency code")
            if rate <= 0:
                raise ValueError(f"rate for {currency} must be positive")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        problems = []
        for provider in self.providers.values():
            if provider.currency != self.currency and provider.currency not in self.exchange_rates:
                problems.append(
                    f"providers.{provider.name}.currency: no exchange rate for {provider.currency} "
                    f"(add exchange_rates.{provider.currency})"
                )
        seen: set[int] = set()
        for index, service in enumerate(self.services):
            if service.id in seen:
                problems.append(f"services[{index}].id: {service.id} is used twice")
            seen.add(service.id)
            for r, route in enumerate(service.routes):
                if route.provider not in self.providers:
                    problems.append(f"services[{index}].routes[{r}].provider: unknown provider {route.provider!r}")
        for index, rule in enumerate(self.imports):
            if rule.provider not in self.providers:
                problems.append(f"imports[{index}].provider: unknown provider {rule.provider!r}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def rate_of(self, currency: str) -> Decimal:
        """Units of `currency` per unit of the deployment currency."""
        return Decimal(1) if currency == self.currency else self.exchange_rates[currency]


def interpolate(value: Any, environ: Mapping[str, str], path: str = "") -> tuple[Any, list[str]]:
    """Replace `${VAR}` in every string of a parsed YAML tree.

    Returns the new tree and the problems found (unset variables), each
    naming the field it was met in.
    """
    problems: list[str] = []
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                problems.append(f"{path or 'value'}: environment variable {name} is not set")
                return ""
            return environ[name]

        return _ENV_REFERENCE.sub(lookup, value), problems
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            out[key], found = interpolate(item, environ, f"{path}.{key}" if path else str(key))
            problems += found
        return out, problems
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            new, found = interpolate(item, environ, f"{path}[{index}]")
            items.append(new)
            problems += found
        return items, problems
    return value, problems


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "config"


# A provider key whose variable is not set, when keys are optional: never sent
# (the commands that load a config so call no provider).
UNSET_KEY = "(unset)"
_MISSING_KEY = re.compile(r"^providers\.[^.]+\.key: environment variable (\w+) is not set$")


def parse_config(
    raw: Any, environ: Mapping[str, str], source: str = "config", *, keys_optional: bool = False
) -> Config:
    """A validated config. With `keys_optional`, a provider key whose variable
    is not set is not a problem (`Config.missing_keys` names them): operator
    commands that call no provider need no provider keys in the shell."""
    if not isinstance(raw, Mapping):
        raise ConfigError(source, ["config: the file must hold a mapping at the top level"])
    tree, problems = interpolate(raw, environ)
    missing: list[str] = []
    if problems and keys_optional:
        missing = [m.group(1) for p in problems if (m := _MISSING_KEY.match(p))]
        if len(missing) == len(problems):
            tree, problems = interpolate(raw, {**environ, **dict.fromkeys(missing, UNSET_KEY)})
    if problems:
        raise ConfigError(source, problems)
    try:
        config = Config.model_validate(tree)
        config._missing_keys = tuple(dict.fromkeys(missing))
        return config
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            where = _location(error["loc"])
            for line in message.splitlines():
                lines.append(line if where == "config" and ": " in line else f"{where}: {line}")
        raise ConfigError(source, lines) from None


def load_config(path: Path | str, environ: Mapping[str, str], *, keys_optional: bool = False) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    return parse_config(raw, environ, str(path), keys_optional=keys_optional)
