"""The network under the provider client: httpx's API over aiohttp's connection pool.

httpx's own pool (httpcore) made 16 concurrent calls to a loopback panel
slower than one at a time (850 calls/s against 1,970); aiohttp's pool does
about 5,000 (benchmarks/run.py, docs/benchmarks.md). `AiohttpTransport` keeps
httpx's API (and tests keep injecting httpx transports), with aiohttp below.

What matters most here is how failures are told apart, because the router
fails over only on a request that provably never left:

- aiohttp could not connect (`ClientConnectorError`: refused, DNS, TLS
  handshake) or timed out connecting: `httpx.ConnectError` /
  `httpx.ConnectTimeout` (never sent);
- anything after the connection was made (a reset, a server that hung up,
  a read timeout, a broken body): `httpx.ReadError` / `httpx.ReadTimeout`
  (the order may exist). A keep-alive connection the server had closed is
  in this group too: it may be unclear whether the request left, so it is
  taken as sent, and never sent again (aiohttp would resend a GET by itself).

Replies are read whole here (panel replies are small), so a connection goes
back to the pool as soon as the reply is in.

`exchange` is the same call without httpx's objects around it (a request
built, a response built, its headers copied twice: about 0.4 ms of latency
and 0.5 ms of CPU an order, measured): the provider client uses it when its
transport is this one, and httpx's API otherwise (the transports tests
inject). Both raise the same exceptions for the same failures.
"""

from __future__ import annotations

import codecs
import ssl
from dataclasses import dataclass

import aiohttp
import httpx


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a free connection, to connect, and between reads (None: no limit)."""

    pool: float | None
    connect: float | None
    read: float | None


@dataclass(frozen=True)
class Reply:
    status: int
    content: bytes
    headers: list[tuple[str, str]]  # only when asked for (`raw`)
    charset: str | None  # the Content-Type's, if it named one

    @property
    def text(self) -> str:
        """The body decoded as httpx decodes it: by the named charset when Python
        knows it, else as UTF-8 (a panel's `charset=utf8mb4` is not an error)."""
        return self.content.decode(known_charset(self.charset), errors="replace")


def known_charset(charset: str | None) -> str:
    if charset:
        try:
            return codecs.lookup(charset).name
        except LookupError:
            pass
    return "utf-8"


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int = 20, verify: bool | ssl.SSLContext = True) -> None:
        self.max_connections = max_connections
        self.ssl: ssl.SSLContext | bool = httpx.create_ssl_context(verify=verify) if verify is not False else False
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=self.ssl, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
            # aiohttp sends an idempotent method (GET: a provider configured with
            # `method: GET` takes its adds that way) a second time by itself when
            # the connection drops after sending (RFC 9112's retry): a panel that
            # acted on the first request would create the order twice. Never
            # resend; the caller classifies the failure (sent: outcome unknown).
            # No public switch: aiohttp's own test client sets this attribute.
            self._session._retry_connection = False
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        try:
            reply = await self.exchange(
                request.method,
                str(request.url),
                list(request.headers.multi_items()),
                request.content or None,
                Timeouts(timeout.get("pool"), timeout.get("connect"), timeout.get("read")),
                raw=True,
            )
        except httpx.TransportError as exc:
            exc.request = request
            raise
        return httpx.Response(
            status_code=reply.status,
            headers=reply.headers,
            content=reply.content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def exchange(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeouts: Timeouts,
        *,
        raw: bool = False,
    ) -> Reply:
        """One request, its reply read whole. Raises httpx's exceptions, as
        the module says: ConnectError / ConnectTimeout (never sent),
        ReadTimeout / ReadError (it may have been acted on). `raw`: the body
        as sent (httpx decodes it), else decompressed here."""
        limits = aiohttp.ClientTimeout(
            total=None, connect=timeouts.pool, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        try:
            async with self._client().request(
                method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=None,
                timeout=limits,
                auto_decompress=not raw,
            ) as response:
                content = await response.read()
                header_pairs = (
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers] if raw else []
                )
                return Reply(response.status, content, header_pairs, response.charset)
        except aiohttp.ClientConnectorError as exc:  # no connection was made: nothing was sent
            raise httpx.ConnectError(str(exc)) from exc
        except aiohttp.ConnectionTimeoutError as exc:  # timed out getting or making a connection
            raise httpx.ConnectTimeout(str(exc)) from exc
        except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:  # after connecting: it may have been acted on
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
