"""The input boundary (proxy/edge/inputs.py): a url-encoded form with nothing to
unquote is split without the standard library's parser; it must read the same."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.edge.inputs import (
    MAX_BODY_BYTES,
    MAX_FIELDS,
    MAX_NAME_CHARS,
    MAX_VALUE_CHARS,
    TOO_LARGE,
    TOO_MANY_FIELDS,
    read_params,
)
from proxy.errors import BadInput, ClientGone
from proxy.vocabulary import Errors

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


FORM = b"application/x-www-form-urlencoded"
JSON = b"application/json"


def read_post(query: bytes, messages: list[dict], content_type: bytes) -> dict[str, str]:
    """A POST's parameters, its body sent as these ASGI messages."""
    queue = list(messages)

    async def receive() -> dict:
        return queue.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v2",
        "query_string": query,
        "headers": [(b"content-type", content_type)],
    }
    return asyncio.run(read_params(scope, receive))


def body(data: bytes) -> dict:
    return {"type": "http.request", "body": data, "more_body": False}


TOO_BIG = body(b"a" * (MAX_BODY_BYTES + 1))
GONE = {"type": "http.disconnect"}
SIXTY_FIVE = b"&".join(b"f%d=1" % n for n in range(MAX_FIELDS + 1))


@pytest.mark.parametrize(
    "query, message, content_type, refusal",
    [
        (b"=x", TOO_BIG, FORM, TOO_LARGE),  # a name the query may not hold (plain)
        (b"n" * (MAX_NAME_CHARS + 1) + b"=1", TOO_BIG, FORM, TOO_LARGE),
        (b"x=%01", TOO_BIG, FORM, TOO_LARGE),  # a control character (escaped)
        (b"=x", GONE, FORM, ClientGone),
        (b"x=%01", GONE, FORM, ClientGone),
        (b"=x", body(SIXTY_FIVE), FORM, TOO_MANY_FIELDS),
        (b"=x", body(b"{" + b", ".join(b'"f%d": 1' % n for n in range(MAX_FIELDS + 1)) + b"}"), JSON, TOO_MANY_FIELDS),
        (b"x=" + b"a" * (MAX_VALUE_CHARS + 1), body(b"x=%ff"), FORM, Errors.INCORRECT_REQUEST),  # not UTF-8
    ],
)
def test_the_query_is_checked_after_the_body_is_read_and_parsed(query, message, content_type, refusal):
    """As the query's fields have always been: its form is parsed before the body
    is read (not UTF-8, too many fields), its names and values checked once the
    body is read and parsed. A body too large or a client gone is answered as
    such whatever the query holds."""
    if refusal is ClientGone:
        with pytest.raises(ClientGone):
            read_post(query, [message], content_type)
        return
    with pytest.raises(BadInput) as refused:
        read_post(query, [message], content_type)
    assert refused.value.message == refusal
