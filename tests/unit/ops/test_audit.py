"""The audit log (proxy/ops/audit.py): a hash chain that `verify` walks, and
what it finds when someone with Redis access deletes, changes, inserts or cuts."""

from __future__ import annotations

import asyncio
import json

import pytest
from faults import FaultPlan, FaultyRedis, script_call, script_sha

from proxy.ops.audit import AuditLog, Record
from proxy.ops.roles import Actor
from proxy.store import connect, stream_entries

SECRET = "audit-secret-for-tests"
ANN = Actor("cli:ann")
BOT = Actor("admin:backoffice", "operator", "10.0.0.7", "req-42")


@pytest.fixture
def audit(redis_client, keys, clock) -> AuditLog:
    return AuditLog(redis_client, keys, SECRET, clock)


async def write(audit: AuditLog, count: int = 5) -> list[Record]:
    return [await audit.append(ANN, "client.topup", f"c{i}", "invoice", {"amount": f"{i}.00"}) for i in range(count)]


async def ids(redis, keys) -> list[str]:
    return [entry_id for entry_id, _ in stream_entries(await redis.xrange(keys.audit))]


async def test_entries_are_numbered_chained_and_carry_who_why_and_where(audit):
    first = await audit.append(ANN, "client.create", "acme", "signed up", {"balance": "5.00"})
    second = await audit.append(BOT, "client.topup", "acme", "", {"amount": "1.00"})
    assert (first.seq, first.prev, second.seq, second.prev) == (1, "", 2, first.hash)
    assert (second.actor, second.role, second.source, second.request_id) == (
        "admin:backoffice",
        "operator",
        "10.0.0.7",
        "req-42",
    )
    [newest, oldest] = await audit.newest(10)
    assert newest.fields() == second.fields() and oldest.details == {"balance": "5.00"} and oldest.reason == "signed up"
    check = await audit.verify()
    assert (check.intact, check.entries, check.head, check.keyed) == (True, 2, 2, True)


async def test_an_empty_log_is_intact(audit):
    assert (await audit.verify()).intact


async def test_a_deleted_entry_is_found(audit, redis_client, keys):
    await write(audit)
    await redis_client.xdel(keys.audit, (await ids(redis_client, keys))[2])
    check = await audit.verify()
    assert (check.intact, check.bad_seq) == (False, 4)
    assert "entries before it are missing (3): deleted" in check.problem


async def test_a_changed_entry_is_found(audit, redis_client, keys):
    written = await write(audit)
    # Someone rewrites entry 2 in place: same ID, same seq and links, another amount.
    fields = {**written[1].fields(), "detail": json.dumps({"amount": "1000.00"})}
    entry_ids = await ids(redis_client, keys)
    await redis_client.delete(keys.audit)
    for record, entry_id in zip(written, entry_ids, strict=True):
        await redis_client.xadd(keys.audit, fields if record.seq == 2 else record.fields(), id=entry_id)
    check = await audit.verify()
    assert (check.intact, check.bad_seq, check.bad_id) == (False, 2, entry_ids[1])
    assert "its contents do not match its hash: changed" in check.problem


async def test_a_cut_tail_is_found(audit, redis_client, keys):
    await write(audit)
    await redis_client.xdel(keys.audit, *(await ids(redis_client, keys))[3:])
    check = await audit.verify()
    assert (check.intact, check.bad_seq, check.head) == (False, 4, 5)
    assert "entries 4-5 are missing at the end: cut" in check.problem


async def test_a_head_rewritten_without_the_secret_is_found(audit, redis_client, keys):
    written = await write(audit)
    await redis_client.xdel(keys.audit, (await ids(redis_client, keys))[-1])
    # Cut the last entry and point the head at the one before, as someone without the secret can.
    forged = f"4 {written[3].hash} hmac-sha256 {'0' * 64}"
    await redis_client.set(keys.audit_head, forged)
    check = await audit.verify()
    assert not check.intact and "the chain's head was not written by the router" in check.problem


async def test_an_entry_added_behind_the_routers_back_is_found(audit, redis_client, keys):
    written = await write(audit, 2)
    fake = {**written[1].fields(), "seq": "3", "prev": written[1].hash, "action": "client.adjust"}
    await redis_client.xadd(keys.audit, fake)
    check = await audit.verify()
    assert not check.intact and check.bad_seq == 3 and "changed" in check.problem


async def test_without_the_secret_the_chain_is_plain_and_keyed_entries_cannot_be_checked(
    audit, redis_client, keys, clock
):
    plain = AuditLog(redis_client, keys, None, clock)
    await write(plain, 2)
    assert (await plain.verify()).intact and not (await plain.verify()).keyed
    assert (await audit.verify()).intact  # a secret set later accepts the unkeyed entries before it
    await write(audit, 1)
    check = await plain.verify()
    assert not check.intact and check.bad_seq == 3 and "SMM_PROXY_AUDIT_SECRET" in check.problem
    await write(plain, 1)  # someone writing without the secret after keyed entries
    check = await audit.verify()
    assert not check.intact and check.bad_seq == 4 and "unkeyed entry after keyed ones" in check.problem


async def test_operators_appending_at_once_never_fork_the_chain(audit):
    written = await asyncio.gather(*(audit.append(ANN, "client.topup", f"c{i}") for i in range(20)))
    assert sorted(r.seq for r in written) == list(range(1, 21))
    check = await audit.verify()
    assert (check.intact, check.entries, check.head) == (True, 20, 20)


@pytest.mark.parametrize("mode", ["lost", "error"])
async def test_an_append_whose_reply_is_lost_is_written_once(redis_url, keys, redis_client, clock, mode):
    append = script_sha("proxy.ops", "audit_append")

    class Once(FaultPlan):
        async def before(self, commands, pipeline=False):
            call = None if pipeline else script_call(commands[0])
            if call is not None and call.sha == append and not self.fired:
                self.fired = True
                return mode
            return None

    redis = FaultyRedis.with_plan(connect(redis_url).connection_pool, Once(armed=True))
    audit = AuditLog(redis, keys, SECRET, clock)
    record = await audit.append(ANN, "client.adjust", "acme", "typo")
    assert record.seq == 1
    check = await audit.verify()
    assert (check.intact, check.entries) == (True, 1)
    await redis.aclose()


async def test_identical_actions_in_one_millisecond_are_two_entries(audit):
    """Two operators doing the same thing at the same instant: two entries, two heads (the
    compare-and-set must not take one for a retry of the other)."""
    same = [audit.append(ANN, "client.topup", "acme", "", {"amount": "1.00"}) for _ in range(8)]
    written = await asyncio.gather(*same)  # the clock is a FakeClock: every entry has the same time
    assert sorted(r.seq for r in written) == list(range(1, 9))
    assert (await audit.verify()).entries == 8
