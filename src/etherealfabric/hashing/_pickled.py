"""The code behind a pickled value: what its pickle names by reference, and a digest of it.

Pickle writes importable classes and functions by *reference* (module and qualified name),
so two runs of a node that returns ``Model(2)`` pickle to the same bytes after ``Model.predict``
was edited, and a scikit-learn pipeline holding ``FunctionTransformer(features.add)`` pickles
to the same bytes after ``features.add`` was. Whatever is pickled for a digest (a parameter
with no canonical hasher, an output stored with ``pickle``, ``cloudpickle`` or ``model``)
is pickled by a recording pickler, which notes the classes and functions the pickler saves
(its ``reducer_override`` hook: the C pickler calls it for objects that are not of an exact
builtin type, so a list of ints or a dict of strings costs nothing more) and writes the same
bytes as ``pickle.dump``/``cloudpickle.dump``. An output is noted as it is written
(:func:`dump_pickle` inside :func:`noting`), so it is pickled once. The names, as
:func:`ref_names` gives them:

- ``module:qualname`` for user code (:func:`~._usercode.is_user_code`): it counts by its
  code fingerprint (which covers the helpers it calls and the packages it reaches);
- the top-level module name for an installed package: it counts by the distribution's version,
  as ``ETHEREALFABRIC_PACKAGE_VERSIONS`` says (:mod:`._packages`; ``off``: not at all);
- nothing for the standard library, EtherealFabric itself (as in code fingerprints) and
  cloudpickle's own helpers.

:func:`refs_digest` turns names into a digest with the code and versions *of this process*:
a parameter's digest includes it (``_encoder.encode_pickled``), and an output's record keeps
the names (``code``), which a consumer's key resolves when it is computed (``plan._keys``): the
consumer of a cached producer's output still sees an edit of the class behind it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import io
import sys
import types
from collections.abc import Iterable
from typing import Any

from ..define._context import Setting
from . import _encoder
from ._builtins import hash_plain
from ._fingerprint import code_fingerprint, generation
from ._packages import is_stdlib, package_parts, package_versions
from ._usercode import (
    defined_in,
    is_user_code,
    is_user_module,
    is_user_top,
    qualified_name,
    script_module,
)

__all__ = [
    "PICKLING",
    "code_parts",
    "dump_pickle",
    "noting",
    "output_refs",
    "pickle_with_refs",
    "record_code",
    "ref_names",
    "refs_digest",
    "with_code",
]

_CODE_TYPES = (type, types.FunctionType, types.BuiltinFunctionType)
#: serializers whose bytes are a pickle (by-reference classes and functions inside)
PICKLING = frozenset({"pickle", "cloudpickle", "model"})
_MISSING = "missing"
#: the engine, and the pickler's own helpers (how it writes, not what the value does)
_NOT_KEYED = frozenset({"etherealfabric", "cloudpickle"})


def _noting(base: type) -> type:
    """``base``, a pickler class, noting the classes and functions it saves in ``found`` (the
    same bytes: the hook lets the pickler go on as it would; see the module docstring)."""
    inner = getattr(base, "reducer_override", None)

    class _Recorder(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.found: dict[int, Any] = {}

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, _CODE_TYPES):
                self.found[id(obj)] = obj
            # (not super(): this runs once per object)
            return NotImplemented if inner is None else inner(self, obj)

    return _Recorder


@functools.lru_cache(maxsize=1)
def _recorder() -> type:
    import cloudpickle

    return _noting(cloudpickle.Pickler)


def pickle_with_refs(value: object, protocol: int = 5) -> tuple[bytes, list[str]]:
    """``cloudpickle.dumps(value, protocol)`` (the same bytes) and :func:`ref_names` of what
    it names by reference."""
    with io.BytesIO() as file:
        pickler = _recorder()(file, protocol=protocol)
        pickler.dump(value)
        return file.getvalue(), ref_names(pickler.found.values())


@functools.lru_cache(maxsize=1)
def _std_recorder() -> type:
    import pickle

    return _noting(pickle.Pickler)


class _Noted:
    """What the pickles dumped inside one :func:`noting` block saved, and whether any was."""

    __slots__ = ("dumped", "found")

    def __init__(self) -> None:
        self.found: dict[int, Any] = {}
        self.dumped = False


_NOTING: contextvars.ContextVar[_Noted | None] = contextvars.ContextVar(
    "etherealfabric_noting", default=None
)


def dump_pickle(value: object, fp: Any, *, cloud: bool, protocol: int = 5) -> None:
    """``cloudpickle.dump`` (``cloud``) or ``pickle.dump`` of ``value`` into ``fp`` (the same
    bytes); inside :func:`noting`, what the pickle names is noted (the built-in pickling
    serializers dump through this, so an output is pickled once)."""
    noted = _NOTING.get()
    if noted is None:
        if cloud:
            import cloudpickle

            cloudpickle.dump(value, fp, protocol=protocol)
        else:
            import pickle

            pickle.dump(value, fp, protocol=protocol)
        return
    pickler = (_recorder() if cloud else _std_recorder())(fp, protocol=protocol)
    pickler.dump(value)
    noted.found.update(pickler.found)
    noted.dumped = True


def noting() -> Setting[_Noted | None, None]:
    """Note what :func:`dump_pickle` pickles inside the block, for :func:`record_code`."""
    return Setting(_NOTING, _Noted(), None)


def record_code(value: object, serializer: str) -> list[str]:
    """The ``code`` of an output's record: what its pickle names (as noted while it was
    written, inside :func:`noting`; else pickled again here, without its buffers); [] for a
    serializer that does not pickle."""
    if serializer not in PICKLING:
        return []
    noted = _NOTING.get()
    if noted is not None and noted.dumped:
        return ref_names(noted.found.values())
    return output_refs(value)


class _Discard:
    """A sink that keeps nothing."""

    @staticmethod
    def write(data: Any) -> int:
        return len(memoryview(data))


def output_refs(value: object) -> list[str]:
    """:func:`ref_names` of what pickling ``value`` names by reference (an output stored as a
    pickle). The pickle is thrown away as it is made, and buffers that can travel out of band
    (numpy arrays) are not even written; [] if it cannot be pickled here."""
    pickler = _recorder()(_Discard(), protocol=5, buffer_callback=lambda _: False)
    try:
        pickler.dump(value)
    except Exception:
        return []  # the serializer said why already, or will
    return ref_names(pickler.found.values())


def ref_names(objs: Iterable[Any]) -> list[str]:
    """Sorted names of the code in ``objs`` that keys must follow: ``module:qualname`` for
    user code, the top-level module for a third-party package, nothing for the rest."""
    names: set[str] = set()
    for obj in objs:
        try:
            name = _NAMES[obj]
        except (KeyError, TypeError):
            name = _name(obj)
            if len(_NAMES) > 4096:
                _NAMES.clear()
            with contextlib.suppress(TypeError):  # unhashable: not remembered
                _NAMES[obj] = name
        if name:
            names.add(name)
    return sorted(names)


#: class or function -> its name in :func:`ref_names` ("" for none), decided once
_NAMES: dict[Any, str] = {}


def _name(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        return ""
    top = module.partition(".")[0]
    if top in _NOT_KEYED or is_stdlib(top):
        return ""
    script = script_module(module, defined_in(obj))
    if script is not None or is_user_code(obj):
        qualname = getattr(obj, "__qualname__", None)
        if isinstance(qualname, str) and "<" not in qualname:
            return f"{script or module}:{qualname}"
        return ""  # local code, which cloudpickle writes by value (its bytes are in the pickle)
    return "" if _is_user_top(top) else top


def _is_user_top(top: str) -> bool:
    loaded = sys.modules.get(top)
    return loaded is not None and is_user_module(loaded)


#: names -> (package-versions mode, binding generation, the objects they named, digest)
_DIGESTS: dict[tuple[str, ...], tuple[str, int, tuple[Any, ...], str | None]] = {}


def refs_digest(names: Iterable[str]) -> str | None:
    """The digest of the code ``names`` (:func:`ref_names`) stand for in this process: user
    code by its fingerprint (``missing`` if it is gone), packages by their version; None if
    they stand for nothing (only packages, and package versions are ``off``). Remembered
    while the names still resolve to the same objects (a module imported again is seen)."""
    key = tuple(names)
    mode, gen = package_versions(), generation()
    objs = tuple(_resolve(*n.split(":", 1)) if ":" in n else None for n in key)
    found = _DIGESTS.get(key)
    if found is not None and found[:2] == (mode, gen) and _same(found[2], objs):
        return found[3]
    if len(_DIGESTS) > 4096:
        _DIGESTS.clear()
    parts = _parts(key, objs, mode)
    digest = hash_plain(("code-refs", tuple(parts))) if parts else None
    _DIGESTS[key] = (mode, gen, objs, digest)
    return digest


def _same(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    return all(a is b for a, b in zip(old, new, strict=True))


def code_parts(names: Iterable[str]) -> dict[str, str]:
    """What each name stands for now: ``{qualified name or package:<dist>: digest or version}``."""
    key = tuple(names)
    objs = tuple(_resolve(*n.split(":", 1)) if ":" in n else None for n in key)
    return dict(_parts(key, objs, package_versions()))


def _parts(names: tuple[str, ...], objs: tuple[Any, ...], mode: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    tops = []
    for name, obj in zip(names, objs, strict=True):
        module, sep, _ = name.partition(":")
        if not sep:
            tops.append(name)
        elif obj is None:
            parts.append((name, _MISSING))
        elif is_user_code(obj):
            parts.append((qualified_name(obj), code_fingerprint(obj).digest))
        else:  # not user code any more: its package's version
            tops.append(str(getattr(obj, "__module__", module)).partition(".")[0])
    parts += sorted(package_parts(tops, (), mode).items())
    return parts


def _resolve(module: str, qualname: str) -> Any:
    """The object ``module:qualname`` names in this process, or None. A user module not
    imported yet is imported (as unpickling the output would); nothing else is (the names
    come from stored records). A script is named as ``etherealfabric run`` imports it
    (:func:`~._usercode.script_module`), which is ``__main__`` when it runs as ``python
    flow.py``."""
    if module == "__mp_main__":  # a script, as a spawned worker named it (older records)
        module = "__main__"
    try:
        obj: Any = sys.modules.get(module)
        if obj is None and script_module(module) is not None:
            obj = _running_script(module)
        elif obj is None and is_user_top(module.partition(".")[0]):  # never a library's
            obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj if isinstance(obj, _CODE_TYPES) else None


def _running_script(name: str) -> Any:
    """The script run as ``__main__`` (``__mp_main__`` in a spawned worker) if
    ``etherealfabric run`` would name it ``name``, else None."""
    for main in ("__main__", "__mp_main__"):
        loaded = sys.modules.get(main)
        if loaded is not None and script_module(main, vars(loaded)) == name:
            return loaded
    return None


def with_code(digest: str, names: Iterable[str]) -> str:
    """An output's digest as its consumers' keys see it: its bytes' digest and the code its
    pickle names (:func:`refs_digest`)."""
    code = refs_digest(names)
    return digest if code is None else hash_plain(("with-code", digest, code))


def _pickle_refs(value: object, protocol: int) -> tuple[bytes, str | None]:
    """For :func:`~._encoder.encode_pickled`: the pickle and the digest of its code (None if
    it names none)."""
    data, names = pickle_with_refs(value, protocol)
    return data, (refs_digest(names) if names else None)


_encoder.set_pickler(_pickle_refs)
