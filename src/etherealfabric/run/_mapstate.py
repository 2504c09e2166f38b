"""The state of a mapped node being run, and what the scheduler lends it (``run/_mapping.py``).

:class:`MapRun` is one map in one run: its children (one per distinct item, :class:`Child`),
which item position holds which child, what is left to send, the chunks out, the failures.
:class:`ChildDone` is one child's end as the event stream and the journal see it.
:func:`load_items` reads what a map maps over and refuses what has no order or is no
collection, naming the node.
"""

from __future__ import annotations

import queue
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..define._refs import replace_refs
from ..errors import MapItemsError, a_or_an
from ..hashing._secret import SecretHasher
from ..plan._graph import Graph, InputRef
from ..plan._keys import KeyInfo
from ..plan._maps import MapKeys
from ..states import EventKind, NodeStatus
from ._cache import ArtifactCache
from ._context import DriverDispatch
from ._leases import RunLeases
from ._mapreport import MapReport
from ._messages import Attempt, Task, TaskResult
from ._outcome import RunOutcome, RunPolicy
from ._recorder import JournalRecorder

__all__ = [
    "Child",
    "ChildDone",
    "ChunkToken",
    "CollectToken",
    "MapHost",
    "MapRun",
    "failure",
    "load_items",
]


class MapHost(Protocol):
    """What :class:`Maps` uses of the scheduler that owns it."""

    graph: Graph
    outcome: RunOutcome
    cache: ArtifactCache
    recorder: JournalRecorder
    leases: RunLeases
    policy: RunPolicy
    secrets: SecretHasher | None
    inline_limit: int
    _dispatch: DriverDispatch
    _done: queue.SimpleQueue[Any]
    _stopping: bool
    _dirty: bool
    _checkpoints_to_clear: list[str]

    def _emit(self, kind: EventKind, node: str | None = None, **data: Any) -> None: ...
    def _room(self) -> bool: ...
    def _task(self, info: KeyInfo) -> tuple[Task, int]: ...
    def _fail_before_start(self, name: str, exc: BaseException) -> None: ...
    def _rewind_inputs(self, consumer: str, digests: list[str], error: object) -> bool: ...
    def _cached(self, name: str, info: KeyInfo, record: Mapping[str, Any]) -> None: ...
    def _succeeded(self, name: str, info: KeyInfo, result: TaskResult, **data: Any) -> None: ...
    def _failed(
        self, name: str, result: TaskResult, info: KeyInfo | None = None, *, handle: bool = True
    ) -> None: ...


@dataclass(slots=True)
class Child:
    key: str
    name: str
    item: Any
    digest: str
    status: NodeStatus = NodeStatus.PENDING
    outputs: Mapping[str, Mapping[str, Any]] | None = None
    result: TaskResult | None = None
    redone: int = 0
    checked: bool = False  # its record lists reads or files: a whole-map hit checks it
    attempts_before: int = 0  # attempts lost with a worker that died (run/_lost.py)
    lost: list[Attempt] = field(default_factory=list)  # those attempts, for its result
    keyed_at: float | None = None  # when its item (holding files) was hashed: run/_files.py


@dataclass
class ChildDone:
    """One child's end, for the event stream and the journal (``map_items`` events)."""

    name: str
    status: NodeStatus
    result: TaskResult
    record: dict[str, Any] | None = None  # its action record, when it succeeded
    components: dict[str, Any] | None = None
    inline: dict[str, bytes] = field(default_factory=dict)  # a fallback's small outputs
    stale: str | None = None  # why its cached result was refused (a file it read changed)


@dataclass
class MapRun:
    """One mapped node being run (or, ``started`` False, streamed into before it starts)."""

    name: str
    info: KeyInfo
    keys: MapKeys
    labels: list[Any] | None = None  # the items' keys, for a dict of items
    children: list[Child] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)  # item position -> child
    report: MapReport = field(default_factory=lambda: MapReport(""))
    files: bool = False  # the items hold File objects: no record under the map's own key
    started: bool = True  # False: its items come one by one from an upstream map's children
    by_key: dict[str, int] = field(default_factory=dict)  # child key -> child
    names: set[str] = field(default_factory=set)
    started_at: float = field(default_factory=time.time)
    todo: deque[int] = field(default_factory=deque)
    in_flight: int = 0
    elsewhere: list[int] = field(default_factory=list)  # leased by another run: look again
    recheck_at: float = 0.0
    chunk_size: int = 1
    failures: int = 0
    stopped: bool = False
    base: Task | None = None
    collect_key: str | None = None
    collected: list[Child] = field(default_factory=list)
    #: the collection's record when its lookup was a hit (indexed whole, not its outputs only)
    found: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.report.node = self.name

    @property
    def spec(self) -> Any:
        return self.info.spec


@dataclass
class ChunkToken:
    run: MapRun
    children: list[int]


@dataclass
class CollectToken:
    run: MapRun


def load_items(host: MapHost, name: str, spec: Any) -> tuple[list[Any], list[Any] | None]:
    """The items to map over, loaded, and their keys when they are a dict."""
    outputs, cache = host.outcome.outputs, host.cache
    value = replace_refs(
        spec.params[spec.map.item_param],
        lambda ref: cache.load(outputs[ref.node][ref.output]),
        kind=InputRef,
    )
    if isinstance(value, Mapping):
        return list(value.values()), list(value.keys())
    if isinstance(value, (str, bytes, bytearray, set, frozenset)) or not (
        isinstance(value, Sequence) or sized_iterable(value)
    ):
        source = spec.params[spec.map.item_param]
        where = (
            f"the output {source.node}.{source.output}"
            if isinstance(source, InputRef)
            else "its items"
        )
        raise MapItemsError(
            f"node {name!r} maps over {where}, which is {a_or_an(type(value).__name__)}: a map "
            "needs a list, tuple or other sequence, or a dict (sets have no order: sort "
            "them into a list)",
            node=name,
        )
    return list(value), None


def failure(child: Child, exc: BaseException) -> TaskResult:
    result = TaskResult(node=child.name, key=child.key, ok=False)
    result.error = f"{type(exc).__name__}: {exc}"
    result.traceback = "".join(traceback.format_exception(exc))
    result.exception = exc if isinstance(exc, Exception) else None
    return result


def sized_iterable(value: object) -> bool:
    """numpy arrays, pandas series and the like: sized, iterable, ordered (not a set)."""
    return (
        hasattr(value, "__len__") and hasattr(value, "__iter__") and hasattr(value, "__getitem__")
    )
