"""Redaction: the scrubbing of keys from what is logged, however deep they sit.

Every line `proxy.logs` writes passes a `Scrubber`: each configured secret
(a provider's key), every `key=` parameter, and anything shaped like one of
our API keys (a run of 32 or more hex digits) or admin tokens (a run of 43 or
more URL-safe characters) is replaced by `REDACTED`. Fields in `SAFE_FIELDS`
hold only text we made or checked, and numbers cannot hold a key: neither is
scanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any

_KEY_PARAMETER = re.compile(r"(?i)\b(key|api_key|apikey|token)=([^&\s'\"]+)")
# Our API keys are 32 hex digits: any run of 32 or more is scrubbed whole, whatever
# sits beside it ("x_<key>" has no word boundary). Admin API tokens (43 URL-safe
# characters) are known to no scrubber by value: any run of 43 or more is scrubbed.
_API_KEY_SHAPED = re.compile(r"(?<![0-9a-f])[0-9a-f]{32,}")
_TOKEN_SHAPED = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43,}")
REDACTED = "***"
# Any text either shape above could match holds a run this long (the shorter of them).
_LONG_RUN = re.compile(r"[A-Za-z0-9_-]{32,}")

# Fields whose text cannot hold a key: set by us from values we made or checked
# (client and admin names, actions, providers of the config, a request ID the edge
# checked with `clean`, the audit's hashes, the logger, level and time).
SAFE_FIELDS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "request_id",
        "client",
        "action",
        "provider",
        "transition",
        "actor",
        "role",
        "audit_hash",
    }
)
# Texts scrubbed once and remembered (the same path and message on every request).
_MEMO_SIZE = 4096
_MEMO_LONGEST = 200


class Scrubber:
    """Scrubs keys from text, however deep it sits in a value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        words = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        # One pass: a known secret, a key= parameter's value, or an API-key-shaped token.
        self.pattern = re.compile(
            "|".join(
                [
                    *(re.escape(w) for w in words),
                    _KEY_PARAMETER.pattern.replace("(?i)", ""),
                    _API_KEY_SHAPED.pattern,
                    _TOKEN_SHAPED.pattern,
                ]
            ),
            re.IGNORECASE,
        )
        self._memo: dict[str, str] = {}
        # The cheap test of `_plain`: ASCII secrets, lowered (re's IGNORECASE on ASCII text).
        self._words = [w.lower() for w in words] if all(w.isascii() for w in words) else None

    @staticmethod
    def _replace(match: re.Match[str]) -> str:
        return f"{match.group(1)}={REDACTED}" if match.group(1) else REDACTED

    def text(self, text: str) -> str:
        done = self._memo.get(text)
        if done is not None:
            return done
        done = text if self._plain(text) else self.pattern.sub(self._replace, text)
        if len(text) <= _MEMO_LONGEST:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[text] = done
        return done

    def _plain(self, text: str) -> bool:
        """Whether `pattern` cannot match: a few µs cheaper than asking it (most
        lines hold no "=", no long run of word characters and no secret). Only
        for ASCII text and secrets, where lowering is what IGNORECASE does."""
        if self._words is None or "=" in text or not text.isascii() or _LONG_RUN.search(text):
            return False
        lowered = text.lower()
        return not any(word in lowered for word in self._words)

    def deep(self, value: Any, depth: int = 0) -> Any:
        """Strings scrubbed however deep they sit in dicts, lists, tuples and sets."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, int | float | bool):
            return value
        if depth > 20:  # a structure this deep is not worth logging as it is
            return REDACTED
        if isinstance(value, dict):
            return {self.text(str(k)): self.deep(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.deep(v, depth + 1) for v in value]
        if isinstance(value, bytes | bytearray):
            return self.text(bytes(value).decode("utf-8", "replace"))
        return self.text(str(value))  # what the renderer would print of it (an exception, a URL ...)

    def fields(self, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Every field scrubbed, in place, but those that cannot hold a key."""
        for name, value in event.items():
            kind = type(value)
            if kind is int or kind is float or kind is bool or value is None:
                continue
            if kind is str:
                if name not in SAFE_FIELDS:
                    event[name] = self.text(value)
            else:
                event[name] = self.deep(value)
        return event
