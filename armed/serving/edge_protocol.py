"""Serve's HTTP proxy, at the HTTP level: a header timeout, and the server's own refusals in armed's error shape.

Ray Serve 2.60's proxy runs uvicorn with only a keep-alive timeout (ray/serve/_private/http_util.py,
`start_asgi_http_server`, ~815-830: `uvicorn.Config(..., timeout_keep_alive=...)`, `http` left at "auto"). Two
things happen there before any ASGI middleware can act, and uvicorn 0.55's httptools protocol
(uvicorn/protocols/http/httptools_impl.py) leaves them open:

- No timer runs until a response has been sent (the keep-alive timer is armed in `on_response_complete` and
  cancelled by the next byte in `data_received`): a connection that sends nothing, or sends its headers a line a
  second, is held forever (issue 24). `EdgeProtocol` arms a timer when a connection opens and when a request's first
  byte arrives, and cancels it when that request's headers are complete; past `header_timeout_s` a client that sent
  part of a request gets 408 and the connection is closed. A connection that never sent a byte is closed without an
  answer, as uvicorn closes an idle keep-alive connection and nginx one that sent nothing: a 408 nobody asked for is
  read by pooling clients as the answer to the next request they send on it (Go's net/http logs "Unsolicited
  response received on idle HTTP channel"; browsers retry).
- A request the parser refuses (a non-ASCII header name, raw bytes in the path, Content-Length with chunked) is
  answered by `send_400_response` as text/plain "Invalid HTTP request received.": `EdgeProtocol` answers the same
  400 in armed's error shape (armed/serving/errors.py).

How it gets into the proxy: uvicorn resolves `http="auto"` when the server starts (uvicorn/config.py `Config.load`,
`import_from_string("uvicorn.protocols.http.auto:AutoHTTPProtocol")`); `install` points that name at
`EdgeProtocol`. It runs in the proxy process from the callback Serve calls while the proxy actor is constructed
(armed/serving/proxy_guard.py, `proxy_middlewares`), before the proxy starts its server (proxy.py, ProxyActor
__init__: `configure_http_middlewares` ~1634, `start_asgi_http_server` ~1726). tests/serve/test_slow_clients.py
checks it in a real proxy; an upgrade of Ray or uvicorn that moves any of this fails there.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from armed.serving.edge import EdgeSettings
from armed.serving.errors import raw_error_response

LINGER_S = 2.0  # how long a refused connection is read and dropped before it is closed


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and error-shaped 400s."""

    header_timeout_s: float = EdgeSettings.model_fields["header_timeout_s"].default

    _header_timer: TimerHandle | None = None
    _lingering = False
    _received = False  # any byte on this connection yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()  # a connection that never sends a byte is a slow header too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # no-op on a new connection: its timer runs from the accept

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._cancel_header_timer()
        self._refuse(400, f"malformed HTTP request: {msg.rstrip('.')}")

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if not self._received:
            self.transport.close()  # never used: nothing to answer (module doc)
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's headers are late while the one before it is still answering: writing a 408
            # now would land inside that response. End the connection; the answer in progress is cut, as it would
            # be by any client-side close.
            self.transport.close()
            return
        self._refuse(408, f"request headers took longer than {self.header_timeout_s:g}s to arrive")

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # refused: what the client still sends is read and dropped until the close
        self._received = self._received or bool(data)
        super().data_received(data)

    def _refuse(self, status: int, message: str) -> None:
        """Answer, then close after a short linger. Closing at once while the client still sends (a slow client
        always does) makes the kernel answer its next bytes with a reset, which can destroy the answer before the
        client reads it; nginx's lingering close exists for the same reason."""
        self.transport.write(raw_error_response(status, message, self.server_state.default_headers))
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def install(settings: EdgeSettings) -> None:
    """Make this process's uvicorn servers with `http="auto"` use EdgeProtocol (Serve's proxy; see module doc)."""
    import uvicorn.protocols.http.auto as auto

    EdgeProtocol.header_timeout_s = settings.header_timeout_s
    auto.AutoHTTPProtocol = EdgeProtocol


def installed() -> bool:
    import uvicorn.protocols.http.auto as auto

    return auto.AutoHTTPProtocol is EdgeProtocol
