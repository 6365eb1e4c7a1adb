"""Running the router: background work, metrics, operators and reports.

- `sync`: recovery, status polling, archiving and provider checks.
- `metrics`: Prometheus metrics, counted here or read from Redis at scrape time,
  and the order tallies behind them.
- `operators`: every operator action once, audited (the CLI, the admin API and
  the dashboard call it):
  `acting` (the audited step of a change, the values operators type) and the
  desks it is made of (`clients_desk`, `orders_desk`, `providers_desk`).
- `roles`: the roles and the one matrix of which role may do which action.
- `audit`: the operators' audit log, hash-chained, and its verification.
- `admins`: admin tokens: the registry, roles, expiry, last use.
- `search`: finding orders by state, client, link, upstream order and time.
- `answers`: what each operator action answers, typed, and its JSON (one shape
  for the CLI's --json and the admin API); `provider_answers`, those about
  providers and reports.
- `reports`: revenue, upstream cost, refunds and margin, by provider, service,
  client or day, several from one pass.
- `events`: the operators' event stream (the domain writes it through
  `proxy.logs.Emit`) and the signed webhook that delivers it.
"""
