"""The upstream panels we buy from.

- `upstream`: the client for one panel, its request slots and typed failures.
- `replies`: what panels answer, read into typed values.
- `transport`: httpx's API over aiohttp's connection pool.
- `quirks`: normalising the values real panels send.
- `listings`: their service lists, cached in Redis (unusable prices kept apart),
  and price changes held for an operator's approval.
- `health`: failures in a row, ejection and probes; blocking a provider that
  bills in another currency.
- `funds`: what we know of each provider's balance, and when it is low.
- `refusals`: what an upstream refusal means (next route, refuse, hold).
- `outcomes`: how each route's orders end, for `strategy: best`.
- `budget`: request budgets (rate limits), orders first, counted in Redis.
- `calls`: each provider's calls over the last hour (count, failures, latency).
"""
