"""Fewer garbage collections while a workflow runs (graph, keys, scheduling, journal).

A run allocates a few objects per node that live until its end (specs, keys, records,
outcomes), on top of the workflow's own nodes. CPython's full collections traverse every
object alive, and they come each time the long-lived objects have grown by a quarter: on a
10,000-node workflow they were about 15% of a warm run's time. For the duration of a run,
:func:`fewer_collections` moves everything alive at its start into the permanent generation
(``gc.freeze``: the workflow's definition is never traversed again until the run ends) and
raises the first threshold, so young collections are ten times rarer; cyclic garbage is still
collected. Both are put back as they were when the run ends, however it ends. A process that
froze objects itself, or that turned the collector off, is left exactly as it is.

At exit, CPython runs one full collection "if enabled" before it tears its modules down, over
every object still alive (a 10,000-node workflow and its results: 15-35 ms), then the
teardown's own collections, which run whatever the collector's state and finalize all cyclic
garbage (``__del__``, weakref callbacks) as before. A process that ran a workflow or defined
one turns the collector off as it exits (:func:`_skip_exit_collection`, an ``atexit`` hook),
which skips only the first. (Freezing everything instead would skip the teardown's too, but
then the globals of ``__main__`` are never freed: a file a script left open is not flushed.)
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["fewer_collections", "freeze_long_lived", "no_collections"]

#: The first generation's threshold during a run (CPython's default is 700).
YOUNG_THRESHOLD = 10_000
#: how many :func:`fewer_collections` that froze are active (what they unfreeze at their end)
_ACTIVE = [0]
#: whether :func:`_skip_exit_collection` is registered (once a process)
_AT_EXIT = [False]


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Freeze what is alive and collect young objects less often, for the duration."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield  # the process manages its collector itself: leave it alone
        return
    if not _AT_EXIT[0]:
        _AT_EXIT[0] = True
        atexit.register(_skip_exit_collection)
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], YOUNG_THRESHOLD), *thresholds[1:])
    _ACTIVE[0] += 1
    try:
        yield
    finally:
        _ACTIVE[0] -= 1
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextmanager
def no_collections() -> Iterator[None]:
    """No collection at all for the duration, inside :func:`fewer_collections` (elsewhere, or
    with the collector off, it does nothing): for the engine's own phases before a run's first
    node (its graph build, the records read up front), which run no node code and allocate
    what lives as long as the run. At 100,000 nodes, collections traversing those objects
    took 0.15 s of the two phases. What it allocated is frozen with the rest at its end (else
    the first collection after it would traverse all of it); cyclic garbage made meanwhile is
    collected once the run ends, as the rest."""
    if not _ACTIVE[0] or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def freeze_long_lived() -> None:
    """Inside :func:`fewer_collections`: freeze what is alive now too (a run calls it once
    its graph is built and its records read up front, which live as long as the run: at
    100,000 nodes a full collection traversing them took 0.8 s). Undone with the rest when
    that block ends; outside one (or with the collector off) it does nothing."""
    if _ACTIVE[0] and gc.isenabled():
        gc.freeze()


def _skip_exit_collection() -> None:
    """At interpreter exit: turn the collector off, which skips CPython's collection before
    its teardown, not the teardown's own (module docstring); a process that froze objects
    itself is left alone."""
    if not gc.get_freeze_count():
        gc.disable()
