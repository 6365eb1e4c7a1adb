"""The words of API v2: service types, statuses and the panels' error strings.

Shared by both sides of the router (downstream protocol, upstream client) and
by the simulated panel, so a spelling lives in exactly one place.
docs/api-v2.md is our notes on the protocol these words come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ACTIONS = ("services", "add", "status", "refill", "refill_status", "cancel", "balance")
BULK_LIMIT = 100

# Order statuses, canonical spelling.
PENDING = "Pending"
IN_PROGRESS = "In progress"
PROCESSING = "Processing"
COMPLETED = "Completed"
PARTIAL = "Partial"
CANCELED = "Canceled"
ORDER_STATUSES = (PENDING, IN_PROGRESS, PROCESSING, COMPLETED, PARTIAL, CANCELED)

# Subscription statuses.
ACTIVE = "Active"
PAUSED = "Paused"
EXPIRED = "Expired"
SUBSCRIPTION_STATUSES = (ACTIVE, PAUSED, COMPLETED, EXPIRED, CANCELED)

# After these an order (or a subscription) changes no more.
FINAL_STATUSES = frozenset({COMPLETED, PARTIAL, CANCELED, EXPIRED})

# Refill statuses.
REJECTED = "Rejected"
REFILL_STATUSES = (PENDING, IN_PROGRESS, COMPLETED, REJECTED, CANCELED)
FINAL_REFILL_STATUSES = frozenset({COMPLETED, REJECTED, CANCELED})

# The delays (minutes between posts) a subscription may ask for, as panels list them.
SUBSCRIPTION_DELAYS = (0, 5, 10, 15, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 360, 420, 480, 540, 600)


class Errors:
    """Error strings exactly as panels send them."""

    INVALID_KEY = "Invalid API key"
    INCORRECT_REQUEST = "Incorrect request"
    INCORRECT_SERVICE = "Incorrect service ID"
    INCORRECT_ORDER = "Incorrect order ID"
    REFILL_NOT_FOUND = "Refill not found"
    NOT_ENOUGH_FUNDS = "Not enough funds on balance"
    INCORRECT_LINK = "Incorrect link"
    ACTIVE_ORDER = "You have active order with this link. Please wait until order being completed."
    REFILL_DISABLED = "Refill is disabled for this service"
    REFILL_NOT_COMPLETED = "The refill task is not completed for this order"
    NOT_ELIGIBLE_FOR_REFILL = "Order not eligible for refill."
    CANNOT_CANCEL = "Cannot cancel"

    @staticmethod
    def quantity_below(minimum: int) -> str:
        return f"Quantity less than minimal {minimum}"

    @staticmethod
    def quantity_above(maximum: int) -> str:
        return f"Quantity more than maximal {maximum}"


def parse_id(text: str) -> int | None:
    """A positive integer ID (service, order, refill) as a client may write it, else None."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    value = int(text)
    return value if value > 0 else None


def _folded(text: str) -> str:
    return " ".join(text.casefold().replace(".", " ").split())


_KNOWN_ERRORS = {
    _folded(message): message
    for message in (
        Errors.INVALID_KEY,
        Errors.INCORRECT_REQUEST,
        Errors.INCORRECT_SERVICE,
        Errors.INCORRECT_ORDER,
        Errors.REFILL_NOT_FOUND,
        Errors.NOT_ENOUGH_FUNDS,
        Errors.INCORRECT_LINK,
        Errors.ACTIVE_ORDER,
        Errors.REFILL_DISABLED,
        Errors.REFILL_NOT_COMPLETED,
        Errors.NOT_ELIGIBLE_FOR_REFILL,
        Errors.CANNOT_CANCEL,
    )
}
_KNOWN_ERRORS[_folded("Bad link")] = Errors.INCORRECT_LINK


def known_error(text: str) -> str | None:
    """The panel error `text` is, in our spelling, if it is one we know
    (case, spacing and full stops aside); None for anything else."""
    return _KNOWN_ERRORS.get(_folded(text))


QuantitySource = Literal["field", "comments", "usernames", "flat"]


@dataclass(frozen=True)
class ServiceType:
    """What `add` takes for one service type and how the quantity is counted.

    `quantity` says where the ordered quantity comes from: the `quantity`
    field, the number of lines of a list field, or nothing at all for
    packages, which are charged their rate flat.
    """

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    quantity: QuantitySource = "field"
    dripfeed: bool = False

    @property
    def flat(self) -> bool:
        return self.quantity == "flat"


_TYPES = (
    ServiceType("Default", ("link", "quantity"), ("runs", "interval"), dripfeed=True),
    ServiceType("Package", ("link",), quantity="flat"),
    ServiceType("Custom Comments", ("link", "comments"), quantity="comments"),
    ServiceType("Custom Comments Package", ("link", "comments"), quantity="flat"),
    ServiceType("Mentions", ("link", "quantity", "usernames")),
    ServiceType("Mentions with Hashtags", ("link", "quantity", "usernames", "hashtags")),
    ServiceType("Mentions Custom List", ("link", "usernames"), quantity="usernames"),
    ServiceType("Mentions Hashtag", ("link", "quantity", "hashtag")),
    ServiceType("Mentions User Followers", ("link", "quantity", "username")),
    ServiceType("Mentions Media Likers", ("link", "quantity", "media")),
    ServiceType("Comment Likes", ("link", "quantity", "username")),
    ServiceType("Comment Replies", ("link", "username", "comments"), quantity="comments"),
    ServiceType("Poll", ("link", "quantity", "answer_number")),
    ServiceType("Invites from Groups", ("link", "quantity", "groups")),
    ServiceType(
        "Web Traffic",
        ("link", "quantity", "country", "device", "type_of_traffic"),
        ("runs", "interval", "google_keyword", "referring_url"),
        dripfeed=True,
    ),
    ServiceType(
        "Subscriptions",
        ("username", "min", "max"),
        ("posts", "old_posts", "delay", "expiry"),
    ),
)
SERVICE_TYPES: dict[str, ServiceType] = {t.name: t for t in _TYPES}
SUBSCRIPTIONS = "Subscriptions"
LIST_FIELDS = ("comments", "usernames", "hashtags", "groups")
