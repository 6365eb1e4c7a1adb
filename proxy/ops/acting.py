"""How an operator acts: the collaborators every action works through, the
values an operator types, and the one audited step every change takes.

Each change takes the acting operator (`proxy.ops.roles.Actor`: `cli:alice`,
or `admin:NAME` with its role, source address and request ID; a bare name is
a local owner), checks the role matrix, and is audited before it happens
(`Acting._audited`):

1. the input is checked, and what a read can already refuse is refused
   (nothing is written then; `Invalid` for a bad value);
2. the audit entry is chained to the log (`proxy.ops.audit`); if it cannot
   be written, the action does not happen;
3. the action runs, keyed so a retry cannot apply it twice (a top-up or an
   adjustment by its reference; one without a reference by its audit
   entry's number); if it is refused after all, an entry `<action>.failed`
   follows, naming the first;
4. one log line says what was done, with the audit entry's number and hash
   (a copy of the chain kept outside Redis), and the order where there is one.

Money and the audit log cannot change in one script: the client's keys and
the log's are in different hash slots of a Redis Cluster. Hence the order
above: never an action without its entry.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TypeVar

from proxy.accounts.clients import Accounts
from proxy.accounts.ledger import Ledger
from proxy.config import Config
from proxy.errors import (
    Invalid,
    MoneyError,
    NotFound,
    OperatorError,
    ProxyError,
    UnknownClient,
)
from proxy.money import parse_amount, to_minor
from proxy.ops.admins import Admins
from proxy.ops.answers import (
    AuditCheck,
    AuditEntry,
    ConfigReload,
)
from proxy.ops.audit import AuditLog, Record
from proxy.ops.events import EventLog
from proxy.ops.roles import Actor, as_actor
from proxy.ops.search import rows
from proxy.orders.archive import Archive
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.verdicts import Verdicts
from proxy.providers.calls import CallStats
from proxy.providers.health import Health
from proxy.providers.listings import Listings
from proxy.providers.outcomes import Outcomes
from proxy.providers.upstream import ProviderClient

log = logging.getLogger(__name__)

MAX_REASON = 1000
_T = TypeVar("_T")


def refusal(exc: Exception) -> OperatorError:
    return NotFound(str(exc)) if isinstance(exc, UnknownClient) else OperatorError(str(exc))


# What is typed as money: ASCII digits, at most one point, an optional sign and
# exponent (1e2). Decimal itself reads more ("1_000" as 1000, Arabic or
# full-width digits as ours), which an operator cannot check by eye.
_PLAIN_AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def amount(text: object) -> Decimal:
    """An amount an operator typed: a plain decimal (text in ASCII digits, or a
    JSON number) that fits the ledger (7 places, below 2^53 units)."""
    if isinstance(text, str) and not _PLAIN_AMOUNT.fullmatch(text.strip()):
        raise Invalid(f"not an amount: {text[:40]!r} (write it like 12.50)")
    try:
        value = parse_amount(text)
        to_minor(value)
    except MoneyError as exc:
        raise Invalid(str(exc)) from None
    return value


def reason_text(value: object, required: bool = False) -> str:
    """A reason an operator gave: one line of printable text, at most MAX_REASON characters."""
    text = value.strip() if isinstance(value, str) else None
    if text is None or len(text) > MAX_REASON or not text.isprintable():
        raise Invalid(f"a reason is one line of text, at most {MAX_REASON} characters")
    if required and not text:
        raise Invalid("give a reason: the ledger and the audit log keep it")
    return text


def whole(value: object, name: str) -> int:
    """A positive whole number an operator typed (an ID): ASCII digits, at most 18 of them."""
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0):
        raise Invalid(f"{name} must be a positive whole number, not {value!r}")
    return int(text)


def reference(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 200 or not value.isprintable() or value != value.strip():
        raise Invalid("a reference is printable text of at most 200 characters")
    return value


class Acting:
    """The collaborators of every operator action, and the audited step of a change."""

    def __init__(
        self,
        *,
        config: Config,
        accounts: Accounts,
        ledger: Ledger,
        book: OrderBook,
        claims: Claims,
        verdicts: Verdicts,
        archive: Archive,
        health: Health,
        listings: Listings,
        providers: Mapping[str, ProviderClient],
        audit: AuditLog,
        admins: Admins,
        events: EventLog | None = None,
        outcomes: Outcomes | None = None,
        calls: CallStats | None = None,
        reload: Callable[[], Awaitable[ConfigReload]] | None = None,
        missing_keys: tuple[str, ...] = (),
        config_path: str = "config",
    ) -> None:
        self._config = config
        self._accounts = accounts
        self._ledger = ledger
        self._book = book
        self._claims = claims
        self._verdicts = verdicts
        self._archive = archive
        self._health = health
        self._listings = listings
        self._providers = providers
        self._audit = audit
        self.admins_registry = admins
        self._missing_keys = missing_keys
        self._config_path = config_path
        self._events = events
        self._outcomes = outcomes
        self._calls = calls
        self._reload = reload

    def replace_config(self, config: Config) -> None:
        """A reloaded config."""
        self._config = config

    # -- the audit log ---------------------------------------------------------

    async def _audited(
        self,
        actor: Actor | str,
        action: str,
        target: str,
        act: Callable[[Record], Awaitable[_T]],
        *,
        reason: str = "",
        order: int | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> _T:
        """Check the role, write the audit entry, then act (see the module's docstring)."""
        who = as_actor(actor)
        who.check(action)
        entry = await self._audit.append(who, action, target, reason, detail)
        try:
            result = await act(entry)
        except Exception as exc:
            error = str(exc) if isinstance(exc, ProxyError) else type(exc).__name__
            with contextlib.suppress(Exception):  # best effort: the first entry stands either way
                await self._audit.append(who, f"{action}.failed", target, "", {"entry": entry.seq, "error": error})
            raise
        extra: dict[str, object] = {
            "actor": who.name,
            "role": who.role,
            "action": action,
            "target": target,
            "audit_seq": entry.seq,
            "audit_hash": entry.hash,
            "detail": dict(detail or {}),
        }
        if order is not None:
            extra["order"] = order
        log.info("operator %s: %s %s", who.name, action, target, extra=extra)
        return result

    async def audit_log(self, limit: object = 100) -> list[AuditEntry]:
        return [AuditEntry.of(record) for record in await self._audit.newest(rows(limit))]

    async def verify_audit(self) -> AuditCheck:
        return AuditCheck.of(await self._audit.verify())
