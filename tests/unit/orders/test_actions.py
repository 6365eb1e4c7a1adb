"""The order actions' rules that need no Redis: what upstream words a client may see."""

from proxy.orders.actions import public_error
from proxy.vocabulary import Errors


def test_upstream_refusals_pass_only_as_known_panel_messages():
    allowed = (Errors.REFILL_DISABLED, Errors.NOT_ELIGIBLE_FOR_REFILL)
    assert public_error("refill is disabled for this service.", allowed, "x") == Errors.REFILL_DISABLED
    assert public_error("Order 500001 cannot be refilled now", allowed, "x") == "x"
    assert public_error("Incorrect order ID", allowed, "x") == "x"  # true upstream, but not of our order
    assert public_error("Refill is disabled at echomark.store:8443", allowed, "x") == "x"
    assert public_error("Bad link", (Errors.INCORRECT_LINK,), "x") == Errors.INCORRECT_LINK
