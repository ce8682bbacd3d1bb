"""A web-hook receiver that checks ntorque's signatures: Tornado.

    WEBHOOK_SECRET=whsec_... python examples/tornado_receiver.py 8000

Answer 200 once the call is handled: ntorque retries anything else but a
4xx. A retry carries the same webhook-id, so keep the ids you handled if a
call must not be handled twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence

import tornado.web

from ntorque.client import SignatureError, verify

Handler = Callable[[str, bytes], None]


class HookHandler(tornado.web.RequestHandler):
    def initialize(self, secrets: str | Sequence[str], handle: Handler) -> None:
        self.secrets = secrets
        self.handle = handle

    def post(self) -> None:
        body = self.request.body  # the raw bytes: verify before parsing anything
        try:
            webhook_id = verify(self.secrets, self.request.headers, body)
        except SignatureError as error:
            self.set_status(400)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": 400, "error": str(error)}))
            return
        self.handle(webhook_id, body)
        self.finish("ok")


def receiver(secrets: str | Sequence[str], handle: Handler) -> tornado.web.Application:
    """An application calling handle(webhook_id, body) for each signed call to /hook."""
    arguments = {"secrets": secrets, "handle": handle}
    return tornado.web.Application([(r"/hook", HookHandler, arguments)])


def log_call(webhook_id: str, body: bytes) -> None:
    print(f"verified call {webhook_id}: {len(body)} bytes", flush=True)


async def main(port: int) -> None:
    receiver(os.environ["WEBHOOK_SECRET"].split(), log_call).listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
