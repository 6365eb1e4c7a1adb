"""Orders, from a client's `add` to their final status and refund.

- `states`: the state machine, and every fact about states (final, working
  sets, due events, outcomes), rendered into the scripts from there.
- `records`: an order as Python sees it and as its Redis record holds it.
- `book`: order records in Redis, the scripts that open and change them
  (`scripts/*.lua`), and the one way to read them.
- `reading`: reading and listing orders (the book's readers, mixed into it).
- `tracked`: the book with status summaries held in the tracked cache (`proxy.tracking`).
- `ids`: order IDs from per-instance blocks.
- `accepting`: an accepted order recorded in one step where Redis allows it.
- `leases`: the placing task's lease on an order, renewed without ever holding
  the task up, given up at shutdown; recovery waits for it to lapse.
- `claims`: which of our orders owns each upstream order.
- `due`: the due index of status reads, per provider.
- `verdicts`: an operator's verdicts on orders (resolve, refund, acknowledge, close).
- `actions`: the API v2 order actions for one client (`OrderActions`).
- `validation`: an `add`'s fields per service type, and its charge.
- `routing`: choosing routes and failing over.
- `statuses`: batched, shared status refreshes; reads no rule settles, re-checks
  of final orders, stopping an unlimited subscription that used its hold.
- `observe`: after a status: outcomes to the route's rates, stuck orders flagged.
- `settlement`: what a status means for the money.
- `refills`: our refill IDs mapped to the upstream's.
- `archive`: finished orders moved out of Redis, a compact view left behind.
- `links`: one page is one link; the key of a client's open-links index.
"""
