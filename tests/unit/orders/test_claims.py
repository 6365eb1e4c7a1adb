"""Claims: one order of ours per upstream order (proxy/orders/claims.py)."""

from __future__ import annotations

from support import new_order

from proxy.orders.states import ACCEPT, EXHAUST, LOSE, SUBMIT

LINK = "https://instagram.com/p/"


async def sent(book, link: str):
    order = (await book.reserve(new_order(link=LINK + link))).order
    return await book.apply(order, SUBMIT, {"provider": "echomark"})


async def test_the_first_order_to_claim_an_upstream_order_owns_it(book, alice, claims):
    x, y = await sent(book, "x"), await sent(book, "y")
    assert await claims.claim(x, "echomark", 777) is None
    assert await claims.claim(x, "echomark", 777) is None  # its own claim, asked again
    assert await claims.claim(y, "echomark", 777) == x.id  # x is in flight: it records 777 next
    assert await claims.claim(y, "korean", 777) is None  # another provider's 777 is another order


async def test_a_placed_owner_keeps_its_claim(book, alice, claims):
    x, y = await sent(book, "x"), await sent(book, "y")
    assert await claims.claim(x, "echomark", 777) is None
    await book.apply(x, ACCEPT, {"upstream_order": 777})
    assert await claims.claim(y, "echomark", 777) == x.id


async def test_a_claim_its_order_never_recorded_is_taken_over(book, alice, claims):
    x, y = await sent(book, "x"), await sent(book, "y")
    assert await claims.claim(x, "echomark", 777) is None
    await book.apply(x, LOSE)  # x crashed between its claim and its accept: it is not in flight now
    assert await claims.claim(y, "echomark", 777) is None
    assert await claims.claim(x, "echomark", 777) == y.id


async def test_a_claim_of_an_order_that_is_gone_is_taken_over(book, alice, claims):
    x = (await book.reserve(new_order(link=LINK + "x"))).order
    assert await claims.claim(x, "echomark", 777) is None
    await book.apply(x, EXHAUST)
    y = await sent(book, "y")
    assert await claims.claim(y, "echomark", 777) is None


async def test_only_the_owner_releases_a_claim(book, alice, claims):
    x, y = await sent(book, "x"), await sent(book, "y")
    assert await claims.claim(x, "echomark", 777) is None
    await claims.release(y, "echomark", 777)  # not y's to release
    assert await claims.claim(y, "echomark", 777) == x.id
    await claims.release(x, "echomark", 777)
    assert await claims.claim(y, "echomark", 777) is None
