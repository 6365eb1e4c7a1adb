"""Finished orders, moved out of Redis into JSON-lines files, and still whole.

Redis holds what is alive; an order that ended long ago (failed, closed, or
placed and final, with nothing for an operator) only needs to be found.
`archive` writes such orders, older than a cut-off, to `orders-NNNNNN.jsonl`
files in a folder (one file per ARCHIVE_FILE_IDS order IDs, so finding one
order reads one file), flushes them to disk, and only then removes the
records and their index entries from Redis, each in one script that checks
the order has not changed since it was read (`scripts/forget.lua`).

What stays in Redis, so that archiving changes nothing anyone can see:

- a compact view of the order (`records.ArchivedOrder`, about 60 bytes, in
  the client's bucket hash `Keys.archived`), written by the same script that
  deletes the record: its client's `status` and `refill` are answered from
  it, and reports count its money;
- the claim on its upstream order (`Keys.claims`): the ID stays ours, so an
  operator's typo in `resolve --upstream-order` is refused after archiving as
  it was before;
- a marker in the owner index, so `orders show` knows to look in the files;
- the ledger, which keeps every entry.

The folder is resolved to an absolute path once, when the settings are read
(`Settings.archive_dir`), and every folder orders were archived to is kept in
Redis (`Keys.archive_dirs`), so archived orders are found from wherever the
command runs. A folder that cannot be written is refused with a message
(`ArchiveUnwritable`), before anything leaves Redis.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from proxy import scripts
from proxy.errors import ArchiveUnwritable
from proxy.orders.book import OrderBook
from proxy.orders.reading import ARCHIVED
from proxy.orders.records import ArchivedOrder, Order
from proxy.orders.states import WORKING_SETS, final, lua_values

ARCHIVE_FILE_IDS = 100_000


class Archive:
    """`cost` says what an order cost us upstream, in the deployment currency,
    as reports count it (kept in the compact view: the config's rates then)."""

    def __init__(self, book: OrderBook, directory: Path, cost: Callable[[Order], Decimal] | None = None) -> None:
        self.book = book
        self.directory = directory
        self.cost = cost or (lambda order: order.cost_base or Decimal(0))
        self._forget = scripts.register(book.redis, "proxy.orders", "forget", lua_values())

    def path_for(self, order_id: int, directory: Path | None = None) -> Path:
        return (directory or self.directory) / f"orders-{order_id // ARCHIVE_FILE_IDS:06d}.jsonl"

    @staticmethod
    def archivable(order: Order, before: float) -> bool:
        return final(order.state, order.status) and not order.attention and order.created < before

    async def archive(self, before: float, batch: int = 500) -> int:
        """Move every finished order created before `before` to the archive; how many moved.

        Raises `ArchiveUnwritable` (nothing moved) if the folder cannot be written."""
        self._check_writable()
        book, moved = self.book, 0
        await book.redis.sadd(book.keys.archive_dirs, str(self.directory))
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

    def _check_writable(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ArchiveUnwritable(str(self.directory), exc.strerror or type(exc).__name__) from None

    def _write(self, records: list[dict[str, str]]) -> None:
        """Append, then flush to disk, before anything leaves Redis."""
        by_file: dict[Path, list[str]] = defaultdict(list)
        for record in records:
            by_file[self.path_for(int(record["id"]))].append(json.dumps(record, ensure_ascii=False))
        try:
            for path, lines in by_file.items():
                with path.open("a", encoding="utf-8") as file:
                    file.write("\n".join(lines) + "\n")
                    file.flush()
                    os.fsync(file.fileno())
        except OSError as exc:
            raise ArchiveUnwritable(str(self.directory), exc.strerror or type(exc).__name__) from None

    async def _forget_all(self, client: str, records: list[dict[str, str]]) -> int:
        keys = self.book.keys
        forgotten = 0
        for record in records:
            order_id = int(record["id"])
            view = ArchivedOrder.of(order := Order.from_record(record), self.cost(order)).encode()
            sets = [
                keys.all_orders(client, order_id),
                keys.orders_of(client, "all"),  # where orders opened before the buckets are listed
                *(keys.orders_of(client, name) for name in WORKING_SETS),
            ]
            if await self._forget(
                keys=[keys.order(client, order_id), keys.archived(client, order_id), *sets],
                args=[record.get("calls") or record.get("call", ""), view],
            ):
                forgotten += 1
                await self.book.redis.hset(keys.order_owner(order_id), str(order_id), ARCHIVED + client)
        return forgotten

    async def find(self, order_id: int) -> Order | None:
        """An archived order, read back from its file (the last copy written
        wins), in this folder or any other orders were archived to."""
        folders = [self.directory]
        recorded = {str(folder) for folder in await self.book.redis.smembers(self.book.keys.archive_dirs)}
        for other in sorted(recorded):
            if Path(other) not in folders:
                folders.append(Path(other))
        for folder in folders:
            found = self._read(self.path_for(order_id, folder), order_id)
            if found is not None:
                return found
        return None

    @staticmethod
    def _read(path: Path, order_id: int) -> Order | None:
        try:
            file = path.open(encoding="utf-8")
        except OSError:
            return None
        found = None
        marker = f'"id": "{order_id}"'
        with file:
            for line in file:
                if marker in line:
                    record = json.loads(line)
                    if record.get("id") == str(order_id):
                        found = record
        return Order.from_record(found) if found else None
