"""Runtime settings from the environment: the only place that reads it.

Every variable has the prefix `SMM_PROXY_`, e.g. `SMM_PROXY_REDIS_URL`.
Providers, services and prices are not settings: they live in the YAML
config (see `proxy.config`), whose `${VAR}` references are resolved from
`Settings.environ()` so that module does not read `os.environ` either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMM_PROXY_", extra="ignore")

    config: Path = Field(Path("config/example.yaml"), description="The YAML provider config.")
    redis_url: str | None = Field(None, description="Redis for records, ledger and caches. Unset: the demo embeds one.")
    key_prefix: str = Field("smm:", description="Prefix of every Redis key this router writes.")
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json: one object a line; console: readable lines; auto: console on a terminal."
    )

    catalog_ttl: float = Field(300.0, gt=0, description="Seconds a provider's service list is fresh.")
    status_ttl: float = Field(60.0, gt=0, description="Seconds an order's cached status is fresh.")
    upstream_cooldown: float = Field(
        60.0,
        ge=0,
        description="Seconds a provider is first ejected for after failures in a row (doubled with each "
        "ejection in a row); the config's health.base_ejection_seconds overrides it. 0: never eject.",
    )
    background: bool = Field(
        True,
        description="Whether serve also runs recovery, status polling and provider checks "
        "(false for replicas beside a 'smm-proxy worker').",
    )
    sync_interval: float = Field(
        30.0, gt=0, description="Seconds between background recovery and status polling rounds."
    )
    duplicate_window: float = Field(
        0.0,
        ge=0,
        description="Seconds in which a repeated identical add returns the first order, counted from the "
        "client's answer, for clients whose terms do not say (0: never; an identical add is a new order). "
        "The Idempotency-Key header is always honoured.",
    )
    order_lease: float = Field(
        30.0,
        ge=1,
        description="Seconds an order being placed stays claimed by its task without a renewal; "
        "recovery takes over only after that.",
    )
    catalog_recheck: float = Field(
        1.0, ge=0, description="Seconds a process reuses its merged catalog before it looks at Redis again."
    )
    catalog_max_age: float = Field(
        3600.0,
        gt=0,
        description="Seconds after which a provider's service list that could not be "
        "refreshed is too old to sell from.",
    )
    archive_dir: Path = Field(
        Path("archive"),
        description="Where finished orders are archived (JSON lines); a relative path is resolved once, "
        "against the folder the process starts in, and every folder used is kept in Redis.",
    )
    archive_after_days: float | None = Field(
        None, gt=0, description="Archive finished orders older than this many days (the worker, daily); unset: never."
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="The bearer token /metrics on the public port requires ('Authorization: Bearer <token>'); "
        "unset or empty: /metrics is not served there.",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="The address of the metrics listener of its own (SMM_PROXY_METRICS_PORT)."
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="If set, serve and worker also answer GET /metrics without a token on "
        "SMM_PROXY_METRICS_HOST:this port (loopback by default); unset: no such listener.",
    )
    audit_secret: SecretStr | None = Field(
        None,
        description="Keys the audit log's hash chain (HMAC-SHA256): someone with write access to Redis "
        "but not this secret cannot rewrite the log unnoticed. Unset: plain SHA-256.",
    )
    provider_check_interval: float = Field(
        300.0, gt=0, description="Seconds between checks of each provider's balance and currency."
    )
    add_wait: float = Field(
        30.0,
        gt=0,
        description="Seconds an add waits for a provider to take its order (or every route to refuse it) "
        "before it answers with the order's ID all the same (placing goes on; the order shows Pending "
        "until it is placed or refunded).",
    )
    shutdown_grace: float = Field(
        20.0,
        gt=0,
        description="Seconds from SIGTERM to the end of the process: requests in flight get half, orders still "
        "being placed then finish or are handed over (leases given up, taken over at once).",
    )
    redis_timeout: float = Field(
        10.0, gt=0, description="Seconds any one Redis command may take before it fails (no await without a deadline)."
    )
    events_length: int = Field(
        10_000, ge=100, description="About how many events the operators' event stream keeps (older ones go)."
    )
    dashboard: bool = Field(
        False,
        description="Serve the operators' dashboard at /dashboard (login with an admin token). "
        "Closed by default, like the admin API without a token.",
    )
    dashboard_session_hours: float = Field(
        8.0, gt=0, le=24 * 30, description="Hours a dashboard login lasts (then the operator logs in again)."
    )
    dashboard_logins: str = Field(
        "10/minute;50/hour",
        description="Dashboard login attempts allowed per source address ('limits' notation, counted in Redis).",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Addresses of proxies (comma-separated, or *) whose X-Forwarded-For and X-Forwarded-Proto "
        "are believed: the dashboard's cookies are Secure when the request came over TLS.",
    )
    webhook_url: str | None = Field(None, description="If set, every event is POSTed here as JSON, signed.")
    webhook_secret: str | None = Field(
        None, description="The HMAC-SHA256 key of the webhook's X-Smm-Proxy-Signature header (required with the URL)."
    )

    @field_validator("archive_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Resolved once, here: a process that changes its folder later still means the same one."""
        return value.expanduser().resolve()

    @field_validator("dashboard_logins")
    @classmethod
    def _login_limits(cls, value: str) -> str:
        """Limits `limits` can count, each letting at least one login through."""
        try:
            items = parse_many(value)
        except ValueError:
            items = []
        if not items or any(item.amount < 1 for item in items):
            raise ValueError(f"{value!r}: logins per address like '10/minute;50/hour', each at least 1")
        return value

    @model_validator(mode="after")
    def _signed_webhook(self) -> Settings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("SMM_PROXY_WEBHOOK_SECRET must be set with SMM_PROXY_WEBHOOK_URL: deliveries are signed")
        return self

    @field_validator("metrics_token", "audit_secret", "metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`SMM_PROXY_METRICS_TOKEN=` (as an env file leaves it) is unset, not an empty secret."""
        return None if isinstance(value, str) and not value.strip() else value

    @staticmethod
    def environ() -> dict[str, str]:
        """The environment, for `${VAR}` references in the YAML config."""
        return dict(os.environ)
