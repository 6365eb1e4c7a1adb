"""The dashboard in a real browser (chromium), against `smm-proxy demo` and
its simulated panels: what an operator sees and does, from the browser alone.

- log in, and the overview's figures equal the ledger;
- a provider put into a fault is shown ejected; the orders it left unknown
  are settled from the page (resolved as failed, resolved as placed), those
  that then need attention are refunded or acknowledged, each after a
  confirmation showing the money that will move, and the ledger is exact;
- two top-ups with one reference credit once;
- a form posted from another origin moves nothing;
- every page fits a 390-pixel-wide phone screen (a screenshot of each is
  saved in tests/output/dashboard/).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from .demo import OUTPUT, PHONE, Demo, free_port

WAIT_SECONDS = 90


@pytest.fixture
def page(browser, demo: Demo) -> Iterator[object]:
    """A phone-sized page, logged in through the login form with the demo's owner token."""
    context = browser.new_context(viewport=PHONE)
    opened = context.new_page()
    opened.goto(demo.dashboard)
    assert opened.url.endswith("/dashboard/login")
    opened.fill("input[name=token]", demo.token)
    opened.click("button[type=submit]")
    opened.wait_for_url(demo.dashboard)
    cookie = next(c for c in context.cookies() if c["name"] == "smm_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert demo.token not in opened.url
    yield opened
    context.close()


def ledger(demo: Demo, client: str = "demo") -> list[dict[str, object]]:
    return demo.admin(f"/clients/{client}/ledger")  # type: ignore[return-value]


def balance(demo: Demo, client: str = "demo") -> Decimal:
    return Decimal(next(c["balance"] for c in demo.admin("/clients") if c["name"] == client))  # type: ignore[index,union-attr]


def eventually(check: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.5)


def figures(page, span: str) -> dict[str, str]:
    cells = page.locator(f'td[data-span="{span}"]')
    return {cells.nth(n).get_attribute("data-figure"): cells.nth(n).inner_text().strip() for n in range(cells.count())}


def flash(page) -> str:
    return page.locator(".flash").first.inner_text()


def test_the_overview_shows_what_the_ledger_says(page, demo: Demo):
    for n in range(3):
        assert "order" in demo.add(1 + n % 2, f"https://instagram.com/overview{n}")

    def agrees() -> bool:
        before = ledger(demo)
        page.goto(demo.dashboard)
        today = figures(page, "Today")
        after = ledger(demo)
        if before != after:  # a status moved money while we looked: look again
            return False
        orders = {e["order"] for e in after if e["order"]}
        revenue = -sum((Decimal(e["amount"]) for e in after if e["order"]), Decimal(0))
        refunds = sum((Decimal(e["amount"]) for e in after if e["kind"] == "refund"), Decimal(0))
        shown = (int(today["orders"]), Decimal(today["revenue"]), Decimal(today["refunds"]))
        assert shown == (len(orders), revenue, refunds), (shown, after)
        return True

    eventually(agrees, "the overview read while the ledger stood still")
    report = demo.admin("/report?since=1d")
    assert Decimal(figures(page, "Today")["margin"]) == Decimal(report["total"]["margin"])  # type: ignore[index]
    assert page.locator('[data-health="echomark"]').count() == 1
    page.screenshot(path=str(OUTPUT / "overview.png"), full_page=True)


def test_a_failing_provider_is_ejected_and_every_order_that_needs_a_person_is_settled(page, demo: Demo):
    # echomark answers every add with an nginx 500 page: sent, outcome unknown, never sent again.
    # A client of its own: the demo's panels settle earlier tests' orders meanwhile (a
    # refund of one of them moved the demo client's balance between two of the reads below).
    client = f"faults-{uuid.uuid4().hex[:6]}"
    key = demo.new_client(client, "100")
    demo.fault("echomark", mode="http_500", actions=["add"])
    try:
        ids = [
            int(demo.add(1, f"https://instagram.com/fault-{uuid.uuid4().hex[:6]}", key=key)["order"]) for _ in range(3)
        ]
    finally:
        demo.fault("echomark")
    page.goto(f"{demo.dashboard}/providers")
    assert "ejected" in page.locator('[data-health="echomark"]').inner_text()
    assert "until" in page.locator("#echomark").inner_text()
    assert "margin" in page.locator('[data-week="echomark"]').inner_text()  # what it earned this week
    page.screenshot(path=str(OUTPUT / "providers.png"), full_page=True)

    page.goto(f"{demo.dashboard}/queue")
    for order in ids:
        assert page.locator(f'#unknown article[data-order="{order}"]').count() == 1
    page.screenshot(path=str(OUTPUT / "queue.png"), full_page=True)
    charge = Decimal(demo.admin(f"/orders/{ids[0]}")["charge"])  # type: ignore[index]

    # 1. It is not at the provider: resolved as failed, refunded in full, as the confirmation said.
    was = balance(demo, client)
    page.locator(f'#unknown article[data-order="{ids[0]}"]').get_by_role("button", name="Resolve as failed…").click()
    assert Decimal(page.locator('[data-figure="credit"]').inner_text().split()[0]) == charge
    after = Decimal(page.locator('[data-figure="balance-after"]').inner_text())
    assert after == was + charge
    page.screenshot(path=str(OUTPUT / "confirm.png"), full_page=True)
    page.fill("input[name=reason]", "not at echomark")
    page.get_by_role("button", name="Confirm").click()
    assert f"Order {ids[0]} resolved as failed" in flash(page)
    assert balance(demo, client) == after
    refunds = [e for e in ledger(demo, client) if e["order"] == ids[0] and e["kind"] == "refund"]
    assert [Decimal(e["amount"]) for e in refunds] == [charge]

    # 2. and 3. They are at the provider: resolved as placed, no money moves; an ID
    # another order owns is refused with a message.
    for order, upstream in ((ids[1], "990001"), (ids[2], "990001"), (ids[2], "990002")):
        page.goto(f"{demo.dashboard}/queue")
        item = page.locator(f'#unknown article[data-order="{order}"]')
        item.locator("input[name=upstream_order]").fill(upstream)
        item.get_by_role("button", name="Resolve as placed…").click()
        if (order, upstream) == (ids[2], "990001"):
            assert "already belongs to order" in page.locator(".flash").inner_text()
            continue
        assert page.locator('[data-figure="credit"]').inner_text().startswith("0.00")
        page.get_by_role("button", name="Confirm").click()
        assert f"placed as upstream order {upstream}" in flash(page)

    # The provider knows neither ID: after a few status reads no rule can settle,
    # both wait for attention, with the reason.
    def both_in_attention() -> bool:
        page.goto(f"{demo.dashboard}/queue")
        return all(page.locator(f'#attention article[data-order="{o}"]').count() == 1 for o in ids[1:])

    eventually(both_in_attention, "the orders the provider does not know in the attention queue")
    assert "could not be settled" in page.locator(f'#attention article[data-order="{ids[1]}"] .reason').inner_text()

    # Refund one in full, as the confirmation says.
    was = balance(demo, client)
    item = page.locator(f'#attention article[data-order="{ids[1]}"]')
    item.locator("input[name=total]").fill(str(charge))
    item.get_by_role("button", name="Refund…").click()
    assert Decimal(page.locator('[data-figure="credit"]').inner_text().split()[0]) == charge
    page.get_by_role("button", name="Confirm").click()
    assert f"Order {ids[1]} refunded" in flash(page)
    assert balance(demo, client) == was + charge
    # Acknowledge the other: no money moves.
    page.locator(f'#attention article[data-order="{ids[2]}"]').get_by_role("button", name="Acknowledge…").click()
    assert page.locator('[data-figure="credit"]').inner_text().startswith("0.00")
    page.get_by_role("button", name="Confirm").click()
    assert f"Order {ids[2]} acknowledged" in flash(page)
    assert balance(demo, client) == was + charge

    # Nothing of these waits for a person any more, and the ledger is exact.
    page.goto(f"{demo.dashboard}/queue")
    for order in ids:
        assert page.locator(f'article[data-order="{order}"]').count() == 0
    entries = ledger(demo, client)
    assert sum(Decimal(e["amount"]) for e in entries) == Decimal(entries[-1]["balance"]) == balance(demo, client)
    for order, moved in ((ids[0], Decimal(0)), (ids[1], Decimal(0)), (ids[2], -charge)):
        assert sum(Decimal(e["amount"]) for e in entries if e["order"] == order) == moved
    # An order's page shows its whole history: states, attempts, ledger, operator actions.
    page.goto(f"{demo.dashboard}/orders/{ids[1]}")
    text = page.locator("main").inner_text()
    assert "order.resolve" in text and "order.refund" in text and "echomark: unknown" in text
    assert "order.attention" in text  # the event that sent it to a person
    page.screenshot(path=str(OUTPUT / "order.png"), full_page=True)


def test_two_top_ups_with_one_reference_credit_once(page, demo: Demo):
    ref = f"invoice-{uuid.uuid4().hex[:8]}"
    was = balance(demo)
    for attempt in range(2):
        page.goto(f"{demo.dashboard}/clients/demo")
        form = page.locator('form[data-form="topup"]')
        form.locator("input[name=amount]").fill("7.5")
        form.locator("input[name=ref]").fill(ref)
        form.get_by_role("button", name="Top up").click()
        assert ("applied before: nothing moved" in flash(page)) == (attempt == 1)
    assert balance(demo) == was + Decimal("7.5")
    assert [e["amount"] for e in ledger(demo) if e["ref"] == f"topup:{ref}"] == ["7.50"]
    assert page.locator('[data-figure="balance"]').inner_text().startswith(str(was + Decimal("7.5")))
    page.screenshot(path=str(OUTPUT / "client.png"), full_page=True)


def test_a_form_posted_from_another_origin_moves_nothing(page, demo: Demo):
    was, entries = balance(demo), len(ledger(demo))
    form = (
        f'<form method="post" action="{demo.dashboard}/clients/demo/topup">'
        '<input name="amount" value="50"><input name="ref" value="forged"><input name="csrf" value="guess"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    # The same site on another port (the cookie goes along), and another site (it does not).
    for origin in (f"http://127.0.0.1:{free_port()}", "http://evil.example"):
        page.route(f"{origin}/**", lambda route: route.fulfill(content_type="text/html", body=form))
        with page.expect_navigation(url=f"{demo.dashboard}/**"):
            page.goto(f"{origin}/page")
        assert "Nothing was changed" in page.locator("main").inner_text()
    assert balance(demo) == was and len(ledger(demo)) == entries


def test_every_page_fits_a_phone(page, demo: Demo, browser):
    order = demo.add(3, "https://instagram.com/phone")["order"]
    paths = {
        "overview": "",
        "queue": "/queue",
        "providers": "/providers",
        "orders": "/orders",
        "search": "/orders?by=client&q=demo",
        "order": f"/orders/{order}",
        "clients": "/clients",
        "client": "/clients/demo",
    }
    for name, path in paths.items():
        page.goto(f"{demo.dashboard}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name} is {width} px wide"
        page.screenshot(path=str(OUTPUT / f"phone-{name}.png"), full_page=True)
    logged_out = browser.new_context(viewport=PHONE).new_page()
    logged_out.goto(demo.dashboard)
    assert logged_out.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    logged_out.screenshot(path=str(OUTPUT / "phone-login.png"), full_page=True)
    desk = browser.new_context(viewport={"width": 1280, "height": 900})
    desk.add_cookies(page.context.cookies())
    wide = desk.new_page()
    wide.goto(demo.dashboard)
    wide.screenshot(path=str(OUTPUT / "desk-overview.png"), full_page=True)
    desk.close()
