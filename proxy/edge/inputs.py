"""The input boundary: what a client sent, as clean text, or one refusal.

API v2 parameters arrive in a query string, a url-encoded or multipart form,
or a JSON object (with the key perhaps in an `X-Api-Key` header). Every one
of them is decoded here, strictly, and nothing past this module sees raw
input:

- bytes are UTF-8 (percent-escapes too); a byte that is not is a refusal,
  never a replacement character or Latin-1 mojibake;
- text is NFC-normalised, and holds no lone surrogates, no noncharacters and
  no control characters, except line breaks (and tabs) in the list fields
  (comments, usernames, hashtags, groups);
- a request has at most `MAX_FIELDS` fields with names of at most
  `MAX_NAME_CHARS` printable ASCII characters, values of at most
  `MAX_VALUE_CHARS` characters, and a body of at most `MAX_BODY_BYTES`;
- a form or JSON body that does not parse, a multipart part without a name
  or with a broken boundary: all are one refusal, `Incorrect request`.

A body sent without a Content-Type is read as a url-encoded form, as panels
do. A JSON value may be text, a number, a boolean (1 or 0) or a list of text
and numbers (joined with commas, for bulk IDs); nothing nested.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.types import Receive, Scope

from proxy.errors import BadInput, ClientGone
from proxy.vocabulary import LIST_FIELDS

MAX_BODY_BYTES = 1024 * 1024
MAX_FIELDS = 64
MAX_NAME_CHARS = 64
MAX_VALUE_CHARS = 500_000
MAX_HEADER_CHARS = 255
TOO_LARGE = "Request too large"
TOO_MANY_FIELDS = f"Too many fields: up to {MAX_FIELDS} in one request"

_NAME = re.compile(r"[!-~]{1,%d}" % MAX_NAME_CHARS)
# Control characters (C0, DEL, C1), surrogates and noncharacters; the list
# fields may keep tabs and line breaks.
_NOT_TEXT = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    + "".join(f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(1, 17))
    + "]"
)
_NOT_MULTILINE_TEXT = re.compile(_NOT_TEXT.pattern.replace("\x00-\x1f", "\x00-\x08\x0b\x0c\x0e-\x1f"))


_FORM = "application/x-www-form-urlencoded"
_FORM_BYTES = _FORM.encode()


# A url-encoded form of printable ASCII with nothing to unquote (no `%`, no `+`):
# what panels send. Every name and value in it is clean text already.
_PLAIN = re.compile(rb"[!-$&-*,-~]*")


class Headers:
    """The request's headers we read, by lower-case name (the first of a repeated one)."""

    __slots__ = ("_raw", "_list")

    def __init__(self, scope: Scope) -> None:
        raw: list[tuple[bytes, bytes]] = scope.get("headers") or []
        self._list = raw
        self._raw = dict(reversed(raw))

    def get(self, name: bytes) -> str | None:
        value = self._raw.get(name)
        return None if value is None else value.decode("latin-1")

    def last(self, name: bytes) -> bytes | None:
        """The last of a repeated header, as sent (the request ID: the hop nearest us sent it)."""
        if name not in self._raw:
            return None
        return next(value for key, value in reversed(self._list) if key == name)


async def read_params(scope: Scope, receive: Receive, headers: Headers | None = None) -> dict[str, str]:
    """The call's parameters, decoded and checked; raises `BadInput` or `ClientGone`.

    The query is parsed first, its fields checked only once the body is read
    and parsed: a body too large, a client gone or a body that does not parse
    is answered as such whatever the query's names and values hold."""
    headers = headers or Headers(scope)
    params: dict[str, str] = {}
    query = scope.get("query_string", b"")
    if scope["method"] != "POST":
        if query:
            _into(_parsed(query), params)
    else:
        asked = _parsed(query) if query else None
        raw = await _body(receive, headers)
        content_type = headers.get(b"content-type") or ""
        options: dict[bytes, bytes]
        if content_type == _FORM:  # what panels send: nothing to parse
            media_type, options = _FORM_BYTES, {}
        else:
            media_type, options = parse_options_header(content_type)
            media_type = media_type.lower()
        sent: str | list[tuple[str, str]] | None
        if not raw.strip():
            sent = None
        elif media_type.endswith(b"json"):
            sent = _json(raw)
        elif media_type == b"multipart/form-data":
            sent = _multipart(raw, options.get(b"boundary", b""))
        else:  # url-encoded, or sent without a Content-Type
            sent = _parsed(raw)
        if asked is not None:
            _into(asked, params)
        if sent is not None:
            _into(sent, params)
    header_key = header(headers, "x-api-key")
    if header_key and not params.get("key"):
        params["key"] = header_key
    return params


def header(headers: Headers, name: str) -> str | None:
    """A header we read (API key, idempotency key): printable ASCII, or a refusal."""
    value = headers.get(name.encode())
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_HEADER_CHARS or not all(" " <= c <= "~" for c in value):
        raise BadInput()
    return value or None


def clean(value: str, *, multiline: bool = False) -> str:
    """Text as it may go past the boundary: NFC, no control characters."""
    if len(value) > MAX_VALUE_CHARS:
        raise BadInput(TOO_LARGE)
    if (_NOT_MULTILINE_TEXT if multiline else _NOT_TEXT).search(value):
        raise BadInput()
    if value.isascii():  # NFC already (and the common case: keys, actions, IDs, links)
        return value
    return unicodedata.normalize("NFC", value)


def _name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BadInput()
    return name


def _checked(pairs: Iterable[tuple[str, str]], params: dict[str, str]) -> None:
    """Each pair into `params` (a later one wins), its name and text checked."""
    for name, value in pairs:
        params[_name(name)] = clean(value, multiline=name in LIST_FIELDS)
        if len(params) > MAX_FIELDS:
            raise BadInput(TOO_MANY_FIELDS)


def _parsed(raw: bytes) -> str | list[tuple[str, str]]:
    """A url-encoded form, parsed but not yet checked (`_into` checks it): a
    plain one (`_PLAIN`) as its text, any other as its pairs. Raises what
    parsing finds: bytes that are not UTF-8, too many fields."""
    if not _PLAIN.fullmatch(raw):
        return _urlencoded(raw)
    if raw.count(b"&") >= MAX_FIELDS:
        raise BadInput(TOO_MANY_FIELDS)
    return raw.decode("ascii")


def _into(form: str | list[tuple[str, str]], params: dict[str, str]) -> None:
    """A parsed form into `params`. A plain one holds clean text only: its
    names are checked for length, its values for size, and split."""
    if not isinstance(form, str):
        _checked(form, params)
        return
    for part in form.split("&"):
        if part:
            name, _, value = part.partition("=")
            if not 0 < len(name) <= MAX_NAME_CHARS:
                raise BadInput()
            if len(value) > MAX_VALUE_CHARS:
                raise BadInput(TOO_LARGE)
            params[name] = value
            if len(params) > MAX_FIELDS:
                raise BadInput(TOO_MANY_FIELDS)


async def _body(receive: Receive, headers: Headers) -> bytes:
    """The body, refused past MAX_BODY_BYTES before it is all in memory."""
    declared = headers.get(b"content-length") or ""
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadInput(TOO_LARGE)
    chunks, size = [], 0
    while True:  # the ASGI messages themselves: Starlette's stream() adds a generator a request
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadInput(TOO_LARGE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput() from None


def _urlencoded(raw: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            _utf8(raw), keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS
        )
    except UnicodeDecodeError:
        raise BadInput() from None
    except ValueError:  # more fields than allowed
        raise BadInput(TOO_MANY_FIELDS) from None


def _json(raw: bytes) -> list[tuple[str, str]]:
    try:
        body = json.loads(_utf8(raw), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadInput() from None
    if not isinstance(body, dict):
        raise BadInput()
    if len(body) > MAX_FIELDS:
        raise BadInput(TOO_MANY_FIELDS)
    pairs = []
    for name, value in body.items():
        if value is not None:
            pairs.append((name, _json_text(value)))
    return pairs


def _no_constant(name: str) -> object:
    raise ValueError(name)


def _json_text(value: object) -> str:
    """A JSON value as the form field a panel would see."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadInput()
        return repr(value)
    if isinstance(value, list) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return ",".join(map(str, value))
    raise BadInput()


def _multipart(raw: bytes, boundary: bytes) -> list[tuple[str, str]]:
    """A multipart form's text fields; file parts are left out, as PHP does."""
    if not boundary or len(boundary) > 200:
        raise BadInput()
    parts: list[tuple[list[tuple[bytes, bytes]], bytearray]] = []
    header_name = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        if len(parts) >= MAX_FIELDS:
            raise BadInput(TOO_MANY_FIELDS)
        parts.append(([], bytearray()))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1][0].append((bytes(header_name).lower(), bytes(header_value)))
        header_name.clear()
        header_value.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    try:
        parser.write(raw)
    except MultipartParseError:
        raise BadInput() from None
    if parser.state != MultipartState.END:
        raise BadInput()  # cut short: no closing boundary
    fields = []
    for headers, data in parts:
        disposition = dict(headers).get(b"content-disposition")
        if disposition is None:
            raise BadInput()
        kind, options = parse_options_header(disposition)
        if kind.lower() != b"form-data" or b"name" not in options:
            raise BadInput()
        if b"filename" in options:
            continue
        fields.append((_utf8(options[b"name"]), _utf8(bytes(data))))
    return fields
