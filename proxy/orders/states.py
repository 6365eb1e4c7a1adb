"""The order's state machine, and every fact about states, in one place.

Every change of an order goes through `TABLE`, and only through the Lua
script that applies it (`scripts/transition.lua`), which reads this same
table: `lua_values` renders it, and every other fact below, into the
scripts. A caller names an event; it never says which states it thinks the
order may be in. An event the table does not list for the order's current
state changes nothing.

    reserved ──submit──▶ submitted ──accept──▶ placed ──status──▶ … final
       ▲                    │  │                  (refund by the rule of the status)
       └──────refuse────────┘  └─lose/abandon─▶ unknown ──resolve_placed / accept──▶ placed
       │                                           └──resolve_failed / refuse──▶ failed (refund all)
       └─exhaust / abandon─▶ failed (refund all)

    placed | unknown ──close──▶ closed (an operator's total refund)

- `submit` is written before a request leaves; `refuse` (the provider
  provably did not create it) brings the order back to `reserved` for the
  next route. Both need the placing task's lease.
- `abandon` is recovery's event: it applies only when the lease has expired.
  A `reserved` order was never sent and is refunded; a `submitted` one may
  exist upstream and becomes `unknown`.
- Late news is an event too: an `accept` that arrives after the order failed
  (an operator gave up on it) records the upstream order and asks for an
  operator; a late `refuse` of an `unknown` order proves it does not exist.
- `close` is an operator's end for an order the router cannot finish (the
  provider lost it, or answers what no rule settles): final, with the total
  refund the operator chose. A closed order is never read again; the client
  sees Canceled (refunded in full), Completed (nothing refunded) or Partial.
- `recheck` records a re-read of a final order (`settlement.recheck_final_hours`):
  it moves no money; a provider that changed its final answer is news for an
  operator.

Each rule also says what happens to the money, the client's duplicate
fingerprint, the lease and the operator's attention queue, so that all of it
happens in the one atomic step that changes the state.

Besides the table, this module says:

- when an order is final (`final`): failed or closed, or placed with a final
  upstream status (`vocabulary.FINAL_STATUSES`, the API's word, shared with
  the simulated panel), and what a client is shown of each state
  (`shown_status`, `shown_remains`);
- which working set (a sorted set of order IDs per client) holds which
  orders (`WORKING_SETS`);
- which events move an order in its provider's due index of status reads
  (`due_change`);
- which transitions count as which outcome in the metrics (`OUTCOMES`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from proxy.scripts import lua
from proxy.vocabulary import CANCELED, COMPLETED, FINAL_STATUSES, PARTIAL, PENDING

RESERVED = "reserved"
SUBMITTED = "submitted"
PLACED = "placed"
UNKNOWN = "unknown"
FAILED = "failed"
CLOSED = "closed"
STATES = (RESERVED, SUBMITTED, PLACED, UNKNOWN, FAILED, CLOSED)
IN_FLIGHT = frozenset({RESERVED, SUBMITTED})
# States after which nothing happens to an order, whatever its upstream status.
FINAL_STATES = frozenset({FAILED, CLOSED})

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
STOP = "stop"  # an unlimited subscription used its hold: asked to stop upstream
CLOSE = "close"  # an operator ends an order the router cannot finish, with a total refund
RECHECK = "recheck"  # a final order re-read: no money moves; a changed answer asks for an operator

Refund = Literal["", "all", "to"]
Duplicate = Literal["", "window", "drop"]
Lease = Literal["", "hold", "free"]

CLEAR = "-"  # as a rule's `attention`: the operator's business is done
# In an attention reason, what follows this is detail (the provider's reply)
# that may change from read to read; an operator who dealt with a reason is
# not asked again while what comes before it stays the same.
DETAIL = " | "


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
        CLOSE: Rule(CLOSED, refund="to", duplicate="window", attention=CLEAR),
        ACK: Rule(UNKNOWN, write=False, attention=CLEAR),
    },
    PLACED: {
        STATUS: Rule(PLACED, refund="to"),
        REFUND: Rule(PLACED, refund="to", attention=CLEAR),
        RESTATUS: Rule(PLACED),
        STOP: Rule(PLACED),
        RECHECK: Rule(PLACED),
        CLOSE: Rule(CLOSED, refund="to", attention=CLEAR),
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
    CLOSED: {
        REFUND: Rule(CLOSED, refund="to", attention=CLEAR),
        ACCEPT: Rule(CLOSED, write=False, attention="accepted upstream after an operator closed it"),
        LOSE: Rule(CLOSED, write=False),
        REFUSE: Rule(CLOSED, write=False),
        ACK: Rule(CLOSED, write=False, attention=CLEAR),
    },
}


def rule(state: str, event: str) -> Rule | None:
    return TABLE.get(state, {}).get(event)


# -- final, and what a client sees ------------------------------------------


def final(state: str, status: str) -> bool:
    """Whether nothing more happens to an order: failed or closed, or placed with a final status."""
    return state in FINAL_STATES or (state == PLACED and status in FINAL_STATUSES)


def shown_status(state: str, status: str, charge: Decimal = Decimal(0), refunded: Decimal = Decimal(0)) -> str:
    """The status a client is shown: the upstream's once placed; a failed
    order (refunded in full) is Canceled; a closed one Canceled when refunded
    in full, Completed when nothing was refunded, else Partial; until placed
    (in flight, or unknown to us) it is Pending."""
    if state == PLACED:
        return status
    if state == FAILED:
        return CANCELED
    if state == CLOSED:
        if refunded >= charge:
            return CANCELED
        return COMPLETED if refunded <= 0 else PARTIAL
    return PENDING


def shown_remains(state: str, remains: int, quantity: int, charge: Decimal, refunded: Decimal) -> int:
    """What a client is shown as remaining: the upstream's, except for a closed
    order, whose remains follow its refund (all, none, or the refunded share)."""
    if state != CLOSED:
        return remains
    if refunded >= charge or charge <= 0:
        return quantity
    return int(quantity * refunded / charge)


# -- working sets --------------------------------------------------------------


@dataclass(frozen=True)
class WorkingSet:
    """Which orders one working set holds: those in `states` (only those whose
    upstream status is not final, if `open_only`), or, for `attention`, those
    with an attention note, whatever their state."""

    meaning: str
    states: frozenset[str] = frozenset()
    open_only: bool = False
    attention: bool = False

    def holds(self, state: str, status: str, attention: str) -> bool:
        if self.attention:
            return attention != ""
        return state in self.states and not (self.open_only and status in FINAL_STATUSES)


# A client's order IDs by what they wait for (`Keys.orders_of`). The scripts
# keep them in step with the records, in this order of their keys.
WORKING_SETS: dict[str, WorkingSet] = {
    "inflight": WorkingSet("Orders being sent upstream.", IN_FLIGHT),
    "unknown": WorkingSet("Orders whose outcome is unknown, waiting for an operator.", frozenset({UNKNOWN})),
    "open": WorkingSet("Placed orders not yet final.", frozenset({PLACED}), open_only=True),
    "attention": WorkingSet("Orders an operator must look at (see their attention note).", attention=True),
}


# -- the due index of status reads ----------------------------------------------

# After these a placed order's status is to be read again soon.
DUE_EVENTS = frozenset({ACCEPT, RESOLVE_PLACED, RESTATUS, STOP})


def due_change(state: str, event: str, status: object) -> bool | None:
    """How `event` on an order in `state` moves it in its provider's due
    index: True puts it (back) in, False takes it out, None leaves it.
    `status` is the upstream status a status read brings (None if it
    brings none: the order stays open). A placed order leaves the index when
    it turns final or leaves `placed` (the status refresher may keep a final
    one in for its re-checks); an operator's refund or acknowledgement of an
    open order leaves it where it is."""
    if event in DUE_EVENTS or (event == STATUS and status not in FINAL_STATUSES):
        return True
    if state != PLACED:
        return None
    applied = rule(state, event)
    if event in (STATUS, RECHECK) or (applied is not None and applied.target != PLACED):
        return False
    return None


# -- outcomes, for the metrics ---------------------------------------------------

# The transition script counts, in each client's totals, every transition that
# changes the state or asks for an operator, under COUNTED + "state:event".
COUNTED = "n:"

# Outcomes of placing an order, each the transitions that reach it.
OUTCOMES: dict[str, tuple[tuple[str, str], ...]] = {
    "placed": ((SUBMITTED, ACCEPT), (UNKNOWN, ACCEPT), (UNKNOWN, RESOLVE_PLACED)),
    "unknown": ((SUBMITTED, LOSE), (SUBMITTED, ABANDON)),
    "failed": ((RESERVED, EXHAUST), (RESERVED, ABANDON), (UNKNOWN, RESOLVE_FAILED), (UNKNOWN, REFUSE)),
    "late_accept": ((FAILED, ACCEPT), (CLOSED, ACCEPT)),
    "closed": ((PLACED, CLOSE), (UNKNOWN, CLOSE)),
}


def counter(state: str, event: str) -> str:
    """The name a transition is counted under in a client's totals."""
    return f"{COUNTED}{state}:{event}"


# -- rendered into the scripts ---------------------------------------------------


@functools.cache
def lua_values() -> dict[str, str]:
    """Every fact above, as the Lua literals `scripts/states.lua` is rendered with."""
    return {
        # A state's rules are built when an order in that state is asked about, not
        # every one on every call: the whole table as one literal cost 14 µs of
        # Redis' CPU each time any script that includes it ran (three an add).
        "TABLE": "{"
        + ",".join(
            f"[{lua(state)}]=function() return {lua({event: vars(r) for event, r in events.items()})} end"
            for state, events in TABLE.items()
        )
        + "}",
        "FINAL_STATUSES": lua(FINAL_STATUSES),
        "IN_FLIGHT": lua(IN_FLIGHT),
        "PLACED": lua(PLACED),
        "FINAL_STATES": lua(FINAL_STATES),
        "CLEAR": lua(CLEAR),
        "DETAIL": lua(DETAIL),
        "COUNTED": lua(COUNTED),
        "WORKING_SETS": lua([{"name": name, **vars(s)} for name, s in WORKING_SETS.items()]),
    }
