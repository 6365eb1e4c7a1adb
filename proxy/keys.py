"""Every Redis key name the router uses, under one prefix.

Keys a single script touches share a hash tag (`{c:NAME}` for a client), so
the layout also works on Redis Cluster. Records and the ledger never expire;
caches do.
"""

from __future__ import annotations

# IDs per owner-index bucket: small enough for Redis' compact hash encoding.
OWNER_BUCKET = 100


class Keys:
    """Every Redis key name the router uses, under one prefix."""

    def __init__(self, prefix: str = "smm:") -> None:
        self.prefix = prefix

    # Client accounts: one hash tag per client, for the ledger scripts.
    def client(self, name: str) -> str:
        return f"{self.prefix}client:{{c:{name}}}"

    def balance(self, name: str) -> str:
        return f"{self.prefix}balance:{{c:{name}}}"

    def ledger(self, name: str) -> str:
        return f"{self.prefix}ledger:{{c:{name}}}"

    def applied(self, name: str) -> str:
        """Hash of idempotency reference -> ledger entry, per client."""
        return f"{self.prefix}applied:{{c:{name}}}"

    def totals(self, name: str) -> str:
        """Running totals of a client's money by kind (charge, refund, topup, paid upstream)."""
        return f"{self.prefix}totals:{{c:{name}}}"

    def rates(self, name: str) -> str:
        """A client's custom rates: service -> rate per 1000 (`proxy.accounts.terms`)."""
        return f"{self.prefix}rates:{{c:{name}}}"

    def open_links(self, name: str, link_key: str = "") -> str:
        """How many open orders the client has on each link (by the link's key): the
        order scripts keep it as orders open and end; the reserve script reads it.
        In 256 buckets by the key's first two hex digits, each small enough for
        Redis' compact hash encoding up to about 30,000 open links a client;
        the bucket of a link's key (`open_links_buckets` matches them all)."""
        return f"{self.prefix}links:{{c:{name}}}:{link_key[:2] or '-'}"

    def open_links_buckets(self, name: str) -> str:
        """A SCAN pattern matching every bucket of the client's open-links index."""
        return f"{self.prefix}links:{{c:{name}}}:*"

    @property
    def clients(self) -> str:
        return f"{self.prefix}clients"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}apikey:{key_hash}"

    @property
    def hot(self) -> tuple[str, ...]:
        """The prefixes of what a read request reads (an API key's client, the
        client's record and rates, its balance, an order's record): kept in each
        process by the tracked cache (`proxy.tracking`), which Redis invalidates
        on every change."""
        return tuple(f"{self.prefix}{kind}:" for kind in ("apikey", "client", "rates", "balance", "order"))

    # Orders and refills: records under their client's hash tag, with the
    # working sets that change with an order's state under the same tag, so
    # one script changes a record, its money and its indexes together. To
    # find an order by our ID alone, owner indexes map IDs to clients in
    # buckets of OWNER_BUCKET IDs, each bucket its own small hash (and slot).
    @property
    def order_seq(self) -> str:
        return f"{self.prefix}seq:order"

    @property
    def refill_seq(self) -> str:
        return f"{self.prefix}seq:refill"

    def order(self, client: str, order_id: int) -> str:
        return f"{self.prefix}order:{{c:{client}}}:{order_id}"

    def all_orders(self, client: str, order_id: int) -> str:
        """The bucket (a set of IDs, OWNER_BUCKET IDs a bucket: Redis' compact
        integer set) that lists `order_id` among every order of the client.
        Orders opened before the buckets are in the client's `orders_of(client, "all")`."""
        return f"{self.prefix}orders:{{c:{client}}}:all:{order_id // OWNER_BUCKET}"

    def orders_of(self, client: str, group: str = "all") -> str:
        """A client's order IDs: 'all', or one of the working sets
        (`proxy.orders.states.WORKING_SETS` says which orders each holds)."""
        return f"{self.prefix}orders:{{c:{client}}}:{group}"

    def archived(self, client: str, order_id: int) -> str:
        """The bucket hash holding what Redis keeps of the client's archived
        orders (`records.ArchivedOrder`): order ID -> compact view."""
        return f"{self.prefix}archived:{{c:{client}}}:{order_id // OWNER_BUCKET}"

    @property
    def archive_dirs(self) -> str:
        """The absolute folders orders were archived to (a set)."""
        return f"{self.prefix}archive-dirs"

    def fence(self, client: str, order_id: int) -> str:
        """Set when a reservation was settled as not applied: it can no longer apply (fence.lua)."""
        return f"{self.prefix}fence:{{c:{client}}}:{order_id}"

    def lease(self, client: str, order_id: int) -> str:
        """Held (and renewed) by the task placing the order; expires if it dies."""
        return f"{self.prefix}lease:{{c:{client}}}:{order_id}"

    def refill(self, client: str, refill_id: int) -> str:
        return f"{self.prefix}refill:{{c:{client}}}:{refill_id}"

    def duplicate(self, client: str, token: str) -> str:
        """An add's fingerprint -> the order it made, for client retries."""
        return f"{self.prefix}dedupe:{{c:{client}}}:{token}"

    def order_owner(self, order_id: int) -> str:
        """The bucket hash holding `order_id` -> client."""
        return f"{self.prefix}owner:{{o:{order_id // OWNER_BUCKET}}}"

    def refill_owner(self, refill_id: int) -> str:
        return f"{self.prefix}refill-owner:{{r:{refill_id // OWNER_BUCKET}}}"

    def due(self, provider: str) -> str:
        """A provider's open orders ("client:order") by when their status was last read."""
        return f"{self.prefix}due:{{p:{provider}}}"

    def claims(self, provider: str, upstream_order: int) -> str:
        """The bucket hash holding (provider, upstream order) -> our order ID."""
        return f"{self.prefix}claims:{{p:{provider}:{upstream_order // OWNER_BUCKET}}}"

    def health(self, provider: str, scope: str) -> str:
        """A provider's consecutive failures and ejection, for orders or for reads."""
        return f"{self.prefix}health:{{p:{provider}}}:{scope}"

    def outcomes(self, provider: str) -> str:
        """A provider's decayed outcome counts per upstream service."""
        return f"{self.prefix}outcomes:{{p:{provider}}}"

    def stuck(self, provider: str) -> str:
        """Our orders at a provider counted as stuck (their final outcome does not count again)."""
        return f"{self.prefix}stuck:{{p:{provider}}}"

    def held_prices(self, provider: str) -> str:
        """Upstream services whose price change waits for an operator: the last approved rate and the new one."""
        return f"{self.prefix}held-prices:{{p:{provider}}}"

    def removed_services(self, provider: str) -> str:
        """Upstream services gone from a provider's list, or listed at a price we cannot use,
        with their last usable rate (to tell a return, and judge its price)."""
        return f"{self.prefix}removed:{{p:{provider}}}"

    @property
    def events(self) -> str:
        """The operators' event stream."""
        return f"{self.prefix}events"

    @property
    def limits(self) -> str:
        """The prefix of the per-client limits (kept by the `limits` library)."""
        return f"{self.prefix}limits"

    def provider_state(self, provider: str) -> str:
        """What the last check of a provider read: balance, currency, a block."""
        return f"{self.prefix}provider:{provider}"

    def budget(self, provider: str, minute: int) -> str:
        return f"{self.prefix}budget:{provider}:{minute}"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}metrics"

    # Caches.
    def catalog(self, provider: str) -> str:
        return f"{self.prefix}catalog:{provider}"

    def price_changes(self, provider: str) -> str:
        return f"{self.prefix}price-changes:{provider}"

    # The operators' audit log and its chain's head: one hash tag, for the append script.
    @property
    def audit(self) -> str:
        """The operators' audit log (a stream; `proxy.ops.audit`)."""
        return f"{self.prefix}{{audit}}:log"

    @property
    def audit_head(self) -> str:
        """The audit chain's head: the last entry's number and hash, and their MAC."""
        return f"{self.prefix}{{audit}}:head"

    # Admin tokens (`proxy.ops.admins`): one hash tag, so the registry and its
    # index change together.
    @property
    def admins(self) -> str:
        """The registry: admin name -> its record (token hash, role, expiry)."""
        return f"{self.prefix}{{admins}}:registry"

    @property
    def admin_tokens(self) -> str:
        """Token hash -> admin name, for finding a token's admin in one read."""
        return f"{self.prefix}{{admins}}:tokens"

    @property
    def admins_used(self) -> str:
        """Admin name -> when its token was last used (written at most once a minute)."""
        return f"{self.prefix}{{admins}}:used"

    def calls(self, provider: str, minute: int) -> str:
        """Upstream calls to a provider in one minute (`proxy.providers.calls`): counts and time."""
        return f"{self.prefix}calls:{provider}:{minute}"

    def dashboard_session(self, session_hash: str) -> str:
        """A dashboard login (`proxy.edge.dashboard.sessions`), by the SHA-256 of its cookie; it expires."""
        return f"{self.prefix}dashboard:session:{session_hash}"

    def catalog_lock(self, provider: str) -> str:
        return f"{self.prefix}catalog-lock:{provider}"


# -- the client ----------------------------------------------------------------
# Replies as redis-py 8 types them (7.x has no names for them). Our
# connections decode and speak RESP2, so values are in fact `str`.
