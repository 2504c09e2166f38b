"""``Secret``: a parameter value that is used by the node and never written anywhere.

Wrap a token, a password or an API key in ``Secret(...)`` (or name the parameter in
``@node(secret=["token"])``) and:

- the node receives the plain value when it runs (the worker unwraps it);
- its cache key gets an HMAC-SHA256 of the value, keyed with the team's signing key (shared
  store) or with the home's own random key (:mod:`etherealfabric.hashing._secret`), never an
  unkeyed hash that could be checked against guesses offline;
- the journal, the store, ``show``, ``plan``, ``explain``, ``logs`` and the log show ``***``:
  its ``repr`` and ``str`` are ``Secret('***')``, and the worker replaces the plain text in
  errors, tracebacks and captured output;
- it cannot be stored as an output: while the store serializes a value (:func:`refusing_secrets`)
  pickling a ``Secret`` raises. Pickling it anywhere else is allowed, so it travels to worker
  processes, Dask and Celery workers (and so through the broker: see ``docs/security.md``).

Values are ``str`` or ``bytes`` (non-empty), so the text to redact is exact.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import DefinitionError

__all__ = [
    "MASK",
    "Secret",
    "SecretStorageError",
    "check_secret_names",
    "refusing_secrets",
    "wrap_secret_params",
]

MASK = "***"


class SecretStorageError(TypeError):
    """A :class:`Secret` was about to be written into the store (an output or a checkpoint)."""


_storing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "etherealfabric_storing", default=False
)


class Secret:
    """A secret parameter value: hashed with a key, shown as ``***``, never stored.

    ``Secret("tok-123")`` as a node input; the node gets ``"tok-123"``. :meth:`reveal` returns
    the value (the worker calls it). Equal secrets compare equal.
    """

    __slots__ = ("_value",)
    _value: str | bytes

    def __init__(self, value: str | bytes | Secret) -> None:
        if isinstance(value, Secret):
            value = value._value
        if not isinstance(value, (str, bytes)):
            raise TypeError(
                f"Secret takes a str or bytes value, got {type(value).__name__}; wrap each "
                "secret string separately"
            )
        if not value:
            raise ValueError("Secret takes a non-empty value")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str | bytes:
        """The plain value."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return type(self._value) is type(other._value) and self._value == other._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> tuple[Callable[..., Secret], tuple[str | bytes]]:
        if _storing.get():
            raise SecretStorageError(
                "a Secret cannot be stored: outputs and checkpoints are written to the store "
                "and the journal, and secrets never are. Return what you computed with it "
                "instead"
            )
        return Secret, (self._value,)


@contextlib.contextmanager
def refusing_secrets() -> Iterator[None]:
    """Inside the block (the store serializing a value), pickling a :class:`Secret` raises."""
    token = _storing.set(True)
    try:
        yield
    finally:
        _storing.reset(token)


def wrap_secret_params(
    fn: Callable[..., Any],
    names: Sequence[str],
    label: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` of a call to ``fn`` with the parameters ``names`` as Secrets.

    Defaults are filled in first, so a secret parameter that was not passed is wrapped too. A
    reference to another node's output cannot be secret (outputs are stored): refused.
    """
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise DefinitionError(f"node {label!r}: bad arguments: {exc}", nodes=(label,)) from None
    bound.apply_defaults()
    for name in names:
        value = bound.arguments[name]
        if not isinstance(value, (str, bytes, Secret)):
            raise DefinitionError(
                f"node {label!r}: secret parameter {name!r} must be a str or bytes literal, "
                f"got {type(value).__name__} (an output of another node is stored, so it "
                "cannot be a secret)",
                nodes=(label,),
            )
        bound.arguments[name] = Secret(value)
    return bound.args, dict(bound.kwargs)


def check_secret_names(
    fn: Callable[..., Any], names: Sequence[str] | None, where: str
) -> tuple[str, ...]:
    """The validated ``secret=`` names of ``@node``: named parameters of ``fn``."""
    if names is None:
        return ()
    chosen = (names,) if isinstance(names, str) else tuple(names)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = {n: p for n, p in inspect.signature(fn).parameters.items() if p.kind not in variadic}
    unknown = [n for n in chosen if n not in params]
    if unknown:
        raise DefinitionError(
            f"{where}: secret={list(chosen)} names {unknown}, which are not parameters of "
            f"{fn.__name__}; its parameters: {list(params)}"
        )
    return chosen
