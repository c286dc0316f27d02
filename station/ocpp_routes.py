"""One route map per ChargePoint class instead of one per connection.

The `ocpp` library's ChargePoint builds `self.route_map` in `__init__`: a dict per action holding bound
methods, for every instance. Every station of a fleet simulation (and every connection of the embedded
CSMS) has the same handlers, so that is ~4 KiB per connection of identical content (bench/README.md,
the footprint diet). `slim_charge_point` replaces it with a view over a map built once per class that
binds a handler when a call is routed (the library reads `route_map[action]["_on_action"]`, `.get(
"_skip_schema_validation")` and `["_after_action"]`; a fresh small dict per routed call answers all three).
Hand-written because the library has no hook for it; the map itself is still its `create_route_map`.

It also swaps the library's `self._response_queue` (an `asyncio.Queue`, ~2.2 KiB idle) for a
`chargeagent.lean.LeanQueue`: the library only calls its `put_nowait` and `get`, which that has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ocpp.routing import create_route_map

from chargeagent.lean import LeanQueue

_NOT_BOUND = frozenset({"_skip_schema_validation"})


_CLASS_ROUTES: dict[type, dict[str, dict[str, Any]]] = {}


def _class_routes(cls: type) -> dict[str, dict[str, Any]]:
    routes = _CLASS_ROUTES.get(cls)
    if routes is None:
        routes = _CLASS_ROUTES[cls] = create_route_map(cls)  # functions, not bound methods
    return routes


class _BoundRoutes(Mapping[str, dict[str, Any]]):
    __slots__ = ("_owner", "_routes")

    def __init__(self, owner: object, routes: dict[str, dict[str, Any]]) -> None:
        self._owner, self._routes = owner, routes

    def __getitem__(self, action: str) -> dict[str, Any]:
        entry = self._routes[action]
        return {k: v if k in _NOT_BOUND else v.__get__(self._owner) for k, v in entry.items()}

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)


def slim_charge_point(charge_point: Any) -> None:
    """Call right after the library's `ChargePoint.__init__` (before any call): its per-instance route map
    is dropped for the class's, and its response queue (same FIFO) allocates no deques."""
    charge_point.route_map = _BoundRoutes(charge_point, _class_routes(type(charge_point)))
    charge_point._response_queue = LeanQueue()
