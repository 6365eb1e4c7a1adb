"""Unit tests of proxy/sim."""
