"""What a sweep of the team cache on S3 found (a moto server on loopback, ``test_store.MOTO``):
entries a bucket writer can plant, and what is specific to an object store.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

import test_objectstore as shared
from etherealfabric import Directory, File, Workflow, node
from etherealfabric.journal import Journal
from etherealfabric.store import ObjectStore
from etherealfabric.store._sharedgc import collect_shared
from test_objectstore import TEAM_KEY
from test_store import MotoServer

s3 = shared.s3
_aws_environment = shared._aws_environment


def _store(s3: MotoServer) -> ObjectStore:
    url = f"s3://{s3.bucket}/{uuid.uuid4().hex}"
    return ObjectStore(url, storage_options=s3.options, signing_key=TEAM_KEY)


def test_gc_of_a_bucket_with_planted_names_under_objects_deletes_only_what_it_judged(
    s3: MotoServer,
) -> None:
    """Anything under ``objects/`` that is not ``objects/<hh>/<digest>`` (a folder marker, a
    junk name, a digest one folder too deep) is not an object: the collection neither fails on
    it (every later `cache gc` failed on ``invalid digest``) nor deletes the object whose name
    it ends with (``objects/zz/x/<d>``, old, removed ``objects/<d[:2]>/<d>``, young)."""
    store = _store(s3)
    good = store.put_bytes(b"an object a teammate's running job just uploaded")
    for junk in ("objects/ab/", "objects/zz/notadigest", f"objects/zz/x/{good}"):
        store.write_entry(junk, b"junk")
    assert store.object_sizes() == {good: 48}  # (cache du: the planted copy is not its size)
    time.sleep(3)  # (S3 times are whole seconds)
    fresh = store.put_bytes(b"written after the junk: within the grace period")
    report = collect_shared(store, grace=2.0)  # the junk is old, `fresh` is young
    assert fresh not in report.removed_objects
    assert store.has_object(fresh)
    assert report.removed_objects == [good]  # (it is old too: judged by its own name)
    # the junk is never taken for an object, nor removed by name
    assert store.entry_info("objects/zz/notadigest") is not None
    assert store.entry_info(f"objects/zz/x/{good}") is not None


def test_gc_never_deletes_a_young_object_for_an_old_planted_copy_of_its_name(
    s3: MotoServer,
) -> None:
    """Content addresses are predictable: a writer plants ``objects/zz/x/<d>`` early; when a
    teammate's job uploads ``d`` (young: its record is not written yet), the collection must
    judge the planted entry by its own name, not delete ``d``."""
    from etherealfabric.hashing._digest import digest_bytes

    store = _store(s3)
    data = b"the output a running job uploads before its record"
    digest = digest_bytes(data)
    store.write_entry(f"objects/zz/x/{digest}", b"planted long ago")
    time.sleep(3)  # (S3 times are whole seconds)
    assert store.put_bytes(data) == digest
    report = collect_shared(store, grace=2.0)
    assert digest not in report.removed_objects
    assert store.read_bytes(digest) == data


def test_cache_gc_from_the_command_line_survives_junk_in_the_bucket(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from etherealfabric.cli import main

    store = _store(s3)
    store.write_entry("objects/ab/", b"")
    store.write_entry("objects/zz/notadigest", b"junk")
    monkeypatch.setenv("ETHEREALFABRIC_STORE", store.url)
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", TEAM_KEY)
    home = tmp_path / "home"
    home.mkdir()
    Journal(home / "journal.db").close()
    result = CliRunner().invoke(main, ["cache", "gc", "--home", str(home), "--grace", "0"])
    assert result.exit_code == 0, result.output


def test_reading_an_absent_entry_leaves_no_temp_file(s3: MotoServer, tmp_path: Path) -> None:
    """Every lookup of an absent entry through the local layer (a lease probe, two per node
    a run computes) left an empty temp file in ``$TMPDIR/etherealfabric-<uid>/``."""
    temp = tmp_path / "temp"
    store = ObjectStore(
        f"s3://{s3.bucket}/{uuid.uuid4().hex}",
        storage_options=s3.options,
        signing_key=TEAM_KEY,
        temp_dir=temp,
    )
    for n in range(3):
        with pytest.raises(FileNotFoundError):
            store.open_entry(f"leases/ab/{n:032x}.1")
    store.write_entry("leases/ab/x.1", b"{}")
    with store.open_entry("leases/ab/x.1") as fp:
        assert fp.read() == b"{}"
    assert [p.name for p in temp.iterdir()] == []


@node
def _files(folder: Directory) -> dict[str, File]:
    return {p.name: File(str(p)) for p in sorted(Path(folder).glob("*.txt"))}


@node
def _words(f: File) -> int:
    return len(Path(f).read_text().split())


@node
def _add(counts: dict[str, int]) -> int:
    return sum(counts.values())


def test_a_teammates_map_hit_keeps_its_whole_record_in_the_journal(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bob's map, every child a hit from the shared store, wrote a record of its outputs only
    into his journal (no node, no children): `cache verify` called it a bad record, and
    `cache verify --fix` deleted it."""
    from click.testing import CliRunner

    from etherealfabric.cli import main

    store = _store(s3)
    monkeypatch.setenv("ETHEREALFABRIC_STORE", store.url)
    monkeypatch.setenv("ETHEREALFABRIC_S3_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("ETHEREALFABRIC_SIGNING_KEY", TEAM_KEY)

    def run(who: str) -> int:
        monkeypatch.setenv("ETHEREALFABRIC_HOME", str(tmp_path / who))
        project = tmp_path / f"{who}-checkout"
        (project / "data").mkdir(parents=True)
        for n in range(4):
            (project / "data" / f"f{n}.txt").write_text("word " * n)
        with Workflow("words", root=project) as wf:
            _add(_words.map(_files(Directory(str(project / "data")))))
        results = wf.execute()
        assert results.ok, results.errors
        return results.executed

    assert run("alice") > 0
    assert run("bob") == 0
    with Journal(tmp_path / "bob" / "journal.db") as journal:
        rows = journal.conn.execute("SELECT node, record FROM actions").fetchall()
    records = {node: json.loads(record) for node, record in rows}
    assert records["_words"].get("node") == "_words", records["_words"]
    result = CliRunner().invoke(main, ["cache", "verify", "--home", str(tmp_path / "bob")])
    assert "bad record" not in result.output, result.output


def test_writing_bytes_the_bucket_has_marks_them_as_just_written(
    s3: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large output whose bytes are already in the bucket is not uploaded again; on S3 it was
    not refreshed either (a local folder's is): a collection running before the record naming
    it was written (a node's next output still uploading, ``cache push``) took it for an old
    object no record names and deleted it, and the record then named missing bytes."""
    import etherealfabric.store._objectstore as objectstore

    monkeypatch.setattr(objectstore, "REFRESH_AGE", 1.0, raising=False)  # (a minute, really)
    store = _store(s3)
    data = bytes(range(256)) * 1024  # 256 KiB: an object, not inline
    with store.writer() as writer:
        writer.write(data)
        first = writer.commit()
    time.sleep(3)  # (S3 times are whole seconds)
    with store.writer() as writer:  # the same bytes again: a teammate's run, a push
        writer.write(data)
        again = writer.commit()
    assert again.digest == first.digest
    report = collect_shared(store, grace=2.0)  # before the record naming it is written
    assert first.digest not in report.removed_objects
    assert store.read_bytes(first.digest) == data


def test_an_empty_entry_planted_as_a_checkpoint_neither_fails_a_forced_node_nor_stays(
    s3: MotoServer,
) -> None:
    """A ranged GET of an empty S3 object is refused (416): ``read_head`` raised a StoreError,
    so a bucket writer who planted an empty checkpoint failed every ``run --force`` of that
    node (its old checkpoint is deleted first) with "range not satisfiable"."""
    store = _store(s3)
    key = "0123456789abcdef0123456789abcdef"
    name = f"checkpoints/{key[:2]}/{key}"
    store.write_entry(name, b"")
    assert store.read_head(name, 100) == b""
    store.delete_checkpoint(key)
    assert store.entry_info(name) is None
    with pytest.raises(FileNotFoundError):
        store.read_head("checkpoints/ab/absent", 100)


def test_a_huge_record_is_refused_without_being_read_whole(
    s3: MotoServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bucket writer's record of hundreds of MB was read whole (and parsed) by every lookup
    of its key: 300 MB took 1.1 GB of memory in each teammate's run. A record over
    ``MAX_RECORD_BYTES`` (64 MiB; 2 kB here) is a miss naming the entry, read no further; one
    under it is as before. (Padded with spaces, a signed record still verifies: the old code
    used it, reading it whole.)"""
    import logging

    import etherealfabric.store._trust as trust

    monkeypatch.setattr(trust, "MAX_RECORD_BYTES", 2000, raising=False)
    store = _store(s3)
    key = "0123456789abcdef0123456789abcdef"
    store.put_action(key, {"node": "n", "outputs": {}, "created_at": 1.0})
    assert store.get_action(key) is not None
    name = f"actions/{key[:2]}/{key}.json"
    store.write_entry(name, store.read_entry(name) + b" " * 5000)
    reads: list[int] = []
    original = store._cat  # every GET of the store's reads

    def counting(path: str, size: int | None, **where: int) -> bytes:
        data = original(path, size, **where)
        reads.append(len(data))
        return data

    monkeypatch.setattr(store, "_cat", counting)
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        assert store.get_action(key) is None
    assert "larger than 2000 bytes" in caplog.text and name in caplog.text
    assert max(reads) <= 2001
    # a teammate's recomputed record replaces it
    store.put_action(key, {"node": "n", "outputs": {}, "created_at": 2.0})
    record = store.get_action(key)
    assert record is not None and record["created_at"] == 2.0


def test_gc_reads_no_planted_roots_entry_whole(
    s3: MotoServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import etherealfabric.store._sharedgc as sharedgc

    monkeypatch.setattr(sharedgc, "MAX_RECORD_BYTES", 2000, raising=False)
    store = _store(s3)
    store.write_entry(f"roots/ab/{'ab' * 16}.json", b'{"keys": []}' + b" " * 5000)
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        report = collect_shared(store, dry_run=True)
    assert report.homes == 0
    assert "malformed roots entry" in caplog.text


def test_a_huge_planted_lease_is_not_read_whole(
    s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every node a run computes probes its key's lease entries in the bucket, through the
    local layer, which downloaded each entry whole and read it into memory: a planted lease
    of a few GB did that to every teammate's run. A lease is a few hundred bytes: only its
    head is read (one ranged GET), and a lease that long is not one."""
    import os

    from etherealfabric.store import LayeredStore, LocalStore
    from etherealfabric.store._leases import StoreLeases, lease_name

    remote = _store(s3)
    store = LayeredStore(LocalStore(tmp_path / "home"), remote)
    key = "0123456789abcdef0123456789abcdef"
    forged = b'{"owner": "x", "pad": "%s", "expires": %d}' % (b"a" * 3_000_000, time.time() + 60)
    remote.write_entry(lease_name(key, 1), forged)
    moved: list[int] = []
    get_file, cat = remote.fs.get_file, remote._cat  # every download and GET of the store's

    def counting_get(rpath: str, lpath: str, **kw: object) -> None:
        get_file(rpath, lpath, **kw)
        moved.append(os.path.getsize(lpath))

    def counting_cat(path: str, size: int | None, **where: int) -> bytes:
        data = cat(path, size, **where)
        moved.append(len(data))
        return data

    monkeypatch.setattr(remote.fs, "get_file", counting_get)
    monkeypatch.setattr(remote, "_cat", counting_cat)
    assert StoreLeases(store, "run-1").acquire(key)  # not a lease: the key is free
    assert moved and max(moved) <= 64 * 1024


def test_a_huge_unsigned_checkpoint_is_refused_from_its_first_line(
    s3: MotoServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint from the bucket (a teammate's, to resume from) was read whole before its
    signature line was checked: a planted multi-GB checkpoint was read into the memory of the
    run whose node loaded it. Its head is checked first."""
    import logging

    store = _store(s3)
    key = "0123456789abcdef0123456789abcdef"
    store.write_entry(f"checkpoints/{key[:2]}/{key}", b"\x80\x04" + b"a" * 3_000_000)
    moved: list[int] = []
    cat = store._cat  # every GET of the store's reads

    def counting(path: str, size: int | None, **where: int) -> bytes:
        data = cat(path, size, **where)
        moved.append(len(data))
        return data

    monkeypatch.setattr(store, "_cat", counting)
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        assert store.get_checkpoint(key) is None
    assert "not signed" in caplog.text
    assert moved and max(moved) < 1000
    monkeypatch.setattr(store, "_cat", cat)
    store.put_checkpoint(key, b"a signed state")  # a good one still loads
    assert store.get_checkpoint(key) == b"a signed state"
