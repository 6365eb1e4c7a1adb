from decimal import Decimal

import pytest

from proxy.providers import quirks
from proxy.vocabulary import (
    ACTIVE,
    CANCELED,
    COMPLETED,
    EXPIRED,
    IN_PROGRESS,
    PARTIAL,
    PAUSED,
    PENDING,
    PROCESSING,
    REJECTED,
    SERVICE_TYPES,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Canonical spellings pass through.
        ("Pending", PENDING),
        ("In progress", IN_PROGRESS),
        ("Processing", PROCESSING),
        ("Completed", COMPLETED),
        ("Partial", PARTIAL),
        ("Canceled", CANCELED),
        # Spellings seen from real upstreams (api-v2.md, "Statuses").
        ("Cancelled", CANCELED),
        ("In Progress", IN_PROGRESS),
        ("Inprogress", IN_PROGRESS),
        ("inprogress", IN_PROGRESS),
        ("Complete", COMPLETED),
        ("processing", PROCESSING),
        ("Refunded", CANCELED),
        ("Order Cancelled", CANCELED),
        ("Processed", COMPLETED),
        ("Failed", CANCELED),
        # Case, whitespace and underscores do not matter.
        ("  PENDING ", PENDING),
        ("in_progress", IN_PROGRESS),
        ("IN  PROGRESS", IN_PROGRESS),
        ("order_cancelled", CANCELED),
        # Numeric codes 0-5, as numbers or text.
        (0, PENDING),
        (1, PROCESSING),
        (2, COMPLETED),
        (3, PARTIAL),
        (4, CANCELED),
        (5, CANCELED),
        ("0", PENDING),
        ("3", PARTIAL),
        (" 5 ", CANCELED),
        (Decimal("2"), COMPLETED),
        # Subscriptions.
        ("Active", ACTIVE),
        ("paused", PAUSED),
        ("Expired", EXPIRED),
    ],
)
def test_order_status_spellings(raw, expected):
    assert quirks.order_status(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "Weird", "Complete-ish", 6, -1, "7", True, False, None, 2.5, [], {}])
def test_order_status_unrecognised_is_none(raw):
    assert quirks.order_status(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Pending", PENDING),
        ("pending", PENDING),
        ("In progress", IN_PROGRESS),
        ("In Progress", IN_PROGRESS),
        ("inprogress", IN_PROGRESS),
        ("Completed", COMPLETED),
        ("Rejected", REJECTED),
        ("Canceled", CANCELED),
        ("Cancelled", CANCELED),
        (" completed ", COMPLETED),
    ],
)
def test_refill_status_spellings(raw, expected):
    assert quirks.refill_status(raw) == expected


@pytest.mark.parametrize("raw", ["Partial", "Refill not found", "", None, 1, {"error": "x"}])
def test_refill_status_unrecognised_is_none(raw):
    assert quirks.refill_status(raw) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (157, 157),
        ("157", 157),
        ("157.0", 157),
        (" 12 ", 12),
        ("-5", -5),
        ("+3", 3),
        (0, 0),
        (Decimal("23501"), 23501),
        (Decimal("10.00"), 10),
        (3.0, 3),
    ],
)
def test_to_int_reads_integers(value, expected):
    assert quirks.to_int(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        "",
        "  ",
        "abc",
        "12abc",
        "1.5",
        1.5,
        Decimal("1.5"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1e99999"),
        "1e3",
        "١٢",  # Arabic-Indic digits: int() would accept them, a panel ID is ASCII.
        None,
        [],
        {},
    ],
)
def test_to_int_refuses_non_integers(value):
    assert quirks.to_int(value) is None


@pytest.mark.parametrize("value", [True, 1, "1", "true", "TRUE", " yes ", "on", Decimal("1"), 1.0])
def test_to_bool_true(value):
    assert quirks.to_bool(value) is True


@pytest.mark.parametrize("value", [False, 0, "0", "", "false", "False", "no", "off", None, 2, "maybe", [], {}])
def test_to_bool_false(value):
    assert quirks.to_bool(value) is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.90", Decimal("0.90")),
        ("100.84292", Decimal("100.84292")),
        (" 8 ", Decimal("8")),
        (8, Decimal("8")),
        (Decimal("0.27819"), Decimal("0.27819")),
        (0.27, Decimal("0.27")),  # Never the float's binary noise.
    ],
)
def test_to_amount(value, expected):
    amount = quirks.to_amount(value)
    assert isinstance(amount, Decimal)
    assert amount == expected
    assert str(amount) == str(expected)


@pytest.mark.parametrize("value", [None, "", "abc", "1,5", True, "NaN", "Infinity", [], {}])
def test_to_amount_refuses(value):
    assert quirks.to_amount(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("157", 157),
        (157, 157),
        ("0", 0),
        ("-5", 0),  # Over-delivery: nothing remains.
        (-120, 0),
        ("1000000", 1000000),  # Larger than any quantity: the caller clamps.
        ("Unknown", None),
        ("unknown", None),
        ("", None),
        (None, None),
        ("12 pcs", None),
    ],
)
def test_remains(value, expected):
    assert quirks.remains(value) == expected


@pytest.mark.parametrize("name", sorted(SERVICE_TYPES))
def test_service_type_canonical_names_pass_through(name):
    assert quirks.service_type(name) == name
    assert quirks.service_type(name.upper()) == name
    assert quirks.service_type(f"  {name.lower()} ") == name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("custom_comments", "Custom Comments"),
        ("MENTIONS WITH HASHTAGS", "Mentions with Hashtags"),
        ("Custom  Comments   Package", "Custom Comments Package"),
        ("Comment Likes", "Comment Likes"),
        # Unknown types are kept as given.
        ("Story Views Premium", "Story Views Premium"),
        ("seo", "seo"),
        # A missing type is what panels mean by the default.
        (None, "Default"),
        ("", "Default"),
    ],
)
def test_service_type(raw, expected):
    assert quirks.service_type(raw) == expected


NGINX_502 = """<html>
<head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body>
</html>"""

CLOUDFLARE_520 = """<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<head>
<title>panel.example | 520: Web server is returning an unknown error</title>
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/cf.errors.css" />
</head>
<body><div id="cf-error-details" class="cf-error-details-wrapper">
<span>Cloudflare Ray ID: <strong>8c1f2a3b4c5d6e7f</strong></span></div></body></html>"""

CLOUDFLARE_CHALLENGE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="refresh" content="390"></head><body>
<script src="/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1?ray=8c1f"></script>
</body></html>"""

PHP_WARNING = """<br />
<b>Warning</b>:  Undefined variable $order in <b>/var/www/api.php</b> on line <b>42</b><br />
{"order": 23501}"""


@pytest.mark.parametrize(
    "text",
    [NGINX_502, CLOUDFLARE_520, CLOUDFLARE_CHALLENGE, PHP_WARNING, "\ufeff  <!doctype html>"],
)
def test_looks_like_html(text):
    assert quirks.looks_like_html(text)


@pytest.mark.parametrize("text", ['{"order": 1}', "[]", "", "Service Unavailable", '{"error": "<b>x</b>"}'])
def test_does_not_look_like_html(text):
    assert not quirks.looks_like_html(text)


@pytest.mark.parametrize(
    ("text", "status", "expected"),
    [
        (NGINX_502, 502, "HTML page (HTTP 502)"),
        ("<html><body>Maintenance</body></html>", 200, "HTML page (HTTP 200)"),
        (PHP_WARNING, 200, "HTML page (HTTP 200)"),
        (CLOUDFLARE_520, 520, "Cloudflare error page (HTTP 520)"),
        ("<html><body>origin down</body></html>", 521, "Cloudflare error page (HTTP 521)"),
        (CLOUDFLARE_CHALLENGE, 503, "Cloudflare challenge page (HTTP 503)"),
        (CLOUDFLARE_CHALLENGE, 200, "Cloudflare challenge page (HTTP 200)"),
        ('{"order": 235', 200, "malformed JSON (HTTP 200)"),
        ("[{]", 200, "malformed JSON (HTTP 200)"),
        ("Service Unavailable", 503, "text that is not JSON (HTTP 503)"),
        ("", 200, "empty body (HTTP 200)"),
        ("  \r\n", 502, "empty body (HTTP 502)"),
        ('{"order": 1}', 200, "JSON object (HTTP 200)"),
        ("[1, 2]", 500, "JSON list (HTTP 500)"),
    ],
)
def test_describe_body(text, status, expected):
    assert quirks.describe_body(text, status) == expected


def test_describe_body_never_quotes_the_body():
    secret = "key=0123456789abcdef"
    page = f"<html><title>Error</title><body>Request {secret} failed {'x' * 100_000}</body></html>"
    description = quirks.describe_body(page, 200)
    assert secret not in description
    assert len(description) < 60


def test_parse_json_keeps_decimals_exact():
    value = quirks.parse_json('{"charge": 0.27, "remains": 157, "rate": 1e-7}')
    assert value == {"charge": Decimal("0.27"), "remains": 157, "rate": Decimal("1e-7")}
    assert isinstance(value["charge"], Decimal)


def test_parse_json_tolerates_a_byte_order_mark():
    assert quirks.parse_json('\ufeff {"order": 1} ') == {"order": 1}


@pytest.mark.parametrize("text", ['{"charge": NaN}', "[Infinity]", "-Infinity", "", "{", "[" * 100_000, "{'a': 1}"])
def test_parse_json_refuses_what_is_not_json(text):
    with pytest.raises(ValueError):
        quirks.parse_json(text)


def test_describe_body_treats_nan_as_malformed():
    assert quirks.describe_body('{"charge": NaN}', 200) == "malformed JSON (HTTP 200)"
