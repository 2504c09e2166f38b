"""The cold run's per-node shortcuts answer as the general paths they skip."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest

from etherealfabric.hashing import _describe
from etherealfabric.hashing._describe import describe_value
from etherealfabric.run._checkpoint import CheckpointListing, _lexists
from etherealfabric.run._redact import Redactor
from etherealfabric.store import LocalStore
from etherealfabric.store._json import parse_json

_SAMPLES = [
    b"1",
    b"12",
    b" [1, 2.5, null]",
    b'{"a": "\\u00e9"}',
    '"\u00e9"'.encode(),
    codecs.BOM_UTF8 + b"[1]",
    '["\u00e9"]'.encode("utf-16"),
    "[1]".encode("utf-16-le"),
    "[1]".encode("utf-16-be"),
    "[1]".encode("utf-32"),
    "[1]".encode("utf-32-le"),
    "1".encode("utf-16-le"),
]


@pytest.mark.parametrize("data", _SAMPLES)
def test_parse_json_reads_every_encoding_json_loads_reads(data: bytes) -> None:
    assert parse_json(data) == json.loads(data)


def test_parse_json_refuses_what_json_loads_refuses() -> None:
    for data in (b"", b"\x00\x00", b"[1", b"nan?"):
        with pytest.raises(ValueError):
            json.loads(data)
        with pytest.raises(ValueError):
            parse_json(data)


def test_checkpoint_presence_test_is_lexists(tmp_path: Path) -> None:
    """A dangling symbolic link is present (as os.path.lexists says), a missing path is not,
    and a path under a file (ENOTDIR) is not."""
    (tmp_path / "file").write_bytes(b"x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    for name in ("file", "dangling", "missing", "file/below"):
        path = str(tmp_path / name)
        assert _lexists(path) == os.path.lexists(path), name


class _Leases:
    """The run's leases as the listing sees them (``RunLeases.exclusive``, ``home_taken``)."""

    def __init__(self) -> None:
        self.exclusive, self.home_taken = True, 1


def test_the_checkpoint_listing_answers_as_a_stat_while_the_run_holds_the_home(
    tmp_path: Path,
) -> None:
    """Under the home lease a key is not stat'ed when a listing shows no checkpoint; a key
    asked again (it ran in this run), another home lease or none at all: asked by stat."""
    store, leases = LocalStore(tmp_path / "store"), _Leases()
    old, new, late, other = "ab" + "1" * 30, "ab" + "2" * 30, "cd" + "3" * 30, "ef" + "4" * 30
    store.put_checkpoint(old, b"state")
    listing = CheckpointListing(store, leases)
    assert listing.may_have(old) and not listing.may_have(new)
    store.put_checkpoint(late, b"saved by this run")  # after the listing: as the run's own
    assert not listing.may_have(late)  # the first ask of a key, before it runs: none then
    assert listing.may_have(late) and listing.may_have(new)  # asked again: by stat
    store.put_checkpoint(other, b"x")
    leases.home_taken += 1  # the home lease was given up and taken again: list anew
    assert listing.may_have(other)
    leases.exclusive = False
    assert listing.may_have("ff" + "5" * 30)  # no home lease: every key is asked
    assert CheckpointListing(store, leases).may_have(new)
    leases.exclusive = True
    assert not CheckpointListing(LocalStore(tmp_path / "empty"), leases).may_have(new)


_VALUES = [0, -5, 10**39, 10**40, 10**100, True, None, 1.5, float("nan"), 1e300, "", "a"]
_VALUES += ["x" * n for n in (7, 37, 38, 39, 40, 41, 78, 79, 80, 200)] + ["é\n'\""]


@pytest.mark.parametrize("limit", [1, 3, 8, 12, 40, 79, 80, 200])
def test_describe_value_of_plain_values_is_reprlibs(limit: int) -> None:
    """The shortcut for ints, floats, strs... says what the reprlib path says."""
    for value in _VALUES:
        text = _describe._Describer(limit).repr(value)
        expected = text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
        assert describe_value(value, limit) == expected, (value, limit)


def test_a_redactor_without_secrets_masks_nothing() -> None:
    for empty in ((), [], iter(())):
        redact = Redactor(empty)
        assert not redact and redact("a secret? none") == "a secret? none"
    assert Redactor(["pw"])("the pw") == "the ***"
