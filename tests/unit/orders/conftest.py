"""The order layer on a real Redis, without the router: a ledger with a
client, the order book and the collaborators it is built from."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support import FakeClock

from proxy.accounts.clients import Accounts
from proxy.accounts.ledger import Ledger
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.due import DueIndex
from proxy.orders.leases import Leases
from proxy.orders.verdicts import Verdicts


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(redis_client, keys) -> Ledger:
    return Ledger(redis_client, keys)


@pytest.fixture
async def alice(redis_client, keys, ledger) -> str:
    """A client with 10.00 on her balance."""
    await Accounts(redis_client, keys, ledger, "USD").create("alice", Decimal("10"))
    return "alice"


@pytest.fixture
def leases(redis_client, keys) -> Leases:
    return Leases(redis_client, keys, seconds=30)


@pytest.fixture
def due(redis_client, keys) -> DueIndex:
    return DueIndex(redis_client, keys)


@pytest.fixture
def book(redis_client, keys, leases, due, clock) -> OrderBook:
    return OrderBook(redis_client, keys, leases, due, clock)


@pytest.fixture
def claims(book) -> Claims:
    return Claims(book)


@pytest.fixture
def verdicts(book, claims) -> Verdicts:
    return Verdicts(book, claims)
