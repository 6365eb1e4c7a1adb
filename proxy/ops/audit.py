"""The operators' audit log: append-only, hash-chained, checked by `verify`.

Every entry records who acted (`Actor`: `cli:alice` or `admin:NAME`, the
role, for HTTP the source address and request ID), what they did to what,
the reason they gave and the details. Entries are numbered (`seq`, from 1)
and chained: each holds the previous entry's hash, and its own hash covers
all of its fields. The chain's head (`seq`, hash of the last entry, and a
MAC of both) is kept beside the stream, and an entry is appended only if
the head is still the one it was chained to (`scripts/audit_append.lua`, a
compare-and-set): concurrent operators never fork the chain.

With `SMM_PROXY_AUDIT_SECRET` set, hashes are HMAC-SHA256 keyed by it, so
someone who can write to Redis but does not hold the secret cannot make an
entry, or a head, that `verify` accepts. Then `verify` finds an entry that
was deleted (a gap in `seq`, or a broken link), changed (its hash), inserted
or reordered (its link), and a cut tail (the head names a later entry than
the last one). What it cannot find alone: a whole log rolled back to a copy
taken earlier (log, head and all). Every entry's `seq` and hash are also
written to the process's log (`proxy.ops.operators`), which lives
elsewhere: compare the last one there with `audit verify`'s head. Without
the secret the hashes are plain SHA-256: accidents and careless edits are
found, but someone with write access to Redis can rebuild the chain.

Keys (the `{audit}` hash tag: one slot, so the append script also runs on a
Redis Cluster): `Keys.audit` (the stream) and `Keys.audit_head`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy import scripts
from proxy.keys import Keys
from proxy.ops.roles import Actor
from proxy.store import Store, maybe_text, stream_entries

KEYED = "hmac-sha256"
PLAIN = "sha256"
# Tries to append while other operators append too (each try re-reads the head,
# after a random pause that grows: racing appenders spread out instead of colliding again).
APPEND_TRIES = 50
PAGE = 1000
# What a field may hold: a reason or target longer than this is cut.
MAX_TEXT = 1000


@dataclass(frozen=True)
class Record:
    """One entry of the audit log, as stored."""

    id: str  # the stream entry's ID ("" when its append's reply was lost)
    seq: int
    prev: str
    at: str  # seconds since the epoch, to the millisecond, as written
    actor: str
    role: str
    action: str
    target: str
    reason: str
    detail: str  # JSON
    source: str
    request_id: str
    nonce: str  # random: two identical actions in one millisecond are still two entries (two heads)
    alg: str
    hash: str

    def fields(self) -> dict[str, str]:
        """The entry as the stream holds it: every field but the stream ID, as text."""
        return {name: str(getattr(self, name)) for name in STORED}

    @property
    def details(self) -> dict[str, Any]:
        try:
            found = json.loads(self.detail or "{}")
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    @classmethod
    def read(cls, entry_id: str, fields: Mapping[str, str]) -> Record:
        """An entry from the stream; a field it lacks is empty (and `verify` says so)."""
        values = {name: fields.get(name, "") for name in STORED}
        seq = values.pop("seq")
        return cls(id=entry_id, seq=int(seq) if seq.isdigit() else 0, **values)


# The fields an entry stores, in the order its hash covers them (the hash last, not covered).
STORED = tuple(f.name for f in dataclasses.fields(Record) if f.name != "id")


def _canonical(record: Record) -> bytes:
    """What an entry's hash covers: every stored field but the hash, in a fixed order."""
    values = [getattr(record, name) for name in STORED if name != "hash"]
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Check:
    """What `verify` found: `intact`, or the first bad entry and why."""

    intact: bool
    entries: int
    keyed: bool  # whether this process holds the secret the hashes are keyed with
    head: int  # the seq the head names (0: no head)
    bad_seq: int | None = None
    bad_id: str = ""
    problem: str = ""


class AuditLog:
    def __init__(self, redis: Store, keys: Keys, secret: str | None, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self._secret = secret.encode() if secret else None
        self.clock = clock
        self._append = scripts.register(redis, "proxy.ops", "audit_append")

    @property
    def keyed(self) -> bool:
        return self._secret is not None

    def _digest(self, data: bytes, alg: str) -> str | None:
        """The hash of `data` by `alg`; None when this process cannot make it (no secret)."""
        if alg == KEYED:
            return None if self._secret is None else hmac.new(self._secret, data, hashlib.sha256).hexdigest()
        if alg == PLAIN:
            return hashlib.sha256(data).hexdigest()
        return None

    def _head(self, seq: int, entry_hash: str, alg: str) -> str:
        mac = self._digest(f"head {seq} {entry_hash}".encode(), alg) or ""
        return f"{seq} {entry_hash} {alg} {mac}"

    # -- writing -----------------------------------------------------------------

    async def append(
        self, actor: Actor, action: str, target: str, reason: str = "", detail: Mapping[str, object] | None = None
    ) -> Record:
        """Chain one entry to the log; the entry as written.

        Raises what Redis raises when it cannot be written: the caller's
        action must not happen then.
        """
        alg = KEYED if self._secret else PLAIN
        text = json.dumps(dict(detail or {}), sort_keys=True, default=str, ensure_ascii=False)
        for attempt in range(APPEND_TRIES):
            if attempt:
                await asyncio.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 6)))
            current = maybe_text(await self.redis.get(self.keys.audit_head)) or ""
            seq, prev = _parse_head(current)
            unsigned = Record(
                id="",
                seq=seq + 1,
                prev=prev,
                at=f"{self.clock():.3f}",
                actor=actor.name[:MAX_TEXT],
                role=actor.role,
                action=action,
                target=target[:MAX_TEXT],
                reason=reason[:MAX_TEXT],
                detail=text,
                source=actor.source[:MAX_TEXT],
                request_id=actor.request_id,
                nonce=secrets.token_hex(8),
                alg=alg,
                hash="",
            )
            digest = self._digest(_canonical(unsigned), alg)
            assert digest is not None
            record = Record(**{**unsigned.__dict__, "hash": digest})
            head = self._head(record.seq, digest, alg)
            flat: list[str] = [value for pair in record.fields().items() for value in pair]
            try:
                reply = await self._append(keys=[self.keys.audit_head, self.keys.audit], args=[current, head, *flat])
            except (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError):
                # Sent or not? The head says (and if Redis cannot even say that, the action fails).
                if maybe_text(await self.redis.get(self.keys.audit_head)) == head:
                    return record
                continue
            if reply[0] == "ok":
                return Record(**{**record.__dict__, "id": str(reply[1])})
            if reply[0] == "done":
                return record
        raise RedisTimeoutError("the audit log's head kept moving: too many operators at once")

    # -- reading -----------------------------------------------------------------

    async def newest(self, limit: int) -> list[Record]:
        rows = stream_entries(await self.redis.xrevrange(self.keys.audit, count=limit))
        return [Record.read(entry_id, fields) for entry_id, fields in rows]

    async def verify(self) -> Check:
        """Walk the whole chain from its first entry to its head; the first bad entry, if any."""
        count, expected, prev, last = 0, 1, "", None
        seen_keyed = False
        start = "-"
        while True:
            rows = stream_entries(await self.redis.xrange(self.keys.audit, min=start, count=PAGE))
            if start != "-":
                rows = rows[1:]  # the page starts at the last entry of the one before
            if not rows:
                break
            for entry_id, fields in rows:
                record = Record.read(entry_id, fields)
                count += 1
                problem = self._problem(record, expected, prev, seen_keyed)
                if problem:
                    return Check(False, count, self.keyed, 0, record.seq or None, entry_id, problem)
                seen_keyed = seen_keyed or record.alg == KEYED
                expected, prev, last = record.seq + 1, record.hash, record
            start = rows[-1][0]
        return await self._check_head(count, last)

    def _problem(self, record: Record, expected: int, prev: str, seen_keyed: bool) -> str:
        if record.seq == 0:
            return "it has no sequence number: not an entry the router wrote"
        if record.seq > expected:
            missing = str(expected) if record.seq == expected + 1 else f"{expected}-{record.seq - 1}"
            return f"entries before it are missing ({missing}): deleted"
        if record.seq < expected:
            return f"its number {record.seq} comes after {expected - 1}: inserted or reordered"
        if record.prev != prev:
            return "it does not chain to the entry before it: that entry was replaced, or it was inserted"
        if record.alg == KEYED and self._secret is None:
            return "it is keyed with SMM_PROXY_AUDIT_SECRET, which this process does not have: cannot verify"
        if record.alg == PLAIN and seen_keyed and self._secret is not None:
            return "an unkeyed entry after keyed ones: written without the secret"
        if record.alg not in (KEYED, PLAIN):
            return f"unknown hash {record.alg!r}"
        digest = self._digest(_canonical(record), record.alg)
        if digest is None or not hmac.compare_digest(digest, record.hash):
            return "its contents do not match its hash: changed"
        return ""

    async def _check_head(self, count: int, last: Record | None) -> Check:
        raw = maybe_text(await self.redis.get(self.keys.audit_head))
        if raw is None:
            if last is None:
                return Check(True, 0, self.keyed, 0)
            return Check(
                False, count, self.keyed, 0, last.seq, last.id, "the chain's head is missing: the log was tampered with"
            )
        parts = raw.split(" ")
        if len(parts) != 4 or not parts[0].isdigit():
            return Check(False, count, self.keyed, 0, None, "", "the chain's head is not one the router wrote")
        seq, entry_hash, alg, mac = int(parts[0]), parts[1], parts[2], parts[3]
        expected_mac = self._digest(f"head {seq} {entry_hash}".encode(), alg)
        if expected_mac is None or not hmac.compare_digest(expected_mac, mac):
            return Check(False, count, self.keyed, seq, seq, "", "the chain's head was not written by the router")
        last_seq = last.seq if last else 0
        if seq > last_seq:
            missing = str(seq) if seq == last_seq + 1 else f"{last_seq + 1}-{seq}"
            return Check(
                False, count, self.keyed, seq, last_seq + 1, "", f"entries {missing} are missing at the end: cut"
            )
        if last is None or seq < last_seq or entry_hash != last.hash:
            bad = last_seq if last else None
            return Check(
                False,
                count,
                self.keyed,
                seq,
                bad,
                last.id if last else "",
                "the last entry is not the one the head names: entries were added behind the router's back",
            )
        return Check(True, count, self.keyed, seq)


def _parse_head(raw: str) -> tuple[int, str]:
    """(seq, hash) of the head ("" and 0 for an empty log)."""
    parts = raw.split(" ")
    if len(parts) >= 2 and parts[0].isdigit():
        return int(parts[0]), parts[1]
    return 0, ""
