"""HTTPS as the API and the console both see it: is a request secure, and
HSTS (Strict-Transport-Security, or a redirect to https) when it is asked for.
"""

from __future__ import annotations

import tornado.web

from .errors import InvalidRequest

HSTS_VALUE = "max-age=31536000"


def served_over_https(request: tornado.httputil.HTTPServerRequest, protocol_header: str) -> bool:
    """https itself, or what a TLS proxy says in its header (hsts_protocol_header)."""
    protocol = str(request.protocol)
    if protocol_header:
        protocol = request.headers.get(protocol_header, protocol)
    return protocol.lower() == "https"


def apply_hsts(handler: tornado.web.RequestHandler, protocol_header: str) -> None:
    """Over https, the HSTS header; over http, a GET moves to https and
    anything else is refused (400)."""
    request = handler.request
    if served_over_https(request, protocol_header):
        handler.set_header("Strict-Transport-Security", HSTS_VALUE)
    elif request.method in ("GET", "HEAD"):
        handler.redirect(f"https://{request.host}{request.uri}", permanent=True)
    else:
        raise InvalidRequest("this server takes requests over https only")
