"""The audit hook that sees what a running node opens (PEP 578), for run/_reads.py.

While a node runs, its thread's context holds a dict (:func:`watch`) that the hook fills: each
file opened through Python (``open``, ``io.open``, ``os.open``: pandas' CSV readers, numpy,
pickle...) by its path, absolute or ``./``-relative to the working folder as the node gave it
(:func:`as_opened`), mapped to whether it was opened for writing (None: inside
:func:`untracked`, written there too: so a folder it lies in is no output of the node); a folder listed (``os.listdir``, ``os.scandir``) and a SQLite database
connected to, under their marks (run/_folders.py; a folder listed while not there, under
``ABSENT``: checked before a hit, in case it appears); and a file opened to be written whole
(created or truncated, not appended to) once more under its path followed by :data:`WROTE`,
for the warning about files a node writes without declaring them (run/_files.py). The names a
folder held when the node first listed it, and the entries it made or took away by other means
than ``open`` (``os.mkdir``, ``os.rename``, ``os.remove``...), are noted beside (:class:`Opened`):
a folder another writer changed while the node ran makes it drifted (run/_folders.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ._folders import ABSENT, DATABASE, HERE, LISTED, listing_key, showing_source, sqlite_path
from ._forked import SpillingNotes, spill_into, take_spilled
from ._forked import install as install_forks
from ._memoized import Reaching, note
from ._spawned import follow_spawns
from ._started import follow_threads, forget, owner, register
from ._texts import MAX_READS

__all__ = [
    "HERE",
    "WROTE",
    "Opened",
    "as_opened",
    "has_magic",
    "pattern_reads",
    "read_in_process",
    "untracked",
    "unwatch",
    "watch",
    "written_whole",
]

_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: opened to be written whole: created or truncated
_REPLACING = os.O_CREAT | os.O_TRUNC
#: what follows a path in ``opened`` when the node wrote that file whole (no path holds a NUL)
WROTE = "\x00w"
#: the characters that make a path a glob pattern (glob.has_magic's)
_MAGIC = frozenset("*?[")
#: the audit events of a node making or taking away a folder's entry without ``open``: where
#: in each one's arguments its paths are, and their folder descriptors (``dir_fd``)
_MOVES = {
    "os.mkdir": ((0,), (2,)),  # (path, mode, dir_fd)
    "os.rename": ((0, 1), (2, 3)),  # (src, dst, src_dir_fd, dst_dir_fd): os.replace too
    "os.remove": ((0,), (1,)),  # (path, dir_fd): os.unlink too
    "os.rmdir": ((0,), (1,)),
    "shutil.rmtree": ((0,), (1,)),  # (path, dir_fd): its own removals go by descriptor
}
#: the audit events of a folder listed
_LISTINGS = frozenset({"os.listdir", "os.scandir"})
#: the audit event of an unpickler resolving a class or function by name (module, qualname)
_UNPICKLED = "pickle.find_class"
#: the audit events the hook looks at (run/_folders.py for the last three)
_EVENTS = frozenset({"open", "os.listdir", "os.scandir", "sqlite3.connect", _UNPICKLED, *_MOVES})

#: the files the running node opened (path -> opened for writing; None: in an untracked
#: block, or named by one), in its thread's context
_opened: contextvars.ContextVar[dict[str, bool | None] | None] = contextvars.ContextVar(
    "etherealfabric_opened", default=None
)
#: inside an untracked() block
_untracking: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "etherealfabric_untracking", default=False
)
#: the memoized user functions the watched node reaches (run/_memoized.py)
_memoized: contextvars.ContextVar[Reaching | None] = contextvars.ContextVar(
    "etherealfabric_memoized", default=None
)
_installed = False
_spawns_followed = False  # multiprocessing pickles its processes for following (_spawned.py)
_install_lock = threading.Lock()
#: The process's working folder, known once the hook is installed and until an ``os.chdir`` is
#: seen (then None: asked each time). ``os.getcwd`` gives the GIL up, so one call per node
#: cost a thread switch on the threads backend (a third of its time per trivial node).
_cwd: str | None = None
_chdir_seen = False


def working_folder() -> str:
    """``os.getcwd()``, without the system call while the process never changed folder."""
    known = _cwd
    return known if known is not None else os.getcwd()


def back_to_start(opened: Opened) -> None:
    """After a node that changed the process's folder (``os.chdir("sub")``) and did not change
    back: back to the folder it started in, where the other nodes and the check of its own
    ``./`` paths find them (its ``data.csv`` of ``sub/`` was recorded as ``./data.csv``, and
    the next run hashed the top folder's). Only for a node that called ``os.chdir`` itself:
    another node's end must not move a node that is in its folder still."""
    with contextlib.suppress(OSError):
        if os.getcwd() != opened.cwd:
            os.chdir(opened.cwd)


def _changed_folder() -> None:
    """An ``os.chdir`` (or ``fchdir``) is about to run: the folder is asked from now on."""
    global _cwd, _chdir_seen
    with _install_lock:  # (so that _install cannot keep a folder read before this one)
        _cwd, _chdir_seen = None, True


class Opened(dict[str, bool | None]):
    """A node's ``opened`` (:func:`watch`), with what tells a folder it listed from one changed
    while it ran (run/_folders.py's :func:`listings_read`): ``listings``, each folder's
    absolute path -> the names it held when the node first listed it (None: more than
    :data:`MAX_READS`); ``moved``, the absolute paths the node made or took away itself other
    than by ``open`` (a folder made, a file renamed into place or removed); and
    ``unpickled``, the modules whose classes or functions a pickle the node loaded named (a
    model file's class: its code is part of what the node read, run/_reads.py); ``spill``,
    the folder where the processes it forked write what they noted (run/_forked.py)."""

    spill: str | None = None
    changed_folder = False  # it called os.chdir (run/_worker.py puts the folder back after it)

    def __init__(self) -> None:
        super().__init__()
        self.listings: dict[str, frozenset[str] | None] = {}
        self.moved: set[str] = set()
        self.unpickled: set[str] = set()
        # where its ./paths are from (a node may os.chdir): working_folder(), inline
        self.cwd = _cwd if _cwd is not None else os.getcwd()

    def frozen(self) -> Opened:
        """A copy, taken at once (C-level copies, which no other thread interleaves): a thread
        the node started may still note opens in this one after the node ended."""
        copy = Opened()
        dict.update(copy, dict.copy(self))
        copy.listings, copy.moved = dict(self.listings), set(self.moved)
        copy.unpickled, copy.cwd = set(self.unpickled), self.cwd
        if self.spill is not None:  # what its forked children noted (run/_forked.py)
            take_spilled(self.spill, copy)
        return copy

    def saw(self, folder: str) -> None:
        """Note the names ``folder`` holds now, before the node lists it (the first
        :data:`MAX_READS` folders only)."""
        if len(self.listings) < MAX_READS:
            with contextlib.suppress(OSError):
                names = os.listdir(folder)
                self.listings[os.path.abspath(folder)] = (
                    frozenset(names) if len(names) <= MAX_READS else None
                )

    def moves(self, event: str, args: tuple[Any, ...]) -> None:
        """Note the paths an ``os.mkdir``, ``os.rename``, ``os.remove`` or ``os.rmdir`` makes
        or takes away (not those relative to a folder's descriptor: rare, and not resolved)."""
        paths, fds = _MOVES[event]
        if any(args[i] not in (None, -1) for i in fds):  # (-1: none given)
            return
        for i in paths:
            if args[i] is not None and not isinstance(args[i], int):
                self.moved.add(os.path.abspath(os.fsdecode(args[i])))


class _SpillingOpened(SpillingNotes, Opened):
    """The node's ``Opened`` in a process it forked: what it notes reaches the node too
    (run/_forked.py)."""


def _current_opened() -> Opened | None:
    """The ``Opened`` of the node this thread works for: its own, or (a thread a running
    node started) its starter's (run/_forked.py, at a fork)."""
    opened = _opened.get()
    if opened is None:
        try:
            found = owner(sys._getframe(1))
        except Exception:
            return None
        opened = found[0] if found else None
    return opened if isinstance(opened, Opened) else None


def _adopt(opened: Opened) -> None:
    """In a forked child: note what this thread opens in ``opened`` (run/_forked.py)."""
    _opened.set(opened)


def adopt_spawned(folder: str, cwd: str) -> None:
    """In a process a node started afresh (run/_spawned.py): note what this thread opens, with
    ``./`` paths from the node's folder ``cwd``, into the node's spill ``folder``."""
    _install()
    opened = _SpillingOpened()
    opened.cwd, opened.spill = cwd, folder  # (its own children spill there too)
    spill_into(opened, folder)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: note the files a watched node opens, the folders it lists and the
    SQLite databases it connects to (never raises: an exception here would fail the ``open``
    itself)."""
    if event not in _EVENTS:
        if event == "os.chdir":
            _changed_folder()
            opened = _opened.get()
            if isinstance(opened, Opened):
                opened.changed_folder = True
        elif event == "import" and not _spawns_followed:
            _follow_spawns()  # (multiprocessing may have been loaded: its next import is heard)
        return
    opened = _opened.get()
    if opened is not None:
        _note(event, args, opened, sys._getframe(1))
        return
    try:  # a thread a running node started? (run/_started.py): each such node hears it
        frame = sys._getframe(1)
        owners = owner(frame)
    except Exception:
        return
    for one in owners:
        _note(event, args, one, frame)


def _note(
    event: str, args: tuple[Any, ...], opened: dict[str, bool | None], frame: FrameType
) -> None:
    """Note ``event`` for the node whose audit dict is ``opened`` (see :func:`_hook`; ``frame``:
    the audited call's)."""
    try:
        if event in _MOVES:
            if isinstance(opened, Opened):
                opened.moves(event, args)
            return
        if event == _UNPICKLED:
            if isinstance(opened, Opened) and not _untracking.get():
                opened.unpickled.add(str(args[0]))
            return
        if isinstance(opened, Opened) and event != "sqlite3.connect":  # (":memory:", URIs)
            args = _from_start(opened, event, args)
        if event == "open":
            path, _, flags = args
            if path is None or isinstance(path, int):  # a file descriptor: no path to check
                return
            path = as_opened(os.fsdecode(path))
            if flags & _WRITING:
                if _untracking.get():  # a progress marker: neither read nor the node's output
                    opened[path] = True if opened.get(path) else None
                    return
                opened[path] = True
                if flags & _REPLACING and not flags & os.O_APPEND:
                    opened[path + WROTE] = True  # written whole: an output, if it stays
                return
            if path.endswith(".py") and showing_source(frame):
                return
            if not _untracking.get():
                _note_read_here(path)
        elif event == "sqlite3.connect":  # SQLite opens it in C: a read (run/_folders.py)
            database = sqlite_path(args[0])
            if database is None:
                return
            if not os.path.exists(database):  # one it creates: written, not read
                opened[as_opened(database)] = True
                return
            path = as_opened(database) + DATABASE
        else:  # os.listdir, os.scandir: a folder's names
            listed = listing_key(args[0], frame)
            if listed is None:
                return
            path = listed
            folder = os.fsdecode(args[0]) if args[0] is not None else "."
            if not os.path.isdir(folder):
                if not _untracking.get():  # (glob over a folder that is not there yet)
                    opened.setdefault(listed[: -len(LISTED)] + ABSENT, False)
                return
            if path not in opened and not _untracking.get() and isinstance(opened, Opened):
                opened[path] = False  # (first: listing it here makes this hook hear it again)
                opened.saw(folder)
        how = None if _untracking.get() else False
        opened.setdefault(path, how)
        reaching = _memoized.get() if event == "open" else None
        if reaching is not None and (codes := reaching.codes()):  # for its other callers too
            note(path, how, frame, codes)
    except Exception:  # a path we cannot read is one we do not watch
        pass


#: the files nodes of this process read, by their code (a function's code object, a class)
#: and name, for :func:`read_in_process` (at most :data:`_MAX_READ_HERE` of them)
_read_here: dict[tuple[object, str], set[str]] = {}
_MAX_READ_HERE = 10_000


def _note_read_here(path: str) -> None:
    reaching = _memoized.get()
    if reaching is None:
        return
    key = (code_key(reaching.code), os.path.basename(path))
    known = _read_here.get(key)
    if known is None:
        if len(_read_here) >= _MAX_READ_HERE:
            return
        known = _read_here[key] = set()
    if len(known) < 16:
        known.add(os.path.abspath(path))


def code_key(code: object) -> object:
    """What stands for a node's code in :data:`_read_here`: a function's code object (the same
    for every node made from it), else the class."""
    return getattr(code, "__code__", code)


def read_in_process(text: str, code: object) -> list[str]:
    """The absolute paths of files that nodes of ``code`` (the same ``@node`` function or
    class) read in this process and that end with the relative path ``text``: what a library
    cache keyed by name (Jinja's templates, loaded once per environment) serves the other
    nodes of a fan-out, which open nothing, because the first one read it."""
    if os.path.isabs(text):
        return []
    tail = os.sep + os.path.normpath(text)
    found = _read_here.get((code_key(code), os.path.basename(text)), ())
    return sorted(p for p in found if p.endswith(tail))


def _from_start(opened: Opened, event: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with a relative path made absolute when the process's working folder is not
    where the node started (it called ``os.chdir``): ``open("data.csv")`` in ``sub/`` reads
    ``sub/data.csv``, not the ``./data.csv`` of the folder it started in."""
    path = args[0] if args else None
    if isinstance(path, int) or (path is None and event not in _LISTINGS):
        return args
    if path is not None and os.path.isabs(path):
        return args
    now = os.getcwd()  # (asked, not kept: a chdir in C, ctypes' libc.chdir, is heard by no hook)
    if now == opened.cwd:
        return args
    return (os.path.join(now, os.fsdecode(path if path is not None else ".")), *args[1:])


def watch(
    code: Callable[..., Any] | type | None = None,
) -> tuple[dict[str, bool | None], contextvars.Token[dict[str, bool | None] | None]]:
    """Start noting the files opened in this context (this thread): the dict they go to, and
    the token that :func:`unwatch` takes (in a ``finally``). ``code``: the node's function or
    class (what memoized helpers it reaches read is noted for them too)."""
    _install()
    opened: dict[str, bool | None] = Opened()
    _memoized.set(Reaching(code) if code is not None else None)
    register(opened, code)  # (for the threads it starts)
    return opened, _opened.set(opened)


def _install() -> None:
    global _installed, _cwd
    if not _installed:
        with _install_lock:
            if not _installed:
                sys.addaudithook(_hook)
                follow_threads(_working_for)  # (no audit event says a thread starts)
                install_forks(_current_opened, _SpillingOpened, _adopt)  # (nor that one forks)
                _follow_spawns()  # (nor that multiprocessing starts one afresh)
                if not _chdir_seen:  # (the hook is on: a later chdir is heard)
                    _cwd = os.getcwd()
                _installed = True


def _follow_spawns() -> None:
    global _spawns_followed
    with contextlib.suppress(Exception):  # (in the audit hook: never raises)
        _spawns_followed = follow_spawns(_current_opened, adopt_spawned)


def _working_for() -> list[Any]:
    """The audit dicts of the nodes the calling thread works for: its own node's, or those of
    the nodes that started it or whose code is on its stack (run/_started.py)."""
    opened = _opened.get()
    return [opened] if opened is not None else owner(sys._getframe(2))


def has_magic(text: str) -> bool:
    """Whether ``text`` is a glob pattern (``glob.has_magic``, without importing glob)."""
    return not _MAGIC.isdisjoint(text)


def pattern_reads(pattern: str, limit: int) -> tuple[list[str], list[str]]:
    """What the glob ``pattern`` (``**`` recursive, as polars and pyarrow read one) matches
    now, at most ``limit`` paths, and the folders looked at to find them, noted as a node's
    listings are (``./data`` + :data:`LISTED`): a file added where the pattern looks is then a
    change, as for a node's own ``glob.glob``. Nothing when its fixed folder is not there, or
    when a ``**`` pattern would look at more than ``limit`` entries below it."""
    parts = pattern.split(os.sep)
    fixed = list(itertools.takewhile(lambda part: not has_magic(part), parts))
    folder = os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else os.curdir)
    if not os.path.isdir(folder) or ("**" in parts and not _at_most(folder, limit)):
        return [], []
    _install()
    opened: dict[str, bool | None] = {}
    token = _opened.set(opened)
    try:
        import glob  # (only for a pattern read natively: not on every run's import)

        matches = list(itertools.islice(glob.iglob(pattern, recursive=True), limit))
    finally:
        _opened.reset(token)
    return matches, [p for p in opened if p.endswith(LISTED)]


def _at_most(folder: str, limit: int) -> bool:
    """Whether ``folder`` holds at most ``limit`` entries below it (hidden folders, which
    ``**`` skips, left out)."""
    todo, seen = [folder], 0
    while todo:
        try:
            with os.scandir(todo.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > limit:
                        return False
                    if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                        todo.append(entry.path)
        except OSError:
            continue
    return True


def unwatch(token: contextvars.Token[dict[str, bool | None] | None]) -> None:
    """Stop noting files opened in this context (and forget the node's memoized helpers: a
    pool thread would otherwise keep the last node's code alive)."""
    forget(_opened.get())
    _opened.reset(token)
    _memoized.set(None)


@contextmanager
def untracked(*paths: str | os.PathLike[str]) -> Iterator[None]:
    """Inside a node, open files in this block without making them part of what its cache
    hits are checked against: files that do not change the result. ``paths`` are left out
    too, wherever they are opened: files and folders the node names (a string in its code or
    arguments) that native code reads, which no audit event shows.

    ::

        @node
        def train(df):
            with etherealfabric.untracked():
                token = Path("~/.service-token").expanduser().read_text()
            with etherealfabric.untracked("logs/metrics.parquet"):
                history = pd.read_parquet("logs/metrics.parquet")
            ...
    """
    opened = _opened.get()
    if opened is not None:
        for path in paths:
            absolute = os.path.abspath(os.path.expanduser(os.fspath(path)))
            opened[absolute] = opened[absolute.rstrip(os.sep) + os.sep] = None
    token = _untracking.set(True)
    try:
        yield
    finally:
        _untracking.reset(token)


def written_whole(opened: dict[str, bool | None]) -> list[str]:
    """Take out of ``opened`` the files written whole (their :data:`WROTE` entries), and
    return their paths as noted."""
    marked = [path for path in opened if path.endswith(WROTE)]
    for path in marked:
        del opened[path]
    return [path[: -len(WROTE)] for path in marked]


def as_opened(path: str) -> str:
    """How a path a node opens or names is noted: absolute when it was given so, else relative
    to the working folder, as ``./path``, for that is the file the node reads wherever it runs
    (a run from another folder reads, and so checks, another file)."""
    if os.path.isabs(path):
        return os.path.abspath(path)
    return HERE + os.path.normpath(path)
