"""How ``lightrelay serve`` runs uvicorn, hardened against hostile or careless clients.

- **Header timeout**: a connection must finish a request's headers within
  ``header_timeout`` seconds of opening (or of the request's first byte); a socket that
  sends nothing, or trickles its headers (slowloris), is closed.
- **Idle keep-alive timeout**: uvicorn's ``timeout_keep_alive`` (``keepalive_timeout``).
- **A cap on open connections** (per process): when a new connection would pass it,
  the connection idle for longest (no request in progress) is closed to make room; if
  every connection is busy, the new one is answered ``503`` and closed. Either way one
  log line per ``CAP_LOG_SECONDS`` says the cap was reached. By default the cap leaves
  room under the open-file limit for the database and the upstream connections, so a
  flood of sockets can never starve them, and idle sockets cannot crowd out callers.
- **The open-file limit**: ``raise_nofile()`` lifts the soft limit to the hard one at start.
- **SIGTERM always ends the process** within the shutdown grace period plus
  ``EXIT_MARGIN_SECONDS``: a watchdog thread, started by the first signal
  (``arm_exit_watchdog``), exits the process if the graceful shutdown is stuck.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import sys
import threading
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lightrelay.settings import Settings, load_settings

log = logging.getLogger("lightrelay.server")
CAP_LOG_SECONDS = 10.0
EXIT_MARGIN_SECONDS = 5.0
FD_RESERVE = 128  # open files kept for the database, logs, the Redis pool and such
NOFILE_CEILING = 1 << 20

_BUSY_BODY = b'{"error":{"message":"too many open connections","type":"service_unavailable"}}'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
         b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def raise_nofile() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one; (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        return soft, target
    return soft, soft


def default_max_connections(nofile: int) -> int:
    """Each client connection may hold an upstream connection too: half of what is left."""
    return max(16, (nofile - FD_RESERVE) // 2)


def limits(settings: Settings) -> tuple[float, int]:
    """(header timeout, connection cap) for this process."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    nofile = NOFILE_CEILING if nofile == resource.RLIM_INFINITY else nofile
    return settings.header_timeout_seconds, settings.max_connections or default_max_connections(nofile)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a cap on open connections. uvicorn
    builds it in each worker process, so it reads its limits from the settings once per process."""

    _cap_logged = 0.0
    _limits: tuple[float, int] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if GuardedProtocol._limits is None:
            GuardedProtocol._limits = limits(load_settings())
        self._header_timeout, self._max_connections = GuardedProtocol._limits
        self._header_timer: asyncio.TimerHandle | None = None
        self._hang_up: HangUp | None = None  # the current request's

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.idle_since: float | None = time.monotonic()  # None while a request is in progress
        if self._max_connections and len(self.connections) > self._max_connections:
            now = time.monotonic()
            if now - GuardedProtocol._cap_logged > CAP_LOG_SECONDS:
                GuardedProtocol._cap_logged = now
                log.warning("open connections reached the cap (%d, LIGHTRELAY_MAX_CONNECTIONS): closing the "
                            "longest-idle ones to make room, refusing new ones with 503 while all are busy",
                            self._max_connections)
            idle = [c for c in self.connections
                    if c is not self and getattr(c, "idle_since", None) is not None and not c.transport.is_closing()]
            if idle:
                min(idle, key=lambda c: c.idle_since).transport.close()
            else:
                transport.write(_BUSY)
                transport.close()
                return
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and self._header_timeout > 0:
            self._header_timer = self.loop.call_later(self._header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection from %s: no complete request headers within %.0f s",
                     self.client[0] if self.client else "?", self._header_timeout)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.idle_since = None
        self._arm_header_timer()  # a kept-alive connection's next request: its headers are timed too

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.idle_since = None if self.pipeline else time.monotonic()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()
        if self.cycle is not None:
            if not isinstance(self.cycle.transport, OneWrite):
                self.cycle.transport = OneWrite(self.transport, self.loop)  # type: ignore[assignment]
            self._hang_up = self.cycle.scope[HANG_UP] = HangUp()  # type: ignore[index]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        cycle = self.cycle
        super().connection_lost(exc)
        if self._hang_up is not None and cycle is not None and cycle.disconnected:  # gone before its reply was done
            self._hang_up.fire()


HANG_UP = "lightrelay.hang_up"  # the scope key of a request's HangUp (absent under another server)


class HangUp:
    """Tells a request's handler that its client went away, from the protocol's ``connection_lost``:
    no task per request listening for ``http.disconnect`` (see ``http/io.py``)."""

    __slots__ = ("gone", "_callback")

    def __init__(self) -> None:
        self.gone = False
        self._callback: Any = None

    def on_gone(self, callback: Any) -> None:
        """Call ``callback()`` when the client goes (at once if it has gone already); None: no longer."""
        self._callback = callback
        if self.gone and callback is not None:
            self.fire()

    def fire(self) -> None:
        self.gone = True
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


class OneWrite:
    """The connection as a response sees it: the status line and headers wait for the response's first
    piece of body and go out with it in one write (one system call, one packet) instead of two. They
    never wait past the current turn of the event loop: a response that sends its headers and then
    waits (a stream before its first event) has them written at the end of that turn. Everything else
    is the transport's own."""

    __slots__ = ("_transport", "_loop", "_held", "_started")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if not self._started:  # the first write of the response: its head
            self._started = True
            self._held = data
            self._loop.call_soon(self.flush)
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def arm_exit_watchdog(seconds: float) -> None:
    """From the first SIGTERM/SIGINT on, end the process within ``seconds`` whatever is stuck.

    Called by the app's lifespan in a served process (uvicorn has installed its own handlers by
    then): ours starts a watchdog thread and hands the signal on to uvicorn's."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            global _watchdog
            if _watchdog is None:
                _watchdog = threading.Timer(seconds, _exit_now, args=(seconds,))
                _watchdog.daemon = True
                _watchdog.start()
            previous(signum, frame)

        signal.signal(sig, handler)


_watchdog: threading.Timer | None = None


def _exit_now(deadline: float) -> None:
    log.error("shutdown did not finish within %.0f s of the signal; exiting now", deadline)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(1)
