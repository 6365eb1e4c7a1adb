"""Unit tests of proxy/orders."""
