"""Values a node's code reads that stand for state outside the value: reported, not covered.

A global (or closure cell, or default) read by a node is hashed by value; some objects have a
value that says nothing of what the node gets from them:

- **external state**: an open file (``FH = open(...)``), a database connection
  (``sqlite3.connect``, DuckDB, SQLAlchemy, psycopg), a socket, a lazy reader of data
  (a polars ``LazyFrame`` from ``pl.scan_parquet``, a pyarrow dataset or ``ParquetFile``, an
  h5py file): what the node reads through it when it runs is not in its key;
- **a shared random generator** (``np.random.default_rng(42)``, ``RandomState``,
  ``random.Random``, ``torch.Generator``): each draw advances it, so what a node gets depends
  on which nodes ran before it in the process (and which were cache hits).

:func:`external_note` says which, for the ``uncovered`` list of a fingerprint; the value's digest
is unchanged (it is still hashed as before). :func:`assigned_at` finds the line of the global's
assignment, for the message.

:func:`data_urls` finds the data URLs in a function's code (``pd.read_csv("https://...")``,
``"s3://bucket/key"``, ``"file:///data/x.csv"``): what is there is not checked before a cache
hit either; :func:`url_note` says so for a global holding one (``URL = "https://..."``).

:func:`global_draws` finds the draws from a process's global random generator in a function's
code (``np.random.normal(...)``, ``random.choice(...)``) that the function does not seed itself:
what they give depends on the seed set elsewhere (a module's top level, which a worker process
never runs) and on every draw made before in the process. :func:`clock_reads` finds reads of the
date; :func:`library_settings` the calls that change a library's process-wide settings
(``pd.set_option``, ``np.set_printoptions``, ``plt.rcParams[...] = ``): what other nodes get
then depends on whether this one ran or was a cache hit.
"""

from __future__ import annotations

import contextlib
import dis
import importlib
import io
import linecache
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

from ..errors import a_or_an
from ._encoder import type_name
from ._loaded import loaded
from ._scan import Lookup, all_names, display_path, instruction_line
from ._source import code_file

__all__ = [
    "assigned_at",
    "clock_reads",
    "data_urls",
    "external_note",
    "global_draws",
    "library_settings",
    "url_note",
]

#: a string that is a data URL and nothing else (not a sentence with a link in it); a pattern
#: re compiles, and caches, with the first string holding ``://``
_URL = r"(?i:https?|ftp|s3a?|gs|gcs|az|abfss?|hdfs|file)://\S+"
_URL_NOTE = (
    "data at a URL: what is there is not checked before a cache hit; download it to a file "
    "and pass the node a File"
)


def url_note(value: object) -> str | None:
    """The note for a global holding a data URL; None for any other value."""
    if isinstance(value, str) and "://" in value and re.fullmatch(_URL, value):
        return f"{value!r}, {_URL_NOTE}"
    return None


def data_urls(fn: types.FunctionType) -> list[Lookup]:
    """The data URLs among the string constants of ``fn``'s code (nested code too; not its
    docstring), each once, at the line it is written on."""
    doc = fn.__doc__
    found: dict[str, str] = {}
    stack = [fn.__code__]
    while stack:
        code = stack.pop()
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        if not any(isinstance(c, str) and "://" in c and c != doc for c in code.co_consts):
            continue
        line = code.co_firstlineno
        for ins in dis.get_instructions(code):
            line = instruction_line(ins, line)
            text = ins.argval
            if ins.opname == "LOAD_CONST" and isinstance(text, str) and re.fullmatch(_URL, text):
                found.setdefault(text, f"{display_path(code_file(fn))}:{line}")
    return [Lookup(f"{url!r} ({_URL_NOTE})", where) for url, where in found.items()]


#: (top-level module, class name) of library types that read external state when used
_EXTERNAL = frozenset(
    {
        ("sqlite3", "Connection"),
        ("sqlite3", "Cursor"),
        ("polars", "LazyFrame"),
        ("pyarrow", "Dataset"),
        ("pyarrow", "ParquetFile"),
        ("pyarrow", "RecordBatchReader"),
        ("duckdb", "DuckDBPyConnection"),
        ("sqlalchemy", "Engine"),
        ("sqlalchemy", "Connection"),
        ("psycopg2", "connection"),
        ("psycopg", "Connection"),
        ("pymongo", "MongoClient"),
        ("h5py", "File"),
    }
)
#: (top-level module, class name) of random generators
_RANDOM = frozenset({("numpy", "Generator"), ("numpy", "RandomState"), ("torch", "Generator")})


def _loaded(module: str, name: str) -> tuple[type, ...]:
    """``(module.name,)`` when ``module`` is imported, else ``()``: a value cannot be an
    instance of a class whose module was never imported, so ``random`` and ``socket`` (a few ms
    of a process's first run) are not imported to ask."""
    found = getattr(sys.modules.get(module), name, None)
    return (found,) if isinstance(found, type) else ()


def _named(tp: type, names: frozenset[tuple[str, str]]) -> bool:
    return any(
        (str(getattr(c, "__module__", "")).partition(".")[0], c.__name__) in names
        for c in tp.__mro__
    )


def external_note(value: object) -> str | None:
    """Why ``value``, read by a node's code, does not cover what the node gets from it; None
    for an ordinary value."""
    tp = type(value)
    if isinstance(value, _loaded("random", "Random")) or _named(tp, _RANDOM):
        return (
            f"{a_or_an(type_name(tp))}, a random generator shared between nodes: what a node draws "
            "depends on which nodes ran before it (and which were cache hits); create the "
            "generator inside the node from a seed parameter"
        )
    stdlib = (io.IOBase, *_loaded("socket", "socket"))
    if isinstance(value, stdlib) or _named(tp, _EXTERNAL):
        return (
            f"{a_or_an(type_name(tp))}, which stands for external state (a file, a database, a data "
            "set): what the node reads through it is not in the key; open it inside the node, "
            "from a File parameter or a path"
        )
    return None


def assigned_at(namespace: dict[str, Any], name: str) -> str:
    """`` at file:line`` of the first module-level assignment to ``name`` in the file of the
    module whose globals are ``namespace``; ``""`` when it cannot be found."""
    path = namespace.get("__file__")
    if not isinstance(path, str):
        return ""
    pattern = re.compile(rf"^{re.escape(name)}\s*(:[^=]*)?=(?!=)")
    for number, line in enumerate(linecache.getlines(path), start=1):
        if pattern.match(line):
            return f" at {display_path(path)}:{number}"
    return ""


_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def _global_generators() -> tuple[tuple[object, ...], tuple[object, ...]]:
    """The global generators of ``random`` and numpy (those imported: code cannot draw from a
    module that was never imported), and their seed functions."""
    generators: list[object] = []
    seeds: list[object] = []
    random = sys.modules.get("random")
    if random is not None:
        generators.append(getattr(random, "_inst", None))
        seeds.append(getattr(random, "seed", None))
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        generators.append(getattr(getattr(numpy_random, "mtrand", None), "_rand", None))
        seeds.append(getattr(numpy_random, "seed", None))
    return tuple(g for g in generators if g is not None), tuple(seeds)


def _global_chains(
    fn: types.FunctionType, through: tuple[type, ...] = ()
) -> Iterator[tuple[str, object, int]]:
    """Each global ``fn``'s code (nested code too) loads, and each attribute of a module (or
    of a class of ``through``) taken from one, as ``(dotted text, object, line)``: what a
    call of ``np.random.normal`` or ``datetime.date.today`` names (no code runs: plain
    attributes)."""
    namespace = fn.__globals__
    stack = [fn.__code__]
    while stack:
        code = stack.pop()
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        line, obj, text = code.co_firstlineno, None, ""
        for ins in dis.get_instructions(code):
            line = instruction_line(ins, line)
            if ins.opname == "LOAD_GLOBAL":
                obj, text = namespace.get(str(ins.argval)), str(ins.argval)
            elif ins.opname in _LOADS and (
                isinstance(obj, types.ModuleType) or any(obj is c for c in through)
            ):
                obj = getattr(obj, str(ins.argval), None)
                text = f"{text}.{ins.argval}"
            else:
                obj = None
                continue
            yield text, obj, line


def global_draws(fn: types.FunctionType, mark: str) -> list[Lookup]:
    """The calls of ``fn``'s code (nested code too) that draw from a global random generator
    through a module (``np.random.normal``, ``random.random``), each once at its first line,
    marked ``mark``; none when the code also seeds a global generator itself."""
    namespace = fn.__globals__
    names = all_names(fn.__code__)
    if "random" in names and "numpy.random" not in sys.modules and loaded("numpy"):
        with contextlib.suppress(Exception):  # numpy 2 imports it on first use of np.random:
            importlib.import_module("numpy.random")  # as the node will, to see its draws
    generators, seeds = _global_generators()
    modules = [m for m in (sys.modules.get("random"), sys.modules.get("numpy.random")) if m]
    if "random" not in names and not any(namespace.get(n) is m for n in names for m in modules):
        return []  # no module.random.X, no alias of one: most code, at once (a draw imported
    # by name, `from numpy.random import normal`, is a global value: external_note names it)
    draws: dict[str, int] = {}
    seeded = False
    for text, obj, line in _global_chains(fn):
        if any(obj is s for s in seeds):
            seeded = True
        elif "." in text and any(getattr(obj, "__self__", None) is g for g in generators):
            draws.setdefault(text, line)
    if seeded or not draws:
        return []
    where = display_path(code_file(fn))
    return [Lookup(f"{text}(...) {mark}", f"{where}:{line}") for text, line in draws.items()]


#: the methods of date classes that read the clock
_CLOCK_METHODS = frozenset({"today", "now", "utcnow"})


def _clock_classes() -> tuple[type, ...]:
    """The date classes whose ``today()``/``now()`` read the clock (pandas' if imported)."""
    import datetime

    found: list[type] = [datetime.date, datetime.datetime]
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(getattr(pandas, "Timestamp", None), type):
        found.append(pandas.Timestamp)
    return tuple(found)


def clock_reads(fn: types.FunctionType, mark: str) -> list[Lookup]:
    """The calls of ``fn``'s code (nested code too) that read the date or time of day
    through a global (``datetime.date.today()``, ``date.today()``, ``datetime.now()``,
    ``pd.Timestamp.now()``), each once at its first line, marked ``mark``. Durations
    (``time.time()``, ``perf_counter()``) are not: they time the node, not its result."""
    names = all_names(fn.__code__)
    if _CLOCK_METHODS.isdisjoint(names):
        return []  # no today/now/utcnow named at all: most code, at once
    classes = _clock_classes()
    reads: dict[str, int] = {}
    for text, obj, line in _global_chains(fn, classes):
        owner = getattr(obj, "__self__", None)
        if getattr(obj, "__name__", None) in _CLOCK_METHODS and any(owner is c for c in classes):
            reads.setdefault(text, line)
    if not reads:
        return []
    where = display_path(code_file(fn))
    return [Lookup(f"{text}() {mark}", f"{where}:{line}") for text, line in reads.items()]


#: the functions (and objects) by which a library's process-wide settings change, by module
_SETTERS = {
    "pandas": ("set_option", "reset_option", "options"),
    "numpy": ("set_printoptions", "seterr"),
    "matplotlib": ("rc", "rcParams", "use"),
    "matplotlib.pyplot": ("rc", "rcParams"),
    "matplotlib.style": ("use",),
    "torch": ("set_default_dtype", "set_default_device", "set_default_tensor_type"),
    "locale": ("setlocale",),
    "decimal": ("setcontext",),
}
_SETTER_NAMES = frozenset(name for names in _SETTERS.values() for name in names)


def library_settings(fn: types.FunctionType, mark: str) -> list[Lookup]:
    """The places ``fn``'s code (nested code too) changes a library's process-wide settings
    through a global (``pd.set_option(...)``, ``np.set_printoptions(...)``, ``plt.rcParams``,
    ``torch.set_default_dtype(...)``), each once at its first line, marked ``mark``: the
    nodes that run after it in the process see them, unless it is a cache hit."""
    if _SETTER_NAMES.isdisjoint(all_names(fn.__code__)):
        return []  # none named at all: most code, at once
    setters = [
        obj
        for module, names in _SETTERS.items()
        if (loaded := sys.modules.get(module)) is not None
        for name in names
        if (obj := getattr(loaded, name, None)) is not None
    ]
    found: dict[str, int] = {}
    for text, obj, line in _global_chains(fn):
        if "." in text and any(obj is s for s in setters):
            found.setdefault(text, line)
    where = display_path(code_file(fn))
    return [Lookup(f"{text} {mark}", f"{where}:{line}") for text, line in found.items()]


def top_level_settings(path: str, namespace: dict[str, Any]) -> list[Lookup]:
    """The library settings the top level of the file ``path`` (a workflow file, whose module
    globals are ``namespace``) changes, outside its functions and classes: each once at its
    first line (``pd.set_option(...)`` under the imports). No key covers them, and a worker
    process, which gets the nodes by value, never runs that code."""
    import ast

    try:
        with open(path, "rb") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return []
    skip = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
    body = [statement for statement in tree.body if not isinstance(statement, skip)]
    if not body:
        return []
    # as a function's body, so that its names are looked up as globals (as a node's are)
    top = ast.FunctionDef(name="<top>", args=ast.arguments([], [], None, [], [], None, []),
                          body=body, decorator_list=[], returns=None, type_comment=None)  # fmt: skip
    module = ast.fix_missing_locations(ast.Module(body=[top], type_ignores=[]))
    try:
        code = compile(module, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return []
    found = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    return library_settings(types.FunctionType(found, namespace), "")
