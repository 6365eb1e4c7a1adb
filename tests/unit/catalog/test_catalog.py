"""Building our catalog from the providers' listings: strategies, overrides, import rules."""

from decimal import Decimal

from support import router_config

from proxy.catalog.catalog import build_catalog
from proxy.config import parse_config
from proxy.providers.listings import Listing
from proxy.providers.replies import UpstreamService


def listing(provider, *services):
    return Listing(provider, 0.0, {s.service: s for s in services})


def upstream(service, rate, category="Cat", **kw):
    fields = dict(
        name=f"S{service}",
        type="Default",
        category=category,
        rate=Decimal(rate),
        min=10,
        max=100,
        refill=False,
        cancel=False,
        dripfeed=False,
        description=None,
    )
    fields.update(kw)
    return UpstreamService(service=service, **fields)


def test_cheapest_strategy_and_overrides():
    raw = router_config(
        imports=[],
        services=[
            {
                "id": 7,
                "strategy": "cheapest",
                "name": "Mine",
                "min": 20,
                "refill": True,
                "routes": [{"provider": "echomark", "service": 1}, {"provider": "korean", "service": 5}],
            }
        ],
    )
    config = parse_config(raw, {})
    catalog = build_catalog(
        config,
        {"echomark": listing("echomark", upstream(1, "2.00")), "korean": listing("korean", upstream(5, "1380"))},
    )
    service = catalog.get(7)
    assert [r.provider for r in service.routes] == ["korean", "echomark"]
    assert service.rate == Decimal("1.30")  # 1380 KRW = 1 USD, +30 %
    assert (service.name, service.min, service.max, service.refill) == ("Mine", 20, 100, True)


def test_explicit_services_win_over_imports_and_rules_select():
    raw = router_config(
        services=[{"id": 2005, "routes": [{"provider": "echomark", "service": 1}]}],
        imports=[
            {"provider": "korean", "id_offset": 2000, "categories": ["insta*"]},
            {"provider": "echomark", "id_offset": 3000, "ids": [2]},
        ],
    )
    config = parse_config(raw, {})
    catalog = build_catalog(
        config,
        {
            "echomark": listing("echomark", upstream(1, "1"), upstream(2, "1"), upstream(3, "1")),
            "korean": listing(
                "korean",
                upstream(5, "1380", "Instagram"),
                upstream(6, "1380", "TikTok"),
                upstream(7, "1380", "instagram likes"),
            ),
        },
    )
    assert sorted(catalog.services) == [2005, 2007, 3002]
    assert catalog.get(2005).routes[0].provider == "echomark"
