"""Unit tests of proxy/providers."""
