"""Unit tests, mirroring the package: one module at a time, without HTTP.

Fast (seconds in all): `.venv/bin/python -m pytest tests/unit`. Those that
need Redis use the one the fixtures in tests/conftest.py give (a real server,
each test under its own key prefix).
"""
