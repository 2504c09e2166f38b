"""Load a workflow from a Python file: ``path/to/file.py[:NAME]``.

The file is imported as a module (its ``if __name__ == "__main__":`` block does not run).
``NAME`` is a :class:`Workflow` defined at module level, or a function that returns one; without
``NAME`` the module must define exactly one workflow.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from ..errors import DefinitionError
from ..hashing._usercode import SCRIPT_MODULE_PREFIX
from ..workflow import Workflow

__all__ = ["load_workflow", "split_target"]


def split_target(target: str) -> tuple[Path, str | None]:
    """Split ``FILE[:NAME]`` into the file path and the optional name."""
    path, sep, name = target.rpartition(":")
    if sep and path and not re.fullmatch(r"[A-Za-z]", path) and name and "/" not in name:
        return Path(path), name
    return Path(target), None


def load_workflow(target: str) -> Workflow:
    """Import ``FILE[:NAME]`` and return the workflow it names or defines."""
    path, name = split_target(target)
    if not path.is_file():
        raise DefinitionError(f"no such workflow file: {path} (expected FILE.py or FILE.py:NAME)")
    module = _import(path)
    if name is not None:
        obj = getattr(module, name, None)
        if callable(obj) and not isinstance(obj, Workflow):
            obj = obj()
        if not isinstance(obj, Workflow):
            raise DefinitionError(f"{path}:{name} is not a Workflow (or a function returning one)")
        return obj
    found = {k: v for k, v in vars(module).items() if isinstance(v, Workflow)}
    if len(found) != 1:
        what = f"several ({', '.join(sorted(found))})" if found else "none"
        raise DefinitionError(
            f"{path} defines {what} Workflow objects at module level; name one as {path}:NAME"
        )
    return next(iter(found.values()))


def _import(path: Path) -> object:
    module_name = SCRIPT_MODULE_PREFIX + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path.resolve())
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise DefinitionError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(module_name, None)
        raise
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)  # worker processes cannot import it by name
    return module
