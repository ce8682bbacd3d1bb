"""The HTTP server: tornado's, with slow clients cut off.

Tornado 6 has one timer for a request's headers, started when a connection
begins to wait for a request (HTTP1ConnectionParameters.header_timeout, set
from `idle_connection_timeout` and 3,600 s unless given), and one for a body
(`body_timeout`, none unless given). Here a new connection's first request
must have its headers in within header_timeout_s of the connection; on a
kept-alive connection, the next request within idle_timeout_s of the
previous answer (an idle connection is closed then); every body within
body_timeout_s of its headers.
"""

from __future__ import annotations

import copy
import ssl

from tornado import httputil
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer


class BoundedHTTPServer(HTTPServer):
    """tornado's HTTPServer with three bounds on slow clients, all required."""

    def initialize(  # type: ignore[override]  # required bounds
        self,
        request_callback: httputil.HTTPServerConnectionDelegate,
        *,
        header_timeout_s: float,
        body_timeout_s: float,
        idle_timeout_s: float,
        max_body_size: int,
        xheaders: bool,
        ssl_options: ssl.SSLContext | None,
    ) -> None:
        super().initialize(
            request_callback,
            idle_connection_timeout=header_timeout_s,  # tornado's header timer
            body_timeout=body_timeout_s,
            max_body_size=max_body_size,
            xheaders=xheaders,
            ssl_options=ssl_options,
        )
        self.kept_alive = copy.copy(self.conn_params)  # the same, but for the header timer
        self.kept_alive.header_timeout = idle_timeout_s
        self.waiting_again: set[object] = set()  # connections that have had a request

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """Called as a connection starts to wait for a request: the first one,
        or the next one after an answer (kept alive), which gets the idle bound."""
        if server_conn in self.waiting_again and isinstance(request_conn, HTTP1Connection):
            request_conn.params = self.kept_alive
        self.waiting_again.add(server_conn)
        return super().start_request(server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.waiting_again.discard(server_conn)
        super().on_close(server_conn)
