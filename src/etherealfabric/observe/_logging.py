"""The engine's log: configured from ``ETHEREALFABRIC_LOG_LEVEL``, fed by run events."""

from __future__ import annotations

import logging
import sys

from ..run._events import Event

__all__ = ["LogSubscriber", "configure_logging"]

LOGGER = "etherealfabric"
_HANDLER_NAME = "etherealfabric-default"


def configure_logging(level: str) -> logging.Logger:
    """Set the engine logger's level; add a stderr handler unless logging is already set up."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    has_own = any(getattr(h, "name", None) == _HANDLER_NAME for h in logger.handlers)
    if not has_own and not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        logger.addHandler(handler)
    return logger


class LogSubscriber:
    """Logs run events: runs at INFO, each node at DEBUG, failures at ERROR.

    Per-node progress is the progress display's job (``monitor.progress``); the log says
    when runs start and end and what went wrong.
    """

    def __init__(self) -> None:
        self.log = logging.getLogger(f"{LOGGER}.run")

    def __call__(self, event: Event) -> None:
        kind, log = event.kind, self.log
        if kind == "node_cached":
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: cached (key %s)", event.node, event.data["key"][:12])
        elif kind == "node_started":
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: started (key %s)", event.node, event.data["key"][:12])
        elif kind == "node_succeeded":
            if log.isEnabledFor(logging.DEBUG):
                result = event.data["result"]
                log.debug("%s: done in %.3fs", event.node, result.finished_at - result.started_at)
        elif kind == "node_failed":
            result = event.data["result"]
            log.error("%s: failed: %s", event.node, result.error)
        elif kind == "node_upstream_failed":
            log.warning("%s: not run, upstream %r failed", event.node, event.data["upstream"])
        elif kind == "run_started":
            log.info(
                "run %s of %r started: %d nodes",
                event.run_id,
                event.data["workflow"],
                event.data["nodes"],
            )
        elif kind == "run_finished":
            c = event.data["counts"]
            log.info(
                "run %s %s: %d executed, %d cached, %d failed",
                event.run_id, event.data["status"], c["executed"], c["cached"], c["failed"],
            )  # fmt: skip
