"""The new operator commands end to end: events, providers approve."""

import json

import redis
from test_cli import cli  # noqa: F401, F811  (the fixture: the commands against a real Redis)

from proxy.store import Keys


def test_events_and_price_approvals_from_the_command_line(cli, redis_url, key_prefix):  # noqa: F811
    keys = Keys(key_prefix)
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    held = {"approved": "0.90", "proposed": "2.00", "at": 1.0}
    store.hset(keys.held_prices("echomark"), "1", json.dumps(held))
    store.xadd(keys.events, {"kind": "price.held", "subject": "echomark", "message": "held", "detail": "{}"})
    store.close()
    code, out, _ = cli("events", "--json", "--since", "1h")
    assert code == 0 and [e["kind"] for e in json.loads(out)] == ["price.held"]
    code, out, _ = cli("events", "--kind", "provider.")
    assert code == 0 and out.strip() == "(none)"
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
