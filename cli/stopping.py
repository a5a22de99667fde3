"""Bounded stops for the long-running commands: SIGTERM (Kubernetes sends it on every rollout) and Ctrl-C end
``llmsight up``, ``demo``, ``dashboard``, ``collector`` and ``analyzers`` within seconds.

A service still stops in order (the collector commits the batch in hand, the analyzers finish the segment under
way, Streamlit closes its sessions), but a stop never waits on them for ever:

* :func:`arm` is called where the stop begins (by :func:`watch_signals` as soon as SIGTERM or SIGINT arrives,  whoever handles it; and in the ``finally`` after the dashboard's server
  returned); it starts a daemon thread that ends the process :data:`STOP_DEADLINE_S` seconds later if it is
  still running, whatever it is waiting on;
* :func:`leave` ends a service command with ``os._exit`` once its own stop is done, after the ``atexit``
  handlers (the SDK's flush) and a flush of the output, so the interpreter's teardown, where chdb's engine can
  wait on its thread pool, never runs.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import sys
import threading
import time

log = logging.getLogger("llmsight.stopping")

STOP_DEADLINE_S = 6.0  # after the stop began; the dashboard's server takes a second or two before that
FORCED_EXIT_CODE = 1

SERVICES = ("up", "demo", "dashboard", "collector", "analyzers")

_lock = threading.Lock()
_armed_at: float | None = None
_enabled = False  # only the real command line (cli.app.main), never a test's CliRunner, may end the process
_service = False
_keep: list[socket.socket] = []


def enable() -> None:
    global _enabled
    _enabled = True


def service_started(command: str | None) -> None:
    """Note which command runs: a service ends through :func:`leave`, and :func:`arm` guards its stop."""
    global _service
    _service = _enabled and command in SERVICES
    if _service:
        watch_signals(f"llmsight {command}")


def watch_signals(what: str) -> None:
    """Arm the deadline as soon as SIGTERM or SIGINT arrives, whichever handler the service installs.

    Python's C-level signal handler writes the signal's number to the wakeup fd before any Python handler
    runs, even while the main thread is busy in a long chdb query; a thread reads it. (Streamlit's event loop
    may take the wakeup fd over; the dashboard commands also :func:`arm` when its server returns.)
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main thread: nothing to watch from here
        reader.close()
        writer.close()
        return

    def watch() -> None:
        watched = {int(signal.SIGTERM), int(signal.SIGINT)}
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            if watched & set(data):
                arm(what)
                return

    threading.Thread(target=watch, name="llmsight-stop-signals", daemon=True).start()
    # The writer's fd must stay open for the life of the process.
    _keep.append(writer)


def is_service() -> bool:
    return _service


def arm(what: str, deadline_s: float = STOP_DEADLINE_S) -> None:
    """The stop of ``what`` has begun: end the process in ``deadline_s`` seconds if it has not ended by then.

    Safe to call from a signal handler and more than once (the first call sets the deadline).
    """
    global _armed_at
    with _lock:
        if _armed_at is not None or not _service:
            return
        _armed_at = time.monotonic()
    threading.Thread(target=_deadline, args=(what, deadline_s), name="llmsight-stop-deadline", daemon=True).start()


def _deadline(what: str, deadline_s: float) -> None:
    time.sleep(deadline_s)
    names = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
    log.error("%s did not stop within %.0f s (threads still running: %s); exiting now", what, deadline_s,
              ", ".join(names))
    _flush()
    os._exit(FORCED_EXIT_CODE)


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # a closed stream: nothing more to say
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def leave(code: int) -> None:
    """End a service command now with ``code``: run the ``atexit`` handlers, flush, ``os._exit``."""
    arm("the exit")  # the atexit handlers are bounded too
    try:
        atexit._run_exitfuncs()
    except Exception:  # an exit handler's failure must not keep the process alive
        log.debug("stopping: an atexit handler failed", exc_info=True)
    _flush()
    os._exit(code)
