"""SIGTERM in an actor's process, seen at once.

A Ray worker's main thread sits in Ray's task loop, in C++: a Python signal handler
(Ray installs one for SIGTERM, which exits the process) runs only when that thread next
runs Python, which may be long after the signal, and never on the thread where an
object's event loop runs. A wakeup fd is written by the C-level handler the moment the
signal arrives, whatever the main thread does; a thread reading it calls back the
objects that asked (``on_terminate``), so a ``Worker`` can hand its running jobs back
to their queue before the process goes.

``install`` must run on the process's main thread, before any task: ``dotdo.init``
passes it to Ray as the ``worker_process_setup_hook`` of the workers it starts.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

__all__ = ["install", "on_terminate", "installed"]

log = logging.getLogger("dotdo")

_callbacks: list[Callable[[], None]] = []
_lock = threading.Lock()
_installed = False


def install() -> None:
    """Watch for SIGTERM in this process (call on the main thread; once is enough)."""
    global _installed
    if _installed:
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    _installed = True
    threading.Thread(target=_watch, args=(reader, writer, previous), daemon=True,
                     name="dotdo-signals").start()


def installed() -> bool:
    """Whether SIGTERM reaches ``on_terminate`` callbacks in this process."""
    return _installed


def on_terminate(callback: Callable[[], None]) -> None:
    """Call ``callback()`` (from a thread of its own) when this process gets SIGTERM."""
    with _lock:
        _callbacks.append(callback)


def _watch(reader: socket.socket, writer: socket.socket, previous: int) -> None:
    del writer  # kept alive by the fd the signal machinery holds
    while True:
        data = reader.recv(64)
        if previous != -1:  # whoever had the wakeup fd before still gets its bytes
            try:
                os.write(previous, data)
            except OSError:
                pass
        if signal.SIGTERM in data:
            with _lock:
                callbacks = list(_callbacks)
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # one object's failure is not the others'
                    log.exception("dotdo: a SIGTERM callback failed")
