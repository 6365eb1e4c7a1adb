"""Who may do what: the operators' roles, and the one matrix of actions.

Every operator action has a name (`client.topup`, `orders.list`, ...), the
same name its audit entry carries. `NEEDS` says the least role each needs:

- `read`: every read (clients, ledgers, orders, providers, reports, the
  audit and its verification, readiness details); nothing else;
- `operator`: reads, and the day's work on orders and client money: top-ups,
  adjustments, disabling and enabling clients, their terms and rates,
  settling orders (resolve, refund, acknowledge, close), archiving,
  checking providers now, approving held price changes;
- `owner`: everything, and alone: admins, opening clients, rotating a
  client's key, reloading the config.

An action the matrix does not name needs an owner: a new action is closed
until someone decides who may do it. The command line acts as an owner (it
holds the Redis URL, which is every power anyway); an admin token acts with
the role it was made with (`smm-proxy admin add NAME --role ...`).

`Actor` is who acts, as the audit log records it: a name (`cli:alice`,
`admin:backoffice`), the role, and for HTTP the source address and the
request ID.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.errors import Forbidden

READ = "read"
OPERATOR = "operator"
OWNER = "owner"
ROLES = (READ, OPERATOR, OWNER)
_RANK = {READ: 0, OPERATOR: 1, OWNER: 2}

NEEDS: dict[str, str] = {
    # reads
    "clients.list": READ,
    "client.ledger": READ,
    "orders.list": READ,
    "order.show": READ,
    "providers.list": READ,
    "report": READ,
    "audit.list": READ,
    "audit.verify": READ,
    "events.list": READ,
    "ready": READ,
    # orders and client money
    "client.topup": OPERATOR,
    "client.adjust": OPERATOR,
    "client.disable": OPERATOR,
    "client.enable": OPERATOR,
    "client.terms": OPERATOR,
    "client.rate": OPERATOR,
    "order.resolve": OPERATOR,
    "order.refund": OPERATOR,
    "order.ack": OPERATOR,
    "order.close": OPERATOR,
    "orders.archive": OPERATOR,
    "providers.check": OPERATOR,
    "price.approve": OPERATOR,
    # the owner's alone
    "client.create": OWNER,
    "client.rotate_key": OWNER,
    "admins.list": OWNER,
    "admin.add": OWNER,
    "admin.remove": OWNER,
    "config.reload": OWNER,
}


# The actions that only read (GET on the admin API); every other action changes something.
READS = frozenset(action for action, role in NEEDS.items() if role == READ) | {"admins.list"}


def needs(action: str) -> str:
    """The least role `action` needs (an owner for an action the matrix does not name)."""
    return NEEDS.get(action, OWNER)


def may(role: str, action: str) -> bool:
    return role in _RANK and _RANK[role] >= _RANK[needs(action)]


@dataclass(frozen=True)
class Actor:
    """Who acts: `name` as the audit log shows it, the role it acts with, and
    for HTTP where the request came from and its request ID."""

    name: str
    role: str = OWNER
    source: str = ""
    request_id: str = ""

    def check(self, action: str) -> None:
        """Raise `Forbidden` unless this actor may do `action`."""
        if not may(self.role, action):
            raise Forbidden(f"{self.name} ({self.role}) may not {action}: it needs the {needs(action)} role")


def as_actor(actor: Actor | str) -> Actor:
    """An actor; a bare name is a local one (the command line, tests): an owner."""
    return actor if isinstance(actor, Actor) else Actor(actor)
