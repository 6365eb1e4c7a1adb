"""Unit tests of proxy/catalog."""
