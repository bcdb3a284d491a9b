"""End live streams when the server is asked to stop.

A server drains in-flight requests before it runs the app's shutdown, and an event stream is never
done on its own: without this, SIGTERM (a deploy) or Ctrl+C would wait on every open stream until
the process is killed. uvicorn catches SIGINT/SIGTERM with `signal.signal` in the main thread; the
hook wraps its handlers so the streams end cleanly first (clients reconnect with `Last-Event-ID`,
to another replica), then calls the server's own handler. Nothing is installed off the main thread
(servers started in a thread by tests catch no signals either).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_exit_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` on the running loop when SIGINT/SIGTERM arrives, before the handler in place.
    Returns a function that puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained = previous.get(sig)
        if callable(chained):
            chained(sig, frame)
        else:  # the default action or "ignore": behave exactly as before
            signal.signal(sig, chained)
            signal.raise_signal(sig)

    for sig in SIGNALS:
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, old)

    return restore
