"""Settings: explicit arguments beat environment variables, which beat defaults.

| setting       | environment variable                      | default                     |
|---------------|-------------------------------------------|-----------------------------|
| home          | ``ETHEREALFABRIC_HOME``                   | ``./.etherealfabric``       |
| store         | ``ETHEREALFABRIC_STORE``                  | the home folder             |
| backend       | ``ETHEREALFABRIC_EXECUTION_BACKEND``      | ``local`` (threads)         |
| max_workers   | ``ETHEREALFABRIC_MAX_WORKERS``            | number of CPUs              |
| log_level     | ``ETHEREALFABRIC_LOG_LEVEL``              | ``INFO``                    |
| durability    | ``ETHEREALFABRIC_DURABILITY``             | ``fast``                    |
| celery broker | ``ETHEREALFABRIC_CELERY_BROKER_URL``      | unset                       |
| celery result | ``ETHEREALFABRIC_CELERY_RESULT_BACKEND``  | unset                       |
| store_mode    | ``ETHEREALFABRIC_STORE_MODE``             | ``read-write``              |
| local_cache_size | ``ETHEREALFABRIC_LOCAL_CACHE_SIZE``    | unlimited                   |
| store_timeout | ``ETHEREALFABRIC_STORE_TIMEOUT``          | ``10`` (seconds)            |

Read where they are used: ``ETHEREALFABRIC_DASK_ADDRESS`` (backends/_dask.py),
``ETHEREALFABRIC_SPARK_MASTER`` (backends/_spark.py),
``ETHEREALFABRIC_CELERY_REDISPATCH_SECONDS`` (backends/_celery.py), ``ETHEREALFABRIC_SIGNING_KEY`` and ``ETHEREALFABRIC_S3_ENDPOINT_URL`` (store/_objectstore.py),
``ETHEREALFABRIC_PACKAGE_VERSIONS`` (hashing/_packages.py: read where keys are computed, so that
``plan``, ``run`` and ``explain`` always agree on keys).
``KNOWN_ENV`` lists every variable; resolving settings logs one warning per process for an
``ETHEREALFABRIC_*`` variable that is none of them (a typo would otherwise be ignored).

Unknown options are errors: :func:`check_options` and the :func:`strict_options` decorator
raise :class:`~etherealfabric.errors.UnknownOptionError` naming the unknown word and the
closest valid one, before anything runs.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, overload
from urllib.parse import unquote

from .errors import ConfigError, UnknownOptionError

__all__ = [
    "ENV",
    "KNOWN_ENV",
    "LOG_LEVELS",
    "SETTING_NAMES",
    "Settings",
    "StoreLike",
    "check_home",
    "check_options",
    "check_store_location",
    "keyword_options",
    "strict_options",
]

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("etherealfabric")

ENV = {
    "home": "ETHEREALFABRIC_HOME",
    "store": "ETHEREALFABRIC_STORE",
    "backend": "ETHEREALFABRIC_EXECUTION_BACKEND",
    "max_workers": "ETHEREALFABRIC_MAX_WORKERS",
    "log_level": "ETHEREALFABRIC_LOG_LEVEL",
    "durability": "ETHEREALFABRIC_DURABILITY",
    "celery_broker_url": "ETHEREALFABRIC_CELERY_BROKER_URL",
    "celery_result_backend": "ETHEREALFABRIC_CELERY_RESULT_BACKEND",
    "store_mode": "ETHEREALFABRIC_STORE_MODE",
    "local_cache_size": "ETHEREALFABRIC_LOCAL_CACHE_SIZE",
    "store_timeout": "ETHEREALFABRIC_STORE_TIMEOUT",
}
ENV_PREFIX = "ETHEREALFABRIC_"
#: Variables read outside ``Settings``, where they are used.
DASK_ADDRESS_ENV = "ETHEREALFABRIC_DASK_ADDRESS"
SPARK_MASTER_ENV = "ETHEREALFABRIC_SPARK_MASTER"
CELERY_REDISPATCH_ENV = "ETHEREALFABRIC_CELERY_REDISPATCH_SECONDS"
S3_ENDPOINT_ENV = "ETHEREALFABRIC_S3_ENDPOINT_URL"
SIGNING_KEY_ENV = "ETHEREALFABRIC_SIGNING_KEY"
UI_TOKEN_ENV = "ETHEREALFABRIC_UI_TOKEN"
PACKAGE_VERSIONS_ENV = "ETHEREALFABRIC_PACKAGE_VERSIONS"
#: Every ``ETHEREALFABRIC_*`` environment variable the project reads; the one list of them.
KNOWN_ENV: tuple[str, ...] = (
    *ENV.values(),
    DASK_ADDRESS_ENV,
    SPARK_MASTER_ENV,
    CELERY_REDISPATCH_ENV,
    S3_ENDPOINT_ENV,
    SIGNING_KEY_ENV,
    UI_TOKEN_ENV,
    PACKAGE_VERSIONS_ENV,
)
#: The names :meth:`Settings.resolve` accepts (and ``Workflow.execute(**settings)`` passes on).
SETTING_NAMES: tuple[str, ...] = (*ENV, "inline_limit")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DURABILITIES = ("fast", "safe")
#: How a run uses a shared store (``store/_layered.py``): reads and writes it, reads it only
#: (results stay local until ``cache push``), or writes it only on ``cache push``.
STORE_MODES = ("read-write", "read-only", "push-on-demand")
DEFAULT_STORE_TIMEOUT = 10.0
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
DEFAULT_HOME = ".etherealfabric"
INLINE_LIMIT = 64 * 1024

Durability = Literal["fast", "safe"]


class StoreLike(Protocol):
    """What ``store=`` takes besides a location: a store object
    (:class:`~etherealfabric.store.Store`: an ``ObjectStore(...)`` built with its own options)."""

    url: str


#: URL schemes of the stores people point ``ETHEREALFABRIC_STORE`` at; ``<scheme>:`` followed
#: by anything but ``//`` (``s3:/team/x``) is a mistyped URL, not a folder (see
#: :func:`check_store_location`). A short list, so that no folder name with a colon is refused
#: for fsspec's more exotic protocols, and nothing needs importing.
STORE_SCHEMES = frozenset(
    {
        "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "file", "memory", "hdfs",
        "webhdfs", "sftp", "ssh", "ftp", "oci", "oss", "http", "https",
    }
)  # fmt: skip
#: a URL's scheme (a pattern re compiles, and caches, with the first store location checked)
_SCHEME = r"^([A-Za-z][A-Za-z0-9+.-]*):"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one run.

    ``durability="fast"`` (default) survives a killed process; ``"safe"`` adds fsyncs so that
    committed results also survive a power loss, at roughly 1 ms extra per stored file.
    On the threads backend, "fast" also writes large arrays handed over in memory in the
    background while their consumers run (``run/_handover.py``); "safe" writes them first.
    """

    home: Path
    #: a folder path or URL, or a store object given as ``store=`` (used as it is)
    store: str | StoreLike | None = None
    backend: str = "local"
    max_workers: int | None = None
    log_level: str = "INFO"
    durability: Durability = "fast"
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None
    #: how runs use a shared store: one of :data:`STORE_MODES`
    store_mode: str = "read-write"
    #: the budget of the home's local layer in front of a shared store (bytes); None: no limit
    local_cache_size: int | None = None
    #: seconds a shared store may take to connect or answer before it counts as unreachable
    store_timeout: float = DEFAULT_STORE_TIMEOUT
    inline_limit: int = INLINE_LIMIT

    @property
    def journal_path(self) -> Path:
        return self.home / "journal.db"

    @property
    def store_location(self) -> str:
        """Where artifacts live: the explicit store (a store object's URL), or the home folder."""
        if not self.store:
            return str(self.home)
        return self.store if isinstance(self.store, str) else str(self.store.url)

    @property
    def shared_store(self) -> bool:
        """True when the store is not the home folder, so records must be published to it."""
        if not self.store:
            return False
        return _normalise(self.store_location) != _normalise(str(self.home))

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        """Build settings from explicit values (``None`` = not given), then ``env``, then defaults."""
        check_options(explicit, SETTING_NAMES, where="Settings.resolve()")
        env = os.environ if env is None else env
        warn_unknown_env(env)
        raw: dict[str, Any] = {}
        for field, var in ENV.items():
            value = explicit.get(field)
            if value is None and env.get(var, "").strip():
                value = env[var].strip()
                raw[field] = _parse(field, value, setting=var)
            elif value is not None:
                raw[field] = _parse(field, value, setting=field)
        given = raw.pop("home", None)
        home = Path(given or DEFAULT_HOME).expanduser()
        if explicit.get("home") is not None:
            check_home(home.absolute(), setting="home")
        else:
            check_home(home.absolute(), default=given is None)
        if explicit.get("inline_limit") is not None:
            raw["inline_limit"] = int(explicit["inline_limit"])
        return cls(home=home.absolute(), **raw)


# -- unknown options and variables ------------------------------------------------------------
def check_options(given: Iterable[str], valid: Iterable[str], *, where: str) -> None:
    """Raise :class:`UnknownOptionError` for the first name in ``given`` not in ``valid``.

    ``where`` names the call for the message (``"Workflow.execute()"``); the error suggests
    the closest valid name.
    """
    accepted = valid if isinstance(valid, (set, frozenset)) else frozenset(valid)
    for name in given:
        if name not in accepted:
            raise UnknownOptionError(name, where=where, valid=accepted)


def keyword_options(fn: Callable[..., Any]) -> frozenset[str]:
    """The keyword-only parameter names of ``fn`` (of its ``__init__`` for a class)."""
    params = inspect.signature(fn).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


@overload
def strict_options(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def strict_options(
    *, where: str | None = None, extra: Iterable[str] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def strict_options(
    fn: Callable[P, R] | None = None,
    /,
    *,
    where: str | None = None,
    extra: Iterable[str] | None = None,
) -> Any:
    """Reject unknown keyword arguments with :class:`UnknownOptionError`, before the call.

    The valid names are the function's keyword parameters; a function that takes ``**settings``
    also accepts :data:`SETTING_NAMES` (or ``extra``, when given). ``where`` defaults to the
    call as users write it: ``Workflow()`` for ``__init__``, ``Workflow.execute()`` for a
    method (named after the instance's class), ``open_store()`` for a function. The wrapped
    function keeps its signature for type checkers (``ParamSpec``).
    """
    if fn is None:
        return lambda f: _strict(f, where, extra)
    return _strict(fn, where, extra)


def _strict(fn: Callable[P, R], where: str | None, extra: Iterable[str] | None) -> Callable[P, R]:
    params = list(inspect.signature(fn).parameters.values())
    method = bool(params) and params[0].name in ("self", "cls")
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    valid = {p.name for p in params[1 if method else 0 :] if p.kind in keyword}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        valid.update(SETTING_NAMES if extra is None else extra)
    elif extra is not None:
        valid.update(extra)
    accepted = frozenset(valid)

    @functools.wraps(fn)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        if not accepted.issuperset(kwargs):
            check_options(kwargs, accepted, where=where or _call_name(fn, args, method))
        return fn(*args, **kwargs)

    return checked


def _call_name(fn: Callable[..., Any], args: tuple[Any, ...], method: bool) -> str:
    name = getattr(fn, "__name__", "function")
    if not (method and args):
        return f"{name}()"
    owner = args[0] if isinstance(args[0], type) else type(args[0])
    return f"{owner.__name__}()" if name == "__init__" else f"{owner.__name__}.{name}()"


_warned_env: set[str] = set()


def warn_unknown_env(env: Mapping[str, str]) -> None:
    """Log once per process each ``ETHEREALFABRIC_*`` variable that is not in :data:`KNOWN_ENV`.

    A warning, not an error: the environment may be shared with other versions of the
    package. It goes to the ``etherealfabric`` logger (``warnings.warn`` would be an error
    under ``-W error``).
    """
    for var in env:
        if not var.startswith(ENV_PREFIX) or var in KNOWN_ENV or var in _warned_env:
            continue
        _warned_env.add(var)
        known = [k[len(ENV_PREFIX) :] for k in KNOWN_ENV]
        import difflib  # (only for a suggestion)

        typed = var[len(ENV_PREFIX) :]
        close = (
            difflib.get_close_matches(typed, known, n=1)
            or [
                k
                for k in known
                if k.endswith(f"_{typed}")  # BACKEND for EXECUTION_BACKEND
            ][:1]
        )
        hint = (
            f"did you mean {ENV_PREFIX}{close[0]}?"
            if close
            else f"known variables: {', '.join(sorted(KNOWN_ENV))}"
        )
        log.warning("%s is not a setting; %s", var, hint)


def _parse(field: str, value: Any, *, setting: str) -> Any:
    if field == "max_workers":
        return _positive_int(value, setting)
    if field == "log_level":
        return parse_log_level(value, setting=setting)
    if field == "durability":
        text = str(value).lower()
        if text not in DURABILITIES:
            raise ConfigError(
                f"{setting}={value!r} is not a durability; use one of {', '.join(DURABILITIES)}",
                setting=setting,
            )
        return text
    if field == "backend":
        return str(value).strip().lower()
    if field == "store_mode":
        return _choice(value, STORE_MODES, setting)
    if field == "local_cache_size":
        return parse_size(value, setting=setting)
    if field == "store_timeout":
        return _positive_float(value, setting)
    if field == "store":
        return _store(value, setting)
    return str(value) if field != "home" else value


def _store(value: Any, setting: str) -> str | StoreLike:
    """A store location (checked for a mistyped URL), or a store object as it is."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        check_store_location(value, setting=setting)
        # a leading ~ as for the home: where no shell expanded it (a .env file, CI settings)
        return os.path.expanduser(value) if value.startswith("~") else value
    if isinstance(getattr(value, "url", None), str) and hasattr(value, "open_entry"):
        store: StoreLike = value  # a Store (checked as one where it is opened: store/__init__)
        return store
    raise ConfigError(
        f"{setting}={value!r} is not a store: pass a folder path, a URL such as "
        "s3://bucket/prefix, or a store object such as ObjectStore('s3://bucket/prefix', ...)",
        setting=setting,
    )


def check_store_location(value: str, *, setting: str = ENV["store"]) -> None:
    """Raise :class:`ConfigError` for a store URL with a slash missing (``s3:/team/x``,
    ``s3:team``, ``file:/x``), which would otherwise name a local folder under the current one.

    Only the schemes of :data:`STORE_SCHEMES`: any other value is a folder path, as before
    (``./s3:/x`` names a folder that really is called so).
    """
    found = re.match(_SCHEME, value)
    if not found or value[found.end() :].startswith("//"):
        return
    scheme = found.group(1).lower()
    if scheme not in STORE_SCHEMES:
        return
    rest = value[found.end() :].lstrip("/")
    meant = f"file:///{rest}" if scheme == "file" else f"{scheme}://{rest or 'bucket/prefix'}"
    raise ConfigError(
        f"{setting}={value!r} is missing a slash after '{scheme}:' (as it is, it names a "
        f"local folder under the current one); use {setting}={meant} "
        f"(or ./{value} for a folder really named so)",
        setting=setting,
    )


def check_home(home: Path, *, setting: str = ENV["home"], default: bool = False) -> None:
    """Raise :class:`ConfigError` when ``home``, or the nearest existing path above it, is not a
    folder (a regular file where the journal and the store would go), naming ``setting``
    (``default``: the home is the default one, ``setting`` is not set)."""
    for path in (home, *home.parents):
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            return
        what = "a file" if os.path.isfile(path) else "not a folder"
        where = f"is {what}" if path == home else f"is under {path}, which is {what}"
        named = (
            f"the default home {home} ({setting} is not set)"
            if default
            else (f"{setting}={str(home)!r}")
        )
        raise ConfigError(
            f"{named} {where}; the home must be a folder (it holds the journal and the local "
            f"store): point {setting} at a folder (it is created if missing)",
            setting=setting,
        )


def parse_log_level(value: Any, *, setting: str = ENV["log_level"]) -> str:
    """Validate a log level name; a bad value names the setting and the accepted levels."""
    text = str(value).strip().upper()
    if text == "WARN":
        text = "WARNING"
    if text not in LOG_LEVELS:
        raise ConfigError(
            f"{setting}={value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}",
            setting=setting,
        )
    return text


def _positive_int(value: Any, setting: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ConfigError(f"{setting}={value!r} must be a whole number >= 1", setting=setting)
    return number


def _choice(value: Any, choices: tuple[str, ...], setting: str) -> str:
    text = str(value).strip().lower().replace("_", "-")
    if text not in choices:
        raise ConfigError(
            f"{setting}={value!r} is not valid; use one of {', '.join(choices)}", setting=setting
        )
    return text


def parse_size(value: Any, *, setting: str) -> int | None:
    """A size in bytes from ``123``, ``500MB``, ``10 GiB``, ``2g``...; None for unlimited.

    Units are binary (``1 GB`` = 1024³ bytes); ``0``, ``none`` and ``unlimited`` mean no limit.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text in ("", "none", "unlimited"):
            return None
        digits = text.rstrip("bikmgt")
        unit = text[len(digits) :].replace("ib", "").replace("b", "")
        try:
            number = float(digits)
        except ValueError:
            number = -1.0
        if unit not in _SIZE_UNITS or number < 0:
            raise ConfigError(
                f"{setting}={value!r} is not a size; use bytes or a number with a unit, "
                "such as 500MB or 20GB (0 or 'unlimited' for no limit)",
                setting=setting,
            )
    size = int(number * _SIZE_UNITS[unit])
    return size or None


def _positive_float(value: Any, setting: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if not number > 0 or number == float("inf"):
        raise ConfigError(f"{setting}={value!r} must be a number of seconds > 0", setting=setting)
    return number


def _normalise(location: str) -> str:
    if location.startswith("file://"):
        location = unquote(location[len("file://") :])  # (as store/__init__.py opens it)
    if "://" in location:
        return location.rstrip("/")
    # the folder itself: a link to the home, or x/../home, is the home (not a shared store
    # whose "copies" the local layer's budget would then delete from the home)
    return os.path.realpath(os.path.expanduser(location))
