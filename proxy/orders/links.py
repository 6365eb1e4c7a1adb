"""The link of an order, as the same-link rule and the order search compare it.

Two spellings of one page are one link: the host is compared without case
and without a leading "www.", http and https are one, a link without a
scheme is an https one, and a trailing "/" of the path does not count. Everything else (the path's case, the query) does: it may
name another post. `link_key` is what the client's open-links index
(`Keys.open_links`) counts orders under: a hash, so a 2,000-character link
costs 32 characters there.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit, urlunsplit

# A client's same-link rule (its terms, `proxy.accounts.terms`): the reserve
# script refuses a second open order on one link for a client whose record says REFUSE.
ALLOW = "allow"
REFUSE = "refuse"


def normal_link(link: str) -> str:
    """A link without the differences that do not matter ("instagram.com/p/x"
    and "https://www.Instagram.com/p/x/" are one)."""
    text = link.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
    except ValueError:
        return text.rstrip("/")
    host = parts.netloc.casefold().removeprefix("www.")
    return urlunsplit(("https", host, parts.path.rstrip("/"), parts.query, ""))


def link_key(link: str) -> str:
    """The key of a link in the open-links index ("" for an order without a link)."""
    if not link.strip():
        return ""
    return hashlib.sha256(normal_link(link).encode()).hexdigest()[:16]
