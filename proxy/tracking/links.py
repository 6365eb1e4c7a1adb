"""The tracking connections: a pair kept open to Redis, re-made when lost.

`Tracker` owns two connections of its own (RESP2, hiredis-parsed
`asyncio.Protocol`s): A subscribed to `__redis__:invalidate`, B in `CLIENT
TRACKING ON REDIRECT <A> BCAST PREFIX ...`. It tells its owner (the cache,
`proxy.tracking.cache`) three things through callbacks, each called in the
event-loop iteration in which it is known:

- `on_keys(names)`: keys that changed (None: a flush), parsed from A's socket;
- `on_up()`: the pair is tracking;
- `on_down()`: the pair is lost (EOF, an error, a PING unanswered for a heartbeat).

After a loss it reconnects with jittered exponential backoff, logging one
line per change of state (never a key, a value or a password).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

log = logging.getLogger(__name__)

CHANNEL = b"__redis__:invalidate"

KeysCallback = Callable[[list[bytes] | None], None]


class SetupFailed(Exception):
    """Redis refused a command of the handshake (its message; never our arguments)."""


class Link(asyncio.Protocol):
    """One connection: replies go to the commands in order; invalidation messages
    (on A) go to `on_keys` as they are parsed."""

    def __init__(self, on_keys: KeysCallback | None, on_lost: Callable[[Link], None]):
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[Any] | None] = deque()  # None: a heartbeat PING
        self._on_keys = on_keys
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unanswered_pings = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's (loop.create_connection); uvloop's is not an asyncio.Transport subclass.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError:
                self.close()
                return
            if reply is False:
                return
            if (
                self._on_keys is not None
                and type(reply) is list
                and len(reply) == 3
                and reply[0] == b"message"
                and reply[1] == CHANNEL
            ):
                self._on_keys(reply[2])
                continue
            if not self._waiting:  # a reply nobody asked for: we no longer know where we are
                self.close()
                return
            waiter = self._waiting.popleft()
            if waiter is None:
                self.unanswered_pings -= 1
            elif not waiter.done():
                waiter.set_result(reply)

    def eof_received(self) -> None:
        """Redis closed the connection (a kill, a restart): the owner is told now,
        in the turn of the event loop that read the end. asyncio calls
        `connection_lost` only in the next turn, and a request handled in this
        one must not be answered from a session that is gone. (The transport
        closes itself after this returns.)"""
        self._on_lost(self)

    def connection_lost(self, exc: Exception | None) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("the tracking connection closed"))
                waiter.exception()  # whoever awaits it still gets it; nobody need
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_lost(self)

    def send(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        """Write every command in one go; a future for each reply."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._waiting.extend(futures)
        self.transport.write(b"".join(hiredis.pack_command(tuple(command)) for command in commands))
        return futures

    def ping(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._waiting.append(None)
            self.unanswered_pings += 1
            self.transport.write(b"*1\r\n$4\r\nPING\r\n")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Session:
    """A tracking pair (A subscribed, B tracking) and the future its loss completes."""

    __slots__ = ("links", "lost", "ids")

    def __init__(self, links: tuple[Link, Link], ids: tuple[int, int]) -> None:
        self.links = links
        self.ids = ids
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()


def _kind(params: Mapping[str, Any], kind: type) -> bool:
    """Whether the connection class redis-py would use is `kind` (or the store's own subclass of it)."""
    connection_class = params.get("connection_class")
    return isinstance(connection_class, type) and issubclass(connection_class, kind)


def ssl_context(params: Mapping[str, Any]) -> ssl.SSLContext:
    """TLS as redis-py reads it from a rediss:// URL: verified unless ssl_cert_reqs=none."""
    context = ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
    if params.get("ssl_certfile"):
        context.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
    reqs = params.get("ssl_cert_reqs", "required")
    if isinstance(reqs, str):
        modes = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
        if reqs.lower() not in modes:
            raise ValueError(f"ssl_cert_reqs must be one of {', '.join(modes)}")
        reqs = modes[reqs.lower()]
    if reqs == ssl.CERT_NONE or params.get("ssl_check_hostname") is False:
        context.check_hostname = False
    context.verify_mode = reqs
    return context


class Tracker:
    """Keeps a tracking pair open on the Redis `params` describe (redis-py's
    connection keywords, with `connection_class`), reporting to its owner."""

    def __init__(
        self,
        params: Mapping[str, Any],
        prefixes: Sequence[str],
        *,
        on_keys: KeysCallback,
        on_up: Callable[[], None],
        on_down: Callable[[], None],
        heartbeat: float | None,
        connect_timeout: float,
        backoff: tuple[float, float],
        name: str,
    ) -> None:
        self.params = dict(params)
        self.prefixes = tuple(prefixes)
        self._on_keys = on_keys
        self._on_up = on_up
        self._on_down = on_down
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._name = name
        # A bad TLS setting is the operator's to fix now, not a retry loop's.
        self._ssl = ssl_context(self.params) if _kind(self.params, SSLConnection) else None
        self.session: Session | None = None
        self._links: set[Link] = set()
        self._task: asyncio.Task[None] | None = None
        self._attempted: asyncio.Event | None = None
        self._closing = False

    async def start(self) -> None:
        """Start in the background; returns after the first attempt, whatever its outcome."""
        if self._task is not None or self._closing:
            return
        self._attempted = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="redis-tracking")
        await self._attempted.wait()

    @property
    def started(self) -> bool:
        return self._task is not None

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.lose("closed")
        for link in list(self._links):
            link.close()
        if self._links:
            await asyncio.wait([link.closed for link in self._links], timeout=self._connect_timeout)

    def intact(self) -> bool:
        """Whether the pair still stands. asyncio marks a transport closing in
        the turn of the event loop that reads a reset or an end, but tells its
        protocol of a reset only a turn later (`connection_lost`): a pair found
        closing here is lost now (the owner told), before anything is served."""
        session = self.session
        if session is None:
            return False
        for link in session.links:
            if link.transport is None or link.transport.is_closing():
                self.lose("connection closed")
                return False
        return True

    def lose(self, reason: str) -> None:
        """Tell the owner at once and close the pair: called the moment a loss is known."""
        session, self.session = self.session, None
        if session is None:
            return
        self._on_down()
        for link in session.links:
            link.close()
        if not session.lost.done():
            session.lost.set_result(reason)

    async def _run(self) -> None:
        assert self._attempted is not None
        failures = 0
        reported = False  # the unhealthy state was logged
        while True:
            try:
                session = await self._connect()
            except Exception as exc:  # any failure to set up means: read through, retry later
                failures += 1
                if not reported:
                    reported = True
                    log.warning(
                        "client-side cache: cannot track Redis (%s); reading through until it can", describe(exc)
                    )
                self._attempted.set()
                low, high = self._backoff
                await asyncio.sleep(min(high, low * 2 ** min(failures - 1, 30)) * random.uniform(0.5, 1.0))
                continue
            self.session = session
            self._on_up()
            self._attempted.set()
            log.info(
                "client-side cache: tracking %d key prefix(es)%s",
                len(self.prefixes),
                f" again after {failures} failed attempt(s)" if failures else "",
            )
            failures = 0
            reason = await self._watch(session)
            reported = True
            if not self._closing:
                log.warning("client-side cache: tracking lost (%s); flushed, reading through until it is back", reason)

    async def _watch(self, session: Session) -> str:
        """Until the session is lost: PING both connections every heartbeat; one
        not answered by the next beat counts as lost (a silent partition)."""
        while not session.lost.done():
            await asyncio.wait([session.lost], timeout=self._heartbeat)
            if session.lost.done():
                break
            if any(link.unanswered_pings for link in session.links):
                self.lose("no answer to PING within a heartbeat")
                break
            for link in session.links:
                link.ping()
        return session.lost.result()

    async def _connect(self) -> Session:
        params = self.params
        auth: list[Any] = []
        if params.get("password"):
            auth = (
                ["AUTH", params["username"], params["password"]]
                if params.get("username")
                else ["AUTH", params["password"]]
            )
        opened: list[Link] = []
        try:
            async with asyncio.timeout(self._connect_timeout):
                a = await self._open(self._on_keys, opened)
                replies = await handshake(
                    a,
                    auth,
                    [
                        ("CLIENT", "SETNAME", f"{self._name}:invalidations"),
                        ("CLIENT", "ID"),
                        ("SUBSCRIBE", CHANNEL),
                    ],
                )
                a_id = replies[1]
                tracking = ["CLIENT", "TRACKING", "ON", "REDIRECT", a_id, "BCAST"]
                for prefix in self.prefixes:
                    tracking += ["PREFIX", prefix]
                b = await self._open(None, opened)
                replies = await handshake(
                    b, auth, [("CLIENT", "SETNAME", f"{self._name}:tracking"), ("CLIENT", "ID"), tracking]
                )
                b_id = replies[1]
                # A loss reported before the session exists would go unseen: look now
                # (the caller installs the session without awaiting in between).
                if any(link.transport is None or link.transport.is_closing() for link in (a, b)):
                    raise ConnectionError("a tracking connection closed during the handshake")
        except BaseException:
            for link in opened:
                link.close()
            raise
        return Session((a, b), (a_id, b_id))

    async def _open(self, on_keys: KeysCallback | None, opened: list[Link]) -> Link:
        loop = asyncio.get_running_loop()
        links: list[Link] = []

        def factory() -> Link:
            link = Link(on_keys, self._link_lost)
            links.append(link)
            return link

        params = self.params
        if _kind(params, UnixDomainSocketConnection):
            await loop.create_unix_connection(factory, params["path"])
        else:
            host = params.get("host", "localhost")
            await loop.create_connection(factory, host, params.get("port", 6379), ssl=self._ssl)
        link = links[0]
        opened.append(link)
        self._links.add(link)
        link.closed.add_done_callback(lambda _: self._links.discard(link))
        return link

    def _link_lost(self, link: Link) -> None:
        session = self.session
        if session is not None and link in session.links:
            self.lose("connection closed")


async def handshake(link: Link, auth: list[Any], commands: list[Sequence[Any]]) -> list[Any]:
    """Send AUTH (if any) and `commands` in one write; their replies, after AUTH's.
    CLIENT SETNAME may be refused (an ACL): it only helps operators read CLIENT LIST."""
    sent = ([auth] if auth else []) + commands
    replies = [await future for future in link.send(sent)]
    for command, reply in zip(sent, replies, strict=True):
        if isinstance(reply, hiredis.ReplyError) and tuple(command[:2]) != ("CLIENT", "SETNAME"):
            name = f"CLIENT {command[1]}" if command[0] == "CLIENT" else command[0]  # never an argument
            raise SetupFailed(f"{name} refused: {reply}")
    return replies[1:] if auth else replies


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, SetupFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
