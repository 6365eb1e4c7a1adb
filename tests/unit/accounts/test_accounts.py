"""Client accounts and the ledger, against a real Redis."""

import asyncio
from decimal import Decimal

import pytest

from proxy.accounts.clients import Accounts, hash_key
from proxy.accounts.ledger import Ledger
from proxy.errors import AccountError, InsufficientFunds, UnknownClient


@pytest.fixture
def ledger(redis_client, keys):
    return Ledger(redis_client, keys)


@pytest.fixture
def accounts(redis_client, keys, ledger):
    return Accounts(redis_client, keys, ledger, "USD")


async def test_create_stores_only_the_key_hash(accounts, redis_client, keys):
    client, api_key = await accounts.create("alice", Decimal("10.5"))
    assert client.balance == Decimal("10.5") and client.currency == "USD"
    assert len(api_key) == 32
    stored = await redis_client.hgetall(keys.client("alice"))
    assert stored["key_hash"] == hash_key(api_key)
    everything = [await redis_client.dump(k) for k in await redis_client.keys(f"{keys.prefix}*")]
    assert not any(api_key.encode() in (blob or b"") for blob in everything)
    assert await accounts.authenticate(api_key) == "alice"
    assert await accounts.authenticate(api_key + "x") is None
    assert await accounts.authenticate("") is None


async def test_names_are_unique_and_checked(accounts):
    await accounts.create("bob")
    with pytest.raises(AccountError, match="exists already"):
        await accounts.create("bob")
    with pytest.raises(AccountError):
        await accounts.create("bad name!")
    for hidden in ("bob\n", "carol\n", "dave\r", "\nerin"):  # a name with a line break would pass for another
        with pytest.raises(AccountError, match="a client name is"):
            await accounts.create(hidden)
    with pytest.raises(AccountError):
        await accounts.create("carol", Decimal("-1"))


async def test_disabled_client_cannot_authenticate(accounts):
    _, api_key = await accounts.create("dave")
    client = await accounts.disable("dave")
    assert client.disabled
    assert await accounts.authenticate(api_key) is None


async def test_topup_is_idempotent_by_ref(accounts, ledger):
    await accounts.create("erin")
    first = await accounts.topup("erin", Decimal("5"), ref="invoice-7")
    again = await accounts.topup("erin", Decimal("5"), ref="invoice-7")
    assert not first.duplicate and again.duplicate and again.id == first.id
    assert await ledger.balance("erin") == Decimal("5")
    await accounts.topup("erin", Decimal("0.0000001"))
    assert await ledger.balance("erin") == Decimal("5.0000001")
    with pytest.raises(AccountError):
        await accounts.topup("erin", Decimal("0"))
    with pytest.raises(AccountError):
        await accounts.topup("nobody", Decimal("1"))


async def test_debit_never_goes_below_zero_and_changes_nothing(accounts, ledger):
    await accounts.create("frank", Decimal("1"))
    with pytest.raises(InsufficientFunds):
        await ledger.apply("frank", Decimal("-1.0000001"), kind="charge", ref="o1")
    assert await ledger.balance("frank") == Decimal("1")
    assert len(await ledger.entries("frank")) == 1  # only the opening balance
    entry = await ledger.apply("frank", Decimal("-1"), kind="charge", ref="o2")
    assert entry.balance == 0 and entry.amount == Decimal("-1")
    with pytest.raises(UnknownClient):
        await ledger.apply("ghost", Decimal("1"), kind="topup", ref="x")


async def test_concurrent_debits_take_exactly_what_is_there(accounts, ledger):
    await accounts.create("gina", Decimal("100"))
    results = await asyncio.gather(
        *(ledger.apply("gina", Decimal("-1"), kind="charge", ref=f"o{i}") for i in range(300)),
        return_exceptions=True,
    )
    assert sum(1 for r in results if isinstance(r, InsufficientFunds)) == 200
    assert await ledger.balance("gina") == 0
    entries = await ledger.entries("gina")
    assert len(entries) == 101
    assert sum(e.amount for e in entries) == 0


async def test_ledger_lists_every_movement_in_order(accounts, ledger):
    await accounts.create("hank", Decimal("3"))
    await accounts.topup("hank", Decimal("2"), memo="wire")
    await ledger.apply("hank", Decimal("-0.5"), kind="charge", ref="order:1")
    entries = await ledger.entries("hank")
    assert [(e.kind, e.amount, e.balance) for e in entries] == [
        ("topup", Decimal(3), Decimal(3)),
        ("topup", Decimal(2), Decimal(5)),
        ("charge", Decimal("-0.5"), Decimal("4.5")),
    ]
    assert entries[1].memo == "wire"
    assert [e.kind for e in await ledger.entries("hank", limit=2)] == ["topup", "charge"]
