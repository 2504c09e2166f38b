"""A record found unusable is dropped, but only bytes that fail their digest go with it.

Objects and inline blobs are content addressed: the same bytes may be another node's output.
A forged record naming another node's valid object under the wrong serializer (what anyone who
can write a shared folder, or the journal, can make) used to delete that object as well, so
the innocent node ran again. Real runs against a real home; the journal is edited by hand.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from etherealfabric import Workflow, node
from etherealfabric.hashing._digest import digest_bytes

CALLS: list[str] = []


@node
def blob() -> bytes:
    CALLS.append("blob")
    return bytes(range(256)) * 2048  # 512 KiB: an object of the store, not inline


@node
def meta() -> dict[str, int]:
    CALLS.append("meta")
    return {"n": 3}


@node
def use(data: bytes, info: dict[str, int], tag: str) -> int:
    CALLS.append("use")
    return len(data) + info["n"]


def _flow(home: Path, tag: str) -> tuple[Workflow, object]:
    with Workflow("forget-intact", home=home) as wf:
        out = use(blob(), meta(), tag)
    return wf, out


def _record(db: sqlite3.Connection, node_name: str) -> tuple[str, dict]:
    [(key, text)] = db.execute("SELECT key, record FROM actions WHERE node = ?", (node_name,))
    return key, json.loads(text)


def test_a_record_naming_another_nodes_object_drops_the_record_not_the_object(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    CALLS.clear()
    wf, out = _flow(home, "first")
    assert wf.execute()[out] == 512 * 1024 + 3
    with sqlite3.connect(home / "journal.db") as db:
        _, blob_record = _record(db, "blob")
        victim = blob_record["outputs"]["result"]
        key, record = _record(db, "meta")
        record["outputs"]["result"] = {**victim, "serializer": "json"}  # valid bytes, not JSON
        db.execute("UPDATE actions SET record = ? WHERE key = ?", (json.dumps(record), key))
    db.close()
    [object_file] = [p for p in home.rglob(victim["digest"]) if p.is_file()]
    CALLS.clear()
    wf, out = _flow(home, "second")  # use runs, and loads meta's (forged) output
    results = wf.execute()
    assert results[out] == 512 * 1024 + 3
    assert sorted(CALLS) == ["meta", "use"]  # blob's object was kept: blob is not run again
    assert object_file.is_file()
    CALLS.clear()
    wf, _ = _flow(home, "second")
    assert wf.execute().cached == 3


def test_an_object_whose_bytes_were_changed_is_still_removed_and_rewritten(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    CALLS.clear()
    wf, out = _flow(home, "first")
    wf.execute()
    with sqlite3.connect(home / "journal.db") as db:
        _, blob_record = _record(db, "blob")
    db.close()
    digest = blob_record["outputs"]["result"]["digest"]
    [object_file] = [p for p in home.rglob(digest) if p.is_file()]
    object_file.chmod(0o644)
    object_file.write_bytes(b"damaged" * 1000)
    CALLS.clear()
    wf, out = _flow(home, "second")
    assert wf.execute()[out] == 512 * 1024 + 3
    assert sorted(CALLS) == ["blob", "use"]
    assert digest_bytes(object_file.read_bytes()) == digest  # the damaged bytes replaced
