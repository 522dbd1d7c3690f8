"""One network thread driving many paho clients through epoll.

A few hundred devices with ``loop_start()`` each would mean a few hundred
threads and two extra socket-pair descriptors per client. Instead every client
registers its socket here through paho's ``on_socket_*`` callbacks and this one
thread calls ``loop_read``/``loop_write``/``loop_misc``. Other threads may call
``client.publish`` (paho queues the packet and asks for write interest); all
connects and reconnects run on this thread through :meth:`NetLoop.call_soon`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

TICK_S: Final = 0.1
_READ: Final = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP


class FdHandler(Protocol):
    """A socket this loop drives without paho (the load-test client, ``rawlink.py``)."""

    def on_readable(self) -> None: ...

    def on_writable(self) -> None: ...


class NetLoop:
    """The single I/O thread of a fleet."""

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._clients: dict[int, mqtt.Client] = {}
        self._handlers: dict[int, FdHandler] = {}
        self._tasks: deque[Callable[[], None]] = deque()
        self._tickers: list[Callable[[float], None]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._ep.register(self._wake_r, select.EPOLLIN)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-netloop", daemon=True)

    # --- wiring -------------------------------------------------------------------------------
    def attach(self, client: mqtt.Client) -> None:
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    def add_fd(self, fd: int, handler: FdHandler) -> None:
        """Drive ``fd``: ``handler.on_readable``/``on_writable`` run on this thread."""
        self._handlers[fd] = handler
        self._ep.register(fd, _READ)

    def remove_fd(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._ep.unregister(fd)

    def want_write(self, fd: int, on: bool) -> None:
        """Ask for (or stop asking for) writability of a handler's socket (any thread)."""
        with contextlib.suppress(OSError, ValueError, FileNotFoundError):
            self._ep.modify(fd, _READ | select.EPOLLOUT if on else _READ)

    def every_tick(self, ticker: Callable[[float], None]) -> None:
        """Call ``ticker(monotonic_now)`` on the loop thread about every TICK_S."""
        self._tickers.append(ticker)

    def call_soon(self, task: Callable[[], None]) -> None:
        self._tasks.append(task)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()
        self._clients[fd] = client
        self._ep.register(fd, _READ)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()
        if self._clients.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._ep.unregister(fd)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile
            self._ep.modify(sock.fileno(), _READ | select.EPOLLOUT)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._ep.modify(sock.fileno(), _READ)

    # --- lifetime -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.call_soon(lambda: None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self._ep.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        last_tick = 0.0
        while not self._stop.is_set():
            try:
                events = self._ep.poll(TICK_S)
            except OSError:
                break
            for fd, mask in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                handler = self._handlers.get(fd)
                if handler is not None:
                    if mask & _READ:
                        self._guarded(handler.on_readable)
                    if mask & select.EPOLLOUT and fd in self._handlers:
                        self._guarded(handler.on_writable)
                    continue
                client = self._clients.get(fd)
                if client is None:
                    continue
                if mask & _READ:
                    client.loop_read(64)
                if mask & select.EPOLLOUT and fd in self._clients:
                    client.loop_write()
            while self._tasks:
                self._guarded(self._tasks.popleft())
            now = time.monotonic()
            if now - last_tick >= TICK_S:
                last_tick = now
                for client in list(self._clients.values()):
                    client.loop_misc()
                    if client.want_write():  # a publish raced with unregister-write
                        client.loop_write()
                for ticker in self._tickers:
                    self._guarded(functools.partial(ticker, now))

    @staticmethod
    def _guarded(task: Callable[[], None]) -> None:
        try:
            task()
        except Exception:  # the outermost loop of the network thread: log, keep running
            log.exception("event=netloop_task_failed")
