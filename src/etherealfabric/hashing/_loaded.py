"""Is an optional library imported, and done importing? (``numpy``, ``pandas``, ``pyarrow``...)

The engine looks at the libraries a process has imported instead of importing them itself
(a workflow that never touches pandas never pays for its import). But ``sys.modules`` holds a
module from the *start* of its import: while a node's thread runs ``import pandas`` (which
imports numpy), another thread finishing its node would find ``numpy`` there half-built, and
``numpy.ndarray`` missing ("partially initialized module"). Such a module counts as not
imported yet: no value of its types can exist outside the import that is building it (any
other thread importing it waits for that import to finish).
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["loaded"]


def loaded(name: str) -> ModuleType | None:
    """The module ``name`` if it is imported and done initializing, else None."""
    module = sys.modules.get(name)
    if module is None:
        return None
    spec = getattr(module, "__spec__", None)
    if spec is not None and getattr(spec, "_initializing", False):
        return None
    return module
