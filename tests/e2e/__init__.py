"""End-to-end scenarios: the router over HTTP against the simulated panels.

Each test builds a harness (`make_router` in tests/conftest.py): a router on
a real Redis, two simulated panels in process, an HTTP client, a fake clock,
and faults injected into Redis or upstream where a test asks. The order
scenarios also run on a Redis Cluster (the `store` fixture parameter).
"""
