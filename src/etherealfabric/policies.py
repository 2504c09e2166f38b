"""Retry policies: how often and when a failed node is tried again (run by tenacity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import DefinitionError

__all__ = ["RetryPolicy", "as_retry_policy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a failing node up to ``retries`` more times.

    Waits grow exponentially from ``backoff`` seconds (times ``multiplier`` each attempt, at
    most ``max_backoff``) with up to ``jitter`` seconds of random jitter. Only exceptions that
    are instances of ``retry_on`` and not of ``never_retry`` are retried.
    """

    retries: int = 0
    backoff: float = 0.0
    multiplier: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    never_retry: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise DefinitionError(f"RetryPolicy.retries must be an int >= 0, got {self.retries!r}")
        for name in ("backoff", "max_backoff", "jitter"):
            if getattr(self, name) < 0:
                raise DefinitionError(f"RetryPolicy.{name} must be >= 0")

    @property
    def attempts(self) -> int:
        """The most attempts a node gets: the first try plus the retries."""
        return self.retries + 1

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is of a kind this policy retries."""
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.never_retry)


def as_retry_policy(value: Any, *, where: str) -> RetryPolicy | None:
    """Accept ``None``, an int number of retries, or a :class:`RetryPolicy`."""
    if value is None or isinstance(value, RetryPolicy):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return RetryPolicy(retries=value)
    raise DefinitionError(f"{where}: retries must be an int >= 0 or a RetryPolicy, got {value!r}")
