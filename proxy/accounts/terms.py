"""A client's own terms: markup, custom rates, duplicate window, same-link rule.

Resellers sell to other panels, each on its own terms; unset, a client gets
the deployment's:

- `markup`: a percentage that replaces the configured markup (global, per
  service and per import rule) for this client: its `services` reply and its
  charges use it. Never negative: never below cost.
- `rates`: custom rates for single services (per 1000, in the deployment
  currency), refused below cost when set, and never sold below cost when an
  order is placed (the cost at that moment is the floor).
- `duplicate_window`: seconds after its answer in which an identical `add`
  of this client returns the first order. Unset: `SMM_PROXY_DUPLICATE_WINDOW`
  (0 by default: an identical add is a new order, as two customers of a
  relaying panel may send the same one). The `Idempotency-Key` header is
  honoured whatever this says.
- `same_link`: "refuse" answers an `add` on a link the client already has an
  open order on with the panels' "You have active order with this link."
  (decided inside the reserve script, from an index of the client's open
  links the order scripts keep); "allow" (the default) takes it.

They live in the client's record (`Keys.client`) and its rates hash
(`Keys.rates`), read with each `add` and `services`: another instance may
change them at any moment, so no process keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from proxy.orders.links import ALLOW, REFUSE

SAME_LINK = (ALLOW, REFUSE)
# The client record's fields that hold the terms.
FIELDS = ("markup", "duplicate_window", "same_link")


@dataclass(frozen=True)
class Terms:
    markup: Decimal | None = None  # percent; None: the config's markup
    duplicate_window: float | None = None  # seconds; None: the setting's
    same_link: str = ALLOW
    rates: Mapping[int, Decimal] = field(default_factory=dict)  # service -> rate per 1000

    def window(self, default: float) -> float:
        return default if self.duplicate_window is None else self.duplicate_window

    @property
    def refuses_same_link(self) -> bool:
        return self.same_link == REFUSE

    @classmethod
    def read(cls, record: Mapping[str, str], rates: Mapping[str, str]) -> Terms:
        """From the client's record and its rates hash, as Redis holds them."""
        markup = record.get("markup") or ""
        window = record.get("duplicate_window") or ""
        return cls(
            markup=Decimal(markup) if markup else None,
            duplicate_window=float(window) if window else None,
            same_link=REFUSE if record.get("same_link") == REFUSE else ALLOW,
            rates={int(service): Decimal(rate) for service, rate in sorted(rates.items(), key=lambda i: int(i[0]))},
        )
