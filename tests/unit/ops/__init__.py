"""Unit tests of proxy/ops."""
