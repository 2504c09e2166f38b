"""``model``: fitted estimators (scikit-learn, XGBoost, LightGBM, CatBoost, statsmodels).

A model is pickled (cloudpickle, so classes defined in a workflow file travel too) behind a
one-line JSON header naming the versions of the libraries it was made with: the model's own
(every library whose classes appear in it, a scikit-learn pipeline's steps included) and
numpy. A pickled model loaded under other versions may fail, or worse, predict differently
without a word; so loading compares the header with what is installed and logs one warning
per model type and difference, naming both versions. The versions also go into the output's
action record (``versions``), where ``show``/``cat`` users and the signature see them.

It is a pickle: from a shared store it is loaded only when its record is signed, like any
other (see ``store/_signing.py``).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any, BinaryIO

from ._serializer_base import Serializer

__all__ = ["MODEL_LIBRARIES", "ModelSerializer", "is_model", "model_versions"]

log = logging.getLogger("etherealfabric.store")

#: Top-level packages whose objects are models (a class anywhere in the type's MRO counts).
MODEL_LIBRARIES = frozenset({"sklearn", "xgboost", "lightgbm", "catboost", "statsmodels"})
MAGIC = b"EFMODEL1 "
_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def is_model(value: object) -> bool:
    """True if ``value`` is an object of a model library (or of a subclass of one's class)."""
    return any(_top(cls) in MODEL_LIBRARIES for cls in type(value).__mro__)


def _top(cls: type) -> str:
    return (cls.__module__ or "").partition(".")[0]


def model_versions(value: object) -> dict[str, str]:
    """The versions of the libraries whose classes make up ``value``, and numpy's."""
    tops = {_top(cls) for cls in type(value).__mro__} & MODEL_LIBRARIES
    get_params = getattr(value, "get_params", None)
    if callable(get_params):  # a pipeline's steps, an ensemble's base estimators
        try:
            params = get_params(deep=True)
        except Exception:
            params = {}
        for item in params.values() if isinstance(params, dict) else ():
            tops |= {_top(cls) for cls in type(item).__mro__} & MODEL_LIBRARIES
    tops.add("numpy")
    found = {}
    for name in sorted(tops):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if isinstance(version, str):
            found[name] = version
    return found


class ModelSerializer(Serializer):
    """A fitted model: a JSON header of library versions, then the cloudpickled model."""

    name = "model"

    def versions(self, value: object) -> dict[str, str]:
        """What the action record stores (see the module docstring)."""
        return model_versions(value)

    def dump(self, value: object, fp: BinaryIO) -> None:
        from ..hashing._pickled import dump_pickle  # (notes the code it names, for keys)

        header = {"type": _type_name(value), "versions": model_versions(value)}
        fp.write(MAGIC + json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        fp.write(b"\n")
        dump_pickle(value, fp, cloud=True)

    def load(self, fp: BinaryIO) -> object:
        line = fp.readline()
        if not line.startswith(MAGIC) or not line.endswith(b"\n"):
            raise ValueError("not a stored model: its header line is missing")
        header = json.loads(line[len(MAGIC) :])
        import pickle  # only a stored model needs it

        value = pickle.load(fp)
        _check_versions(str(header.get("type", "?")), header.get("versions") or {})
        return value


def _check_versions(type_name: str, recorded: dict[str, Any]) -> None:
    for name, version in sorted(recorded.items()):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        installed = getattr(module, "__version__", None)
        if installed is None or installed == version:
            continue
        difference = f"{name} {version} -> {installed}"
        with _lock:
            if (type_name, difference) in _warned:
                continue
            _warned.add((type_name, difference))
        log.warning(
            "loading a %s saved with %s %s under %s %s: a pickled model may fail or predict "
            "differently under other library versions; re-run the node that made it (for "
            "example with `run --force NODE`) to rebuild it",
            type_name, name, version, name, installed,
        )  # fmt: skip


def _type_name(value: object) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"
