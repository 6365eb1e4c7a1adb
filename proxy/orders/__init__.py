"""Orders, from a client's `add` to their final status and refund.

- `states`: the state machine and every fact about states.
- `book`: order records in Redis and the scripts that open and change them.
- `desk`: the API v2 order actions for one client.
- `validation`: an `add`'s fields per service type, and its charge.
- `routing`: choosing routes and failing over.
- `statuses`: batched, shared status refreshes.
- `settlement`: what a status means for the money.
- `refills`: our refill IDs mapped to the upstream's.
- `archive`: finished orders moved out of Redis.
"""
