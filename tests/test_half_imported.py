"""A library another thread is importing right now is not imported yet: ``sys.modules`` holds
it half-built from the start of its import (``numpy.ndarray`` missing), and the engine's type
checks on other nodes' values failed with "partially initialized module 'numpy'"."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

from etherealfabric.hashing import _encoder
from etherealfabric.hashing._encoder import Encoder, Handler, digest_of
from etherealfabric.hashing._loaded import loaded

FLOW = """
from etherealfabric import Workflow, node


@node
def heavy():
    import pandas as pd  # imported lazily, while the other nodes finish

    return int(pd.Series([1, 2, 3]).sum())


@node
def light(i):
    return [i] * 3


with Workflow("half-imported") as wf:
    heavy()
    for i in range(30):
        light(i)
"""


def test_a_module_being_imported_is_not_loaded_until_it_is_done(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    (tmp_path / "slow_import_probe.py").write_text(
        "import sys\n"
        "probe = sys.modules['__probe_events__']\n"
        "probe[0].set()\n"
        "probe[1].wait(30)\n"
        "ready = True\n"
    )
    sys.modules["__probe_events__"] = (started, release)  # type: ignore[assignment]
    sys.path.insert(0, str(tmp_path))
    try:
        importer = threading.Thread(target=__import__, args=("slow_import_probe",))
        importer.start()
        assert started.wait(30)
        assert "slow_import_probe" in sys.modules and loaded("slow_import_probe") is None
        release.set()
        importer.join(30)
        module = loaded("slow_import_probe")
        assert module is not None and module.ready is True
    finally:
        release.set()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("__probe_events__", None)
        sys.modules.pop("slow_import_probe", None)
    assert loaded("no_such_module_here") is None


def test_nodes_finishing_while_another_imports_pandas_succeed(tmp_path: Path) -> None:
    """Fresh processes, threads backend: one node imports pandas (so numpy) while thirty
    others finish; before, most runs failed some of them."""
    (tmp_path / "flow.py").write_text(FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    for attempt in range(4):
        env["ETHEREALFABRIC_HOME"] = str(tmp_path / f"home-{attempt}")
        done = subprocess.run(
            [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--backend", "threads"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert "31 executed, 0 cached, 0 failed" in done.stderr


def test_a_type_asked_for_while_another_thread_makes_its_librarys_handlers_gets_them() -> None:
    """The handlers of an imported library are made on first use (pandas' import their module,
    ``hashing/_frames.py``): a thread that asks for one of its types meanwhile must get its
    handler, not the cloudpickle fallback (its entry left the list before it was registered)."""
    library = types.ModuleType("slow_handlers_library")

    class Thing:  # a type of that library, not user code
        pass

    Thing.__module__, Thing.__qualname__ = library.__name__, "Thing"
    library.Thing = Thing  # type: ignore[attr-defined]

    def encode(value: Thing, encoder: Encoder) -> None:
        encoder.tag("thing")

    making, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def handlers(module: types.ModuleType) -> dict[type[Any], Handler]:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:  # the first thread takes its time
            making.set()
            release.wait(60)
        return {module.Thing: encode}

    class Other:  # a type nobody has asked for: asking registers what was imported
        pass

    sys.modules[library.__name__] = library
    first = threading.Thread(target=_encoder._handler, args=(Other,), name="first")
    try:
        _encoder.register_when_imported(library.__name__, handlers)
        first.start()
        assert making.wait(60)
        assert _encoder._handler(Thing) is encode
        assert digest_of(Thing()) == digest_of(Thing())  # (no pickle: Thing's are all alike)
    finally:
        release.set()
        first.join(60)
        sys.modules.pop(library.__name__, None)
    assert calls == ["first", "MainThread"] and not first.is_alive()
