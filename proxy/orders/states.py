"""The order's state machine: one table of state × event → rule.

Every change of an order goes through `TABLE`, and only through the Lua
script in `proxy.orders.book`, which reads this same table (rendered to Lua
by `lua_table`). A caller names an event; it never says which states it
thinks the order may be in. An event the table does not list for the
order's current state changes nothing.

    reserved ──submit──▶ submitted ──accept──▶ placed ──status──▶ … final
       ▲                    │  │                  (refund by the rule of the status)
       └──────refuse────────┘  └─lose/abandon─▶ unknown ──resolve_placed / accept──▶ placed
       │                                           └──resolve_failed / refuse──▶ failed (refund all)
       └─exhaust / abandon─▶ failed (refund all)

- `submit` is written before a request leaves; `refuse` (the provider
  provably did not create it) brings the order back to `reserved` for the
  next route. Both need the placing task's lease.
- `abandon` is recovery's event: it applies only when the lease has expired.
  A `reserved` order was never sent and is refunded; a `submitted` one may
  exist upstream and becomes `unknown`.
- Late news is an event too: an `accept` that arrives after the order failed
  (an operator gave up on it) records the upstream order and asks for an
  operator; a late `refuse` of an `unknown` order proves it does not exist.

Each rule also says what happens to the money, the client's duplicate
fingerprint, the lease and the operator's attention queue, so that all of it
happens in the one atomic step that changes the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RESERVED = "reserved"
SUBMITTED = "submitted"
PLACED = "placed"
UNKNOWN = "unknown"
FAILED = "failed"
STATES = (RESERVED, SUBMITTED, PLACED, UNKNOWN, FAILED)
IN_FLIGHT = frozenset({RESERVED, SUBMITTED})

# Events.
SUBMIT = "submit"  # about to send to a route
REFUSE = "refuse"  # the provider provably did not create it
ACCEPT = "accept"  # the provider answered with its order ID
LOSE = "lose"  # the outcome is unknown: a timeout or garbage after sending
EXHAUST = "exhaust"  # no route left to try
ABANDON = "abandon"  # recovery: the placing task's lease expired
RESOLVE_PLACED = "resolve_placed"  # an operator: it exists upstream
RESOLVE_FAILED = "resolve_failed"  # an operator: it does not
STATUS = "status"  # an upstream status read
REFUND = "refund"  # an operator's refund
RESTATUS = "restatus"  # read the status again soon (after a cancel request)
ACK = "ack"  # an operator has seen what needed attention

Refund = Literal["", "all", "to"]
Duplicate = Literal["", "window", "drop"]
Lease = Literal["", "hold", "free"]

CLEAR = "-"  # as a rule's `attention`: the operator's business is done


@dataclass(frozen=True)
class Rule:
    """What one event does to an order in one state.

    - `target`: the state after.
    - `refund`: "all" refunds the whole charge; "to" raises the order's total
      refund to the amount the caller gives (never lowers it, never above the
      charge); "" moves no money.
    - `duplicate`: "window" starts the client's retry window (the client has
      its answer), "drop" forgets the fingerprint (a failed order must not
      answer retries), "" keeps it as it is.
    - `lease`: "hold" needs the placing task's lease (or an expired one that
      nobody took over) and renews it; "free" needs it expired.
    - `write`: whether the caller's fields are written. Late news that must
      not overwrite the record goes into the attention note instead.
    - `attention`: a reason that puts the order in the operator's queue,
      `CLEAR` to take it out, "" to leave it (a caller may still give one).
    """

    target: str
    refund: Refund = ""
    duplicate: Duplicate = ""
    lease: Lease = ""
    write: bool = True
    attention: str = ""


TABLE: dict[str, dict[str, Rule]] = {
    RESERVED: {
        SUBMIT: Rule(SUBMITTED, lease="hold"),
        EXHAUST: Rule(FAILED, refund="all", duplicate="drop", lease="hold"),
        ABANDON: Rule(FAILED, refund="all", duplicate="drop", lease="free"),
    },
    SUBMITTED: {
        REFUSE: Rule(RESERVED, lease="hold"),
        ACCEPT: Rule(PLACED, duplicate="window"),
        LOSE: Rule(UNKNOWN),
        ABANDON: Rule(UNKNOWN, lease="free"),
    },
    UNKNOWN: {
        ACCEPT: Rule(PLACED, duplicate="window"),
        REFUSE: Rule(FAILED, refund="all", duplicate="drop"),
        LOSE: Rule(UNKNOWN),
        RESOLVE_PLACED: Rule(PLACED, duplicate="window", attention=CLEAR),
        RESOLVE_FAILED: Rule(FAILED, refund="all", duplicate="drop", attention=CLEAR),
        ACK: Rule(UNKNOWN, write=False, attention=CLEAR),
    },
    PLACED: {
        STATUS: Rule(PLACED, refund="to"),
        REFUND: Rule(PLACED, refund="to", attention=CLEAR),
        RESTATUS: Rule(PLACED),
        ACCEPT: Rule(PLACED, write=False, attention="accepted upstream a second time"),
        LOSE: Rule(PLACED, write=False),
        REFUSE: Rule(PLACED, write=False),
        ACK: Rule(PLACED, write=False, attention=CLEAR),
    },
    FAILED: {
        ACCEPT: Rule(FAILED, write=False, attention="accepted upstream after it failed and was refunded"),
        LOSE: Rule(FAILED, write=False),
        REFUSE: Rule(FAILED, write=False),
        ACK: Rule(FAILED, write=False, attention=CLEAR),
    },
}


def rule(state: str, event: str) -> Rule | None:
    return TABLE.get(state, {}).get(event)


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def lua_table() -> str:
    """`TABLE` as a Lua table constructor, for the transition script."""
    states = []
    for state, events in TABLE.items():
        rules = []
        for event, r in events.items():
            rules.append(
                f"[{_lua_string(event)}]={{target={_lua_string(r.target)},refund={_lua_string(r.refund)},"
                f"duplicate={_lua_string(r.duplicate)},lease={_lua_string(r.lease)},"
                f"write={'true' if r.write else 'false'},attention={_lua_string(r.attention)}}}"
            )
        states.append(f"[{_lua_string(state)}]={{{','.join(rules)}}}")
    return "{" + ",".join(states) + "}"
