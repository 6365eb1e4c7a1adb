"""smm-proxy: an API v2 router for resellers of SMM panel services."""

__version__ = "0.1.0"
