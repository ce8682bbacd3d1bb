"""Wiring and lifecycle: build every part, start the loops, stop gracefully.

Everything runs on one IOLoop: the HTTP API, the consumer and the
requeuer's PeriodicCallback. Nothing imports this module but `__main__`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from . import api, console, logs
from .applications import Applications, Created
from .auth import Authenticator
from .channel import make_channel
from .config import Settings
from .consumer import Consumer
from .errors import ConfigError
from .events import Events, RedisBridge
from .handlers import Guard, log_request
from .health import Check, Readiness
from .keys import new_server_secret
from .metrics import Metrics, Scrape
from .queue import Queue
from .ratelimit import FailureLimiter
from .requeuer import Requeuer
from .server import BoundedHTTPServer
from .signing import Signer
from .store import Store
from .store.engine import make_engine
from .store.leadership import Leadership
from .targets import Policy, Rules, Targets
from .ticker import Ticker
from .webhook import Webhook, make_client

log = logging.getLogger(__name__)

# Bodies over the limit get a JSON 413 from the handler, so the server itself
# must let them reach it; the handler streams and counts.
SERVER_MAX_BODY_BYTES = 1 << 40
QUIET_LOGGERS = ("tornado.curl_httpclient", "aiosqlite", "asyncpg", "sqlalchemy", "redis")


class Node:
    """One ntorque process: its parts and their start and stop."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        sockets: Sequence[socket.socket] = (),
        metrics_dir: str = "",  # several processes: where they all write their metrics
    ) -> None:
        self.settings = settings
        self.sockets = sockets  # bound by the parent of several processes; none: listen
        self.clock = clock  # the wall clock of due dates and leases (tests move it by hand)
        self.engine = make_engine(settings)
        self.metrics = Metrics()
        self.store = Store(
            self.engine, settings.default_timeout_s, self.metrics.database_errors.inc
        )
        self.channel = make_channel(
            settings.redis_url, settings.redis_channel, self.metrics.channel_errors.inc
        )
        self.scrape = Scrape(
            self.metrics, self.store.metrics.unfinished, clock=clock, multiprocess_dir=metrics_dir
        )
        self.events = Events()
        # Task changes of every node reach every node's console.
        self.bridge = (
            RedisBridge(self.events, settings.redis_url, f"{settings.redis_channel}:events")
            if settings.redis_url
            else None
        )
        self.console: console.Console | None = None
        self.queue = Queue(
            self.store.tasks,
            self.channel,
            self.events,
            min_due_delay_s=settings.min_due_delay_s,
            max_due_delay_s=settings.max_due_delay_s,
            max_retries=settings.max_retries,
            backoff_kind=settings.backoff,
            # Two requeue rounds: a task is timed by the round before it falls due.
            lookahead_s=2 * settings.requeue_interval_s,
            idempotency_window_s=settings.idempotency_window_s,
            clock=clock,
            metrics=self.metrics,
        )
        self.authenticator = Authenticator(self.store.apps, cache_s=settings.auth_cache_s)
        self.targets = Targets(
            Policy(
                settings.allow_private_targets,
                (Rules.parse(settings.target_allow, settings.target_deny),),
            ),
            self.store.apps.target_policy,
            cache_s=settings.auth_cache_s,
        )
        self.webhook = Webhook(
            make_client(settings.concurrency),
            max_retries=settings.max_retries,
            transient_codes=settings.transient_codes,
            ca_certs=settings.ca_certs or None,
            targets=self.targets,
            signer=Signer(self.store.apps, cache_s=settings.auth_cache_s),
            clock=clock,
        )
        self.consumer = Consumer(
            self.queue, self.webhook, concurrency=settings.concurrency, clock=clock
        )
        self.leadership = Leadership(self.engine)
        checks: dict[str, Check] = {"database": self.store.ping}
        if settings.redis_url:
            checks["redis"] = self.channel.ping
        self.readiness = Readiness(checks)
        self.requeuer = Requeuer(
            self.queue,
            self.leadership,
            batch=settings.requeue_batch,
            cleanup_after_s=settings.cleanup_after_days * 86400,
            cleanup_interval_s=settings.cleanup_interval_s,
            cleanup_batch=settings.cleanup_batch,
        )
        # Every worker fires schedules; the database makes each tick once.
        self.ticker = Ticker(self.queue.scheduler, settings.requeue_interval_s, clock)
        self.server: HTTPServer | None = None
        self.cookie_secret = settings.cookie_secret
        self.consuming: asyncio.Task[None] | None = None
        self.requeuing: PeriodicCallback | None = None
        self.requeue_round: asyncio.Future[None] | None = None  # stop waits for it
        self.stopped = asyncio.Event()
        self.failed = False
        self.created: Created | None = None  # the default application, made at first start

    def web_app(self) -> tornado.web.Application:
        guard = Guard(  # one count of failed keys for the API and the console login
            enable_hsts=self.settings.enable_hsts,
            protocol_header=self.settings.hsts_protocol_header,
            limiter=self.limiter(),
        )
        options = api.ApiOptions(
            authenticate=self.settings.authenticate,
            max_body_bytes=self.settings.max_body_bytes,
            max_timeout_s=self.settings.max_due_delay_s,
            max_retries=self.settings.max_retries,
            max_schedule_ahead_s=self.settings.max_schedule_ahead_s,
            targets=self.targets,
            guard=guard,
            scrape=self.scrape,
            metrics_token=self.settings.metrics_token,
        )
        dependencies = {
            "queue": self.queue,
            "authenticator": self.authenticator,
            "options": options,
        }
        self.console = console.make_console(
            queue=self.queue,
            reads=self.store.console,
            apps=self.store.apps,
            events=self.events,
            authenticator=self.authenticator,
            authenticate=self.settings.authenticate,
            cookie_secret=self.cookie_secret,
            guard=guard,
        )
        return tornado.web.Application(
            api.routes(self.readiness, **dependencies) + console.routes(self.console),
            default_handler_class=api.NotFoundHandler,
            default_handler_args=dependencies,
            autoreload=self.settings.development,
            serve_traceback=False,
            log_function=log_request,  # never a query value: urls carry credentials
        )

    def limiter(self) -> FailureLimiter | None:
        limit, window_s = self.settings.auth_failure_limit, self.settings.auth_failure_window_s
        return FailureLimiter(limit, window_s) if limit else None

    def http_server(self) -> HTTPServer:
        """Plain http, or https with the configured certificate."""
        tls: ssl.SSLContext | None = None
        if bool(self.settings.certfile) is not bool(self.settings.keyfile):
            raise ConfigError("certfile and keyfile go together: https needs both files")
        if self.settings.certfile:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                tls.load_cert_chain(self.settings.certfile, self.settings.keyfile)
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"cannot load certfile/keyfile: {error}") from error
        return BoundedHTTPServer(
            self.web_app(),
            max_body_size=SERVER_MAX_BODY_BYTES,
            xheaders=self.settings.trust_proxy_headers,
            ssl_options=tls,
            header_timeout_s=self.settings.header_timeout_s,
            body_timeout_s=self.settings.body_timeout_s,
            idle_timeout_s=self.settings.idle_timeout_s,
        )

    async def start(self) -> None:
        if self.settings.authenticate:
            self.created = await Applications(self.store.apps).create_default()
            if self.created:
                announce(self.created)
        role = self.settings.role
        if self.bridge is not None:
            self.bridge.start()
        if role in ("all", "web"):
            self.cookie_secret = self.settings.cookie_secret or await self.store.apps.server_secret(
                "cookie_secret", new_server_secret, time.time()
            )
            self.server = self.http_server()
            if self.sockets:
                self.server.add_sockets(self.sockets)
            else:
                self.server.listen(self.settings.port, self.settings.host)
            scheme = "https" if self.settings.certfile else "http"
            log.info("listening on %s://%s:%s", scheme, self.settings.host, self.settings.port)
        if role in ("all", "worker"):
            self.consuming = asyncio.ensure_future(self.consumer.run())
            self.consuming.add_done_callback(self._loop_ended)
            self.requeuing = PeriodicCallback(
                self._requeue, self.settings.requeue_interval_s * 1000
            )
            self.requeuing.start()
            self._requeue()  # recover at once
            self.ticker.start()
            log.info("consuming with concurrency %s", self.settings.concurrency)

    def _requeue(self) -> None:
        """Start a requeuer round unless one still runs (kept: stop waits for it)."""
        if self.requeue_round is None or self.requeue_round.done():
            self.requeue_round = asyncio.ensure_future(self.requeuer.tick())

    def signalled(self) -> None:
        """SIGTERM or SIGINT: stop at once, so no call starts after the signal."""
        self.stopped.set()
        self.consumer.stop()

    def _loop_ended(self, _: asyncio.Task[None]) -> None:
        if not self.stopped.is_set():
            log.error("the consumer loop ended unexpectedly: stopping")
            self.failed = True
            self.stopped.set()

    async def stop(self) -> None:
        """Stop accepting, stop popping, let calls in flight finish (up to the grace)."""
        self.stopped.set()
        if self.server:
            self.server.stop()
        if self.requeuing:
            self.requeuing.stop()
        await self.ticker.stop()
        self.consumer.stop()
        if self.requeue_round:  # its queries need the engine and the leader's connection
            await asyncio.wait([self.requeue_round], timeout=self.settings.shutdown_grace_s)
        if self.consuming:
            await asyncio.wait([self.consuming], timeout=5)
        cut = await self.consumer.drain(self.settings.shutdown_grace_s)
        if cut:
            log.warning("stopped with %s calls unfinished: they will be performed again", cut)
        self.webhook.client.close()  # its curl handles and sockets, before the loop goes
        if self.console is not None:
            self.console.hub.close()
        if self.server:
            await self.server.close_all_connections()
        if self.bridge is not None:
            await self.bridge.close()
        await self.leadership.release()
        await self.queue.close()
        await self.channel.close()
        await self.engine.dispose()
        log.info("stopped")


def announce(created: Created) -> None:
    """The default application's key and secret, shown once, on the first start."""
    print(
        f"ntorque: created application {created.app.name!r}; its API key: {created.key}\n"
        f"ntorque: its signing secret (verify calls with it): {created.signing_secret}",
        flush=True,
    )


async def serve(
    settings: Settings, sockets: Sequence[socket.socket] = (), metrics_dir: str = ""
) -> int:
    """Run a node until SIGTERM or SIGINT; exit status 0 after a clean stop."""
    node = Node(settings, sockets=sockets, metrics_dir=metrics_dir)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, node.signalled)
    await node.start()
    await node.stopped.wait()
    log.info("stopping")
    await node.stop()
    return 1 if node.failed else 0


def setup_logging(development: bool, processes: int = 1, log_format: str = "text") -> None:
    """Text or JSON lines on stderr. Several processes share stderr: each line
    then says whose it is."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logs.formatter(log_format, processes))
    logging.basicConfig(level=logging.DEBUG if development else logging.INFO, handlers=[handler])
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    # Their debug lines carry data: curl's verbose trace (header values and
    # bodies), aiosqlite's statements with parameters (bodies, key hashes,
    # secrets). Never logged, even in development.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
