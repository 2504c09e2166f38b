"""The texts a node's code and arguments hold that may name files it reads (run/_reads.py):
its string constants (a class node's methods', through its bases), its class attributes
(inherited ones too: ``self.PATH``), the data the globals and user-module attributes its code
reads hold (as its code fingerprint found them: a class's attributes, a dataclass's or a
``SimpleNamespace``'s fields too) and its closure cells, the same of the helpers it calls, its
string arguments and the defaults it did not receive. A ``pathlib`` path among them is a path
whatever its text: ``Path("./data")``, whose text is the bare word ``data``, is given as
``./data``; so is a bare word the code hands to ``Path(...)`` or ``os.listdir``
(run/_pathcalls.py)."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import weakref
from collections.abc import Iterator, Mapping
from contextlib import suppress
from itertools import islice, pairwise
from pathlib import PurePath
from types import CodeType, FunctionType, ModuleType, SimpleNamespace
from typing import Any

from ..errors import HashingError
from ..hashing._fingerprint import bound_values, generation, helpers_called
from ..hashing._usercode import is_user_code
from ._pathcalls import path_arguments, path_text

__all__ = [
    "MAX_READS",
    "argument_strings",
    "code_texts",
    "defaults_used",
    "file_like",
    "path_texts",
    "words_of",
]

#: the files of one node checked before its cache hits; beyond, a warning says which are not
MAX_READS = 1000


def defaults_used(code: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[Any]:
    """The default values of the parameters the node did not receive: received as well
    (``def total(path="sales.parquet")`` called as ``total()``); a class node's ``__init__``'s."""
    fn = getattr(code, "__init__", None) if isinstance(code, type) else code
    if not isinstance(fn, FunctionType) or not (fn.__defaults__ or fn.__kwdefaults__):
        return []  # (most nodes: no defaults, and co_varnames makes a tuple a read)
    positional = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    if isinstance(code, type):
        positional = positional[1:]  # self
    defaults = fn.__defaults__ or ()
    first = len(positional) - len(defaults)  # the first parameter with a default
    used = [
        value
        for i, value in enumerate(defaults, start=first)
        if i >= len(args) and i >= 0 and positional[i] not in kwargs
    ]
    return used + [v for k, v in (fn.__kwdefaults__ or {}).items() if k not in kwargs]


#: the texts of each node's code that may be paths, by code object: (binding generation, texts)
_strings: weakref.WeakKeyDictionary[Any, tuple[int, tuple[str, ...]]] = weakref.WeakKeyDictionary()


def code_texts(code: Any) -> tuple[str, ...]:
    """The texts of a node's code that may name files: its string constants (a class node's
    methods', and its class attributes), and the texts the globals and user-module attributes
    its code reads hold (``SALES = "sales.parquet"``, ``config.PATHS``; as its code fingerprint
    found them) and its closure cells, and the bare words it makes paths (``Path("data")``:
    ``./data``, run/_pathcalls.py). Computed once per code object (and graph build: a rebound global counts);
    the scheduler sends them with the task (run/_tasks.py): a worker process does not analyse
    the code again."""
    gen = generation()
    try:  # (not contextlib.suppress: a call per node the less)
        known = _strings[code]
        if known[0] == gen:
            return known[1]
    except (KeyError, TypeError):
        pass
    try:
        bound: tuple[object, ...] = bound_values(code)
        helpers, helper_data = helpers_called(code)
    except HashingError:  # not fingerprintable: its constants only
        bound, helpers, helper_data = (), (), ()
    if isinstance(code, type):  # (a class attribute, maybe inherited: read as self.PATH)
        bound = (*_class_attributes(code), *bound)
    # a helper it calls names files for it (``io.load()`` reading ``pd.read_parquet(SALES)``)
    bound = (*bound, *helper_data)
    own = _constant_strings(code) + tuple(t for h in helpers for t in _constant_strings(h))
    # a bare word made a path in the code (``Path("data")``, ``os.listdir("data")``)
    own += tuple(dict.fromkeys(t for c in (code, *helpers) for t in path_arguments(c)))
    bound = (*bound, *_closure_values(code), *(v for h in helpers for v in _closure_values(h)))
    started = {name for flag, name in pairwise(own) if flag == "-m"}  # module names, no files
    own = tuple(t for t in own if t not in started) + tuple(_run_modules(own))  # (their files)
    texts = own + tuple(islice((t for value in bound for t in _held_texts(value)), 4 * MAX_READS))
    with suppress(TypeError):  # not weakly referenceable: computed again next time
        _strings[code] = (gen, texts)
    return texts


#: a module name as ``python -m`` takes it
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _run_modules(texts: tuple[str, ...]) -> Iterator[str]:
    """The source file of each module the texts start as a program (``"-m", "tools.prep"``:
    ``tools/prep.py``, or a package's ``__main__.py``), found without importing anything,
    under the working folder or an entry of ``sys.path``: a program the node starts reads it,
    as it reads a script it names by path. A library's module is left out."""
    from ..hashing._usercode import is_library_file

    for flag, name in pairwise(texts):
        if flag != "-m" or not _DOTTED.fullmatch(name):
            continue
        relative = name.replace(".", os.sep)
        for base in dict.fromkeys([os.curdir, *(p for p in sys.path if p)]):
            found = next(
                (
                    path
                    for path in (os.path.join(base, relative + ".py"),
                                 os.path.join(base, relative, "__main__.py"))
                    if os.path.isfile(path)
                ),
                None,
            )  # fmt: skip
            if found is not None:
                if not is_library_file(os.path.abspath(found)):
                    yield os.path.normpath(found) if base == os.curdir else os.path.abspath(found)
                break


def _closure_values(code: Any) -> list[Any]:
    """The data a function's closure cells hold (``D = Path("data")`` in the function that
    made it), as a global's: not code nor modules."""
    cells = getattr(code, "__closure__", None) if isinstance(code, FunctionType) else None
    values = []
    for cell in cells or ():
        with suppress(ValueError):  # an empty cell
            value = cell.cell_contents
            if not (value is None or callable(value) or isinstance(value, ModuleType)):
                values.append(value)
    return values


def _user_classes(cls: type) -> list[type]:
    """The classes of ``cls``'s MRO defined in user code (not the engine's ``Node``, nor
    ``object`` or a library's), from the most basic to ``cls``."""
    return [klass for klass in reversed(cls.__mro__) if klass is cls or is_user_code(klass)]


def _class_attributes(cls: type) -> list[Any]:
    """The data attributes of a user class as its instances see them (through its MRO: an
    inherited ``PATH``, or the subclass's own that overrides it), not dunders nor code."""
    found: dict[str, Any] = {}
    for klass in _user_classes(cls):
        found.update((k, v) for k, v in vars(klass).items() if not k.startswith("__"))
    return [
        v
        for v in found.values()
        if not (callable(v) or isinstance(v, (staticmethod, classmethod, property)))
    ]


def _held_texts(value: Any, depth: int = 0) -> Iterator[str]:
    """The texts a value the node's code reads may hold: :func:`path_texts`, and the data
    attributes of a user class (``Paths.SALES``) or of a simple instance (a dataclass's, a
    ``SimpleNamespace``'s: ``CFG.sales``, ``CFG.paths.sales``), up to 3 levels down."""
    if isinstance(value, type):
        if depth == 0 and is_user_code(value):
            for item in _class_attributes(value):
                yield from _held_texts(item, depth + 1)
        return
    if depth < 3 and isinstance(value, SimpleNamespace):
        items: list[Any] = list(islice(vars(value).values(), MAX_READS))
    elif depth < 3 and dataclasses.is_dataclass(value):
        items = [getattr(value, f.name, None) for f in dataclasses.fields(value)[:MAX_READS]]
    elif depth < 3 and is_user_code(type(value)) and not isinstance(value, FunctionType):
        # ``Loader("sales.parquet")``, ``REPO = Repo()``: its state, and the texts of its
        # class's code, whose methods the node calls (``REPO.load()``)
        yield from _constant_strings(type(value))
        yield from (t for v in _class_attributes(type(value)) for t in path_texts(v, depth + 1))
        state = _vars_of(value)
        items = list(islice(state.values(), MAX_READS)) if isinstance(state, dict) else []
    else:
        yield from path_texts(value, depth)
        return
    for item in items:
        yield from _held_texts(item, depth + 1)


def _constant_strings(code: Any) -> tuple[str, ...]:
    namespaces = [vars(klass) for klass in _user_classes(code)] if isinstance(code, type) else []
    functions = (
        [f for ns in namespaces for f in ns.values() if isinstance(f, FunctionType)]
        + [
            f.__func__
            for ns in namespaces
            for f in ns.values()
            if isinstance(f, (staticmethod, classmethod))
        ]
        if isinstance(code, type)
        else [code]
    )
    texts: list[str] = []
    stack = [c for f in functions if isinstance(c := getattr(f, "__code__", None), CodeType)]
    while stack:
        for const in stack.pop().co_consts:
            if isinstance(const, CodeType):
                stack.append(const)
            elif isinstance(const, str):
                texts.append(const)
            elif isinstance(const, (tuple, frozenset)):
                texts += [c for c in const if isinstance(c, str)]
    return tuple(texts)


def argument_strings(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
    """The texts of the arguments (the first ones only: a list of a million sentences from
    upstream is not a million ``stat`` calls), also the fields of a config object (a
    dataclass, a ``SimpleNamespace``, an instance of a class of yours) as for globals."""
    values = [v for v in (*args, *kwargs.values()) if type(v) not in _NO_TEXTS]
    if not values:  # (most nodes: numbers and upstream values of those)
        return []
    texts = (text for value in values for text in _held_texts(value))
    return list(islice(texts, 4 * MAX_READS))


#: the types whose values hold no text (:func:`_held_texts` yields nothing for them), skipped
#: without its checks (a dataclass's, a user class's: microseconds an argument)
_NO_TEXTS = frozenset({int, float, bool, complex, type(None), bytes})


def _vars_of(value: Any) -> Any:
    """``value.__dict__``, or None when it has none (slots, a C type)."""
    return getattr(value, "__dict__", None)


def path_texts(value: Any, depth: int = 0) -> Iterator[str]:
    """The texts in a node's argument that may name files: the value itself when a ``str`` or
    a path, else the items of a list or tuple, or the values of a dict, nested up to 3 levels
    (at most :data:`MAX_READS` items of each)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, PurePath):
        yield path_text(value)
    elif depth < 3 and isinstance(value, Mapping):
        for item in islice(value.values(), MAX_READS):
            yield from path_texts(item, depth + 1)
    elif depth < 3 and isinstance(value, (list, tuple)):
        for item in value[:MAX_READS]:
            if isinstance(item, str):  # (most items: no generator each)
                yield item
            elif isinstance(item, PurePath):
                yield path_text(item)
            elif isinstance(item, (Mapping, list, tuple)):
                yield from path_texts(item, depth + 1)


#: a word of a command or a query: what lies between blanks, quotes, brackets and separators
#: (a pattern re compiles, and caches, on first use)
_WORD = r"[^\s'\"`(),;=]+"


def words_of(text: str) -> list[str]:
    """The words of a text holding blanks or quotes that may be paths (``cat data/x.csv``
    run by a shell, ``SELECT * FROM 'data/*.parquet'``): with a ``.`` or a separator, at
    most 20; none for a text that is a word itself."""
    if not any(c in text for c in " \t'\"`"):
        return []
    words = (w for w in re.findall(_WORD, text) if "." in w or os.sep in w)
    return [w for w in islice(words, 20) if w not in (".", "..")]


#: characters of texts that are no file name when nothing is there (a pattern, a URL, a message)
_NOT_FILE_LIKE = frozenset(" \t*?[]{}%<>|:;,'\"=$!@#")


def file_like(text: str) -> bool:
    """Whether a text that names nothing there looks like a path (``overrides.json``,
    ``data/extra/``): a file name with a suffix, or a path with a separator; not a dotted name
    of a version (``1.2``), nor a pattern, URL, format or message."""
    if _NOT_FILE_LIKE.intersection(text) or len(text) > 255:
        return False
    stem, dot, suffix = os.path.basename(text.rstrip(os.sep)).rpartition(".")
    if dot and stem and suffix.isalnum() and not suffix.isdigit() and len(suffix) <= 10:
        return True
    return os.sep in text.strip(os.sep) or (text.endswith(os.sep) and len(text) > 1)
