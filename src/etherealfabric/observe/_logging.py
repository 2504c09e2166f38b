"""The engine's log: configured from ``ETHEREALFABRIC_LOG_LEVEL``, fed by run events."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, TextIO

from ..run._events import IGNORED, Event
from ..states import EventKind

__all__ = ["LogSubscriber", "configure_logging"]

LOGGER = "etherealfabric"
_HANDLER_NAME = "etherealfabric-default"
_lock = threading.Lock()

if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:
    _StreamHandler = logging.StreamHandler


class _DefaultHandler(_StreamHandler):
    """Prints the engine's records on the current ``sys.stderr``, unless another handler will.

    It decides per record, so a user who configures logging (``logging.basicConfig``, a handler
    of their own on ``etherealfabric``), before or after a run, sees each line once, in their
    format, and nothing of ours.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.set_name(_HANDLER_NAME)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if _handled_elsewhere(record, self):
            return
        self.stream = sys.stderr  # follow replacements: pytest's capsys, rich's live display
        super().emit(record)


def _handled_elsewhere(record: logging.LogRecord, handler: logging.Handler) -> bool:
    """Whether a handler other than ``handler`` is on the record's way up the loggers."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if any(h is not handler for h in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False


def configure_logging(level: str) -> logging.Logger:
    """Set the engine logger's level and give it its default handler, once.

    Only the ``etherealfabric`` logger is touched: never the root logger, so the user's own
    logging prints after a run exactly what it printed before.
    """
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    with _lock:
        if not any(isinstance(h, _DefaultHandler) for h in logger.handlers):
            logger.addHandler(_DefaultHandler())
    return logger


#: the kinds logged at DEBUG only (one or two events per node), as a set of plain members
_DEBUG_ONLY = frozenset((EventKind.NODE_CACHED, EventKind.NODE_STARTED, EventKind.NODE_SUCCEEDED))


class LogSubscriber:
    """Logs run events: runs at INFO, each node at DEBUG, retries at WARNING, failures at ERROR.

    Per-node progress is the progress display's job (``observe/_progress.py``); the log says
    when runs start and end and what went wrong. Whether cached and started nodes are logged
    is decided as the run starts (a subscriber is made per run): when the logger does not log
    DEBUG then, the bus makes no call per node for them (``run/_events.IGNORED``).
    """

    def __init__(self) -> None:
        self.log = logging.getLogger(f"{LOGGER}.run")
        if not self.log.isEnabledFor(logging.DEBUG):  # (as the run starts: made for each run)
            # nothing to log for a cached or started node: the bus makes no call per node
            self.node_cached = self.node_started = IGNORED  # type: ignore[method-assign,assignment]

    def node_cached(self, run_id: str, node: str, key: str, ts: float) -> None:
        """A ``node_cached`` event without its :class:`Event` (``EventBus.node_cached``)."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s: cached (key %s)", node, key[:12])

    def node_started(self, run_id: str, node: str, key: str, input_bytes: int, ts: float) -> None:
        """A ``node_started`` event without its :class:`Event` (``EventBus.node_started``)."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s: started (key %s)", node, key[:12])

    def __call__(self, event: Event) -> None:
        kind, log = event.kind, self.log
        if kind in _DEBUG_ONLY and not log.isEnabledFor(logging.DEBUG):
            return  # (most events: decided without reading members from EventKind, slow on 3.11)
        if kind is EventKind.NODE_CACHED:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: cached (key %s)", event.node, event.data["key"][:12])
        elif kind is EventKind.NODE_STARTED:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: started (key %s)", event.node, event.data["key"][:12])
        elif kind is EventKind.NODE_SUCCEEDED:
            if log.isEnabledFor(logging.DEBUG):
                result = event.data["result"]
                log.debug("%s: done in %.3fs", event.node, result.finished_at - result.started_at)
        elif kind is EventKind.NODE_FAILED:
            result = event.data["result"]
            log.error("%s: failed: %s", event.node, result.error)
        elif kind is EventKind.NODE_RETRYING:
            error = str(event.data.get("error") or "").partition("\n")[0]
            log.warning(
                "%s: attempt %s failed, retrying: %s", event.node, event.data["attempt"], error
            )
        elif kind is EventKind.NODE_UPSTREAM_FAILED:
            log.warning("%s: not run, upstream %r failed", event.node, event.data["upstream"])
        elif kind is EventKind.RUN_STARTED:
            log.info(
                "run %s of %r started: %d nodes",
                event.run_id,
                event.data["workflow"],
                event.data["nodes"],
            )
        elif kind is EventKind.RUN_FINISHED:
            c = event.data["counts"]
            log.info(
                "run %s %s: %d executed, %d cached, %d failed",
                event.run_id, event.data["status"], c["executed"], c["cached"], c["failed"],
            )  # fmt: skip
