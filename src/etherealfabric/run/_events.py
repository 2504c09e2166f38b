"""The run-event stream: the scheduler emits, everything the user sees subscribes.

Events, in the order a run produces them:

=====================  =========================================================  ============
kind                   meaning                                                    ``data``
=====================  =========================================================  ============
``run_started``        a run began                                                workflow, nodes, backend, upstreams
``node_cached``        a node's outputs were found in the cache; it won't run     key
``node_started``       a node began its first attempt (see below)                key
``node_retrying``      an attempt failed and another follows (run/_retries.py)    attempt, error
``node_succeeded``     a node ran and its outputs are stored                      key, duration, attempts
``node_failed``        a node failed for good                                     key, result
``node_fallback``      its ``on_error`` handler supplied fallback outputs         key, result
``node_skipped``       its handler (or an upstream one) said ``SKIP``             error or upstream, upstreams, key, result
``node_upstream_failed``  a node cannot run because an input node failed          upstream, upstreams
``node_cancelled``     the run stopped before the node ended (or started)         running (it had started)
``run_finished``       the run ended                                              status, counts
=====================  =========================================================  ============

Subscribe with :meth:`EventBus.subscribe` (or ``execute(subscribers=[...])``); a subscriber
that raises is logged and kept out of the run's way, except the journal recorder, whose failure
fails the run. A subscriber's error is logged once per run (its name, the event, the error and
its traceback), the first time: it is still called for the events that follow, and its later
errors are not logged (one bus per run: a broken listener does not log a line per node). A
subscriber may also have a method ``node_cached(run_id, node, key, ts)``: when every
subscriber has one, a ``node_cached`` event (one per node of a warm run) is delivered
through it, without an :class:`Event` object (:meth:`EventBus.node_cached`); likewise a
method ``node_started(run_id, node, key, input_bytes, ts)`` for ``node_started`` events (one
per node of a cold run: :meth:`EventBus.node_started`). A node is started when its first
attempt begins, on the threads and processes backends (a node queued behind busy workers is
not, yet: run/_scheduler.py), and when it is handed to the cluster on the others. A subscriber whose ``node_cached``
(or ``node_started``) is :data:`IGNORED` takes no such call at all (the log's, when it does
not log at DEBUG as the run starts: ``observe/_logging.py``); when what is left is one
critical subscriber's (the journal recorder's), the bus calls it directly. The kinds are
:class:`~etherealfabric.states.EventKind`; the status a kind puts its node in is
``kind.final_status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MethodType
from typing import Any, cast

from ..states import EventKind

__all__ = [
    "IGNORED",
    "CachedHandler",
    "Event",
    "EventBus",
    "EventKind",
    "StartedHandler",
    "Subscriber",
]

log = logging.getLogger("etherealfabric.events")


#: stands for "not given" in :class:`Event`'s constructor (``data`` then is a new dict, ``ts``
#: the time of the call)
_UNSET: Any = object()


@dataclass(frozen=True, slots=True, init=False)
class Event:
    """One thing that happened in a run."""

    kind: EventKind
    run_id: str
    node: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def __init__(
        self,
        kind: EventKind,
        run_id: str,
        node: str | None = None,
        data: Mapping[str, Any] = _UNSET,
        ts: float = _UNSET,
    ) -> None:
        # the dataclass's own frozen __init__, at half its cost (a run makes an event or two
        # per node, 2.7 us each): each field set through its slot, no __post_init__ call
        if type(kind) is not EventKind:  # a plain string: accepted, checked, converted
            kind = EventKind(kind)
        _SET_KIND(self, kind)
        _SET_RUN_ID(self, run_id)
        _SET_NODE(self, node)
        _SET_DATA(self, {} if data is _UNSET else data)
        _SET_TS(self, time.time() if ts is _UNSET else ts)


# the slots' own setters: a frozen instance refuses setattr, its constructor sets them so
_SET_KIND, _SET_RUN_ID, _SET_NODE, _SET_DATA, _SET_TS = (
    Event.__dict__[name].__set__ for name in ("kind", "run_id", "node", "data", "ts")
)


Subscriber = Callable[[Event], None]
#: a subscriber's optional ``node_cached(run_id, node, key, ts)``: ``node_cached`` events
#: without an :class:`Event` each (:meth:`EventBus.node_cached`)
CachedHandler = Callable[[str, str, str, float], None]
#: a subscriber's optional ``node_started(run_id, node, key, input_bytes, ts)``:
#: ``node_started`` events without an :class:`Event` each (:meth:`EventBus.node_started`)
StartedHandler = Callable[[str, str, str, int, float], None]


def IGNORED(*args: Any) -> None:
    """A subscriber's ``node_cached`` or ``node_started`` that is this function takes no
    such call: the bus leaves it out (those events are one per node)."""


class EventBus:
    """Delivers each event to every subscriber, in the order they subscribed.

    A subscriber that raises is logged (once: its first error) and kept out of the run's way,
    except a *critical* one (the journal recorder): its failure is raised to the scheduler,
    which fails the run, because a run whose journal misses rows must not carry on as if
    nothing happened.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[Subscriber, bool]] = []
        #: the ids of the subscribers whose error was logged already (once per bus: per run)
        self._failed: set[int] = set()
        #: each subscriber's ``node_cached`` method, if every one has one (else None)
        self._cached: list[tuple[CachedHandler, bool]] | None = []
        #: ...and its ``node_started`` method
        self._started: list[tuple[StartedHandler, bool]] | None = []
        #: the one ``node_cached`` method to call, when that is all (a critical one's)
        self._cached_one: CachedHandler | None = None

    def subscribe(self, callback: Subscriber, *, critical: bool = False) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        entry = (callback, critical)
        self._subscribers.append(entry)
        self._index_cached()

        def remove() -> None:
            self._subscribers.remove(entry)
            self._index_cached()

        return remove

    def _index_cached(self) -> None:
        cached = self._cached = cast(
            "list[tuple[CachedHandler, bool]] | None", self._methods("node_cached")
        )
        self._started = cast(
            "list[tuple[StartedHandler, bool]] | None", self._methods("node_started")
        )
        # a critical handler alone: called as it is (its error is raised either way)
        self._cached_one = cached[0][0] if cached and len(cached) == 1 and cached[0][1] else None

    def _methods(self, name: str) -> list[tuple[Callable[..., None], bool]] | None:
        """Each subscriber's method ``name`` (with its criticality), if every one has one;
        those that are :data:`IGNORED` left out."""
        found = [(getattr(cb, name, None), critical) for cb, critical in self._subscribers]
        if any(method is None for method, _ in found):
            return None
        methods = cast("list[tuple[Callable[..., None], bool]]", found)
        return [(method, critical) for method, critical in methods if method is not IGNORED]

    def node_cached(
        self, run_id: str, node: str, key: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Emit ``node_cached`` (data: the key, and ``extra``), a warm run's one event per
        node: to each subscriber's ``node_cached(run_id, node, key, ts)`` method when every
        subscriber has one and there is no ``extra`` (no :class:`Event` made), else as an
        :class:`Event`. Errors as :meth:`emit`."""
        one = self._cached_one
        if one is not None and not extra:
            one(run_id, node, key, time.time())
            return
        handlers = self._cached
        if handlers is None or extra:
            self.emit(Event(EventKind.NODE_CACHED, run_id, node, {"key": key, **(extra or {})}))
            return
        _deliver(handlers, self._failed, "node_cached", run_id, node, key, time.time())

    def node_started(
        self,
        run_id: str,
        node: str,
        key: str,
        input_bytes: int,
        extra: Mapping[str, Any],
        ts: float | None = None,
    ) -> None:
        """Emit ``node_started`` (data: the key, ``input_bytes`` and ``extra``; ``ts``: when it
        started, default now), a cold run's one per node: to each subscriber's
        ``node_started(run_id, node, key, input_bytes, ts)`` method when every subscriber has
        one and there is no ``extra`` (no :class:`Event` made), else as an :class:`Event`.
        Errors as :meth:`emit`."""
        handlers = self._started
        if handlers is None or extra:
            data = {"key": key, "input_bytes": input_bytes, **extra}
            if ts is None:
                self.emit(Event(EventKind.NODE_STARTED, run_id, node, data))
            else:
                self.emit(Event(EventKind.NODE_STARTED, run_id, node, data, ts))
            return
        _deliver(
            handlers, self._failed, "node_started", run_id, node, key, input_bytes,
            time.time() if ts is None else ts,
        )  # fmt: skip

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber; then raise a critical subscriber's error."""
        _deliver(self._subscribers, self._failed, event.kind, event)


def _deliver(
    handlers: Sequence[tuple[Callable[..., None], bool]], failed: set[int], what: str, *args: Any
) -> None:
    """Call every handler with ``args``; a failing one is logged the first time (``failed``:
    the subscribers logged already), except a critical one's error, raised once all were
    called."""
    failure: BaseException | None = None
    for handler, critical in handlers:
        try:
            handler(*args)
        except Exception as exc:
            if critical:
                failure = failure or exc
            else:
                _logged(handler, failed, what, exc)
    if failure is not None:
        raise failure


def _logged(handler: Callable[..., None], failed: set[int], what: str, exc: Exception) -> None:
    """Log a subscriber's error with its traceback, unless one of its errors was logged
    already: a subscriber is one whether called with an Event or through a method."""
    subscriber = handler.__self__ if isinstance(handler, MethodType) else handler
    if id(subscriber) in failed:
        return
    failed.add(id(subscriber))
    name = getattr(subscriber, "__qualname__", None) or type(subscriber).__qualname__
    module = getattr(subscriber, "__module__", None) or type(subscriber).__module__
    log.error(
        "event subscriber %s failed on %s: %s: %s (the run goes on; its later errors in this "
        "run are not logged)",
        f"{module}.{name}" if module and module != "builtins" else name,
        what,
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
