"""A workflow file the CLI loaded, importable by its module's name in a fresh interpreter.

``etherealfabric run flow.py`` imports the file as ``etherealfabric_workflow_flow``, a name no
other interpreter can import. A node whose code starts processes that import what they are
sent by name hung there: a ``multiprocessing`` pool with the ``spawn`` or ``forkserver`` start
method (``forkserver`` is Python 3.14's default on Linux) mapping a function of the workflow
file had each worker fail to unpickle its task and be replaced, for good. Plain ``python
flow.py`` runs the same code, its workers re-running the script as ``__mp_main__``.

:func:`make_importable` writes a one-line module of that name that imports the workflow file
(``importlib``, so its ``__file__`` and tracebacks are the file's own) into a folder of this
user's private temp folder, and appends the folder to ``sys.path``: processes started by
``spawn`` and ``forkserver`` are given the parent's ``sys.path`` (and so are the worker
processes of the processes backend, and theirs). The workflow file's top level runs again in
such a process, as the script's does under plain Python; its ``if __name__ == "__main__":``
block does not. Module names in cache keys are unchanged (``module_label`` names the module
after its file either way).
"""

from __future__ import annotations

import os
import sys

from ..hashing._digest import digest_bytes
from ..hashing._usercode import SCRIPT_MODULE_PREFIX
from ..store._smallfiles import write_small_file

__all__ = ["make_importable"]

_STUB = """\
# Made by etherealfabric: imports the workflow file {path!r} under this module's name,
# in a process started by multiprocessing's spawn or forkserver (see run/_importable.py).
import importlib.util as _util
import sys as _sys

_spec = _util.spec_from_file_location(__name__, {path!r})
_module = _util.module_from_spec(_spec)
_sys.modules[__name__] = _module
_spec.loader.exec_module(_module)
"""


def make_importable(name: str, path: str) -> str | None:
    """Make the module ``name`` (a workflow file's, ``etherealfabric_workflow_*``) importable
    from ``path`` by processes this one starts; the folder put on ``sys.path``, or None when
    there is nothing to do (another name, no such file, a temp folder that is not private)."""
    if not name.startswith(SCRIPT_MODULE_PREFIX) or not os.path.isfile(path):
        return None
    from ..errors import StoreError
    from ..store._spill import spill_folder

    path = os.path.realpath(path)
    try:  # one folder per file: two flow.py of two projects never meet
        folder = os.path.join(
            spill_folder(None), "importable", digest_bytes(f"{name}\0{path}".encode())
        )
        _write_once(os.path.join(folder, f"{name}.py"), _STUB.format(path=path))
    except (OSError, StoreError):  # no private folder: such processes fail as before
        return None
    if folder not in sys.path:
        sys.path.append(folder)  # last: it never hides a module of the user's
    return folder


def _write_once(target: str, text: str) -> None:
    """Write ``text`` to ``target`` unless it holds it already (atomically: another process
    may import it at that moment)."""
    try:
        with open(target, encoding="utf-8") as f:
            if f.read() == text:
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    write_small_file(target, text)
