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

Read where they are used: ``ETHEREALFABRIC_DASK_ADDRESS`` (backends/dask.py),
``ETHEREALFABRIC_SIGNING_KEY`` and ``ETHEREALFABRIC_S3_ENDPOINT_URL`` (store/objectstore.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["ENV", "LOG_LEVELS", "Settings"]

ENV = {
    "home": "ETHEREALFABRIC_HOME",
    "store": "ETHEREALFABRIC_STORE",
    "backend": "ETHEREALFABRIC_EXECUTION_BACKEND",
    "max_workers": "ETHEREALFABRIC_MAX_WORKERS",
    "log_level": "ETHEREALFABRIC_LOG_LEVEL",
    "durability": "ETHEREALFABRIC_DURABILITY",
    "celery_broker_url": "ETHEREALFABRIC_CELERY_BROKER_URL",
    "celery_result_backend": "ETHEREALFABRIC_CELERY_RESULT_BACKEND",
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DURABILITIES = ("fast", "safe")
DEFAULT_HOME = ".etherealfabric"
INLINE_LIMIT = 64 * 1024

Durability = Literal["fast", "safe"]


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one run.

    ``durability="fast"`` (default) survives a killed process; ``"safe"`` adds fsyncs so that
    committed results also survive a power loss, at roughly 1 ms extra per stored file.
    """

    home: Path
    store: str | None = None
    backend: str = "local"
    max_workers: int | None = None
    log_level: str = "INFO"
    durability: Durability = "fast"
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None
    inline_limit: int = INLINE_LIMIT

    @property
    def journal_path(self) -> Path:
        return self.home / "journal.db"

    @property
    def store_location(self) -> str:
        """Where artifacts live: the explicit store, or the home folder."""
        return self.store if self.store else str(self.home)

    @property
    def shared_store(self) -> bool:
        """True when the store is not the home folder, so records must be published to it."""
        if not self.store:
            return False
        return _normalise(self.store) != _normalise(str(self.home))

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        """Build settings from explicit values (``None`` = not given), then ``env``, then defaults."""
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        for field, var in ENV.items():
            value = explicit.get(field)
            if value is None and env.get(var, "").strip():
                value = env[var].strip()
                raw[field] = _parse(field, value, setting=var)
            elif value is not None:
                raw[field] = _parse(field, value, setting=field)
        home = Path(raw.pop("home", None) or DEFAULT_HOME).expanduser()
        if explicit.get("inline_limit") is not None:
            raw["inline_limit"] = int(explicit["inline_limit"])
        return cls(home=home.absolute(), **raw)


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
    return str(value) if field != "home" else value


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


def _normalise(location: str) -> str:
    if location.startswith("file://"):
        location = location[len("file://") :]
    if "://" in location:
        return location.rstrip("/")
    return str(Path(location).expanduser().absolute())
