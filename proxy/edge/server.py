"""How the router is served: uvicorn's httptools protocol, a reply in one write.

uvicorn writes a reply's status line and headers with one system call and
its body with another: two TCP segments for an answer of a hundred bytes.
On loopback under load the second send cost the bare Starlette app of
`benchmarks/bare.py` 7 µs of its 55 a request (`docs/benchmarks.md`). Here
a connection's transport holds a write of bytes until the next write, and
sends both with one `writelines` (one system call on uvloop); a write that
no other follows goes out at the loop's next turn. A bytearray or
memoryview, which its writer may change once written, is not held. Bytes go
out in the order they were written; closing the transport, or the client's
EOF closing it, sends what it holds first; aborting it drops it, as an abort
drops the transport's own buffer.

`HttpProtocol` is what `smm-proxy serve` and the demo give uvicorn as `http`,
among the rest of `uvicorn_options`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class PairedWrites(asyncio.Transport):
    """A transport that sends two writes in a row as one (see the module)."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            if type(data) is not bytes:
                # A view of a buffer its caller may change once this returns
                # (an app's reused buffer): sent now, as it would be unwrapped.
                self._transport.write(data)
                return
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._held = None
        self._transport.writelines((held, data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.flush()
        self._transport.writelines(list_of_data)

    def flush(self) -> None:
        """Send what is held now."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (0 if self._held is None else len(self._held))

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over `PairedWrites`."""

    paired: PairedWrites

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.paired = PairedWrites(transport, self.loop)
        super().connection_made(self.paired)

    def eof_received(self) -> None:
        # The transport closes itself on the client's EOF (uvicorn keeps no
        # half-open connection): what is held must be in its buffer by then.
        self.paired.flush()
        super().eof_received()


def uvicorn_options(forwarded_allow_ips: str) -> dict[str, Any]:
    """What every uvicorn that serves the router is given: this protocol; no
    logging setup and no access line of uvicorn's (ours names no query
    string, where GET clients put their key); no `server: uvicorn` header on
    every reply (nothing to tell a scanner); forwarded headers believed only
    from `forwarded_allow_ips`."""
    return {
        "http": HttpProtocol,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
