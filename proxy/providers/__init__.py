"""The upstream panels we buy from.

- `upstream`: the client for one panel, its request slots and typed failures.
- `replies`: what panels answer, read into typed values.
- `transport`: httpx's API over aiohttp's connection pool.
- `quirks`: normalising the values real panels send.
- `listings`: their service lists, cached in Redis (unusable prices kept apart).
- `health`: cool-downs, and blocking a provider that bills in another currency.
- `budget`: request budgets (rate limits), counted in Redis.
"""
