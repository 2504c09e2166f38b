"""Keys of a mapped node: the whole map's, each child's, and the collection's.

A mapped node (``square.map(items)``, a spec with ``map`` set) has three kinds of keys:

- **the map's own key** (:func:`~._keys.node_key`, with the kind ``<kind>.map``): code,
  broadcast arguments and the digest of the whole ``items`` output. Its record holds the
  collected outputs, written only when every item succeeded and no item holds a ``File``
  (:func:`holds_files`): a warm re-run is one lookup. Its ``checks`` counts the children
  whose records list ``reads`` or ``files``: with some, a hit of the whole map first looks
  them up (``run/_mapcheck.py``).
- **a child's key** (:func:`child_key`): a Merkle hash of the *template* key (the node's key
  with its item parameter left out: kind, code, version, broadcast arguments, outputs) and the
  item's *content* digest (never its position), so adding, removing or reordering items
  leaves the other children's keys alone, and two equal items are one child. One hash of a
  few bytes per item: 100,000 items cost a fraction of a second.
- **the collection's key** (:func:`collect_key`): the ordered list of the children's output
  digests (value digests where they have one; each output's list hashed as one
  length-prefixed string), with the items' keys for a dict. It changes
  only when a child's output does, or the order: an edit that re-runs children which produce
  the same outputs stops there.

A map's record names a stored *index* of its children (:func:`children_index`): one line
``<key>\t<name>`` per distinct child, in item order. ``cache gc`` keeps the children's records
with the map's; ``show RUN NODE --items`` lists the children a run found cached from it.

Children are named ``<map>[<label>]`` (:func:`item_label`): the dict key or the item itself
when it is a short number or word, else the first 10 hex digits of the item's digest; stable
across runs, because they come from the item and not from where it sits.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from ..define._files import Directory, File
from ..define._spec import NodeSpec
from ..errors import StoreError
from ..hashing._cachekey import cache_key
from ..hashing._describe import describe_value
from ..hashing._digest import digest_bytes, is_digest
from ..hashing._files import FileHashCache
from ..hashing._fingerprint import code_fingerprint
from ..hashing._paths import relative_to_root
from ..hashing._secret import SecretHasher
from ..hashing._values import hash_value
from ._keys import KeyInfo, OutputRecords, input_digest, node_key

__all__ = [
    "COLLECT_KIND",
    "MapKeys",
    "child_key",
    "children_index",
    "collect_key",
    "holds_files",
    "item_label",
    "map_keys",
    "read_children_index",
]

#: the kind in a collection's key (the collection is the same code for every map)
COLLECT_KIND = "etherealfabric.map.collect/1"
_CHILD_TAG = b"etherealfabric.map.child/1\x00"
_LABEL_CHARS = 32


@dataclass(frozen=True)
class MapKeys:
    """What every child of one map shares: the key's parts other than the item."""

    spec: NodeSpec
    item_param: str
    template: KeyInfo  # the node keyed with its item parameter left out
    code: str
    file_cache: FileHashCache | None = None

    @property
    def prefix(self) -> bytes:
        """What every child's key hashes before its item's digest."""
        key, param = self.template.key.encode(), self.item_param.encode()
        return b"%s%s\x00%s\x00" % (_CHILD_TAG, key, param)

    def components(self, item: Any, item_digest: str, parent: str) -> dict[str, Any]:
        """A child's key components, for ``explain``: the item's part, and where the rest is.

        The code, version and broadcast parts are the map's own (its row has them in full), so
        a child's row stays small however many children there are.
        """
        return {
            "map": parent,
            "kind": self.spec.kind,
            "code": self.code,
            "version": self.spec.version,
            "params": {**self.template.param_hashes, self.item_param: item_digest},
            "params_repr": {self.item_param: describe_value(item)},
            "inputs": {k: list(v) for k, v in self.template.inputs.items()},
        }


def map_keys(
    spec: NodeSpec,
    upstream: OutputRecords,
    *,
    file_cache: FileHashCache | None = None,
    secrets: SecretHasher | None = None,
) -> MapKeys:
    """The parts of the children's keys that do not depend on the item (computed once)."""
    item_param = spec.map.item_param if spec.map is not None else next(iter(spec.params))
    template = dataclasses.replace(spec, params={**spec.params, item_param: None}, map=None)
    info = node_key(template, upstream, file_cache=file_cache, secrets=secrets)
    return MapKeys(spec, item_param, info, code_fingerprint(spec.code).digest, file_cache)


def holds_files(items: Sequence[Any], depth: int = 0) -> bool:
    """Whether ``items`` hold ``File`` or ``Directory`` objects (inside containers too).

    A map over such items gets no record under its own key: the items' digest covers the
    files' paths, while each child's key covers its file's content, so only the children's
    keys see an edited file. (Everything else an item holds is in the items' bytes.)
    """
    for item in items:
        if isinstance(item, (File, Directory)):
            return True
        if depth < 8 and isinstance(item, (list, tuple, set, frozenset)):
            if holds_files(list(item), depth + 1):
                return True
        elif depth < 8 and isinstance(item, dict) and holds_files(list(item.values()), depth + 1):
            return True
    return False


def child_key(keys: MapKeys, item: Any, prefix: bytes | None = None) -> tuple[str, str]:
    """A child's cache key and its item's digest (``prefix``: ``keys.prefix``, computed once)."""
    item_digest = hash_value(relative_to_root(item, keys.spec.root), file_cache=keys.file_cache)
    return digest_bytes((prefix or keys.prefix) + item_digest.encode()), item_digest


def collect_key(
    outputs: Sequence[str],
    children: Sequence[Mapping[str, Mapping[str, Any]]],
    labels: Sequence[Any] | None,
) -> str:
    """The collection's key: each output's ordered list of the children's output digests.

    ``children`` are the output records of the collected children, in item order; ``labels``
    the keys of a dict of items (None for a sequence).
    """
    params = {name: digest_bytes(_joined(children, name)) for name in outputs}
    if labels is not None:
        params["#keys"] = hash_value(list(labels))
    return cache_key(
        kind=COLLECT_KIND, code="", version=None, params=params, outputs=tuple(outputs)
    )


def _joined(children: Sequence[Mapping[str, Mapping[str, Any]]], name: str) -> bytes:
    parts = []
    for child in children:
        kind, digest = input_digest(child[name])
        parts.append(f"{len(kind)}:{kind}{len(digest)}:{digest}")
    return "".join(parts).encode()


def children_index(children: Iterable[tuple[str, str]]) -> bytes:
    """A map's index of its children: ``key<TAB>name`` lines, each child once, in order."""
    lines = dict.fromkeys(f"{key}\t{name}" for key, name in children)
    return "\n".join(lines).encode()


def read_children_index(data: bytes) -> list[tuple[str, str | None]]:
    """The (key, name) pairs of a children index (an index of bare keys: name None).

    A :class:`StoreError` for an index naming something that is not a cache key (one in a store
    others can write may be forged): nothing it names is used then, and callers treat the
    index as unusable, as one that is gone (a ``UnicodeDecodeError`` for one that is not text).
    """
    pairs: list[tuple[str, str | None]] = []
    for line in data.decode().split("\n"):
        key, tab, name = line.partition("\t")
        if key:
            if not is_digest(key):
                raise StoreError(
                    f"the index of a map's children names {key[:80]!r}, not a cache key"
                )
            pairs.append((key, name if tab else None))
    return pairs


def item_label(item: Any, digest: str, key: Any = None) -> str:
    """How a child is named inside ``map[...]``: a short key or item as it is, a file's name
    (a ``File``, ``Directory`` or path item: ``clean[day_007.csv]``), else a digest."""
    candidate = item if key is None else key
    if isinstance(candidate, (File, Directory, PurePath)):
        candidate = os.path.basename(os.path.normpath(os.fspath(candidate)))
    if isinstance(candidate, (int, str)) and not isinstance(candidate, bool):
        text = str(candidate)
        if 0 < len(text) <= _LABEL_CHARS and text.isprintable() and not _ODD & set(text):
            return text
    return digest[:10]


_ODD = set("/\\[]")
