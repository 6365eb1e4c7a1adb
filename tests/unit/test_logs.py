"""Logs (proxy/logs.py): no key reaches a line, however deep it sits in a field."""

import json
import logging

from proxy import logs

KEY = "0123456789abcdef0123456789abcdef"  # shaped like one of our API keys


def test_keys_are_scrubbed_from_nested_fields_of_a_line():
    with logs.captured("info", secrets=["provider-secret"]) as buffer:
        logging.getLogger("proxy.test").info(
            "operator action",
            extra={
                "detail": {"memo": f"key {KEY} pasted by mistake", "nested": [{"deep": "provider-secret"}]},
                "items": ("key=hunter2", 5, None, True),
                "error": ValueError(f"failed with {KEY}"),
                "raw": b"token=abc123",
            },
        )
    text = buffer.getvalue()
    line = json.loads(text)
    assert KEY not in text and "provider-secret" not in text and "hunter2" not in text and "abc123" not in text
    assert line["detail"] == {"memo": "key *** pasted by mistake", "nested": [{"deep": "***"}]}
    assert line["items"] == ["key=***", 5, None, True]
    assert line["error"] == "failed with ***" and line["raw"] == "token=***"
