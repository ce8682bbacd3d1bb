"""A web-hook receiver that checks ntorque's signatures: plain WSGI.

Any WSGI server runs it (gunicorn, uwsgi, wsgiref below). Run it with the
application's secret, as `create-app` or `show-secret` printed it:

    WEBHOOK_SECRET=whsec_... python examples/wsgi_receiver.py 8000

The same check in a Flask view (Flask gives the raw body and the headers):

    @app.post("/hook")
    def hook():
        try:
            webhook_id = verify(SECRET, request.headers, request.get_data())
        except SignatureError as error:
            return {"error": str(error)}, 400
        ...
        return "ok"

Answer 200 once the call is handled: ntorque retries anything else but a
4xx. A retry carries the same webhook-id, so keep the ids you handled if a
call must not be handled twice.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from wsgiref.simple_server import make_server

from ntorque.client import SignatureError, verify

Handler = Callable[[str, bytes], None]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def receiver(secrets: str | Sequence[str], handle: Handler) -> WsgiApp:
    """A WSGI application calling handle(webhook_id, body) for each signed call."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = read_body(environ)  # the raw bytes: verify before parsing anything
        try:
            webhook_id = verify(secrets, request_headers(environ), body)
        except SignatureError as error:
            answer = json.dumps({"status": 400, "error": str(error)}).encode()
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [answer]
        handle(webhook_id, body)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return application


def read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return bytes(environ["wsgi.input"].read(length)) if length > 0 else b""


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """WSGI keeps headers as HTTP_WEBHOOK_ID and so on: webhook-id again."""
    return {
        name[5:].replace("_", "-").lower(): str(value)
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }


def log_call(webhook_id: str, body: bytes) -> None:
    print(f"verified call {webhook_id}: {len(body)} bytes", flush=True)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    application = receiver(os.environ["WEBHOOK_SECRET"].split(), log_call)
    with make_server("127.0.0.1", port, application) as server:
        server.serve_forever()
