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
  taken as sent.

Replies are read whole here (panel replies are small), so a connection goes
back to the pool as soon as the reply is in.
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int = 20, verify: bool | ssl.SSLContext = True) -> None:
        self.max_connections = max_connections
        self.ssl: ssl.SSLContext | bool = httpx.create_ssl_context(verify=verify) if verify is not False else False
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=self.ssl, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        limits = aiohttp.ClientTimeout(
            total=None,
            connect=timeout.get("pool"),
            sock_connect=timeout.get("connect"),
            sock_read=timeout.get("read"),
        )
        body = request.content or None
        try:
            async with self._client().request(
                request.method,
                str(request.url),
                headers=list(request.headers.multi_items()),
                data=body,
                allow_redirects=False,
                compress=None,
                timeout=limits,
            ) as response:
                content = await response.read()
                return httpx.Response(
                    status_code=response.status,
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
                    content=content,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1"},
                )
        except aiohttp.ClientConnectorError as exc:  # no connection was made: nothing was sent
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ConnectionTimeoutError as exc:  # timed out getting or making a connection
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:  # after connecting: it may have been acted on
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
