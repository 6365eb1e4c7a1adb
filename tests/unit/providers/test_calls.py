"""Upstream calls over the last hour (proxy/providers/calls.py): counted in
memory as calls end, added to per-minute counts in Redis, read back per provider."""

from __future__ import annotations

from proxy.providers.calls import WINDOW_MINUTES, CallStats


async def test_calls_failures_and_latency_over_the_last_hour(redis_client, keys, clock):
    stats = CallStats(redis_client, keys, clock)
    stats.record("echomark", "add", "ok", 0.100)
    stats.record("echomark", "status", "unknown", 0.300)
    stats.record("echomark", "add", "unreachable", 0.200)
    stats.record("echomark", "add", "refused", 0.000)
    stats.record("korean", "status", "ok", 0.050)
    found = await stats.last_hour(["echomark", "korean", "other"])
    echomark = found["echomark"]
    assert (echomark.calls, echomark.failures, echomark.refused, echomark.milliseconds) == (4, 2, 1, 600)
    assert echomark.failure_rate == 0.5 and echomark.mean_ms == 150
    assert found["korean"].calls == 1 and found["other"].failure_rate is None and found["other"].mean_ms is None
    # Another instance's counts add up in Redis; calls older than the window drop out.
    other = CallStats(redis_client, keys, clock)
    other.record("korean", "add", "ok", 0.150)
    await other.flush()
    assert (await stats.last_hour(["korean"]))["korean"].calls == 2
    clock.advance(WINDOW_MINUTES * 60)
    assert (await stats.last_hour(["echomark", "korean"]))["echomark"].calls == 0


async def test_a_store_that_fails_loses_the_counts_not_the_call(keys, clock):
    class Broken:
        def pipeline(self, transaction: bool = True):
            raise ConnectionError("down")

    stats = CallStats(Broken(), keys, clock)  # type: ignore[arg-type]
    stats.record("echomark", "add", "ok", 0.1)
    await stats.flush()  # a warning, no exception


async def test_nothing_is_written_once_closing(redis_client, keys, clock):
    stats = CallStats(redis_client, keys, clock)
    stats.record("echomark", "add", "ok", 0.1)
    await stats.aclose()
    assert [key async for key in redis_client.scan_iter(match=f"{keys.prefix}calls:*")] == []


async def test_reading_the_last_hour_writes_nothing_and_counts_what_is_still_in_memory(redis_client, keys, clock):
    """A read (the providers page, GET /admin/providers/calls) never writes:
    it adds this process's counts not yet written to what Redis holds."""
    stats = CallStats(redis_client, keys, clock)
    stats.record("echomark", "add", "ok", 0.100)
    other = CallStats(redis_client, keys, clock)
    other.record("echomark", "status", "unknown", 0.300)
    await other.flush()
    written = {key: await redis_client.dump(key) async for key in redis_client.scan_iter(match=f"{keys.prefix}*")}
    found = (await stats.last_hour(["echomark"]))["echomark"]
    assert (found.calls, found.failures, found.milliseconds) == (2, 1, 400)
    assert {key: await redis_client.dump(key) async for key in redis_client.scan_iter(match=f"{keys.prefix}*")} == (
        written
    )
    await stats.flush()  # written later, counted once
    found = (await stats.last_hour(["echomark"]))["echomark"]
    assert (found.calls, found.failures, found.milliseconds) == (2, 1, 400)
