"""Which route each alias takes now, switched atomically, and the requests in flight on each.

A request takes a :class:`Lease` on its alias's route when it arrives and gives it back when its
last byte is sent. Switching a route and taking a lease hold the same lock, so once
:meth:`Router.switch` returns no new request reaches the old route; :meth:`Router.wait_idle`
then waits for the ones already on it (the drain before an adapter is unloaded or a replica set
is stopped). That is why an alias move drops no request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sluice.serving.vllm.plan import Route


class NoRoute(LookupError):
    """The alias serves nothing yet."""


@dataclass(frozen=True)
class Lease:
    route: Route


class Router:
    """Alias → :class:`Route`, and the leases held on each (set, engine model); thread-safe."""

    def __init__(self, on_switch: Callable[[Route], None] | None = None) -> None:
        self.on_switch = on_switch  # e.g. telemetry's served-version gauge
        self._routes: dict[str, Route] = {}
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._changed = threading.Condition()

    def routes(self) -> dict[str, Route]:
        with self._changed:
            return dict(self._routes)

    def switch(self, route: Route) -> Route | None:
        """Route the alias's new requests to ``route``; the route it had."""
        with self._changed:
            previous = self._routes.get(route.alias)
            self._routes[route.alias] = route
        if self.on_switch is not None:
            self.on_switch(route)
        return previous

    def remove(self, alias: str) -> Route | None:
        """No new request reaches the alias (it names nothing any more); the route it had."""
        with self._changed:
            return self._routes.pop(alias, None)

    def acquire(self, alias: str) -> Lease:
        with self._changed:
            route = self._routes.get(alias)
            if route is None:
                raise NoRoute(alias)
            self._in_flight[(route.set_key, route.engine_model)] += 1
            return Lease(route)

    def release(self, lease: Lease) -> None:
        with self._changed:
            key = (lease.route.set_key, lease.route.engine_model)
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]
            self._changed.notify_all()

    def in_flight(self, set_key: str, engine_model: str | None = None) -> int:
        with self._changed:
            return self._count(set_key, engine_model)

    def _count(self, set_key: str, engine_model: str | None) -> int:
        return sum(n for (key, model), n in self._in_flight.items()
                   if key == set_key and (engine_model is None or model == engine_model))

    def wait_idle(self, set_key: str, engine_model: str | None = None, timeout: float = 600) -> bool:
        """Wait until no lease is held on the set (on that engine model of it); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._count(set_key, engine_model):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True
