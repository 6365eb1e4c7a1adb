"""An in-process cache of Redis values that Redis itself invalidates (CLIENT TRACKING).

    cache = TrackedCache(url_or_store, prefixes=[f"{prefix}apikey:", f"{prefix}balance:"])
    await cache.start()
    client = await cache.get(keys.api_key(digest), lambda: redis.get(keys.api_key(digest)))
    ...
    await cache.aclose()

`get(key, load)` answers from memory, else awaits `load()` (a read through the
router's normal redis-py client) and keeps its result, `None` (key absent)
included, in memory until Redis says the key changed. Values are shared
between callers: cache immutable values (str, tuple, a frozen dataclass).

How Redis tells us (RESP2 redirect, BCAST)
------------------------------------------
Two connections of our own, beside the redis-py pool:

- A is subscribed to `__redis__:invalidate`;
- B ran `CLIENT TRACKING ON REDIRECT <A's id> BCAST PREFIX p1 PREFIX p2 ...`
  and stays open doing nothing else: Redis now sends A the name of every key
  under those prefixes that anyone changes (a write, a delete, an expiry, an
  eviction), whichever connection read it, so the ordinary pool does the reads;
  FLUSHDB/FLUSHALL sends a nil list, which clears everything.

Both are `asyncio.Protocol`s parsing with `hiredis.Reader`, so an invalidation
is applied inside `data_received`, in the event-loop iteration in which its
bytes are read from the socket, not when some task gets round to it. (One
RESP3 connection with push messages would do the work of both, but needs
hiredis >= 3 to tell a push from a reply; RESP2 works with every hiredis and
every Redis >= 6.)

Redis tracks key names across all its databases, so a write to the same name
in another DB invalidates here too (harmless); no SELECT is needed on A or B.

The guarantee
-------------
1. Once this process has read an invalidation of key K (or a flush), no `get`
   that starts afterwards returns a value of K read before the write that
   caused it. A load that overlapped an invalidation of its key, a flush or a
   lost connection is returned to its caller (it is as fresh as a plain read)
   but not kept: each load holds a per-key ticket that an invalidation marks
   stale, and a global epoch counts flushes and losses.
2. Redis (checked on 6.2 and 7.0 by tests/unit/test_tracking.py) queues a BCAST
   invalidation in the event-loop cycle of the write and writes it to A before
   it writes the reply to the writer. So when the writer has its reply, the
   invalidation is already on its way to us, ahead of anything the writer
   causes next. A request that arrives at this process after the writer's
   reply, on the same host or over a network that does not reorder the two
   paths, is read by the event loop no earlier than the invalidation, and is
   handled in a later iteration: it sees the new value. That is "refused on the
   very next request", on every instance, for a disabled key.
3. While tracking is not established (starting, lost, reconnecting, Redis
   Cluster, Redis < 6, a user without CLIENT rights), every `get` calls `load`
   and nothing is kept: read-through, exact, slower.

What it does not promise:

- A lost connection is seen when the socket reports it (EOF or error: at once
  for a killed client or a stopped server, in the very turn of the event
  loop that reads the end or the reset: a value is served only while both
  transports stand, checked on each hit for about 0.3 µs, since asyncio
  calls `connection_lost` a turn later) or, for a silent one (a network
  partition), when a PING sent on each connection every `heartbeat` seconds
  has not been answered by the next beat: values may be served for up to two
  beats of a silent partition. Then the cache is flushed at once and reads go
  through until a fresh pair of connections is tracking.
- Redis invalidates an expired key when it deletes it (on access or in its
  active expire cycle), which can be later than its TTL: do not cache keys
  whose expiry time must be exact (the router's keys, balances and orders
  have none).
- SWAPDB is not reported by Redis (6.2, 7.0) as a change of any key: an
  operator who swaps the router's database must restart it (or `clear()`).
- Redis Cluster: not tracked (it would need a pair of connections per master,
  kept right across resharding and failover); every read goes to Redis
  (read-through: exact, as fast as it was without the cache).
- If Redis cannot write to A as fast as keys change (A's output buffer backed
  up), or the two network paths reorder, point 2 weakens to "as soon as the
  invalidation arrives".

Choosing prefixes: every change of a key under them costs every instance one
invalidation (about 10 µs of CPU, benchmarks/tracking.py), read or not, so
track what is read far more often than written (API keys; balances and order
views are read on every request but written on every add). The cache must
name the same Redis the loads read (the store's URL); keys are str, as the
store's decode_responses client uses them.

Memory: at most `max_entries` values and `max_absent` negative entries, each
in its own LRU, so a flood of unknown keys (the common attack) cannot push the
real clients' entries out.

Logging: one line per state change (tracking on, unavailable, lost), never a
key, a value or a password.
The package: `cache` (the values: `get`, `get_many`, invalidations applied)
and `links` (the two connections: handshake, heartbeat, reconnection).
"""

from proxy.tracking.cache import Stats, TrackedCache

__all__ = ["Stats", "TrackedCache"]
