"""The audit of one node's cache key: every part the engine watches, and what it does not.

``etherealfabric plan FILE --keys NODE`` prints it::

    key of 'fit' (workflow 'train'): 3f9a1c0e...
      kind      flow.fit
      code      flow.fit                      flow.py:40             1a2b3c4d5e6f
      code      flow.helper                   flow.py:12             9e8d7c6b5a4f
      constant  flow.SCALE                                           0c1d2e3f4a5b
      package   scikit-learn                  1.5.2
      version   none
      param     lr                            0.1                    77aa01b2c3d4
      input     df                            clean.result           da2e658e0f1a
      output    model
      not covered by the key: getattr(helpers, <computed>) at flow.py:7

An argument that carries code (a ``functools.partial``, a bound method, an instance of a user
class) is followed by the code pieces in its digest, marked ``(in PARAM)``; so is the code a
pickle names by reference, in an argument hashed through cloudpickle or an upstream output
stored as a pickle (``(in PARAM, pickled)``, and the packages, by version). A node whose
upstream nodes would run first has no key yet: its inputs are listed as coming from an
upstream node, without digests. Nothing here is computed that the plan did not compute
already, except the code fingerprint (memoized).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..define._refs import replace_refs
from ..hashing._describe import describe_value
from ..hashing._encoder import has_encoding
from ..hashing._fingerprint import Fingerprint, code_fingerprint
from ..hashing._packages import PACKAGE_PREFIX
from ..hashing._pickled import code_parts, pickle_with_refs
from ..hashing._references import References
from ..plan._graph import InputRef

if TYPE_CHECKING:
    from ..define._node import NodeSpec
    from ..plan._keys import KeyInfo

__all__ = ["KeyAudit", "KeyPart", "audit_key"]


@dataclass(frozen=True)
class KeyPart:
    """One part of a key.

    ``kind`` is ``kind``, ``code``, ``constant``, ``closure``, ``default``, ``package``,
    ``version``, ``param``, ``input`` or ``output``; ``detail`` is where a code piece is
    (``file:line``), a package's version, a parameter's value or an input's source.
    """

    kind: str
    name: str
    detail: str = ""
    digest: str | None = None


@dataclass(frozen=True)
class KeyAudit:
    """Every part of one node's key (``key`` is None when an upstream node runs first)."""

    node: str
    key: str | None
    parts: tuple[KeyPart, ...]
    uncovered: tuple[str, ...]
    code_source: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parts"] = [asdict(p) for p in self.parts]
        return data

    def lines(self) -> Iterator[str]:
        """The audit as text (see the module docstring)."""
        key = self.key or "not known yet (an upstream node runs first)"
        yield f"key of {self.node!r}: {key}"
        if self.code_source == "bytecode":
            yield "  (some code has no source: its fingerprint uses bytecode)"
        width = max([len(p.name) for p in self.parts] + [20])
        detail = max([len(p.detail) for p in self.parts] + [10])
        for part in self.parts:
            digest = part.digest[:12] if part.digest else ""
            text = f"  {part.kind:<9} {part.name:<{width}}  {part.detail:<{detail}}  {digest}"
            yield text.rstrip()
        if not self.uncovered:
            yield "  not covered by the key: nothing found"
        for item in self.uncovered:
            yield f"  not covered by the key: {item}"


def audit_key(spec: NodeSpec, info: KeyInfo | None) -> KeyAudit:
    """The parts of ``spec``'s key; ``info`` from the plan (None: an upstream node runs first)."""
    fp = code_fingerprint(spec.code)
    parts = [KeyPart("kind", spec.kind), *_code_parts(fp)]
    parts.append(KeyPart("version", "version", "none" if spec.version is None else spec.version))
    inputs = info.inputs if info is not None else {}
    for name, value in spec.params.items():
        if info is not None and name in inputs:
            for ref in inputs[name]:
                source, _, read = ref.rpartition("@")
                parts.append(KeyPart("input", name, source, read))
            parts += _pickled_code(name, code_parts(info.input_code.get(name, ())))
        elif info is None and _reads_upstream(value):
            parts.append(KeyPart("input", name, "from an upstream node (digest not known yet)"))
        else:
            known = info.param_hashes.get(name) if info is not None else None
            parts.append(KeyPart("param", name, describe_value(value, limit=40), known))
            parts += _argument_code(name, value)
            parts += _pickled_code(name, _pickled_names(value))
    parts += [KeyPart("output", name) for name in spec.outputs]
    parts += [KeyPart("output", f"file:{path}") for path in spec.writes]
    key = info.key if info is not None else None
    return KeyAudit(spec.name, key, tuple(parts), fp.uncovered, fp.source)


def _code_parts(fp: Fingerprint) -> list[KeyPart]:
    code, values, packages = [], [], []
    for name, digest in sorted(fp.parts.items()):
        if name.startswith(PACKAGE_PREFIX):
            packages.append(KeyPart("package", name[len(PACKAGE_PREFIX) :], digest))
        elif name in fp.where:
            code.append(KeyPart("code", name, fp.where[name], digest))
        else:
            values.append(KeyPart(_value_kind(name), name, "", digest))
    return code + values + packages


def _argument_code(param: str, value: object) -> list[KeyPart]:
    """The code an argument carries (a partial's target, an instance's class...), in its digest."""
    found = References()
    found.data(value, param)
    parts: dict[str, KeyPart] = {}
    for ref in found.unique():
        fp = code_fingerprint(ref)
        for name, where in fp.where.items():
            parts.setdefault(name, KeyPart("code", name, f"{where} (in {param})", fp.parts[name]))
    return list(parts.values())


def _pickled_code(param: str, found: dict[str, str]) -> list[KeyPart]:
    """The code a pickle in ``param`` names by reference (``hashing/_pickled.py``): user code
    by fingerprint, packages by version."""
    return [
        KeyPart("package", name[len(PACKAGE_PREFIX) :], f"{digest} (in {param})")
        if name.startswith(PACKAGE_PREFIX)
        else KeyPart("code", name, f"(in {param}, pickled)", digest)
        for name, digest in found.items()
    ]


def _pickled_names(value: object) -> dict[str, str]:
    """:func:`code_parts` of an argument (or its items) hashed through cloudpickle."""
    items = list(value.values()) if isinstance(value, dict) else [value]
    if isinstance(value, (list, tuple)):
        items = list(value)
    pickled = [v for v in items if not has_encoding(type(v))]
    if not pickled:
        return {}
    try:
        return code_parts(pickle_with_refs(pickled)[1])
    except Exception:  # not picklable: its hashing says so
        return {}


def _value_kind(name: str) -> str:
    if name.endswith(".<settings>"):  # library settings at a module's top level
        return "settings"
    if ".<closure>." in name:
        return "closure"
    if ".<default>." in name:
        return "default"
    return "constant"


def _reads_upstream(value: object) -> bool:
    found: list[InputRef] = []

    def note(ref: InputRef) -> InputRef:
        found.append(ref)
        return ref

    replace_refs(value, note, kind=InputRef)
    return bool(found)
