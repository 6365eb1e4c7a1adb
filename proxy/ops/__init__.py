"""Running the router: background work, metrics, operators and reports.

- `sync`: recovery, status polling, archiving and provider checks.
- `metrics`: Prometheus metrics, counted here or read from Redis at scrape time,
  and the order tallies behind them.
- `operators`: every operator action once, audited (the CLI and admin API call it).
- `answers`: what each operator action answers, typed, and its JSON (one shape
  for the CLI's --json and the admin API).
- `reports`: revenue, upstream cost, refunds and margin.
- `events`: the operators' event stream (the domain writes it through
  `proxy.logs.Emit`) and the signed webhook that delivers it.
"""
