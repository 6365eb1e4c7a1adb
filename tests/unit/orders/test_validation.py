"""`add` validation: every service type's fields, quantities, charges and errors."""

import random
from decimal import Decimal

import pytest

from proxy.catalog.catalog import Service
from proxy.errors import InvalidOrder
from proxy.orders import validation as v
from proxy.orders.validation import OrderSpec, validate_add
from proxy.vocabulary import SERVICE_TYPES


def service(type="Default", rate="0.9", min=1, max=10000, dripfeed=False):
    return Service(
        id=1,
        name="test",
        type=type,
        category="test",
        rate=Decimal(rate),
        min=min,
        max=max,
        refill=False,
        cancel=False,
        dripfeed=dripfeed,
        routes=(),
    )


def refused(svc, fields):
    with pytest.raises(InvalidOrder) as raised:
        validate_add(svc, fields)
    return raised.value.message


LINK = "https://instagram.com/p/abc"

# type, rate, fields, quantity, charge, upstream_fields
HAPPY = [
    (
        "Default",
        "0.9",
        {"link": f" {LINK} ", "quantity": " 1000 ", "foo": "bar"},
        1000,
        "0.9",
        {"link": LINK, "quantity": "1000"},
    ),
    ("Package", "2.5", {"link": "instagram.com/p/x", "quantity": "500"}, 1, "2.5", {"link": "instagram.com/p/x"}),
    (
        "Custom Comments",
        "10",
        {"link": LINK, "comments": "nice\r\n\r\n  great  \r\nwow\n", "quantity": "50"},
        3,
        "0.03",
        {"link": LINK, "comments": "nice\ngreat\nwow"},
    ),
    (
        "Custom Comments Package",
        "4",
        {"link": "@user", "comments": "a\r\nb"},
        1,
        "4",
        {"link": "@user", "comments": "a\nb"},
    ),
    (
        "Mentions",
        "3",
        {"link": LINK, "quantity": "100", "usernames": "@a\r\n@b\r\n"},
        100,
        "0.3",
        {"link": LINK, "quantity": "100", "usernames": "@a\n@b"},
    ),
    (
        "Mentions with Hashtags",
        "3",
        {"link": LINK, "quantity": "100", "usernames": "@a\n@b", "hashtags": "#x\n\n#y"},
        100,
        "0.3",
        {"link": LINK, "quantity": "100", "usernames": "@a\n@b", "hashtags": "#x\n#y"},
    ),
    (
        "Mentions Custom List",
        "1.5",
        {"link": "user.name", "usernames": "a\nb\n\n c \n"},
        3,
        "0.0045",
        {"link": "user.name", "usernames": "a\nb\nc"},
    ),
    (
        "Mentions Hashtag",
        "0.333",
        {"link": LINK, "quantity": "157", "hashtag": " #sale "},
        157,
        "0.052281",
        {"link": LINK, "quantity": "157", "hashtag": "#sale"},
    ),
    (
        "Mentions User Followers",
        "1",
        {"link": LINK, "quantity": "250", "username": " nasa "},
        250,
        "0.25",
        {"link": LINK, "quantity": "250", "username": "nasa"},
    ),
    (
        "Mentions Media Likers",
        "2",
        {"link": LINK, "quantity": "10", "media": "https://instagram.com/p/m"},
        10,
        "0.02",
        {"link": LINK, "quantity": "10", "media": "https://instagram.com/p/m"},
    ),
    (
        "Comment Likes",
        "0.5",
        {"link": LINK, "quantity": "20", "username": "owner"},
        20,
        "0.01",
        {"link": LINK, "quantity": "20", "username": "owner"},
    ),
    (
        "Comment Replies",
        "20",
        {"link": LINK, "username": "owner", "comments": "hi\r\nyo"},
        2,
        "0.04",
        {"link": LINK, "username": "owner", "comments": "hi\nyo"},
    ),
    (
        "Poll",
        "1.2",
        {"link": LINK, "quantity": "300", "answer_number": " 02 "},
        300,
        "0.36",
        {"link": LINK, "quantity": "300", "answer_number": "2"},
    ),
    (
        "Invites from Groups",
        "7",
        {"link": LINK, "quantity": "1000", "groups": "g1\r\ng2"},
        1000,
        "7",
        {"link": LINK, "quantity": "1000", "groups": "g1\ng2"},
    ),
    (
        "Web Traffic",
        "0.05",
        {
            "link": LINK,
            "quantity": "2000",
            "country": "US",
            "device": "5",
            "type_of_traffic": "1",
            "google_keyword": " buy shoes ",
            "referring_url": "https://ref.example/",
        },
        2000,
        "0.1",
        {
            "link": LINK,
            "quantity": "2000",
            "country": "US",
            "device": "5",
            "type_of_traffic": "1",
            "google_keyword": "buy shoes",
        },
    ),
    (
        "Subscriptions",
        "0.9",
        {
            "username": "nasa",
            "min": "100",
            "max": "200",
            "posts": "10",
            "old_posts": "0",
            "delay": "30",
            "expiry": "1/2/2030",
            "link": LINK,
        },
        2000,
        "1.8",
        {
            "username": "nasa",
            "min": "100",
            "max": "200",
            "posts": "10",
            "old_posts": "0",
            "delay": "30",
            "expiry": "01/02/2030",
        },
    ),
]


def test_every_service_type_has_a_happy_path():
    assert sorted(case[0] for case in HAPPY) == sorted(SERVICE_TYPES)


@pytest.mark.parametrize("type_, rate, fields, quantity, charge, upstream", HAPPY, ids=[c[0] for c in HAPPY])
def test_happy_path(type_, rate, fields, quantity, charge, upstream):
    spec = validate_add(service(type_, rate), fields)
    assert spec.quantity == quantity
    assert spec.charge == Decimal(charge)
    assert isinstance(spec.charge, Decimal)
    assert spec.upstream_fields == upstream
    assert spec.runs == 1
    assert spec.interval is None
    assert spec.link == (None if type_ == "Subscriptions" else upstream["link"])


def test_charge_is_rounded_up_to_the_minor_unit():
    assert validate_add(service(rate="0.0000001"), {"link": LINK, "quantity": "1"}).charge == Decimal("0.0000001")


def test_unknown_type_is_validated_as_default():
    svc = service("Something New", rate="2", dripfeed=True)
    spec = validate_add(svc, {"link": LINK, "quantity": "10", "comments": "x"})
    assert spec == OrderSpec(10, 1, None, LINK, Decimal("0.02"), {"link": LINK, "quantity": "10"})
    assert refused(svc, {"link": LINK}) == "Missing field: quantity"
    assert validate_add(svc, {"link": LINK, "quantity": "10", "runs": "2", "interval": "5"}).runs == 2


# Fields and errors


@pytest.mark.parametrize(
    "fields, name",
    [
        ({"quantity": "100"}, "link"),
        ({"link": "  ", "quantity": "1"}, "link"),
        ({"link": LINK}, "quantity"),
        ({"link": LINK, "quantity": "\t"}, "quantity"),
    ],
)
def test_missing_required_field(fields, name):
    assert refused(service(), fields) == f"Missing field: {name}"


@pytest.mark.parametrize(
    "type_, name",
    [
        ("Mentions Hashtag", "hashtag"),
        ("Poll", "answer_number"),
        ("Comment Replies", "username"),
        ("Invites from Groups", "groups"),
    ],
)
def test_missing_type_specific_field(type_, name):
    fields = dict(next(case[2] for case in HAPPY if case[0] == type_))
    fields[name] = " \r\n "
    assert refused(service(type_), fields) == f"Missing field: {name}"


@pytest.mark.parametrize("quantity", ["abc", "1e3", "٣", "0x10", "-1", "1.5", "+5", "1 000", "1_000", "9" * 60])
def test_quantity_not_an_integer(quantity):
    assert refused(service(), {"link": LINK, "quantity": quantity}) == "Incorrect quantity"


def test_quantity_limits():
    svc = service(min=50, max=10000)
    assert refused(svc, {"link": LINK, "quantity": "49"}) == "Quantity less than minimal 50"
    assert refused(svc, {"link": LINK, "quantity": "0"}) == "Quantity less than minimal 50"
    assert refused(svc, {"link": LINK, "quantity": "10001"}) == "Quantity more than maximal 10000"
    assert refused(svc, {"link": LINK, "quantity": "9" * 40}) == "Quantity more than maximal 10000"
    assert validate_add(svc, {"link": LINK, "quantity": "50"}).quantity == 50
    assert validate_add(svc, {"link": LINK, "quantity": "010000"}).upstream_fields["quantity"] == "10000"
    assert refused(service(min=0), {"link": LINK, "quantity": "0"}) == "Incorrect quantity"


def test_quantity_may_arrive_as_an_int():
    assert validate_add(service(), {"link": LINK, "quantity": 25}).upstream_fields["quantity"] == "25"


def test_list_lines_are_counted_and_checked_against_limits():
    fields = {"link": LINK, "comments": "one\r\n\r\n two\n\n\nthree\r\n   \r\n", "quantity": "1000"}
    spec = validate_add(service("Custom Comments", rate="1", min=3, max=3), fields)
    assert spec.quantity == 3  # the client's quantity is ignored: the list rules
    assert spec.upstream_fields == {"link": LINK, "comments": "one\ntwo\nthree"}
    assert refused(service("Custom Comments", min=4), fields) == "Quantity less than minimal 4"
    assert refused(service("Custom Comments", max=2), fields) == "Quantity more than maximal 2"
    assert refused(service("Mentions Custom List", min=3), {"link": LINK, "usernames": "a\r\nb"}) == (
        "Quantity less than minimal 3"
    )


def test_lists_split_on_newlines_only_as_panels_do():
    # Upstream panels split on "\n"; other Unicode line breaks stay inside an item.
    spec = validate_add(service("Mentions Custom List", rate="1000"), {"link": LINK, "usernames": "a\u2028b\x0bc\nd"})
    assert (spec.quantity, spec.upstream_fields["usernames"]) == (2, "a\u2028b\x0bc\nd")


def test_flat_types_ignore_limits():
    spec = validate_add(service("Custom Comments Package", rate="3", min=100, max=100), {"link": LINK, "comments": "x"})
    assert (spec.quantity, spec.charge) == (1, Decimal("3"))


@pytest.mark.parametrize(
    "link",
    [
        LINK,
        "HTTP://EXAMPLE.COM",
        "http://example.com:8080/a?b=c#d",
        "https://[::1]/x",
        "instagram.com/p/x",
        "@user",
        "user.name",
        "t.me/+abc",
        "youtube.com/watch?v=x",
        "www.example.com:8080/x",
        "https://x.com/" + "a" * 2000,
    ],
)
def test_plausible_links(link):
    assert validate_add(service(), {"link": link, "quantity": "1"}).link == link


@pytest.mark.parametrize(
    "link",
    [
        "not a link",
        "javascript:alert(1)",
        "http://",
        "https:///path",
        "ftp://x.com",
        "http://exa mple.com",
        "http://[",
        "mailto:a@b.c",
        "a\x00b",
        "x" * 2049,
        "https://x.com/" + "a" * 3000,
        "<script>",
        "#tag",
    ],
)
def test_implausible_links(link):
    assert refused(service(), {"link": link, "quantity": "1"}) == "Incorrect link"


def test_oversized_values_are_incorrect_requests():
    assert refused(service(), {"link": LINK, "quantity": "1", "foo": "x" * 10001}) == "Incorrect request"
    assert refused(service("Custom Comments"), {"link": LINK, "comments": "x\n" * 5001}) == "Incorrect request"
    spec = validate_add(service("Custom Comments", max=100_000), {"link": LINK, "comments": "x\n" * 5000})
    assert spec.quantity == 5000


def test_non_text_values():
    assert validate_add(service(), {"link": LINK, "quantity": "1", "runs": None}).runs == 1
    assert refused(service(), {"link": LINK, "quantity": ["1"]}) == "Incorrect request"
    assert refused(service(), {"link": LINK, "quantity": True}) == "Incorrect request"


# Drip-feed


def test_dripfeed_charges_every_run():
    spec = validate_add(service(dripfeed=True), {"link": LINK, "quantity": "100", "runs": " 3 ", "interval": "15"})
    assert (spec.quantity, spec.runs, spec.interval, spec.charge) == (100, 3, 15, Decimal("0.27"))
    assert spec.upstream_fields == {"link": LINK, "quantity": "100", "runs": "3", "interval": "15"}


def test_dripfeed_bounds():
    svc = service(dripfeed=True)
    for runs, interval in [("2", "1"), ("1000", "1440")]:
        spec = validate_add(svc, {"link": LINK, "quantity": "1", "runs": runs, "interval": interval})
        assert (spec.runs, spec.interval) == (int(runs), int(interval))
    for runs in ["1", "0", "1001", "-2", "x", "2.5", "٣"]:
        assert refused(svc, {"link": LINK, "quantity": "1", "runs": runs, "interval": "5"}) == v.BAD_RUNS
    for interval in ["0", "1441", "-1", "5m"]:
        assert refused(svc, {"link": LINK, "quantity": "1", "runs": "2", "interval": interval}) == v.BAD_INTERVAL


@pytest.mark.parametrize("given", [{"runs": "2"}, {"interval": "5"}, {"runs": "2", "interval": " "}])
def test_runs_and_interval_go_together(given):
    assert refused(service(dripfeed=True), {"link": LINK, "quantity": "1", **given}) == v.RUNS_WITH_INTERVAL


@pytest.mark.parametrize(
    "svc",
    [service(dripfeed=False), service("Mentions Hashtag", dripfeed=True), service("Subscriptions", dripfeed=True)],
)
@pytest.mark.parametrize("given", [{"runs": "2", "interval": "5"}, {"runs": "2"}, {"interval": "5"}])
def test_dripfeed_not_available(svc, given):
    fields = {"link": LINK, "quantity": "100", "hashtag": "#x", "username": "u", "min": "1", "max": "2", "posts": "1"}
    assert refused(svc, {**fields, **given}) == "Drip-feed is not available for this service"


def test_blank_dripfeed_fields_are_absent():
    spec = validate_add(service(dripfeed=False), {"link": LINK, "quantity": "5", "runs": "", "interval": " "})
    assert (spec.runs, spec.interval) == (1, None)
    assert spec.upstream_fields == {"link": LINK, "quantity": "5"}


def test_web_traffic_dripfeed():
    fields = {
        "link": LINK,
        "quantity": "1000",
        "country": "Germany",
        "device": "2",
        "type_of_traffic": "3",
        "runs": "4",
        "interval": "60",
    }
    spec = validate_add(service("Web Traffic", rate="0.05", dripfeed=True), fields)
    assert (spec.runs, spec.interval, spec.charge) == (4, 60, Decimal("0.2"))
    assert spec.upstream_fields["runs"] == "4"
    assert refused(service("Web Traffic", dripfeed=False), fields) == "Drip-feed is not available for this service"


# Web Traffic


def traffic(**fields):
    base = {"link": LINK, "quantity": "100", "country": "US", "device": "1", "type_of_traffic": "3"}
    return {**base, **fields}


def test_web_traffic_conditional_fields():
    svc = service("Web Traffic")
    assert refused(svc, traffic(type_of_traffic="1")) == "Missing field: google_keyword"
    assert refused(svc, traffic(type_of_traffic="2", google_keyword="kw")) == "Missing field: referring_url"
    spec = validate_add(svc, traffic(type_of_traffic="2", referring_url=" https://ref.example/a ", google_keyword="k"))
    assert spec.upstream_fields == {
        "link": LINK,
        "quantity": "100",
        "country": "US",
        "device": "1",
        "type_of_traffic": "2",
        "referring_url": "https://ref.example/a",
    }
    spec = validate_add(svc, traffic(google_keyword="k", referring_url="https://r.example"))
    assert "google_keyword" not in spec.upstream_fields and "referring_url" not in spec.upstream_fields


@pytest.mark.parametrize("url", ["ref.example", "@user", "ftp://ref.example", "http://", "https://a b.com"])
def test_web_traffic_referrer_must_be_a_url(url):
    assert refused(service("Web Traffic"), traffic(type_of_traffic="2", referring_url=url)) == v.BAD_REFERRER


@pytest.mark.parametrize("device", ["0", "6", "x", "-1", "1.0", "٣"])
def test_web_traffic_device(device):
    assert refused(service("Web Traffic"), traffic(device=device)) == v.BAD_DEVICE


@pytest.mark.parametrize("kind", ["0", "4", "one", "1e0"])
def test_web_traffic_type(kind):
    assert refused(service("Web Traffic"), traffic(type_of_traffic=kind)) == v.BAD_TRAFFIC_TYPE


@pytest.mark.parametrize("country", ["US", "de", "United States", "Côte d'Ivoire", "Bosnia-Herzegovina"])
def test_web_traffic_countries(country):
    assert validate_add(service("Web Traffic"), traffic(country=f" {country} ")).upstream_fields["country"] == country


@pytest.mark.parametrize("country", ["U5", "42", "<US>", "US;DE", "x" * 101])
def test_web_traffic_bad_countries(country):
    assert refused(service("Web Traffic"), traffic(country=country)) == v.BAD_COUNTRY


def test_web_traffic_missing_country():
    assert refused(service("Web Traffic"), traffic(country="")) == "Missing field: country"


# Poll


@pytest.mark.parametrize("answer", ["0", "-1", "x", "1.5", "٣"])
def test_poll_answer_number(answer):
    fields = {"link": LINK, "quantity": "100", "answer_number": answer}
    assert refused(service("Poll"), fields) == v.BAD_ANSWER_NUMBER


# Subscriptions


def subscription(**fields):
    return {**{"username": "nasa", "min": "100", "max": "200", "posts": "10"}, **fields}


SUBS = service("Subscriptions", rate="0.9", min=50, max=10000)


def test_subscription_minimal():
    spec = validate_add(SUBS, subscription(delay=""))
    assert spec == OrderSpec(
        2000,
        1,
        None,
        None,
        Decimal("1.8"),
        {"username": "nasa", "min": "100", "max": "200", "posts": "10"},
        billing="delivery",
    )


@pytest.mark.parametrize("posts", [None, "", "0", "00"])
def test_unlimited_subscriptions_are_held_for_the_configured_posts(posts):
    # The PerfectPanel sample client sends posts=0 (or nothing) for "unlimited".
    fields = subscription()
    if posts is None:
        del fields["posts"]
    else:
        fields["posts"] = posts
    spec = validate_add(SUBS, fields, hold_posts=25)
    assert (spec.quantity, spec.charge, spec.billing) == (200 * 25, Decimal("4.5"), "delivery")
    sent = {"username": "nasa", "min": "100", "max": "200"}
    assert spec.upstream_fields == (sent if not posts else {**sent, "posts": "0"})


def test_subscription_bounds_accepted():
    spec = validate_add(SUBS, subscription(min="50", max="10000", posts="10000", delay="600"))
    assert (spec.quantity, spec.charge) == (100_000_000, Decimal("90000"))
    assert validate_add(SUBS, subscription(min="200", max="200", delay="0")).upstream_fields["delay"] == "0"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"posts": "-1"}, v.BAD_POSTS),
        ({"posts": "10001"}, v.BAD_POSTS),
        ({"posts": "ten"}, v.BAD_POSTS),
        ({"min": "0"}, v.BAD_MIN),
        ({"min": "-5"}, v.BAD_MIN),
        ({"max": "x"}, v.BAD_MAX),
        ({"max": "1e3"}, v.BAD_MAX),
        ({"min": "300"}, v.MIN_ABOVE_MAX),
        ({"min": "10"}, "Quantity less than minimal 50"),
        ({"max": "20000"}, "Quantity more than maximal 10000"),
        ({"old_posts": "-1"}, v.BAD_OLD_POSTS),
        ({"old_posts": "many"}, v.BAD_OLD_POSTS),
        ({"delay": "7"}, v.BAD_DELAY),
        ({"delay": "-5"}, v.BAD_DELAY),
        ({"delay": "later"}, v.BAD_DELAY),
        ({"expiry": "31/02/2030"}, v.BAD_EXPIRY),
        ({"expiry": "2030-01-01"}, v.BAD_EXPIRY),
        ({"expiry": "12/31/2030"}, v.BAD_EXPIRY),
        ({"expiry": "1٣/1/2030"}, v.BAD_EXPIRY),  # strptime alone reads that as the 13th
        ({"username": " "}, "Missing field: username"),
        ({"max": ""}, "Missing field: max"),
    ],
)
def test_subscription_errors(fields, message):
    assert refused(SUBS, subscription(**fields)) == message


def test_subscription_drops_fields_it_does_not_take():
    spec = validate_add(SUBS, subscription(quantity="5", link="x", old_posts="007"))
    assert spec.upstream_fields == {"username": "nasa", "min": "100", "max": "200", "posts": "10", "old_posts": "7"}


def test_old_posts_are_held_like_new_posts():
    """The provider delivers to (and bills) each old post: max x (posts + old_posts) is held."""
    spec = validate_add(SUBS, subscription(old_posts="7"))
    assert (spec.quantity, spec.charge) == (200 * 17, Decimal("3.06"))
    unlimited = validate_add(SUBS, subscription(posts="0", old_posts="5"), hold_posts=25)
    assert (unlimited.quantity, unlimited.charge) == (200 * 30, Decimal("5.4"))


def test_old_posts_above_the_limit_are_refused():
    assert v.MAX_OLD_POSTS == 100 and refused(SUBS, subscription(old_posts="101")) == v.bad_old_posts(100)
    with pytest.raises(InvalidOrder) as raised:
        validate_add(SUBS, subscription(old_posts="8"), max_old_posts=7)
    assert raised.value.message == "old_posts must be a whole number from 0 to 7"
    assert validate_add(SUBS, subscription(old_posts="0"), max_old_posts=0).quantity == 2000


# Fuzz: odd values anywhere give InvalidOrder or an order, never anything else.

ODD = [
    "",
    " ",
    "-1",
    "0",
    "1e3",
    "٣",
    "0x10",
    "1.0",
    "NaN",
    "\x00",
    "\r\n",
    "\n\n\n",
    "é",
    "𝟙",
    "x" * 10000,
    "9" * 5000,
    "http://[",
    "https://",
    "@",
    "../../",
    "%00",
    "1/1/1",
    "29/02/2024",
    "9999999999999999999999",
]


def check(svc, fields):
    try:
        spec = validate_add(svc, fields)
    except InvalidOrder as refusal:
        assert isinstance(refusal.message, str) and refusal.message
        return
    assert isinstance(spec, OrderSpec) and spec.quantity >= 1 and spec.charge >= 0
    assert all(isinstance(value, str) and value == value.strip() for value in spec.upstream_fields.values())


@pytest.mark.parametrize("type_", sorted(SERVICE_TYPES))
def test_fuzz_each_field(type_):
    base = next(case[2] for case in HAPPY if case[0] == type_)
    kind = SERVICE_TYPES[type_]
    for dripfeed in (False, True):
        svc = service(type_, dripfeed=dripfeed, min=1, max=10**6)
        for name in (*kind.required, *kind.optional, "quantity", "runs", "interval", "link"):
            for value in ODD:
                check(svc, {**base, name: value})


def test_fuzz_random():
    rng = random.Random(2024)
    alphabet = "0123456789 -+.e\r\n/:@#x٣é\x00[]"
    names = sorted({n for kind in SERVICE_TYPES.values() for n in (*kind.required, *kind.optional)})
    for _ in range(3000):
        type_ = rng.choice(sorted(SERVICE_TYPES) + ["Bogus"])
        fields = {
            name: "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            for name in rng.sample(names, rng.randint(0, len(names)))
        }
        check(service(type_, dripfeed=rng.random() < 0.5), fields)
