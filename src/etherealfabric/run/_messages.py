"""The messages between the scheduler and a worker: a :class:`Task` out, a :class:`TaskResult` back.

Both are plain dataclasses that pickle (with cloudpickle) for processes, Dask and Celery. A task
carries everything the worker needs, the user's registered serializers included, so a worker
process needs nothing from the user's script; a result carries only small metadata (digests,
timings, captured output, the bytes of small outputs).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..backends._base import RetryStop
from ..define._policies import RetryPolicy
from ..errors import NodeTimeoutError
from ..journal._liveness import HOST
from ..store import Store
from ..store._serializers import PortableSerializers

__all__ = ["HOST", "Attempt", "OnRetry", "OnStart", "Task", "TaskResult", "node_stack"]


_ENGINE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def node_traceback(exc: BaseException) -> str:
    """The traceback of an exception a node's call raised, from the node's own code on: the
    frames that called it are left out: the engine's (the worker's capture and call) and
    those of the retries around them (tenacity re-raises the last attempt's error from its
    future: ``tenacity``'s and ``concurrent.futures``' frames come first then); the frames
    below (a library's) and chained exceptions are kept. An error the engine raised itself
    (no frame outside these) keeps every frame."""
    if isinstance(exc, NodeTimeoutError):  # raised by the engine's clock, not the node
        head = "where it was when its time was up (most recent call last):\n" if exc.where else ""
        return head + exc.where + "".join(traceback.format_exception_only(exc))
    tb = exc.__traceback__
    while tb is not None and _calling(tb.tb_frame):
        tb = tb.tb_next
    summary = traceback.TracebackException(type(exc), exc, tb or exc.__traceback__, compact=True)
    _name_rebuilt_files(summary, tb or exc.__traceback__, exc)
    return "".join(summary.format())


#: the file name cloudpickle gives the code of a function it rebuilt from a pickle (a node of
#: a workflow file, on a worker process)
_REBUILT = "<dynamic-code>"


def _name_rebuilt_files(summary: Any, tb: Any, exc: BaseException | None, depth: int = 0) -> None:
    """Name the frames of code cloudpickle rebuilt (``<dynamic-code>``, the workflow file's
    functions on a worker process) by the file their module was read from, so the traceback
    shows their source lines (their line numbers are the original's); the exceptions it was
    chained from too."""
    if depth > 20 or exc is None:
        return
    stack = summary.stack
    for i, (frame, _) in enumerate(traceback.walk_tb(tb)):
        if i >= len(stack) or stack[i].filename != _REBUILT:
            continue
        path = frame.f_globals.get("__file__")
        if isinstance(path, str) and path:
            old = stack[i]
            positions = {
                k: getattr(old, k) for k in ("end_lineno", "colno", "end_colno") if hasattr(old, k)
            }
            stack[i] = traceback.FrameSummary(path, old.lineno, old.name, **positions)
    for chained, cause in (
        (summary.__cause__, exc.__cause__),
        (summary.__context__, exc.__context__),
    ):
        if chained is not None and cause is not None:
            _name_rebuilt_files(chained, cause.__traceback__, cause, depth + 1)


def node_stack(frame: Any) -> str:
    """The lines of the stack of ``frame`` from the node's own code on (see
    :func:`node_traceback`)."""
    stack = [f for f, _ in traceback.walk_stack(frame)][::-1]  # (oldest first)
    while stack and (_calling(stack[0]) or stack[0].f_globals.get("__name__") == "threading"):
        stack.pop(0)
    summary = traceback.StackSummary.extract((f, f.f_lineno) for f in stack)
    return "".join(summary.format())


def _calling(frame: Any) -> bool:
    """Whether ``frame`` is one of those that call a node: the engine's or the retries'."""
    if os.path.abspath(frame.f_code.co_filename).startswith(_ENGINE):
        return True
    module = str(frame.f_globals.get("__name__") or "")
    return any(module == name or module.startswith(name + ".") for name in _CALLERS)


#: the packages whose frames stand between the worker and a node it retries
_CALLERS = ("tenacity", "concurrent.futures")


#: ``Task.on_retry(node, attempt)``: a retried node's :class:`Attempt` that failed and is
#: followed by another (ended: its error, traceback and output, redacted), or the one that
#: follows, as it begins (``finished_at`` 0)
OnRetry = Callable[[str, "Attempt"], None]
#: ``Task.on_start(node, ts)``: the task's first attempt began
OnStart = Callable[[str, float], None]


@dataclass(eq=False)
class Task:
    """Everything a worker needs to run one node; picklable with cloudpickle."""

    run_id: str
    node: str
    key: str
    code: Callable[..., Any] | type
    is_class: bool
    outputs: tuple[str, ...]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    store: Store
    serializers: Mapping[str, str] = field(default_factory=dict)
    retry: RetryPolicy | None = None
    inline_limit: int = 64 * 1024
    verify: bool = True
    publish: bool = False
    timeout: float | None = None
    kill_on_timeout: bool = False
    #: serializers the user registered (they travel: a worker process never registered them)
    registered: PortableSerializers = ()
    #: declared file and folder outputs (root-relative; see ``run/_files.py``) and the root
    writes: tuple[str, ...] = ()
    root: str | None = None
    #: the driver's working folder when it built the task: a worker started in another one
    #: (``dask worker``, a Celery worker) reads a node's relative paths from its own folder,
    #: so its record names them where they were read, not ``./path`` (run/_reads.py)
    cwd: str | None = None
    #: the stat of every input file when the task was built, to detect drift while it runs
    inputs_seen: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    #: the node runs in the scheduler's process: its large arrays are handed over in memory
    #: (``TaskResult.values``), and with ``background`` (durability "fast") written to the
    #: store while its consumers run (``TaskResult.writing``)
    hand_over: bool = False
    background: bool = False
    #: the texts of the node's code that may name files it reads (run/_reads.py: code_texts)
    names: tuple[str, ...] | None = None
    #: attempts made already by workers that died running it (run/_lost.py): the first
    #: attempt here is number ``attempts_before + 1``, and the retry policy counts them
    attempts_before: int = 0
    #: the node is forced (``--force``): it starts from scratch, its checkpoint deleted
    #: before its first attempt (its retries resume from what they save)
    fresh: bool = False
    #: the bytecode digests of the code the key covers that travels by name (run/_codestamp.py),
    #: checked by an out-of-process worker before the node runs; empty in the scheduler's process
    code_stamp: Any = ()
    #: in the scheduler's process only (never pickled): called from the worker's thread as
    #: ``on_retry(node, attempt)`` when an attempt failed and another is about to follow, and
    #: as that one begins, so that ``node_retrying`` and the attempts' journal rows come then
    #: (``run/_retries.py``)
    on_retry: OnRetry | None = None
    #: in the scheduler's process only (never pickled): called from the worker's thread as
    #: ``on_start(node, ts)`` when the task's first attempt begins, for a task the scheduler
    #: submitted while every worker was busy (``node_started`` waits for it)
    on_start: OnStart | None = None
    #: set when the run stops (fail-fast): no further attempt starts and a backoff under way
    #: ends (``run/_retrying.py``); in the scheduler's process its ``threading.Event``, out of
    #: it the backend's :attr:`~etherealfabric.backends.Backend.retry_stop` (None: none)
    stop_retrying: RetryStop | threading.Event | None = None
    #: in the scheduler's process only (never pickled): node -> its running attempt's capture,
    #: for a run stopped while the node runs to keep what it printed (``run/_stopping.py``)
    printing: dict[str, list[str]] | None = None


@dataclass(eq=False)
class Attempt:
    """One try of a node."""

    number: int
    started_at: float
    finished_at: float
    error: str | None = None
    traceback: str | None = None
    output: str | None = None
    checkpointed: bool = False
    #: the files opened while it ran (path -> for writing, None: untracked; run/_reads.py),
    #: kept in the worker
    opened: dict[str, bool | None] = field(default_factory=dict)
    #: the ``reads`` of the checkpoint it resumed from (run/_resumable.py), kept in the worker
    resumed: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(eq=False)
class TaskResult:
    """What a worker hands back: output records, inline bytes of small outputs, attempts."""

    node: str
    key: str
    ok: bool
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    inline: dict[str, bytes] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    host: str = HOST
    pid: int = 0
    error: str | None = None
    traceback: str | None = None
    exception: BaseException | None = None
    #: the digests of the inputs that were missing or corrupt (the scheduler recomputes them)
    bad_inputs: list[str] = field(default_factory=list)
    #: whether the node used its checkpoint (then the scheduler removes it after success)
    checkpointed: bool = False
    #: the record's ``files``: stored file and folder outputs by root-relative path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: data files the node read that its key does not cover (the record's ``reads``)
    reads: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: input files that changed while the node ran (its result is then not cached)
    drifted: list[str] = field(default_factory=list)
    #: outputs handed over in memory, read-only (only for a task run in this process)
    values: dict[str, Any] = field(default_factory=dict)
    #: the background write of some outputs: done when they are stored and verified (the
    #: records in ``outputs`` name them already); None when everything is stored
    writing: Future[None] | None = None
    #: how long the worker took over the task (inputs, call, outputs), in seconds
    seconds: float = 0.0

    @classmethod
    def failure(cls, node: str, key: str, exc: BaseException) -> TaskResult:
        """The failed result of a node whose task failed outside the node's code (its key,
        its inputs, the backend: ``exc``)."""
        result = cls(node=node, key=key, ok=False, error=f"{type(exc).__name__}: {exc}")
        result.traceback = "".join(traceback.format_exception(exc))
        result.exception = exc
        return result

    @property
    def started_at(self) -> float:
        return self.attempts[0].started_at if self.attempts else time.time()

    @property
    def finished_at(self) -> float:
        return self.attempts[-1].finished_at if self.attempts else time.time()
