"""Unit tests of proxy/accounts."""
