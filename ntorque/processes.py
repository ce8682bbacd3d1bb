"""Several processes per node: the parent binds the port, forks one child per
process and looks after them; each child runs a whole node (API, console,
consumers, ticker) on the shared socket, and the PostgreSQL advisory lock keeps
maintenance to one of them, as it does across nodes.

Nothing with a connection, a thread or a running loop may exist at a fork: the
caller has bound sockets and nothing else, and each child builds its own node.
tornado.process.fork_processes is not used: it forwards no signal to its
children, restarts a failing child up to 100 times over the parent's whole life
whatever the pace, and exits the parent 0 once every child is gone.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from .errors import NtorqueError

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Exits beyond max(processes, RESTARTS) within RESTART_WINDOW_S: restarting does
# not help (a broken database, a bad setting); stop, and let the service manager see it.
RESTARTS = 5
RESTART_WINDOW_S = 30.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def count(processes: int) -> int:
    """The processes a node runs: the setting, or one per core for 0."""
    return processes or os.cpu_count() or 1


class Supervisor:
    """The parent: starts `count` children running `run(index)`, forwards
    SIGTERM and SIGINT to them, starts again a child that exits while the node
    is not stopping, and returns 0 once all have stopped cleanly (else 1)."""

    def __init__(
        self,
        count: int,
        run: Callable[[int], int],
        sockets: Sequence[socket.socket] = (),
        clock: Callable[[], float] = time.monotonic,
        ended: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.count = count
        self.ended = ended  # told the pid of each child that exited (its metrics' files)
        self.run_child = run
        self.sockets = list(sockets)  # kept to start children again; closed on stop
        self.clock = clock
        self.children: dict[int, int] = {}  # pid -> index
        self.exits: collections.deque[float] = collections.deque()  # unexpected, recent
        self.stopping = False
        self.status = 0
        self.pid = os.getpid()

    def run(self) -> int:
        for signum in SIGNALS:
            signal.signal(signum, self._signalled)
        for index in range(self.count):
            self._start(index)
        while self.children:
            pid, status = os.wait()  # a signal runs its handler, then the wait goes on
            if pid in self.children:
                self.ended(pid)
                self._exited(self.children.pop(pid), pid, status)
        log.info("all %s processes stopped", self.count)
        return self.status

    def _start(self, index: int) -> None:
        # Blocked: a signal that comes during the fork must reach the child
        # as a stop, and the parent's handler must know the new pid.
        with _blocked(SIGNALS):
            if self.stopping:
                return
            pid = os.fork()
            if pid == 0:
                _become_child(self.pid)
            else:
                self.children[pid] = index
        if pid == 0:
            os._exit(self._child(index))  # never back into the parent's code
        log.info("process %s/%s started pid=%s", index + 1, self.count, pid)

    def _child(self, index: int) -> int:
        try:
            return self.run_child(index)
        except NtorqueError as error:  # a known failure: its message says it all
            log.error("process %s/%s failed: %s", index + 1, self.count, error.message)
            return 2
        except BaseException:
            log.exception("process %s/%s failed", index + 1, self.count)
            return 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()

    def _signalled(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("stopping %s processes (%s)", len(self.children), _name(signum))
        self._stop(signum)

    def _stop(self, signum: int) -> None:
        """Each child stops gracefully; the port closes once the last one has."""
        self.stopping = True
        for sock in self.sockets:
            sock.close()
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):  # exited, not yet reaped
                os.kill(pid, signum)

    def _exited(self, index: int, pid: int, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = f"exited with status {code}" if code >= 0 else f"was killed by {_name(-code)}"
        name = f"process {index + 1}/{self.count} pid={pid}"
        if self.stopping:
            log.info("%s %s", name, how)
            self.status = self.status or int(code != 0)
            return
        if self.too_many_exits():
            log.error("%s %s: too many exits, stopping every process", name, how)
            self.status = 1
            self._stop(signal.SIGTERM)
            return
        log.error("%s %s: starting it again", name, how)
        self._start(index)

    def too_many_exits(self) -> bool:
        """Count an unexpected exit; true past max(count, RESTARTS) within the window."""
        now = self.clock()
        self.exits.append(now)
        while self.exits[0] < now - RESTART_WINDOW_S:
            self.exits.popleft()
        return len(self.exits) > max(self.count, RESTARTS)


@contextlib.contextmanager
def _blocked(signals: Sequence[signal.Signals]) -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _become_child(parent: int) -> None:
    """Until the child's node handles them, a stop signal ends it at once (it
    has nothing in flight yet); it stops too when the parent dies (kill -9)."""
    for signum in SIGNALS:
        signal.signal(signum, _exit_at_once)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # died before the prctl
        os._exit(0)


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _exit_at_once(_signum: int, _frame: object) -> None:
    os._exit(0)
