"""Retry policies: how often and when a failed node is tried again (run by tenacity)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import DefinitionError

__all__ = [
    "SKIP",
    "ErrorHandler",
    "NodeError",
    "RetryPolicy",
    "as_retry_policy",
    "check_handler",
    "check_timeout",
]


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


class _Skip:
    """Returned by an ``on_error`` handler: skip the node and everything that depends on it."""

    def __repr__(self) -> str:
        return "SKIP"

    def __reduce__(self) -> str:
        return "SKIP"


SKIP = _Skip()


@dataclass(frozen=True)
class NodeError:
    """What an ``on_error`` handler is told about a node that failed for good."""

    node: str
    error: str
    attempts: int
    traceback: str
    exception: BaseException | None = None


#: ``on_error(error)`` returns fallback outputs (a dict), ``SKIP``, or ``None`` / raises to
#: let the failure stand.
ErrorHandler = Callable[[NodeError], "Mapping[str, Any] | _Skip | None"]


def check_handler(value: Any, *, where: str) -> ErrorHandler | None:
    """Accept ``None`` or a callable ``on_error`` handler."""
    if value is None:
        return None
    if not callable(value):
        raise DefinitionError(
            f"{where}: on_error must be a callable taking a NodeError, got {value!r}"
        )
    import inspect

    try:
        inspect.signature(value).bind(None)
    except ValueError:  # no signature to read (a builtin): it is called as it is
        pass
    except TypeError as exc:  # (an instance method of a class node: `self` and the error)
        raise DefinitionError(
            f"{where}: on_error must take one argument, the NodeError, but "
            f"{getattr(value, '__qualname__', value)!r} cannot be called so ({exc}); on a "
            "class node, make it a @staticmethod"
        ) from None
    return value  # type: ignore[no-any-return]


def check_flag(value: Any, *, name: str, where: str) -> bool:
    """A yes/no option: text such as ``"false"`` (from the environment or a file) is refused,
    where ``bool()`` would take it as true."""
    if isinstance(value, (str, bytes)):
        raise DefinitionError(f"{where}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_timeout(value: Any, *, where: str) -> float | None:
    """Accept ``None`` or a positive number of seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise DefinitionError(f"{where}: timeout must be a number of seconds > 0, got {value!r}")
