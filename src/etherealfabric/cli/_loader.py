"""Load a workflow from a Python file: ``path/to/file.py[:NAME]``.

The file is imported as a module (its ``if __name__ == "__main__":`` block does not run).
``NAME`` is a :class:`Workflow` defined at module level, or a function that returns one; without
``NAME`` the module must define exactly one workflow.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from collections.abc import Iterable
from pathlib import Path

from ..errors import DefinitionError
from ..hashing._usercode import is_library_file, script_module_name
from ..run._importable import make_importable
from ..workflow import Workflow

__all__ = ["WorkflowFileError", "load_workflow", "split_target"]


class WorkflowFileError(DefinitionError):
    """The workflow file itself is broken: a syntax error, or it raised while being imported.

    The message is one line naming the file and line; the original exception is the cause
    (``etherealfabric --traceback ...`` prints it).
    """


def split_target(target: str) -> tuple[Path, str | None]:
    """Split ``FILE[:NAME]`` into the file path and the optional name."""
    path, sep, name = target.rpartition(":")
    if sep and path and not re.fullmatch(r"[A-Za-z]", path) and name and "/" not in name:
        return Path(path), name
    return Path(target), None


def load_workflow(target: str) -> Workflow:
    """Import ``FILE[:NAME]`` and return the workflow it names or defines."""
    path, name = split_target(target)
    if path.is_dir():
        raise DefinitionError(
            f"{path} is a folder, not a workflow file (expected FILE.py or FILE.py:NAME)"
        )
    if not path.is_file():
        raise DefinitionError(
            f"no such workflow file: {path}{_close_file(path, name)} "
            "(expected FILE.py or FILE.py:NAME)"
        )
    module = _import(path)
    found = {k: v for k, v in vars(module).items() if isinstance(v, Workflow)}
    _note_import_runs(path, found.values())
    _note_top_level_settings(path, vars(module))
    if name is not None:
        obj = getattr(module, name, None)
        if callable(obj) and not isinstance(obj, Workflow):
            obj = _call(path, name, obj)
        if not isinstance(obj, Workflow):
            listed = ", ".join(f"{path}:{k}" for k in sorted(found)) or "none at module level"
            raise DefinitionError(
                f"{path}:{name} is not a Workflow (or a function returning one); "
                f"the workflows in {path}: {listed}"
            )
        return obj
    if len(found) > 1:
        raise DefinitionError(
            f"{path} defines several ({', '.join(sorted(found))}) Workflow objects at module "
            f"level; name one as {path}:NAME"
        )
    if not found:
        factories = sorted(  # plain functions of the file: maybe one builds the workflow
            k for k, v in vars(module).items()
            if isinstance(v, types.FunctionType) and v.__module__ == getattr(module, "__name__", None)
            and not k.startswith("_")
        )  # fmt: skip
        hint = f" (functions in it: {', '.join(factories[:8])})" if factories else ""
        raise DefinitionError(
            f"{path} defines no Workflow object at module level: build one there "
            f"(`with Workflow('name') as wf: ...`), or name a function that returns one as "
            f"{path}:FUNCTION{hint}"
        )
    return next(iter(found.values()))


def _close_file(path: Path, name: str | None) -> str:
    """``; did you mean FOLDER/FILE.py[:NAME]?`` for the ``.py`` file of ``path``'s folder
    closest to its name (``pipline.py``: ``pipeline.py``), else nothing."""
    import difflib

    try:
        files = [p.name for p in path.parent.iterdir() if p.suffix == ".py" and p.is_file()]
    except OSError:  # no such folder either
        return ""
    close = difflib.get_close_matches(path.name, sorted(files), n=1)
    if not close:
        return ""
    return f"; did you mean {path.parent / close[0]}{'' if name is None else ':' + name}?"


def _import(path: Path) -> object:
    module_name = script_module_name(path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path.resolve())
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise DefinitionError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        culprit = str(path)  # or a module the workflow file imports
        if exc.filename and Path(exc.filename).resolve() != path.resolve():
            culprit = exc.filename
        where = f"{culprit}:{exc.lineno}" if exc.lineno else culprit
        raise WorkflowFileError(f"{where}: syntax error: {exc.msg}") from exc
    except SystemExit as exc:  # not the command's exit: a silent 0 would say all went well
        sys.modules.pop(module_name, None)
        raise WorkflowFileError(_exit_message(f"{path}: importing it", exc, path)) from exc
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise WorkflowFileError(
            f"{path}: importing it raised {type(exc).__name__}: {exc}{_user_line(exc, path)}"
        ) from exc
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)  # worker processes cannot import it by name
    make_importable(module_name, str(path))  # but a process a node spawns can (a Pool's)
    return module


def _note_top_level_settings(path: Path, namespace: dict[str, object]) -> None:
    """Warn of each library setting the workflow file changes at its top level: not in any
    key, and never run by worker processes (processes, Dask, Celery, Spark), whose results
    would then be computed and cached with the library's defaults."""
    import warnings

    from ..hashing._external import top_level_settings
    from ..hashing._fingerprint import FingerprintWarning

    for found in top_level_settings(str(path.resolve()), namespace):
        line = found.where.rpartition(":")[2]
        warnings.warn_explicit(
            f"{found.construct.strip()} changes a library's process-wide settings at the top "
            "of the workflow file: no key covers it, and worker processes (processes, Dask, "
            "Celery, Spark backends) never run it. Set it inside the nodes that need it",
            FingerprintWarning,
            str(path),
            int(line) if line.isdigit() else 0,
        )


def _note_import_runs(path: Path, workflows: Iterable[Workflow]) -> None:
    """Say so when importing the file executed a workflow (``workflow.execute()`` at module
    level, as in a script): that run happened, and the command runs the workflow again; a
    ``__main__`` guard around the call runs it once."""
    target = str(path.resolve())
    for workflow in workflows:
        where = workflow.executed_at
        if where is None:
            continue
        line = f"{path}:{where[1]}" if where[0] == target else f"{path}"
        print(
            f"note: importing {path} executed workflow {workflow.name!r} (at {line}); "
            "etherealfabric runs it again now (what that run computed is cached). Put that call "
            'under `if __name__ == "__main__":` to run it once.',
            file=sys.stderr,
        )


def _call(path: Path, name: str, factory: object) -> object:
    """Call a workflow factory named on the command line; its errors name it."""
    try:
        return factory()  # type: ignore[operator]
    except SystemExit as exc:
        raise WorkflowFileError(_exit_message(f"{path}:{name}()", exc, path)) from exc
    except Exception as exc:
        raise WorkflowFileError(
            f"{path}:{name}() raised {type(exc).__name__}: {exc}{_user_line(exc, path)}"
        ) from exc


def _exit_message(what: str, exc: SystemExit, path: Path) -> str:
    """One line for a workflow file that called ``sys.exit()`` (or raised ``SystemExit``,
    argparse's way out) while the command loaded it: the file is imported, not run."""
    code = "" if exc.code is None else repr(exc.code)
    return (
        f"{what} called sys.exit({code}){_user_line(exc, path)}: the command imports the file "
        "to find its workflow, so nothing may exit at its top level; put that code under "
        '`if __name__ == "__main__":`'
    )


def _user_line(exc: BaseException, path: Path) -> str:
    """`` (at FILE:LINE)`` for the deepest frame of the traceback inside the workflow file;
    when the error was raised deeper, in a module of the user's that the file imports (a
    helpers.py), that module's line first: `` (at helpers.py:2, from flow.py:9)``."""
    import os
    import traceback

    target = str(path.resolve())
    frames = traceback.extract_tb(exc.__traceback__)
    lines = [f.lineno for f in frames if f.filename == target]
    where = f"{path}:{lines[-1]}" if lines else ""
    deepest = next((f for f in reversed(frames) if not is_library_file(f.filename)), None)
    if deepest is not None and deepest.filename != target and os.path.exists(deepest.filename):
        shown = os.path.relpath(deepest.filename)  # (as the user would type it from here)
        inner = f"{deepest.filename if shown.startswith('..') else shown}:{deepest.lineno}"
        return f" (at {inner}, from {where})" if where else f" (at {inner})"
    return f" (at {where})" if where else ""
