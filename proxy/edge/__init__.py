"""The HTTP side: everything that knows of Starlette, and nothing else does.

- `app`: the Starlette app: `/api/v2`, health, readiness, metrics.
- `inputs`: the one input boundary: strict decoding and limits for every request.
- `protocol`: API v2 requests as typed values.
- `context`: per request, an ID, the log context and one access line.
- `admin`: the admin JSON API over the operators' actions.
- `dashboard`: the operators' dashboard in a browser, over the same actions.
"""
