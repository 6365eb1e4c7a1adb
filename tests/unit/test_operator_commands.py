"""The operator commands the providers' work added, end to end against a real
Redis: `smm-proxy events` and `smm-proxy providers approve`."""

import asyncio
import json
from decimal import Decimal

from proxy.keys import Keys
from proxy.ops.events import EventLog
from proxy.providers.listings import Listings
from proxy.providers.replies import UpstreamService
from proxy.store import connect


def followers(rate: str) -> UpstreamService:
    return UpstreamService(1, "Followers", "Default", "Instagram", Decimal(rate), 10, 10_000, False, True, False, None)


async def a_held_price_change(redis_url: str, key_prefix: str) -> None:
    """echomark's service 1 goes from 0.90 to 2.00: beyond the gate, held and told as an event."""
    redis, keys = connect(redis_url), Keys(key_prefix)
    try:
        events = EventLog(redis, keys)
        listings = Listings(redis, keys, {}, ttl=300, change_percent={"echomark": Decimal(20)}, emit=events.emit)
        await listings.store("echomark", [followers("0.90")])
        await listings.store("echomark", [followers("2.00")])
    finally:
        await redis.aclose()


def test_events_and_price_approvals_from_the_command_line(cli, redis_url, key_prefix):
    asyncio.run(a_held_price_change(redis_url, key_prefix))
    code, out, _ = cli("events", "--json", "--since", "1h")
    assert code == 0 and [e["kind"] for e in json.loads(out)] == ["price.held"]
    code, out, _ = cli("events", "--kind", "provider.")
    assert code == 0 and out.strip() == "(none)"
    code, out, _ = cli("providers")
    assert "echomark: service 1 held at 0.90 (now 2.00): smm-proxy providers approve echomark 1" in out
    code, _, err = cli("providers", "approve", "echomark", "7")
    assert code == 2 and "no held price change of echomark service 7" in err
    code, _, err = cli("providers", "approve", "nobody")
    assert code == 2 and "no provider 'nobody'" in err
    code, out, _ = cli("providers", "approve", "echomark")
    assert code == 0 and "service 1: 0.90 -> 2.00 approved" in out
    code, out, _ = cli("audit", "--json")
    assert json.loads(out)[0]["action"] == "price.approve"
    code, out, _ = cli("events", "--json")
    assert [e["kind"] for e in json.loads(out)] == ["price.approved", "price.held"]
    code, _, err = cli("events", "--limit", "0")
    assert code == 2 and "limit" in err


def test_a_report_by_day_from_the_command_line(cli):
    code, out, _ = cli("report", "--by", "day", "--since", "30d")
    assert code == 0 and out.splitlines()[1].split() == [
        "DAY",
        "ORDERS",
        "SHARE",
        "%",
        "REVENUE",
        "REFUNDS",
        "COST",
        "MARGIN",
    ]
    code, out, _ = cli("report", "--by", "day", "--json")
    assert code == 0 and json.loads(out)["total"]["share_pct"] is None and json.loads(out)["by"] == "day"
