"""Every error the router raises, in one tree.

Our exception classes, and which branch of the tree each belongs to:

* ProxyError
  + Refusal - `message` is what the client (or the operator) is told
    - BadInput - a request refused at the input boundary (edge/inputs)
    - ProtocolError - an API v2 request we do not understand (edge/protocol)
    - OrderRefused - an `add` we do not take (orders/actions); also an OrderError
      · InvalidOrder - its fields are not what its service takes (orders/validation)
    - OperatorError - an operator's action refused (ops/operators)
      · NotFound - no such client, order or admin
      · Forbidden - the actor's role may not do that (ops/roles)
      · Invalid - a value the operator gave is not one we take (ops)
    - CommandError - the command line refuses (cli, commands)
  + AccountError - a client account cannot do that (accounts)
    - UnknownClient - no such client (or a disabled one, where it matters)
    - InsufficientFunds - a debit would take the balance below zero
  + OrderError - an order cannot do that (orders)
    - StateChanged - the state table does not allow the event now
    - DuplicateMismatch - an Idempotency-Key seen before with other fields
    - LinkInUse - the client refuses a second open order on one link
    - RateSpent - the client's request rate is spent (counted with the order, on one server)
    - ClaimConflict - another of our orders owns that upstream order
    - ArchiveUnwritable - the archive folder cannot take the orders (orders/archive)
    - OrderRefused (above)
  + ConfigError - an unusable config file (config)
  + LabelError - a label template we cannot fill in (config)
  + MoneyError - a value that is not a usable amount of money (money)
  + StoreUnfit - a Redis the router must not keep money in (store)
  + ClientGone - the client hung up before its request was read (edge)
  + UpstreamError - a call to an upstream panel failed (providers)
    - ProviderRefused - the provider provably did not act on it
    - OutcomeUnknown - it may have acted, and the reply does not say

`AccountError`, `ConfigError`, `LabelError` and `MoneyError` are also
`ValueError`s, as they were before there was a tree. The simulated panel
(`proxy.sim`) is not the router: its `PanelError` stays its own.
"""

from __future__ import annotations

from proxy.vocabulary import Errors


class ProxyError(Exception):
    """The root: anything the router raises on purpose."""


# -- refusals: an error whose message is meant for a person ------------------


class Refusal(ProxyError):
    """A refusal; `message` is what the client (or the operator) is told."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(Refusal):
    """A request refused at the input boundary."""

    def __init__(self, message: str = Errors.INCORRECT_REQUEST) -> None:
        super().__init__(message)


class ProtocolError(Refusal):
    """An API v2 request we refuse before any action: unknown action, missing IDs."""


class OperatorError(Refusal):
    """An operator's action refused, with a message to show the operator."""


class NotFound(OperatorError):
    """No such client, order or admin."""


class Forbidden(OperatorError):
    """The actor's role may not do that (`proxy.ops.roles`)."""


class Invalid(OperatorError):
    """A value the operator gave is not one we take (an amount, a number, a
    name, a choice): bad input, where other operator errors are refusals."""


class CommandError(Refusal):
    """A refusal of the command line, printed as it is, without a traceback."""


# -- accounts ------------------------------------------------------------------


class AccountError(ProxyError, ValueError):
    """A client account cannot do what was asked."""


class UnknownClient(AccountError):
    """No such client (or a disabled one, where the step needs an enabled one)."""

    def __init__(self, client: str) -> None:
        super().__init__(f"no client {client!r}")
        self.client = client


class InsufficientFunds(AccountError):
    """A debit would take the client's balance below zero; nothing changed."""

    def __init__(self, client: str) -> None:
        super().__init__(f"not enough funds on the balance of client {client!r}")
        self.client = client


# -- orders --------------------------------------------------------------------


class OrderError(ProxyError):
    """An order cannot do what was asked."""


class StateChanged(OrderError):
    """An event the order's current state (or lease) does not allow."""

    def __init__(self, state: str | None, reason: str = "state") -> None:
        super().__init__(f"order is {state or 'missing'}" + ("" if reason == "state" else f" ({reason})"))
        self.state = state
        self.reason = reason


class DuplicateMismatch(OrderError):
    """An Idempotency-Key seen before with other fields."""

    def __init__(self, order_id: int) -> None:
        super().__init__(f"idempotency key already used for order {order_id}")
        self.order_id = order_id


class LinkInUse(OrderError):
    """The client has an open order on that link and refuses a second one (its terms)."""

    def __init__(self, client: str) -> None:
        super().__init__(f"client {client!r} has an open order on that link")
        self.client = client


class RateSpent(OrderError):
    """The client's request rate is spent: the script that would open its order refused it."""

    def __init__(self, client: str) -> None:
        super().__init__(f"client {client!r} is over its request rate")
        self.client = client


class ClaimConflict(OrderError):
    """An upstream order another of our orders already owns."""

    def __init__(self, provider: str, upstream_order: int, owner: int) -> None:
        super().__init__(f"upstream order {upstream_order} at {provider} already belongs to order {owner}")
        self.owner = owner


class ArchiveUnwritable(OrderError):
    """The archive folder cannot be written: nothing left Redis."""

    def __init__(self, directory: str, why: str) -> None:
        super().__init__(f"cannot write the archive in {directory}: {why}; nothing was archived")


class OrderRefused(OrderError, Refusal):
    """An `add` we do not take: nothing was charged, or all of it was refunded
    in the same step. `message` is what the client is told."""


class InvalidOrder(OrderRefused):
    """An `add` whose fields we refuse; `message` is what the client is told."""


# -- configuration, money, store -------------------------------------------------


class ConfigError(ProxyError, ValueError):
    """An unusable config; `problems` holds one "field: reason" line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid config\n" + "\n".join(f"  {p}" for p in problems))


class LabelError(ProxyError, ValueError):
    """A label template that uses fields we do not fill in."""


class MoneyError(ProxyError, ValueError):
    """A value that is not a usable amount of money."""


class StoreUnfit(ProxyError):
    """A Redis the router must not keep money in."""


class ClientGone(ProxyError):
    """The client hung up before its request was read."""


# -- upstream ----------------------------------------------------------------------


class UpstreamError(ProxyError):
    """A call to an upstream panel failed.

    `reason` is short and safe to log: it never quotes a whole body and never
    contains the API key. `str(error)` is "<provider>: <reason>".
    """

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason


class ProviderRefused(UpstreamError):
    """The provider provably did not act: it was never reached, or it said no.

    `message` is the provider's error text (`"Not enough funds on balance"`),
    verbatim except that an echoed API key is redacted; `None` when the
    provider was never reached. `local` is True when the request never left
    because of us (our connection pool or request budget was spent): no sign
    of trouble at the provider.
    """

    def __init__(self, provider: str, reason: str, message: str | None = None, local: bool = False) -> None:
        super().__init__(provider, reason)
        self.message = message
        self.local = local


class OutcomeUnknown(UpstreamError):
    """The request may have been acted upon, and the reply does not say.

    Never retry an `add` that failed this way, here or elsewhere, without
    first finding out whether the order exists.
    """
