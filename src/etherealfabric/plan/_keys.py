"""Cache keys: :func:`node_key` computes a node's key and what went into it (:class:`KeyInfo`).

A node's key is known once every upstream output it reads is known: the digest of each output
it reads is part of the key (early cutoff: an upstream node that reruns and produces the same
output leaves its downstream keys unchanged). That digest is the output's *value digest* when
its record has one (:mod:`etherealfabric.hashing._outputs`: frames, arrays and plain values;
equal values built differently give equal keys), else the digest of its bytes. The scheduler
calls :func:`node_key` as outputs arrive; the plan (:mod:`._plan`) calls it for the nodes
whose inputs are all cached.

A :class:`~etherealfabric.define._secret.Secret` parameter enters the key as its keyed digest
(:class:`~etherealfabric.hashing._secret.SecretHasher`, built by the caller from its settings);
without a hasher, a node with a Secret cannot be keyed.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..define._node import NodeSpec
from ..define._refs import replace_refs
from ..define._secret import Secret
from ..errors import HashingError
from ..hashing._cachekey import key_of, ref_digest, ref_sequence_digest, scalar_digest
from ..hashing._describe import describe_value
from ..hashing._digest import RefDigest
from ..hashing._encoder import hashing_for
from ..hashing._files import FileHashCache
from ..hashing._fingerprint import code_fingerprint, generation
from ..hashing._packages import package_versions
from ..hashing._pickled import code_parts, with_code
from ..hashing._secret import SecretDigest, SecretHasher
from ._graph import InputRef

__all__ = ["VALUE_REF", "KeyInfo", "OutputRecords", "input_digest", "node_key"]

#: Stands for the serializer in the reference to a value digest; no serializer name starts
#: with "=", so a value digest never shares an encoding with the digest of some bytes.
VALUE_REF = "=value"

OutputRecords = Mapping[str, Mapping[str, Mapping[str, Any]]]  # node -> output -> record


@dataclass(frozen=True)
class KeyInfo:
    """A node's cache key and what went into it."""

    key: str
    spec: NodeSpec
    param_hashes: Mapping[str, str]
    inputs: Mapping[str, tuple[str, ...]]  # param -> "node.output@digest" it reads
    #: param -> the code the pickles it reads name (their records' ``code``), if any
    input_code: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: when (``time.time()``) its first parameter that may hold a ``File`` or ``Directory``
    #: began to be hashed: one whose ctime is not before it changed after its digest was
    #: taken, maybe before the node read it (``run/_files.py``: drift); None: no such one
    hashed_at: float | None = None

    def components(self) -> dict[str, Any]:
        """The key's parts, as stored for ``explain``: code (``package:`` parts included),
        version, params, inputs, outputs and declared writes, and what the code fingerprint does
        not cover (if anything)."""
        fp = code_fingerprint(self.spec.code)
        used = self.spec.workflow_params  # workflow parameters, for explain's "param model.C"
        extra = {"workflow_params": {k: describe_value(v) for k, v in used.items()},
                 "param_args": sorted(self.spec.param_args)} if used else {}  # fmt: skip
        if fp.uncovered:  # what the key cannot see (dynamic look-ups...), for explain
            extra["uncovered"] = list(fp.uncovered)
        if self.input_code:  # what the code behind pickled inputs stands for now
            extra["input_code"] = {k: code_parts(v) for k, v in self.input_code.items()}
        return {
            **extra,
            "kind": self.spec.kind,
            "code": fp.digest,
            "code_parts": dict(fp.parts),
            "code_source": fp.source,
            "version": self.spec.version,
            "params": dict(self.param_hashes),
            "params_repr": {
                k: describe_value(v) for k, v in self.spec.params.items() if k not in self.inputs
            },
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": list(self.spec.outputs),
            "writes": list(self.spec.writes),
        }


def input_digest(record: Mapping[str, Any]) -> RefDigest:
    """What an upstream output contributes to a key: its value digest when its record has one
    (equal values, however built), else its serializer and the digest of its bytes (with the
    code its pickle names, if its record lists any: :func:`_bytes_digest`)."""
    value = record.get("value")
    if value is not None:
        return RefDigest(VALUE_REF, value)
    return RefDigest(record["serializer"], _bytes_digest(record))


def _bytes_digest(record: Mapping[str, Any]) -> str:
    """An output's bytes' digest, mixed with the code its pickle names by reference (the
    record's ``code``, resolved in this process: ``hashing._pickled``): a class edited, or a
    package upgraded, since the output was made changes its consumers' keys."""
    code = record.get("code")
    if not code:
        return record["digest"]  # type: ignore[no-any-return]
    return with_code(record["digest"], code)


def node_key(
    spec: NodeSpec,
    upstream: OutputRecords,
    *,
    file_cache: FileHashCache | None = None,
    secrets: SecretHasher | None = None,
) -> KeyInfo:
    """The cache key of ``spec`` given the output records of the nodes it reads.

    ``secrets`` makes the keyed digests of :class:`Secret` parameters (required if any).
    """
    param_hashes: dict[str, str] = {}
    inputs: dict[str, tuple[str, ...]] = {}
    code_in: dict[str, set[str]] = {}  # param -> code names of the pickled outputs it reads
    root = spec.root
    hashed_at: float | None = None
    for name, value in spec.params.items():
        # what most parameters are, inline: one upstream output, an int, or a str that is
        # not an absolute path (one inside the root is keyed by its relative path); the
        # scalars are scalar_digest's (a RefDigest too), the rest takes the general path
        tp = type(value)
        if tp is InputRef:
            record = upstream[value.node][value.output]
            digest = record.get("value")
            if digest is not None:
                found = _VALUE_REFS.get(digest)  # (_value_ref, inline: once per node)
                param_hashes[name] = found if found is not None else _value_ref(digest)
            else:
                digest = _bytes_digest(record)
                param_hashes[name] = _ref_digest(record["serializer"], digest)
                if record.get("code"):
                    code_in[name] = set(record["code"])
            inputs[name] = (f"{value.node}.{value.output}@{digest}",)
            continue
        if (
            tp is int
            or tp is RefDigest
            or (tp is str and (root is None or not os.path.isabs(value)))
        ):
            param_hashes[name] = scalar_digest(value)  # type: ignore[assignment]
            continue
        many = _refs_param(spec, value, upstream, code_in.setdefault(name, set()))
        if many is not None:
            param_hashes[name], inputs[name] = many
            continue
        seen: list[str] = []

        def resolve(
            ref: InputRef | Secret, seen: list[str] = seen, name: str = name
        ) -> RefDigest | SecretDigest:
            if isinstance(ref, Secret):
                if secrets is None:
                    raise HashingError(
                        f"node {spec.name!r}: parameter {name!r} holds a Secret, and no "
                        "secret key was given to compute its cache key"
                    )
                return secrets.digest(ref)
            record = upstream[ref.node][ref.output]
            ref_digest = input_digest(record)
            if record.get("value") is None:
                code_in.setdefault(name, set()).update(record.get("code") or ())
            seen.append(f"{ref.node}.{ref.output}@{ref_digest.digest}")
            return ref_digest

        # (any value's hashing and the root's paths: loaded with the first parameter they key)
        from ..hashing._paths import relative_to_root
        from ..hashing._values import hash_value

        if hashed_at is None:  # (before any file of it is read: run/_files.py, drift)
            hashed_at = time.time()
        try:
            resolved = replace_refs(value, resolve, kind=(InputRef, Secret))
            resolved = relative_to_root(resolved, spec.root)  # absolute paths inside the root
            with hashing_for(f"parameter {name!r} of node {spec.name!r}", spec.code):
                param_hashes[name] = hash_value(resolved, file_cache=file_cache)
        except RecursionError:
            raise HashingError(
                f"node {spec.name!r}: parameter {name!r} is nested too deeply or contains "
                "itself to be hashed; pass a flatter value (or build it inside a node)"
            ) from None
        if seen:
            inputs[name] = tuple(seen)
    code, last = spec.code, _LAST_CODE[0]  # (_code_digest's memo, inline: once per node)
    if (
        last is None
        or last[0]() is not code
        or last[1] != package_versions()
        or last[2] != generation()
    ):
        last = _code_digest(code)
    key = key_of(
        spec.kind if spec.map is None else f"{spec.kind}.map",  # a map is not a call
        last[3],
        spec.version,
        param_hashes,
        (*spec.outputs, *(f"file:{path}" for path in spec.writes))  # declared files too
        if spec.writes
        else spec.outputs,
    )
    info: KeyInfo = object.__new__(KeyInfo)  # (its frozen __init__: a setattr per field)
    fields = info.__dict__  # (filled item by item: no keyword dict made to update it)
    fields["key"] = key
    fields["spec"] = spec
    fields["param_hashes"] = param_hashes
    fields["inputs"] = inputs
    fields["input_code"] = {k: tuple(sorted(v)) for k, v in code_in.items() if v} if code_in else {}
    if hashed_at is not None:  # (else the class's default: None)
        fields["hashed_at"] = hashed_at
    return info


#: the code object last fingerprinted (weakly), the package-versions mode and its digest, as
#: one tuple (replaced whole: threads keying nodes see a consistent one): consecutive nodes
#: are mostly calls of one function (a fan-out's items, a chain's steps)
_LAST_CODE: list[tuple[weakref.ref[Any], str, int, str] | None] = [None]


def _code_digest(code: Any) -> tuple[Any, str, int, str]:
    """``code_fingerprint(code).digest`` (the last item), remembered as the last one, with the
    package-versions mode and this graph build's binding generation (a rebound global is
    checked for at each build): node_key reads the memo first."""
    mode, gen = package_versions(), generation()
    digest = code_fingerprint(code).digest
    try:
        last = _LAST_CODE[0] = (weakref.ref(code), mode, gen, digest)
    except TypeError:  # not weakly referenceable: not remembered
        _LAST_CODE[0] = None
        return (None, mode, gen, digest)
    return last


def _ref_of(record: Mapping[str, Any]) -> tuple[str, str]:
    """:func:`input_digest` as a plain pair."""
    value = record.get("value")
    if value is not None:
        return VALUE_REF, value
    return record["serializer"], _bytes_digest(record)


# the digest of an upstream output as a parameter, by (serializer, digest): in a fan-out,
# thousands of nodes read the same output. A value digest's (most outputs) by its digest alone.
_REF_DIGESTS: dict[tuple[str, str], str] = {}
_VALUE_REFS: dict[str, str] = {}
_REF_DIGESTS_MAX = 4096


def _ref_digest(serializer: str, digest: str) -> str:
    pair = (serializer, digest)
    found = _REF_DIGESTS.get(pair)
    if found is None:
        found = _REF_DIGESTS[pair] = ref_digest(serializer, digest)
        if len(_REF_DIGESTS) > _REF_DIGESTS_MAX:
            _REF_DIGESTS.clear()
    return found


def _value_ref(digest: str) -> str:
    """``_ref_digest(VALUE_REF, digest)``, remembered by the digest alone."""
    found = _VALUE_REFS.get(digest)
    if found is None:
        found = _VALUE_REFS[digest] = ref_digest(VALUE_REF, digest)
        if len(_VALUE_REFS) > _REF_DIGESTS_MAX:
            _VALUE_REFS.clear()
    return found


def _refs_param(
    spec: NodeSpec, value: Any, upstream: OutputRecords, code: set[str] | None = None
) -> tuple[str, tuple[str, ...]] | None:
    """The digest of a parameter that is a list or tuple of upstream outputs (a gather's
    input, :func:`~etherealfabric.hashing._cachekey.ref_sequence_digest`), and the inputs it
    reads (the code their pickles name is added to ``code``); None for any other value (the
    general path decides)."""
    if type(value) not in (list, tuple) or not value:
        return None
    refs: list[tuple[str, str]] = []
    seen: list[str] = []
    for ref in value:
        if type(ref) is not InputRef:
            return None
        record = upstream[ref.node][ref.output]
        digest = record.get("value")  # (_ref_of, inline: thousands of items)
        if digest is not None:
            serializer = VALUE_REF
        else:
            serializer, digest = record["serializer"], _bytes_digest(record)
            if code is not None and "code" in record:
                code.update(record["code"])
            if spec.root is not None and os.path.isabs(serializer):
                return None  # (no serializer is named so) keyed by its path relative to root
        refs.append((serializer, digest))
        seen.append(f"{ref.node}.{ref.output}@{digest}")
    return ref_sequence_digest(type(value), refs), tuple(seen)
