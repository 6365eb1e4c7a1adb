"""Two preset panels for the demo. Service IDs are stable: configs refer to them.

echomark.store, USD (`echomark_services()`), API key "sim-key", balance 1000:

| id | type            | name                                 | rate   | min | max     | refill | cancel | dripfeed |
|----|-----------------|--------------------------------------|--------|-----|---------|--------|--------|----------|
| 1  | Default         | Instagram Followers [Refill 30D]     | 0.90   | 50  | 10000   | yes    | yes    |          |
| 2  | Custom Comments | Instagram Custom Comments            | 8      | 10  | 1500    |        | yes    |          |
| 3  | Default         | Instagram Likes [Drip-feed]          | 0.12   | 20  | 50000   |        |        | yes      |
| 4  | Default         | Instagram Views                      | 0.015  | 100 | 1000000 |        |        |          |
| 5  | Package         | Instagram 1000 Followers Package     | 1.50   | 1   | 1       |        |        |          |
| 6  | Mentions        | Instagram Mentions                   | 4.50   | 100 | 10000   |        |        |          |
| 7  | Comment Likes   | Instagram Comment Likes              | 2.20   | 20  | 5000    |        | yes    |          |
| 8  | Poll            | Twitter Poll Votes                   | 1.80   | 100 | 20000   |        |        |          |
| 9  | Web Traffic     | Website Traffic [Worldwide]          | 0.35   | 500 | 100000  |        |        | yes      |
| 10 | Subscriptions   | Instagram Auto Likes                 | 0.15   | 50  | 5000    |        |        |          |
| 11 | Default         | YouTube Views [Refill 30D]           | 1.20   | 500 | 100000  | yes    | yes    |          |
| 12 | Custom Comments Package | Instagram 10 Custom Comments | 2.00   | 1   | 1       |        |        |          |
| 13 | Mentions with Hashtags  | Instagram Mentions + Hashtags | 5.00  | 100 | 10000   |        |        |          |
| 14 | Mentions Custom List    | Instagram Mentions Custom List | 6.00 | 10  | 1000    |        |        |          |
| 15 | Mentions Hashtag        | Instagram Mentions by Hashtag | 4.00  | 100 | 10000   |        |        |          |
| 16 | Mentions User Followers | Instagram Mentions of Followers | 4.00 | 100 | 10000  |        |        |          |
| 17 | Mentions Media Likers   | Instagram Mentions of Likers | 4.00   | 100 | 10000   |        |        |          |
| 18 | Comment Replies         | Instagram Comment Replies    | 9.00   | 5   | 500     |        |        |          |
| 19 | Invites from Groups     | Telegram Invites from Groups | 3.00   | 100 | 10000   |        | yes    |          |

오토스타그램.com, KRW (`korean_services()`), API key "sim-key", balance 1000000:

| id  | type            | name                         | rate  | min | max     | refill | cancel | like   |
|-----|-----------------|------------------------------|-------|-----|---------|--------|--------|--------|
| 101 | Default         | 인스타그램 팔로워 [30일 리필]  | 1250  | 50  | 10000   | yes    | yes    | 1      |
| 102 | Default         | 인스타그램 좋아요               | 180   | 20  | 50000   |        | yes    | 3      |
| 103 | Default         | 인스타그램 조회수               | 25    | 100 | 1000000 |        |        | 4      |
| 104 | Custom Comments | 인스타그램 커스텀 댓글          | 12000 | 10  | 1000    |        | yes    | 2      |
| 105 | Default         | 유튜브 조회수 [30일 리필]       | 1800  | 500 | 100000  | yes    |        | 11     |
| 106 | Comment Likes   | 인스타그램 댓글 좋아요          | 3000  | 20  | 5000    |        |        | 7      |
| 107 | Web Traffic     | 웹사이트 트래픽 (한국)          | 500   | 100 | 50000   |        |        | 9      |
| 108 | Subscriptions   | 인스타그램 자동 좋아요 (구독)   | 220   | 50  | 5000    |        |        | 10     |
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from proxy.sim.panel import DEFAULT_KEY, Panel, SimService


def echomark_services() -> list[SimService]:
    return [
        SimService(
            1,
            "Instagram Followers [Refill 30D]",
            "Default",
            "Instagram Followers",
            Decimal("0.90"),
            50,
            10000,
            refill=True,
            cancel=True,
        ),
        SimService(
            2, "Instagram Custom Comments", "Custom Comments", "Instagram Comments", Decimal("8"), 10, 1500, cancel=True
        ),
        SimService(
            3, "Instagram Likes [Drip-feed]", "Default", "Instagram Likes", Decimal("0.12"), 20, 50000, dripfeed=True
        ),
        SimService(4, "Instagram Views", "Default", "Instagram Views", Decimal("0.015"), 100, 1000000),
        SimService(5, "Instagram 1000 Followers Package", "Package", "Instagram Followers", Decimal("1.50"), 1, 1),
        SimService(6, "Instagram Mentions", "Mentions", "Instagram Mentions", Decimal("4.50"), 100, 10000),
        SimService(
            7, "Instagram Comment Likes", "Comment Likes", "Instagram Comments", Decimal("2.20"), 20, 5000, cancel=True
        ),
        SimService(8, "Twitter Poll Votes", "Poll", "Twitter", Decimal("1.80"), 100, 20000),
        SimService(
            9,
            "Website Traffic [Worldwide]",
            "Web Traffic",
            "Website Traffic",
            Decimal("0.35"),
            500,
            100000,
            dripfeed=True,
        ),
        SimService(10, "Instagram Auto Likes", "Subscriptions", "Instagram Auto Likes", Decimal("0.15"), 50, 5000),
        SimService(
            11,
            "YouTube Views [Refill 30D]",
            "Default",
            "YouTube Views",
            Decimal("1.20"),
            500,
            100000,
            refill=True,
            cancel=True,
        ),
        SimService(
            12, "Instagram 10 Custom Comments", "Custom Comments Package", "Instagram Comments", Decimal("2.00"), 1, 1
        ),
        SimService(
            13,
            "Instagram Mentions + Hashtags",
            "Mentions with Hashtags",
            "Instagram Mentions",
            Decimal("5.00"),
            100,
            10000,
        ),
        SimService(
            14,
            "Instagram Mentions Custom List",
            "Mentions Custom List",
            "Instagram Mentions",
            Decimal("6.00"),
            10,
            1000,
        ),
        SimService(
            15, "Instagram Mentions by Hashtag", "Mentions Hashtag", "Instagram Mentions", Decimal("4.00"), 100, 10000
        ),
        SimService(
            16,
            "Instagram Mentions of Followers",
            "Mentions User Followers",
            "Instagram Mentions",
            Decimal("4.00"),
            100,
            10000,
        ),
        SimService(
            17,
            "Instagram Mentions of Likers",
            "Mentions Media Likers",
            "Instagram Mentions",
            Decimal("4.00"),
            100,
            10000,
        ),
        SimService(18, "Instagram Comment Replies", "Comment Replies", "Instagram Comments", Decimal("9.00"), 5, 500),
        SimService(
            19,
            "Telegram Invites from Groups",
            "Invites from Groups",
            "Telegram",
            Decimal("3.00"),
            100,
            10000,
            cancel=True,
        ),
    ]


def korean_services() -> list[SimService]:
    return [
        SimService(
            101,
            "인스타그램 팔로워 [30일 리필]",
            "Default",
            "인스타그램 팔로워",
            Decimal("1250"),
            50,
            10000,
            refill=True,
            cancel=True,
        ),
        SimService(102, "인스타그램 좋아요", "Default", "인스타그램 좋아요", Decimal("180"), 20, 50000, cancel=True),
        SimService(103, "인스타그램 조회수", "Default", "Instagram 조회수", Decimal("25"), 100, 1000000),
        SimService(
            104, "인스타그램 커스텀 댓글", "Custom Comments", "인스타그램 댓글", Decimal("12000"), 10, 1000, cancel=True
        ),
        SimService(
            105, "유튜브 조회수 [30일 리필]", "Default", "YouTube 조회수", Decimal("1800"), 500, 100000, refill=True
        ),
        SimService(106, "인스타그램 댓글 좋아요", "Comment Likes", "인스타그램 댓글", Decimal("3000"), 20, 5000),
        SimService(107, "웹사이트 트래픽 (한국)", "Web Traffic", "웹사이트 트래픽", Decimal("500"), 100, 50000),
        SimService(
            108, "인스타그램 자동 좋아요 (구독)", "Subscriptions", "인스타그램 자동 좋아요", Decimal("220"), 50, 5000
        ),
    ]


PRESETS: dict[str, dict[str, Any]] = {
    "echomark": {"services": echomark_services, "currency": "USD", "balance": Decimal("1000")},
    "korean": {"services": korean_services, "currency": "KRW", "balance": Decimal("1000000")},
}


def build_panel(name: str, **options: Any) -> Panel:
    """A `Panel` for preset `name` ("echomark" or "korean"); `options` go to `Panel`."""
    preset = PRESETS[name]
    options.setdefault("currency", preset["currency"])
    options.setdefault("accounts", {DEFAULT_KEY: preset["balance"]})
    return Panel(preset["services"](), **options)
