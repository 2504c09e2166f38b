"""The journal file as SQLite connections: opening it, and its write transactions.

The journal runs in WAL mode. Writes are ``BEGIN IMMEDIATE`` transactions (:func:`transaction`)
retried while the database is locked by another process, so "database is locked" never reaches
the user. (Plain ``BEGIN``, as in ``sqlite_utils.Database.atomic``, can fail with SQLITE_BUSY
when two readers upgrade to writers at once; ``IMMEDIATE`` takes the write lock up front and
waits instead.)

A read-only home (a read-only mount, a folder the user may not write) is opened read-only
(:func:`connect_read_only`): SQLite's ``mode=ro`` reads a WAL journal when its ``-shm`` and
``-wal`` files exist; when they do not (the last writer closed cleanly) the file is complete
and is opened ``immutable`` (so is one whose disk is full: no room for the ``-shm`` file, which
the reading commands then use); when a ``-wal`` file with unmerged commits exists but no ``-shm``,
the two files are copied to a temporary folder and the copy is read. Opening a read-only home
for writing is an error that says so (:class:`ReadOnlyJournalError`). Only a file that SQLite
itself calls damaged or not a database is called that; no other message advises moving the
journal aside (it holds the cache index and the small outputs).

The tables, and the migrations that make them, are in ``_schema.py``.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from ..errors import DamagedJournalError, JournalError
from ..store._writer import filesystem_type

if TYPE_CHECKING:
    import tempfile

__all__ = [
    "CACHE_KIB",
    "ReadOnlyJournalError",
    "connect",
    "connect_read_only",
    "home_writable",
    "insert_rows",
    "is_local_filesystem",
    "retry",
    "transaction",
    "valid_text",
]

T = TypeVar("T")
_LOCK_WAIT_SECONDS = 120.0
#: The page cache of the writing connection, at most (SQLite's default is 2 MiB). A run of
#: 100,000 nodes inserts as many node rows into indexes keyed at random (cache key, node name)
#: of a journal holding many runs: with 2 MiB most inserts read their page back from the OS;
#: with 64 MiB, inserting 500,000 node rows into a 300 MB journal took 4.1 s of CPU instead
#: of 5.9 s and 5.5 s instead of 11 s of wall time. Memory is taken only as pages are read.
CACHE_KIB = 64 * 1024


class ReadOnlyJournalError(JournalError):
    """The journal's home cannot be written (a read-only mount or folder)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"the home {path.parent} is read-only, so the journal {path.name} cannot be "
            "written; read-only commands (runs, show, explain, plan, cache verify) still "
            "work there; to run, use a writable home (--home or ETHEREALFABRIC_HOME)"
        )
        self.path = path


def home_writable(path: Path) -> bool:
    """Whether the journal at ``path`` (and the files SQLite keeps beside it) can be written."""
    if str(path) == ":memory:":
        return True
    if path.exists() and not os.access(path, os.W_OK):
        return False
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders are created on first use
    return os.access(folder, os.W_OK)


def _code(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


_READONLY, _IOERR, _CORRUPT, _CANTOPEN, _NOTADB = 8, 10, 11, 14, 26


def _open_error(path: Path, exc: BaseException) -> JournalError:
    """The error for a journal that could not be opened: damaged only when SQLite says so."""
    if _code(exc) in (_CORRUPT, _NOTADB):
        return DamagedJournalError(
            f"{path} is not a usable EtherealFabric journal ({exc}): the file is damaged. "
            "Move it aside and a new one is created on the next run (its cache index and "
            "small outputs are lost with it)",
            path=str(path),
        )
    if _code(exc) in (_READONLY, _CANTOPEN) and not home_writable(path):
        return ReadOnlyJournalError(path)
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES):
        return ReadOnlyJournalError(path)
    return JournalError(
        f"cannot open the journal at {path}: {exc}. Check that the folder exists, is "
        "readable and writable and its disk is not full, or point ETHEREALFABRIC_HOME elsewhere."
    )


# -- locks and transactions ----------------------------------------------------------------
def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def retry(fn: Callable[[], T], path: Path | None = None) -> T:
    """Call ``fn``; while the database is locked by another process, retry (tenacity).

    With the journal's ``path``, damage SQLite finds only now (a page past the schema that a
    query reads) is the :class:`JournalError` of a damaged journal, naming it."""
    try:
        return _retry(fn)
    except sqlite3.DatabaseError as exc:
        if path is not None and _code(exc) in (_CORRUPT, _NOTADB):
            raise _open_error(path, exc) from exc
        raise


def _retry(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except sqlite3.OperationalError as exc:
        if not _is_locked(exc):
            raise
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    retrying = Retrying(
        retry=retry_if_exception(_is_locked),
        wait=wait_random_exponential(multiplier=0.01, max=0.5),
        stop=stop_after_delay(_LOCK_WAIT_SECONDS),
        reraise=True,
    )
    return retrying(fn)


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``); inside another one, join it."""
    if conn.in_transaction:
        yield conn
        return
    try:
        try:
            retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            retry(lambda: conn.execute("COMMIT"))
        except BaseException:
            # an interrupt (Ctrl-C) may land between BEGIN and the block, or in COMMIT: never
            # leave a transaction open that later writes would join and nobody would commit
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if _code(exc) in (_CORRUPT, _NOTADB):  # a damaged page met by this transaction
            raise _open_error(path, exc) from exc
        if not isinstance(exc, sqlite3.OperationalError):
            raise
        if _code(exc) == _READONLY and not home_writable(path):
            raise ReadOnlyJournalError(path) from exc
        if _is_locked(exc):  # still, after the wait for it
            raise JournalError(
                f"cannot write the journal {path}: it stayed locked by another process for "
                f"over {_LOCK_WAIT_SECONDS:.0f} s ({exc}). Nothing was written; let that "
                "process finish, or stop it (`fuser` names it), then run again."
            ) from exc
        raise JournalError(
            f"cannot write the journal {path}: {exc}. Nothing was half-written; "
            "free disk space or fix the folder's permissions, then run again."
        ) from exc


# -- many rows in few statements ------------------------------------------------------------
#: The most rows one INSERT statement of :func:`insert_rows` carries, within the connection's
#: limit of bound parameters (999 assumed where Python cannot ask). Not more: SQLite takes
#: superlinear time to prepare a long ``VALUES`` list (once a connection per size; 15 values
#: a row: 64 rows 0.2-1.4 ms, 128 rows 5 ms, 512 rows 90 ms, most of a warm run's commit).
ROWS_PER_STATEMENT = 64
_OLD_VARIABLE_LIMIT = 999
_LIMIT_VARIABLE_NUMBER: int | None = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)
_NUMBERED = re.compile(r"\?(\d+)")
_SURROGATE = re.compile("[\ud800-\udfff]")
_STATEMENTS: dict[tuple[str, str, int, int, str], str] = {}


def insert_rows(
    conn: sqlite3.Connection,
    insert: str,
    rows: Sequence[Sequence[Any]],
    values: str = "",
    tail: str = "",
) -> None:
    """Run ``insert`` (``"INSERT [OR ...] INTO table (columns)"``) for each of ``rows``, up to
    :data:`ROWS_PER_STATEMENT` rows per multi-row ``VALUES`` statement (fewer when SQLite's
    limit of bound parameters says so), in their order.

    ``values``: one row's ``VALUES`` tuple, naming a row's values ``?1``, ``?2``... (literals
    allowed, as in ``(?1, 'cached', ?2)``); by default one ``?`` per value. Every row has the
    same number of values; ``tail`` follows them (an ``ON CONFLICT`` clause). Against ``executemany`` (one statement step per row, each releasing
    the GIL), a group commit of thousands of rows makes a few dozen steps: a scheduler whose
    workers hold the GIL waits for it again after each step. The statements of a chunk size
    are made once: full chunks, then the rest in powers of two (a few distinct statements,
    all kept in the connection's statement cache)."""
    if not rows:
        return
    width = len(rows[0])
    values = values or "(" + ",".join(f"?{i}" for i in range(1, width + 1)) + ")"
    getlimit = getattr(conn, "getlimit", None)  # (Python 3.11+, as the constant)
    if getlimit is None or _LIMIT_VARIABLE_NUMBER is None:
        limit = _OLD_VARIABLE_LIMIT
    else:
        limit = int(getlimit(_LIMIT_VARIABLE_NUMBER))
    most = max(1, min(ROWS_PER_STATEMENT, limit // max(width, 1)))
    at = 0
    while at < len(rows):
        left = len(rows) - at
        n = most if left >= most else 1 << (left.bit_length() - 1)
        sql = _STATEMENTS.get((insert, values, width, n, tail)) or _statement(
            insert, values, width, n, tail
        )
        chunk = rows[at : at + n]
        if set(map(len, chunk)) != {width}:  # (C loops: a row's values would shift otherwise)
            raise ValueError(f"insert_rows: rows of different widths ({width} values expected)")
        params = list(chain.from_iterable(chunk))
        try:
            conn.execute(sql, params)
        except UnicodeEncodeError:  # a lone surrogate (a file name os.listdir decoded) in a
            conn.execute(sql, [valid_text(v) if isinstance(v, str) else v for v in params])
        at += n  # node's error or printed output: escaped, rather than the run not recorded


def valid_text(text: str) -> str:
    """``text`` as a journal row can hold it (UTF-8): each lone surrogate written as an escape,
    ``\\xff`` for the byte a name decoded with ``surrogateescape`` (as ``os.listdir`` gives
    names that are not UTF-8) stands for, ``\\ud800`` for another."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

    return _SURROGATE.sub(escape, text)


def _statement(insert: str, values: str, width: int, n: int, tail: str = "") -> str:
    """The statement of ``n`` rows of ``width`` values each (see :func:`insert_rows`)."""

    def tuple_of(row: int) -> str:
        return _NUMBERED.sub(lambda m: f"?{int(m.group(1)) + row * width}", values)

    sql = f"{insert} VALUES {','.join(tuple_of(row) for row in range(n))} {tail}".rstrip()
    _STATEMENTS[insert, values, width, n, tail] = sql
    return sql


# -- opening -------------------------------------------------------------------------------
def connect(path: Path, *, durable: bool = False) -> sqlite3.Connection:
    """Open (creating it and its folders if needed) the journal file in WAL mode, for writing.

    ``durable`` syncs every commit to disk (``synchronous=FULL``) instead of at checkpoints.
    A home that cannot be written raises :class:`ReadOnlyJournalError`.
    """
    if not home_writable(path):
        raise ReadOnlyJournalError(path)
    check_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise _open_error(path, exc) from exc
    try:
        # synchronous first: a new journal's switch to WAL then syncs as the journal does
        # (one sync fewer than SQLite's default FULL); an existing one is in WAL already
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # see CACHE_KIB
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _open_error(path, exc) from exc
    return conn


def check_regular(path: Path) -> None:
    """A :class:`JournalError` when the journal, or its ``-wal`` or ``-shm`` file, is there but
    is no regular file (a FIFO would hang every command opening it; a folder fails as a
    disk I/O error)."""
    import stat

    for one in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = one.stat().st_mode
        except OSError:  # not there (or not readable: said when it is opened)
            continue
        if not stat.S_ISREG(mode):
            kind = (
                "folder"
                if stat.S_ISDIR(mode)
                else "named pipe"
                if stat.S_ISFIFO(mode)
                else ("socket" if stat.S_ISSOCK(mode) else "device")
            )
            raise JournalError(
                f"{one} is a {kind}, not a file: a journal is a SQLite database file; remove "
                "it (or pass another --home)"
            )


def _open_uri(path: Path, options: str) -> sqlite3.Connection:
    uri = f"file:{quote(os.fsencode(path.absolute()))}?{options}"  # (any bytes of a name)
    conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None,
                           check_same_thread=False)  # fmt: skip
    try:
        conn.execute("PRAGMA query_only=1")
        conn.execute("PRAGMA busy_timeout=30000")
        retry(lambda: conn.execute("SELECT count(*) FROM sqlite_master").fetchone())
    except BaseException:
        conn.close()
        raise
    return conn


def connect_read_only(
    path: Path,
) -> tuple[sqlite3.Connection, tempfile.TemporaryDirectory[str] | None]:
    """Open the journal at ``path`` for reading only, writing nothing beside it.

    Returns the connection and, when the journal had to be copied to be read (a ``-wal`` file
    with commits but no ``-shm`` on a read-only folder), the temporary folder of the copy,
    to clean up after closing the connection.
    """
    import shutil  # (and tempfile) here: a run that only writes its journal never needs them
    import tempfile

    if not path.exists():
        raise JournalError(f"no journal at {path}")
    check_regular(path)
    try:
        return _open_uri(path, "mode=ro"), None
    except sqlite3.DatabaseError as exc:
        # CANTOPEN: a folder it cannot write; IOERR: a full disk (no room for the -shm file)
        if _code(exc) not in (_CANTOPEN, _IOERR):
            raise _open_error(path, exc) from exc
    wal = path.with_name(path.name + "-wal")
    try:
        if not wal.exists() or wal.stat().st_size == 0:
            # no commits outside the main file (the last writer closed cleanly): complete
            return _open_uri(path, "immutable=1"), None
        snapshot = tempfile.TemporaryDirectory(prefix="etherealfabric-journal-")
        try:
            copy = Path(snapshot.name) / path.name
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            return _open_uri(copy, "mode=ro"), snapshot
        except BaseException:
            snapshot.cleanup()
            raise
    except (OSError, sqlite3.DatabaseError) as exc:
        raise _open_error(path, exc) from exc


_NETWORK_FS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "afs", "9p", "lustre", "gpfs"}


def is_local_filesystem(path: Path) -> bool:
    """False when ``path`` is on a network file system (where SQLite's WAL is unsafe)."""
    return filesystem_type(path) not in _NETWORK_FS
