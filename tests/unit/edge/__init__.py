"""Unit tests of proxy/edge."""
