"""The input boundary (proxy/edge/inputs.py): a url-encoded form with nothing to
unquote is split without the standard library's parser; it must read the same."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.edge.inputs import MAX_FIELDS, read_params
from proxy.errors import BadInput

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
VALUES = st.text(alphabet=[chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%+&="], max_size=20)


def read(body: bytes) -> dict[str, str]:
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v2",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }
    return asyncio.run(read_params(scope, receive))


@settings(max_examples=300)
@given(st.lists(st.tuples(NAMES, VALUES, st.sampled_from(["=", ""])), min_size=1, max_size=10), st.booleans())
def test_a_plain_form_reads_as_the_standard_parser_reads_it(fields, doubled):
    separator = "&&" if doubled else "&"
    body = separator.join(f"{name}{eq}{value}" if eq else name for name, value, eq in fields)
    expected = dict(parse_qsl(body, keep_blank_values=True))
    assert read(body.encode()) == expected


@pytest.mark.parametrize("plain", [True, False])
def test_the_field_limit_is_the_same_with_or_without_escapes(plain):
    value = "x" if plain else "x%20"
    assert len(read("&".join(f"f{n}={value}" for n in range(MAX_FIELDS)).encode())) == MAX_FIELDS
    with pytest.raises(BadInput, match="Too many fields"):
        read("&".join(f"f{n}={value}" for n in range(MAX_FIELDS + 1)).encode())
