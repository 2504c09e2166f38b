"""Installed packages in code fingerprints: third-party code counts by its distribution's version.

A fingerprint follows user code by its source, but the code of an installed package (numpy,
scikit-learn...) is too big to read and is not the user's to edit: it counts by the name and
version of the distribution that installed it, as the part ``package:<distribution>``. So
upgrading scikit-learn re-runs the nodes that use it (directly, or through user helpers), and
``explain`` says ``package scikit-learn 1.5.2 → 1.6.0``.

How much of the version counts is a setting, ``ETHEREALFABRIC_PACKAGE_VERSIONS`` (or
:func:`set_package_versions`, which wins over it):

- ``full`` (default): the whole version. A patch release may change results (a bug fix in a
  solver, another default), and a cache hit computed by other code is a stale result; re-running
  is the safe side.
- ``minor``: ``major.minor`` only, for those who prefer fewer re-runs to that guarantee.
- ``off``: packages are not part of keys at all (keys as before packages were keyed).

It is read from the environment where keys are computed (once per process), not per run, so
``plan``, ``run`` and ``explain`` in one shell always agree on keys.

Not keyed: the standard library (``sys.stdlib_module_names``: it comes with the Python version,
which keys do not include, so teammates on 3.11 and 3.12 share hits; a stdlib behaviour change
between Python versions is not seen), EtherealFabric itself, and user code (followed by source).
A module imported inside a node that is not installed at all counts as ``not installed``: the
node re-runs when it appears.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..config import PACKAGE_VERSIONS_ENV
from ..errors import ConfigError

if TYPE_CHECKING:  # importlib.metadata (and email, zipfile, csv...) only once a package is met
    from importlib import metadata

__all__ = [
    "MODES",
    "NOT_INSTALLED",
    "PACKAGE_PREFIX",
    "is_installed",
    "is_stdlib",
    "package_parts",
    "package_versions",
    "parse_mode",
    "set_package_versions",
]

MODES = ("full", "minor", "off")
PACKAGE_PREFIX = "package:"
NOT_INSTALLED = "not installed"
_UNKNOWN = "unknown"
_override: str | None = None
_from_env: str | None = None


def parse_mode(value: str, *, setting: str = PACKAGE_VERSIONS_ENV) -> str:
    """``full``, ``minor`` or ``off`` (any case); a :class:`ConfigError` naming ``setting`` else."""
    text = value.strip().lower()
    if text not in MODES:
        raise ConfigError(
            f"{setting}={value!r} is not a package-version mode; use one of {', '.join(MODES)}",
            setting=setting,
        )
    return text


def set_package_versions(mode: str | None) -> None:
    """Use ``mode`` in this process from now on (``None``: the environment variable's, read
    again)."""
    global _override, _from_env
    _override = None if mode is None else parse_mode(mode, setting="package_versions")
    _from_env = None


def package_versions() -> str:
    """The mode in force: :func:`set_package_versions`'s, else the environment's, else full.

    The environment variable is read once per process (keys are computed per node, and
    reading ``os.environ`` costs more than the rest of a memoized fingerprint).
    """
    global _from_env
    if _override is not None:
        return _override
    if _from_env is None:
        value = os.environ.get(PACKAGE_VERSIONS_ENV, "")
        _from_env = parse_mode(value) if value.strip() else "full"
    return _from_env


def is_stdlib(top: str) -> bool:
    """True for a top-level module of the standard library (or ``builtins``)."""
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def is_installed(top: str) -> bool:
    """True if a top-level module ``top`` can be imported (found on the path; nothing imported)."""
    if top in sys.modules:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def package_parts(tops: Iterable[str], missing: Iterable[str], mode: str) -> dict[str, str]:
    """The ``package:<distribution>`` parts of a fingerprint, for top-level module names.

    ``missing`` are modules a node imports that are not installed (``not installed``).
    """
    if mode == "off":
        return {}
    parts: dict[str, str] = {}
    for top in sorted(set(tops)):
        name, version = distribution_of(top) or (top, _UNKNOWN)
        parts[PACKAGE_PREFIX + name] = _shorten(version) if mode == "minor" else version
    for top in sorted(set(missing)):
        parts.setdefault(PACKAGE_PREFIX + top, NOT_INSTALLED)
    return parts


def _shorten(version: str) -> str:
    match = re.match(r"\d+(\.\d+)?", version)
    return match.group(0) if match else version


# -- which distribution installed a module ---------------------------------------------------


@functools.lru_cache(maxsize=1024)
def distribution_of(top: str) -> tuple[str, str] | None:
    """(name, version) of the distribution that installed top-level module ``top``, or None.

    Tries the distribution named like the module first (numpy, pandas), checking that it does
    provide that module; else the full index of installed distributions, read once per process
    (``sklearn`` is provided by scikit-learn, ``yaml`` by PyYAML). A module (imported or not) whose
    folder holds that distribution's ``.dist-info`` (a package installed by pip) is answered
    from that folder's files (:func:`_beside_module`), without importlib.metadata, which
    costs about 20 ms to import and search on a first run.
    """
    beside = _beside_module(top)
    if beside is not None:
        return beside
    from importlib import metadata

    for candidate in dict.fromkeys((top, top.replace("_", "-"))):
        try:
            dist = metadata.distribution(candidate)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        if _provides(dist, top):
            return _name(dist), dist.version
    names = sorted(set(_index().get(top, ())))
    found = []
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append((_name(dist), dist.version))
    if not found:
        return None
    return "+".join(n for n, _ in found), "+".join(v for _, v in found)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _beside_module(top: str) -> tuple[str, str] | None:
    """What importlib.metadata would say of the module ``top`` in the common case,
    read from the ``<name>-<version>.dist-info`` folder beside it: the one distribution
    named like the module, found in the module's own ``sys.path`` entry and in none before
    it, that provides the module (its Name and Version headers). None otherwise (not
    found, no such folder, several, an earlier entry that could hold one...): then ask
    importlib.metadata."""
    file = _module_file(top)
    if file is None:
        return None
    folder = os.path.dirname(os.path.abspath(file))
    if os.path.basename(folder) == top:  # a package: its folder is in the entry
        folder = os.path.dirname(folder)
    want = _normal(top)
    for entry in sys.path:
        entry = os.path.abspath(entry or ".")
        names = _named_like(entry, want)
        if names is None:
            return None  # a zip or an entry that cannot be listed: importlib knows better
        if entry == folder:
            return _read_dist_info(os.path.join(entry, names[0]), top) if len(names) == 1 else None
        if names:
            return None  # an earlier entry has one: importlib.metadata would find that one
    return None


def _module_file(top: str) -> str | None:
    """The file of top-level module ``top``: the imported module's, else the one the import
    system would load (found, not imported: a node's ``import numpy`` in a branch that never
    ran still keys numpy's version without importlib.metadata). None if there is none (not
    installed, a namespace package, a built-in)."""
    module = sys.modules.get(top)
    if module is not None:
        file = getattr(module, "__file__", None)
        return file if isinstance(file, str) else None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None and spec.has_location else None
    return origin if isinstance(origin, str) else None


def _named_like(entry: str, want: str) -> list[str] | None:
    """The ``.dist-info``/``.egg-info`` folders of ``entry`` for the normalised name ``want``
    (an empty list if none or the entry is missing; None if it cannot be listed)."""
    try:
        names = os.listdir(entry)
    except (FileNotFoundError, NotADirectoryError):
        return None if os.path.exists(entry) else []
    except OSError:
        return None
    return [
        n
        for n in names
        if n.endswith((".dist-info", ".egg-info")) and _normal(n.partition("-")[0]) == want
    ]


def _read_dist_info(path: str, top: str) -> tuple[str, str] | None:
    """Name and Version of a ``.dist-info`` folder that provides ``top``; None if it is not
    one (an ``.egg-info``), lacks them, or does not provide the module."""
    if not path.endswith(".dist-info"):
        return None
    headers: dict[str, str] = {}
    try:
        with open(os.path.join(path, "METADATA"), encoding="utf-8") as fp:
            for line in fp:
                if not line.strip():
                    break
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version") and key not in headers:
                    headers[key] = value.strip()
        if not _provides_files(path, top):
            return None
    except (OSError, UnicodeDecodeError):
        return None
    if "Name" not in headers or "Version" not in headers:
        return None
    return headers["Name"], headers["Version"]


def _provides_files(path: str, top: str) -> bool:
    """:func:`_provides` for a ``.dist-info`` folder read directly."""
    try:
        with open(os.path.join(path, "top_level.txt"), encoding="utf-8") as fp:
            return top in fp.read().split()
    except FileNotFoundError:
        pass
    with open(os.path.join(path, "RECORD"), encoding="utf-8") as fp:
        prefixes = (f"{top}/", f"{top}.py,", f"{top}.")
        return any(line.startswith(prefixes) for line in fp)


def _name(dist: metadata.Distribution) -> str:
    name = dist.metadata["Name"] if dist.metadata is not None else None
    return str(name) if name else "?"


def _provides(dist: metadata.Distribution, top: str) -> bool:
    top_level = dist.read_text("top_level.txt")
    if top_level is not None:
        return top in top_level.split()
    record = dist.read_text("RECORD") or ""
    prefixes = (f"{top}/", f"{top}.py,", f"{top}.")
    return any(line.startswith(prefixes) for line in record.splitlines())


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, list[str]]:
    from importlib import metadata

    return dict(metadata.packages_distributions())
