"""Code a node was sent by value, findable by its module's name in the process running it.

A workflow file the CLI loads, and a script's ``__main__``, reach worker processes by value
(cloudpickle): no module of that name can be imported there. The node's own code that pickles
them by reference then failed where it worked on threads: ``multiprocessing.Pool().map(helper,
...)`` over a helper of the workflow file said ``import of module 'etherealfabric_workflow_flow'
failed`` (or ``attribute lookup helper on __main__ failed``). :func:`expose` puts what the
node's code refers to under that name in the worker: a stand-in module for the workflow file,
or the names missing from the worker's own ``__main__`` (none of its own is replaced). A
process where the module is the real one (the driver, threads) is left as it is. cloudpickle
still pickles such code by value (the stand-in is registered so; ``__main__`` always is):
what the engine stores never names a module that exists in one worker only.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from ..hashing._usercode import SCRIPT_MODULE_PREFIX
from ._importable import make_importable

__all__ = ["expose"]

#: set on a stand-in module made here (a later task of the same file updates it)
STAND_IN = "__etherealfabric_stand_in__"
#: the ``__main__`` of a worker process (``etherealfabric/_spawn_main.py``)
SPAWN_MAIN = "etherealfabric._spawn_main"


def expose(code: Any) -> None:
    """Make the globals of ``code`` (a node's function, or class) findable by the name of its
    module in this process, when that module is not loaded here (see the module docstring)."""
    name = getattr(code, "__module__", None)
    found = _globals_of(code)
    if not isinstance(name, str) or found is None:
        return
    module = sys.modules.get(name)
    if module is not None and vars(module) is found:  # the module itself: nothing to do
        return
    own = {k: v for k, v in found.items() if getattr(v, "__module__", None) == name}
    if name == "__main__":
        if module is not None:  # the worker's own __main__: only what it lacks
            for key, value in own.items():
                if not hasattr(module, key):
                    setattr(module, key, value)
            _spawn_from_script(module, found.get("__file__"))
        return
    if module is None and not name.startswith(SCRIPT_MODULE_PREFIX):
        return  # an importable module sent by value: pickle imports the real one by name
    if module is None:
        import cloudpickle

        module = types.ModuleType(name)
        setattr(module, STAND_IN, True)
        sys.modules[name] = module
        # still pickled by value by the engine (outputs, checkpoints): a stored value never
        # names a module that exists only here
        cloudpickle.register_pickle_by_value(module)
        if isinstance(found.get("__file__"), str):  # and a process the node spawns imports it
            make_importable(name, found["__file__"])
    elif not getattr(module, STAND_IN, False):  # a module of that name, imported here
        return
    for key, value in own.items():
        setattr(module, key, value)


def _spawn_from_script(main: types.ModuleType, script: object) -> None:
    """Have the processes ``spawn`` or ``forkserver`` starts here re-run the user's script as
    their ``__main__``, as under plain Python, rather than this worker's empty one (see
    :func:`~etherealfabric.backends._base.no_main_reimport`): a node's pool over a function of
    the script found no such function in its workers, which multiprocessing replaced for good."""
    spec = getattr(main, "__spec__", None)
    if getattr(spec, "name", None) != SPAWN_MAIN or not isinstance(script, str):
        return
    if os.path.isfile(script):
        main.__spec__ = None  # multiprocessing then runs main.__file__ in a new process
        main.__file__ = script


def _globals_of(code: Any) -> dict[str, Any] | None:
    """The globals of a function, or of the first method of a class defined with it."""
    if isinstance(code, types.FunctionType):
        return code.__globals__
    if isinstance(code, type):
        for value in vars(code).values():
            if isinstance(value, types.FunctionType) and value.__module__ == code.__module__:
                return value.__globals__
    return None
