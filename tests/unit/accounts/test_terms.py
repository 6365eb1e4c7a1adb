"""A client's own terms (proxy/accounts): what the record holds."""

from decimal import Decimal

import pytest

from proxy.accounts.clients import Accounts
from proxy.accounts.terms import Terms
from proxy.errors import AccountError


@pytest.fixture
def accounts(redis_client, keys, ledger):
    return Accounts(redis_client, keys, ledger, "USD")


async def test_terms_are_the_deployments_until_set_and_again_when_unset(accounts):
    await accounts.create("acme")
    assert await accounts.terms("acme") == Terms()
    assert (await accounts.get("acme")).terms == Terms()
    await accounts.set_terms("acme", {"markup": "12.5", "duplicate_window": "60", "same_link": "refuse"})
    await accounts.set_rate("acme", 7, Decimal("1.25"))
    await accounts.set_rate("acme", 3, Decimal("0.5"))
    terms = await accounts.terms("acme")
    assert terms == Terms(Decimal("12.5"), 60.0, "refuse", {3: Decimal("0.5"), 7: Decimal("1.25")})
    assert (await accounts.get("acme")).terms == terms
    assert terms.window(0) == 60 and terms.refuses_same_link
    await accounts.set_terms("acme", {"markup": None, "same_link": None})
    await accounts.set_rate("acme", 7, None)
    assert await accounts.terms("acme") == Terms(None, 60.0, "allow", {3: Decimal("0.5")})
    assert Terms().window(30) == 30
    with pytest.raises(AccountError, match="no such terms"):
        await accounts.set_terms("acme", {"colour": "red"})
