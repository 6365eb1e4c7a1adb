"""The process' signals, as a served router takes them: SIGTERM and SIGINT
answer waiting adds before the server's own shutdown; SIGHUP reloads the config."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType

from proxy.runtime import Runtime


def on_exit_signal(callback: Callable[[], None]) -> None:
    """Call `callback` (on the event loop) when SIGTERM or SIGINT arrives, then
    the handler that was there (the server's own, which starts its shutdown).

    The server's graceful shutdown waits for requests in flight before it tells
    the app; an add waiting for its order must answer before that wait ends.
    Only in the main thread (where signals are delivered), and only over a
    handler a server installed.
    """
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(number)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Callable[..., object] = previous) -> None:
            loop.call_soon_threadsafe(callback)
            previous(signum, frame)

        try:
            signal.signal(number, handler)
        except ValueError:  # not the main thread
            return


def reload_on_hangup(runtime: Runtime) -> Callable[[], None]:
    """Reload the config on SIGHUP (where signals can be caught); a function that stops it."""
    loop = asyncio.get_running_loop()

    def reload() -> None:
        task: asyncio.Task[object] = loop.create_task(runtime.reload())
        runtime.background_tasks.add(task)
        task.add_done_callback(runtime.background_tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):  # not the main thread, or no SIGHUP
        return lambda: None

    def stop() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return stop
