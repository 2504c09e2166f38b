"""Settings: explicit beats environment beats default; bad values name the setting."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from etherealfabric.config import ENV, KNOWN_ENV, SETTING_NAMES, Settings
from etherealfabric.errors import ConfigError, UnknownOptionError


def test_defaults(tmp_path: Path) -> None:
    s = Settings.resolve(env={})
    assert s.home == tmp_path / ".etherealfabric"
    assert (s.backend, s.log_level, s.durability, s.max_workers) == ("local", "INFO", "fast", None)
    assert s.journal_path == s.home / "journal.db"
    assert s.store_location == str(s.home) and not s.shared_store


def test_environment_then_explicit() -> None:
    env = {
        "ETHEREALFABRIC_HOME": "/tmp/ef-home",
        "ETHEREALFABRIC_EXECUTION_BACKEND": "Processes",
        "ETHEREALFABRIC_LOG_LEVEL": "debug",
        "ETHEREALFABRIC_MAX_WORKERS": "3",
        "ETHEREALFABRIC_DURABILITY": "safe",
        "ETHEREALFABRIC_STORE": "/tmp/team-store",
        "ETHEREALFABRIC_CELERY_BROKER_URL": "redis://localhost:6379/0",
        "ETHEREALFABRIC_CELERY_RESULT_BACKEND": "redis://localhost:6379/1",
    }
    s = Settings.resolve(env=env)
    assert s.home == Path("/tmp/ef-home") and s.backend == "processes"
    assert (s.log_level, s.max_workers, s.durability) == ("DEBUG", 3, "safe")
    assert s.shared_store and s.store_location == "/tmp/team-store"
    assert s.celery_broker_url == "redis://localhost:6379/0"
    explicit = Settings.resolve(env=env, backend="local", max_workers=1, home="/tmp/other")
    assert (explicit.backend, explicit.max_workers, explicit.home) == (
        "local",
        1,
        Path("/tmp/other"),
    )


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("ETHEREALFABRIC_LOG_LEVEL", "LOUD", "not a log level"),
        ("ETHEREALFABRIC_MAX_WORKERS", "0", "whole number >= 1"),
        ("ETHEREALFABRIC_MAX_WORKERS", "many", "whole number >= 1"),
        ("ETHEREALFABRIC_DURABILITY", "paranoid", "not a durability"),
    ],
)
def test_bad_environment_values_name_the_variable(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings.resolve(env={var: value})
    assert info.value.setting == var and var in str(info.value)


def test_store_equal_to_home_is_not_shared(tmp_path: Path) -> None:
    s = Settings.resolve(env={}, home=str(tmp_path / "h"), store=f"file://{tmp_path / 'h'}")
    assert not s.shared_store


def test_setting_names_are_the_settings_fields() -> None:
    assert set(SETTING_NAMES) == {f.name for f in fields(Settings)}
    assert set(ENV) <= set(SETTING_NAMES) and set(ENV.values()) <= set(KNOWN_ENV)


def test_unknown_explicit_setting_is_an_error_naming_it() -> None:
    with pytest.raises(
        UnknownOptionError, match="'max_worker'; did you mean 'max_workers'"
    ) as info:
        Settings.resolve(env={}, max_worker=2)
    assert isinstance(info.value, ConfigError) and info.value.setting == "max_worker"
    assert Settings.resolve(env={}, max_workers=2).max_workers == 2


def test_a_home_that_is_a_file_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"ETHEREALFABRIC_HOME='.*f' is a file") as info:
        Settings.resolve(env={"ETHEREALFABRIC_HOME": str(tmp_path / "f")})
    assert info.value.setting == "ETHEREALFABRIC_HOME"
    with pytest.raises(ConfigError, match=r"home='.*f' is a file"):
        Settings.resolve(env={}, home=str(tmp_path / "f"))
    with pytest.raises(ConfigError, match=r"is under .*f, which is a file"):
        Settings.resolve(env={}, home=str(tmp_path / "f" / "h"))
    assert Settings.resolve(env={}, home=str(tmp_path / "new" / "h")).home == tmp_path / "new/h"


def test_a_store_under_the_home_folder_written_with_a_tilde_is_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ETHEREALFABRIC_STORE='~/team-cache'` (quoted, or from a .env file: no shell expanded
    it) made a folder named `~` in the working folder: each teammate a private "shared" store,
    every result computed again, no warning. It is expanded as the home is."""
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    settings = Settings.resolve({"ETHEREALFABRIC_STORE": "~/team-cache"}, home=tmp_path / "h")
    assert settings.store_location == str(tmp_path / "me" / "team-cache")
    assert settings.shared_store
    same = Settings.resolve({"ETHEREALFABRIC_STORE": "~/h", "ETHEREALFABRIC_HOME": "~/h"})
    assert not same.shared_store and same.store_location == str(tmp_path / "me" / "h")
    literal = Settings.resolve({"ETHEREALFABRIC_STORE": "./~/x"}, home=tmp_path / "h")
    assert literal.store_location == "./~/x"  # a folder really named so: written as a path
