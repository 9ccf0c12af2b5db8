"""The requests waiting for a batch: a bounded first-in-first-out queue the engine's worker blocks on.

Bounded, so that a server under more load than it can generate answers at once with HTTP 429
(:class:`QueueFull`) instead of holding every request — and its prompt — until clients time out.
A waiting request whose client went away is taken out (:meth:`WaitingRequests.remove`), so it
neither holds a place nor gets generated.

Besides requests, the worker is woken for a model swap (:data:`WAKE`) and told to end
(:data:`STOP`) once everything queued before :meth:`WaitingRequests.close` has been taken.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

Item = TypeVar("Item")
WAKE, STOP = object(), object()


class QueueFull(RuntimeError):
    """As many requests as ``serving.max_queued_requests`` already wait: retry later."""

    def __init__(self, limit: int):
        super().__init__(f"the server is busy: {limit} requests are already waiting for a batch "
                         "(serving.max_queued_requests)")
        self.limit = limit


class QueueClosed(RuntimeError):
    """The engine is stopping: nothing new is queued."""


class WaitingRequests(Generic[Item]):
    """At most ``limit`` items, in arrival order; thread-safe."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"max_queued_requests must be at least 1, got {limit}")
        self.limit = limit
        self._items: deque[Item] = deque()
        self._changed = threading.Condition()
        self._woken = self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item) -> None:
        """Queue ``item``; :class:`QueueFull` when ``limit`` items wait, :class:`QueueClosed` once closed."""
        with self._changed:
            if self._closed:
                raise QueueClosed("the server is shutting down")
            if len(self._items) >= self.limit:
                raise QueueFull(self.limit)
            self._items.append(item)
            self._changed.notify()

    def remove(self, item: Item) -> bool:
        """Take ``item`` out if it still waits; False if the worker took it already (or it never came)."""
        with self._changed:
            for index, waiting in enumerate(self._items):
                if waiting is item:
                    del self._items[index]
                    return True
            return False

    def wake(self) -> None:
        """Make the worker's next :meth:`next` return :data:`WAKE` (a model waits to be swapped in)."""
        with self._changed:
            self._woken = True
            self._changed.notify()

    def close(self) -> None:
        """Refuse new items; the worker gets :data:`STOP` once the queued ones are taken."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def next(self) -> Item | object:
        """Block until there is something to do: :data:`WAKE`, the oldest item, or :data:`STOP`."""
        with self._changed:
            while True:
                if self._woken:
                    self._woken = False
                    return WAKE
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    return STOP
                self._changed.wait()

    def take(self, timeout: float) -> Item | None:
        """The oldest item, waiting at most ``timeout`` seconds for one; None if none came (or closed)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._changed.wait(remaining)
            return self._items.popleft()

    def drain(self) -> list[Item]:
        """Every item still waiting, removed."""
        with self._changed:
            items, self._items = list(self._items), deque()
            return items
