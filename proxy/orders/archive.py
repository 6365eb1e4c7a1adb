"""Finished orders, moved out of Redis into JSON-lines files.

Redis holds what is alive; an order that ended long ago (failed, or placed
and final, with nothing for an operator) only needs to be found. `archive`
writes such orders, older than a cut-off, to `orders-NNNNNN.jsonl` files in a
folder (one file per ARCHIVE_FILE_IDS order IDs, so finding one order reads
one file), flushes them to disk, and only then removes the records and their
index entries from Redis, each in one script that checks the order has not
changed since it was read (`scripts/forget.lua`). The ledger keeps every entry: balances and
reports of money never depend on archived records. The owner index keeps a
marker, so `orders show` knows to look in the archive.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from proxy import scripts
from proxy.orders.book import OrderBook
from proxy.orders.records import Order
from proxy.orders.states import WORKING_SETS, final, lua_values

ARCHIVE_FILE_IDS = 100_000
ARCHIVED = "~"  # an owner entry that starts so: the order is in the archive


class Archive:
    def __init__(self, book: OrderBook, directory: Path) -> None:
        self.book = book
        self.directory = directory
        self._forget = scripts.register(book.redis, "proxy.orders", "forget", lua_values())

    def path_for(self, order_id: int) -> Path:
        return self.directory / f"orders-{order_id // ARCHIVE_FILE_IDS:06d}.jsonl"

    @staticmethod
    def archivable(order: Order, before: float) -> bool:
        return final(order.state, order.status) and not order.attention and order.created < before

    async def archive(self, before: float, batch: int = 500) -> int:
        """Move every finished order created before `before` to the archive; how many moved."""
        book, moved = self.book, 0
        for client in await book.clients():
            ids = await book.ids_in("all", client)
            for start in range(0, len(ids), batch):
                found = await book.get_many(client, ids[start : start + batch])
                wanted = [(client, o.id) for o in found.values() if self.archivable(o, before)]
                records = [record for record in await book.records(wanted) if record]
                if records:
                    self._write(records)
                    moved += await self._forget_all(client, records)
        return moved

    def _write(self, records: list[dict[str, str]]) -> None:
        """Append, then flush to disk, before anything leaves Redis."""
        self.directory.mkdir(parents=True, exist_ok=True)
        by_file: dict[Path, list[str]] = defaultdict(list)
        for record in records:
            by_file[self.path_for(int(record["id"]))].append(json.dumps(record, ensure_ascii=False))
        for path, lines in by_file.items():
            with path.open("a", encoding="utf-8") as file:
                file.write("\n".join(lines) + "\n")
                file.flush()
                os.fsync(file.fileno())

    async def _forget_all(self, client: str, records: list[dict[str, str]]) -> int:
        keys = self.book.keys
        forgotten = 0
        for record in records:
            order_id = int(record["id"])
            sets = [keys.orders_of(client, "all"), *(keys.orders_of(client, name) for name in WORKING_SETS)]
            if await self._forget(keys=[keys.order(client, order_id), *sets], args=[record.get("call", "")]):
                forgotten += 1
                await self.book.redis.hset(keys.order_owner(order_id), str(order_id), ARCHIVED + client)
                if record.get("provider") and record.get("upstream_order"):
                    upstream = int(record["upstream_order"])
                    await self.book.redis.hdel(keys.claims(record["provider"], upstream), str(upstream))
        return forgotten

    def find(self, order_id: int) -> Order | None:
        """An archived order, read back from its file (the last copy written wins)."""
        path = self.path_for(order_id)
        if not path.exists():
            return None
        found = None
        marker = f'"id": "{order_id}"'
        with path.open(encoding="utf-8") as file:
            for line in file:
                if marker in line:
                    record = json.loads(line)
                    if record.get("id") == str(order_id):
                        found = record
        return Order.from_record(found) if found else None
