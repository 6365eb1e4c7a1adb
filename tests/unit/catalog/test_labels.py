"""Upstream labels fit for a client's eyes, and the config's label templates."""

import pytest

from proxy.catalog.labels import Labels, provider_secrets
from proxy.config import check_template


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Followers by echomark (http://127.0.0.1:8443/api/v2)", "Followers by"),
        ("Instagram Likes [echomark.store]", "Instagram Likes"),
        ("Likes - support@panel.example - @panel_bot - t.me/panelchat", "Likes"),
        ("Views | 오토스타그램.com | xn--9n2bp8qy8dca.com", "Views"),
        ("TikTok Followers [Refill 30D] ⚡", "TikTok Followers [Refill 30D] ⚡"),
        ("Spotify Plays 1.5K/day, max 10.000", "Spotify Plays 1.5K/day, max 10.000"),
        ("http://only.a.link/", "Service 7"),
        ("localhost:8080 Likes via sim-key", "Likes via"),
    ],
)
def test_labels_lose_everything_that_points_at_a_provider(raw, clean):
    class Provider:
        name, key, url = "echomark", "sim-key", "https://echomark.store/api/v2"

    labels = Labels(provider_secrets([Provider()]))
    assert labels.clean(raw, "Service 7") == clean


def test_label_templates_take_only_known_fields():
    assert check_template("{category} (fast)") == "{category} (fast)"
    for bad in ("{upstream_id}", "{name!r}", "{name:>10}", "{"):
        with pytest.raises(ValueError):
            check_template(bad)
