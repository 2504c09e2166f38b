"""Values that carry code: functions, classes, bound methods, partials, instances of user classes.

A value's behaviour is part of its identity: ``Celsius(50)`` and ``Fahrenheit(50)`` are the
same float, but not the same argument. So the encodings here write the code a value carries,
by its code fingerprint (``T`` is ``module.qualname``, scripts named after their file)::

    function T fingerprint | class T fingerprint     user code
    function T | class T                              library code, known by its name
    method <function> <self>                          a bound method of user code
    partial <function> <args> <keywords>              functools.partial, any target
    user T fingerprint <the type's encoding>          an instance of a user class (in code
                                                      mode: only the type's encoding)
    reduce <callable> <args> <state> <items> <pairs>  ... whose type has no other encoding
    cycle depth                                       an object met again inside itself

An instance of a user class is its class's fingerprint followed by what the type would be
without this rule: a dataclass's fields, an enum's value, a float subclass's float; else its
``__reduce_ex__(4)`` parts (for a plain object: ``copyreg.__newobj__``, its class, and its
``__dict__`` hashed as a dict, so attribute order and set order do not matter). No pickle is
involved, so an instance of a class defined in a workflow file hashes the same in every
process. Library objects without a handler still go through cloudpickle (with a warning).

In code mode (an encoder with a :class:`~etherealfabric.hashing._encoder.CodeSink`, for
fingerprints), functions and classes are written by name only and handed to the sink, which
follows them as code pieces of their own. The handlers are registered by
:mod:`etherealfabric.hashing._fingerprint`, which passes in the fingerprint function.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

from ..errors import HashingError
from ._encoder import (
    Encoder,
    encode_pickled,
    handler_after,
    register_builtin,
    register_shape,
)
from ._usercode import is_user_code, module_label, qualified_name

__all__ = ["cycle_reference", "encode_reduced", "register_code_handlers"]

_fingerprint: Callable[[Any], str] = lambda obj: ""  # noqa: E731  (set on registration)
_MAX_DEPTH = 200


def register_code_handlers(fingerprint: Callable[[Any], str]) -> None:
    """Register the handlers of this module; ``fingerprint(obj)`` is a code digest."""
    global _fingerprint
    _fingerprint = fingerprint
    register_builtin(
        {
            types.FunctionType: _enc_code,
            types.BuiltinFunctionType: _enc_code,
            type: _enc_code,
            types.MethodType: _enc_method,
            functools.partial: _enc_partial,
            types.ModuleType: _enc_module,
        }
    )
    register_shape(_is_user_type, _enc_user_object, first=True)


def _is_user_type(tp: type) -> bool:
    return is_user_code(tp)


def _enc_code(value: Any, encoder: Encoder) -> None:
    """Functions and classes: by qualified name, plus the code fingerprint for user code.

    Library code that its name does not identify (lambdas, local functions, builtin methods
    bound to an object) goes through cloudpickle instead (in code mode: by name).
    """
    user = is_user_code(value)
    tag = "class" if isinstance(value, type) else "function"
    if user:
        encoder.tag(tag)
        encoder.text(qualified_name(value))
        if encoder.code is None:
            encoder.text(_fingerprint(value))
        else:  # code mode: the fingerprint follows it; which one of its name sits here
            from ._identity import code_identity, shares_its_name  # (_source imports users)

            encoder.code.code(value)
            if shares_its_name(value):
                encoder.text(code_identity(value))
        return
    name = f"{getattr(value, '__module__', None)}.{getattr(value, '__qualname__', '?')}"
    bound = getattr(value, "__self__", None)
    if encoder.code is not None:
        encoder.code.library(getattr(value, "__module__", None))
    elif "<" in name or not (bound is None or isinstance(bound, types.ModuleType)):
        encode_pickled(value, encoder)
        return
    encoder.tag(tag)
    encoder.text(name)


def _enc_method(value: types.MethodType, encoder: Encoder) -> None:
    func, owner = value.__func__, value.__self__
    carries_code = is_user_code(func) or is_user_code(
        owner if isinstance(owner, type) else type(owner)
    )
    if encoder.code is None and not carries_code:
        encode_pickled(value, encoder)  # a library object's method, as before
        return
    encoder.tag("method")
    encoder.value(func)
    encoder.value(owner)


def _enc_partial(value: functools.partial[Any], encoder: Encoder) -> None:
    encoder.tag("partial")
    encoder.value(value.func)
    encoder.value(value.args)
    encoder.value(value.keywords)


def _enc_module(value: types.ModuleType, encoder: Encoder) -> None:
    if encoder.code is None:
        encode_pickled(value, encoder)
        return
    encoder.code.code(value)
    encoder.tag("module")
    encoder.text(module_label(value.__name__))


def _enc_user_object(value: Any, encoder: Encoder) -> None:
    tp = type(value)
    if cycle_reference(value, encoder):
        return
    if encoder.code is None:
        encoder.tag("user")
        encoder.text(qualified_name(tp))
        encoder.text(_fingerprint(tp))
    else:  # the class is followed as a piece of its own; the value is as before
        encoder.code.code(tp)
    inner = handler_after(tp)
    encoder.active.append(id(value))
    try:
        if inner is encode_pickled:
            encode_reduced(value, encoder)
        else:
            inner(value, encoder)
    except HashingError as exc:
        if str(exc).startswith("cannot hash a value of type"):
            raise HashingError(f"cannot hash a value of type {qualified_name(tp)}: {exc}") from exc
        raise
    finally:
        encoder.active.pop()


def cycle_reference(value: object, encoder: Encoder) -> bool:
    """Write a back reference if ``value`` is being encoded already (True), else nothing."""
    if id(value) not in encoder.active:
        return False
    depth = len(encoder.active) - max(i for i, v in enumerate(encoder.active) if v == id(value))
    encoder.tag("cycle")
    encoder.integer(depth)
    return True


def encode_reduced(value: object, encoder: Encoder) -> None:
    """``value`` by its ``__reduce_ex__(4)`` parts, each encoded canonically (no pickling)."""
    if len(encoder.active) > _MAX_DEPTH:
        raise HashingError(f"cannot hash a value of type {_name(value)}: it is nested too deeply")
    try:
        reduced = value.__reduce_ex__(4)
    except Exception as exc:
        raise HashingError(
            f"cannot hash a value of type {_name(value)}: it cannot be reduced "
            f"({type(exc).__name__}: {exc}). Register a hasher with "
            f"etherealfabric.hashing._values.register_value_hasher({type(value).__name__}, fn)"
        ) from exc
    if isinstance(reduced, str):  # a global singleton, by name
        encoder.tag("global")
        encoder.text(reduced)
        return
    func, args, state, items, pairs = (*reduced, None, None, None, None)[:5]
    encoder.tag("reduce")
    encoder.value(func)
    encoder.value(args)
    encoder.value(state)
    encoder.value(None if items is None else list(items))
    encoder.value(None if pairs is None else list(pairs))


def _name(value: object) -> str:
    tp = type(value)
    return qualified_name(tp) if is_user_code(tp) else f"{tp.__module__}.{tp.__qualname__}"
