"""Run one node anywhere: load its inputs, call it under its retry policy, store its outputs.

``execute(task)`` is what every backend runs, in a thread, a process or a remote worker. It
reads inputs from the store (small ones travel inline), writes outputs to it, and returns a
small :class:`TaskResult` (digests, timings, errors, the data files read: _reads.py); it never
touches the journal, nor raises for a failure. Secret parameters are unwrapped here; a
:class:`~etherealfabric.run._redact.Redactor` replaces their text in what the result carries
back and what the node prints and logs (no Secret may be returned).

**Hand-over** (a task run in the scheduler's process, ``Task.hand_over``): a large numpy
output (``npy``, beyond the inline limit) is frozen (``WRITEABLE`` cleared) and returned in
``TaskResult.values``, for the scheduler to hand to its consumers in memory. With
``Task.background`` (durability "fast") one of :data:`BACKGROUND_BYTES` or more is digested in
memory and written, re-hashed and checked in a background thread (``TaskResult.writing``)
while its consumers run; its record is committed once that write is done (_handover.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from ..backends._base import progress_listened, report_progress
from ..define._context import activate_checkpoint
from ..define._files import activate_root, storing_under
from ..define._refs import replace_refs
from ..define._secret import Secret
from ..errors import (
    ArtifactMissingError,
    CorruptArtifactError,
    OutputError,
    SerializationError,
    StoreError,
    raise_unusable,
)
from ..hashing._digest import new_hasher
from ..hashing._outputs import value_digest, value_digest_teed
from ..hashing._pickled import noting, record_code
from ..store import Serializer, Store, StoredObject
from ..store._loading import InputHandle, load_value
from ..store._serializers import (
    SerializerRegistry,
    default_registry,
    dump_value,
    is_npy_array,
    npy_header,
    write_value,
)
from ..store._tables import say_pickled
from ._audit import Opened, back_to_start, unwatch, watch, written_whole
from ._byvalue import expose
from ._capture import capture, joined, stream_printed
from ._checkpoint import Checkpoint, open_attempt
from ._codestamp import check_code_stamp
from ._drift import drifted
from ._files import Written, capture_nested, capture_outputs, clear_writes, warn_undeclared
from ._messages import Attempt, Task, TaskResult, node_traceback
from ._private import private
from ._reads import task_reads
from ._records import action_record
from ._redact import Redactor
from ._retrying import call_with_retries
from ._returns import check_outputs, normalise

__all__ = ["execute", "store_values"]

log = logging.getLogger("etherealfabric.store")
#: arrays from this size on are written in the background with durability "fast" (a smaller
#: one is written before the node counts as done: it takes a few milliseconds, and its record
#: is then committed as early as any other node's)
BACKGROUND_BYTES = 32 * 1024 * 1024


def execute(task: Task) -> TaskResult:
    """Run ``task``'s node and store its outputs; failures are reported, not raised."""
    started = time.perf_counter()
    result = TaskResult(node=task.node, key=task.key, ok=False, pid=os.getpid())
    registry = default_registry.extended(task.registered)
    secrets: list[str | bytes] = []
    try:
        check_code_stamp(task.code_stamp, task.node)  # a stale worker runs nothing
        try:
            args, kwargs = _resolve(task, registry, secrets)
        except (ArtifactMissingError, CorruptArtifactError) as exc:
            result.bad_inputs = exc.digests
            raise
        redact = Redactor(secrets)
        if task.fresh:  # forced: a checkpoint left under the key (however old) is not resumed
            task.store.delete_checkpoint(task.key)
        values = call_with_retries(
            task,
            lambda: _attempt(task, args, kwargs, result.attempts, redact),
            result.attempts,
            redact,
        )
        result.checkpointed = any(a.checkpointed for a in result.attempts)
        written = written_whole(result.attempts[-1].opened)
        changed: list[str] = []  # files it read that changed while it ran: drifted
        result.reads = task_reads(task, result.attempts, args, kwargs, secrets, values, changed)
        _store_outputs(task, values, result, registry, changed, written)
        warn_undeclared(written, task, result.files)
        result.ok = True
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.traceback = node_traceback(exc)
        result.exception = exc
        if result.attempts and result.attempts[-1].error is None:
            result.attempts[-1].error = result.error
            result.attempts[-1].traceback = result.traceback
    Redactor(secrets).result(result)
    result.seconds = time.perf_counter() - started
    return result


# -- inputs -------------------------------------------------------------------------------------
def _resolve(
    task: Task, registry: SerializerRegistry, secrets: list[str | bytes]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The node's arguments: inputs loaded, secrets unwrapped (their values go to ``secrets``).
    The error of a missing or corrupt input names all of them (``digests``): their producers
    are recomputed at once."""
    bad: list[StoreError] = []

    def load(handle: Any) -> Any:
        if isinstance(handle, Secret):
            secrets.append(handle.reveal())
            return handle.reveal()
        try:
            return load_value(handle, task.store, verify=task.verify, registry=registry)
        except (ArtifactMissingError, CorruptArtifactError) as exc:
            exc.digest = handle.digest
            bad.append(exc)
            return None  # the node will not run

    kind = (InputHandle, Secret)
    with activate_root(task.root):  # a File stored inside a value is found under this root
        # literals copied first (the task's own, run/_private.py), then inputs loaded
        args = tuple(replace_refs(private(a), load, kind=kind) for a in task.args)
        kwargs = {k: replace_refs(private(v), load, kind=kind) for k, v in task.kwargs.items()}
    raise_unusable(bad)
    return args, kwargs


# -- calling --------------------------------------------------------------------------------------
def _attempt(
    task: Task,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attempts: list[Attempt],
    redact: Redactor,
) -> Mapping[str, Any]:
    number = task.attempts_before + len(attempts) + 1
    attempt = Attempt(number=number, started_at=time.time(), finished_at=0.0)
    attempts.append(attempt)
    note = ("attempt", number, attempt.started_at)  # for run/_lost.py
    if task.on_start is not None:  # queued behind busy workers: it starts now
        task.on_start(task.node, attempt.started_at)
        task.on_start = None
    if number > 1 and task.on_retry is not None:  # a retry begins (its row says running)
        task.on_retry(task.node, Attempt(number, attempt.started_at, 0.0))
    if task.printing is None and progress_listened():  # and what it prints, as it goes
        stream_printed(report_progress, note)
    else:
        report_progress(note)

    cp = Checkpoint(task.store, task.key, task.node, attempt.number)  # closed at its end
    open_attempt(task.run_id, cp)  # (or when its run is cancelled: end_attempts)
    buffers: list[list[str]] = []  # the attempt's capture, once open: kept at a timeout too

    def body() -> tuple[Mapping[str, Any], str | None, tuple[bool, dict[str, Any]], dict[str, bool | None]]:  # fmt: skip
        with capture(redact or None) as captured, activate_checkpoint(cp), activate_root(task.root):
            buffers.append(captured)
            if task.printing is not None:  # a run stopped meanwhile keeps it (in process)
                task.printing[task.node] = captured
            opened, watched = watch(task.code)  # in the thread (or child process) calling the node
            cp.made_with = (task, opened, args, kwargs, attempt.started_at, redact)  # (no call)
            try:
                return _call(task, args, kwargs), joined(captured), (cp.used, cp.resumed), opened
            except BaseException as exc:
                with contextlib.suppress(Exception):  # the output travels with the error
                    exc.__dict__["_ef_output"] = joined(captured)
                raise
            finally:
                unwatch(watched)
                if getattr(opened, "changed_folder", False) and isinstance(opened, Opened):
                    back_to_start(opened)  # it called os.chdir
                if task.printing is not None:
                    task.printing.pop(task.node, None)

    try:
        clear_writes(task.root, task.writes, node=task.node)  # no file of a former version
        if task.timeout is None:
            values, attempt.output, (used, attempt.resumed), attempt.opened = body()
        else:
            from ._timeouts import call_with_timeout  # (a node with a timeout's only)

            values, attempt.output, (used, attempt.resumed), attempt.opened = call_with_timeout(
                body, task.timeout, node=task.node, kill=task.kill_on_timeout, abandon=cp.close
            )
        attempt.checkpointed = used
        if isinstance(attempt.opened, Opened):  # (threads it started may still note opens)
            attempt.opened = attempt.opened.frozen()
        return values
    except Exception as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"
        attempt.traceback = node_traceback(exc)
        attempt.output = getattr(exc, "__dict__", {}).get("_ef_output")
        if attempt.output is None and buffers:  # abandoned at its timeout: what it printed so far
            attempt.output = joined(list(buffers[0]))
        attempt.finished_at = time.time()
        report_progress(("failed", number, attempt.finished_at, redact(attempt.error)))
        raise
    finally:  # before a retry starts or the success is committed (an abandoned one: at once)
        cp.close("it ended")
        attempt.checkpointed = attempt.checkpointed or cp.used  # (an abandoned thread's saves)
        attempt.finished_at = attempt.finished_at or time.time()


def _call(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any]:
    pid = os.getpid()
    expose(task.code)  # its helpers findable by name here (a Pool.map(helper) in the node)
    try:
        if task.is_class:
            instance = task.code(*args, **kwargs)
            instance._ef_name = task.node
            return check_outputs(task, instance.run(), "run()")
        raw = task.code(*args, **kwargs)
        return check_outputs(task, normalise(task, raw), "the function")
    finally:
        if os.getpid() != pid:  # a child the node forked came back: never the node's result
            _forked_child_returned(task.node, pid)


def _forked_child_returned(node: str, parent: int) -> None:
    """End a child process the node forked that returned from (or raised out of) the node
    instead of exiting: its value would pass for the node's, and the parent would wait for
    it forever (the child would go on as the engine)."""
    os.write(2, (
        f"etherealfabric: node {node!r}: a process it forked (pid {os.getpid()}, parent "
        f"{parent}) returned from the node instead of exiting; it is ended here. End a "
        "forked child with os._exit(...), or use multiprocessing or subprocess\n"
    ).encode("utf-8", "backslashreplace"))  # fmt: skip
    os._exit(70)


# -- outputs --------------------------------------------------------------------------------------
def _store_outputs(
    task: Task,
    values: Mapping[str, Any],
    result: TaskResult,
    registry: SerializerRegistry,
    changed: list[str] | None = None,
    wrote: Sequence[str] = (),
) -> None:
    # checked first: the node is done with them; with the files it read that changed
    result.drifted = [*drifted(task.inputs_seen), *(changed or ())]
    since = result.attempts[0].started_at if result.attempts else None
    written = None if since is None else Written(since, frozenset(map(os.path.abspath, wrote)))
    returned, result.files = capture_outputs(
        task.store, task.root, task.writes, values, node=task.node, written=written
    )
    names = tuple(n for n in task.outputs if n not in returned)
    handed = _handed_over(task, names, values, registry) if task.hand_over else ()
    later = (
        tuple(n for n in handed if values[n].nbytes >= BACKGROUND_BYTES) if task.background else ()
    )
    publish = task.publish and not result.drifted
    # (made only for a background write, which awaits it: a Future costs a Condition per node)
    measured: Future[dict[str, dict[str, Any]]] | None = None
    if later:  # written from now on, while this thread measures them (and stores the rest)
        awaited: Future[dict[str, dict[str, Any]]] = Future()
        measured = awaited
        result.writing = _in_background(
            task.node,
            lambda: _write_later(task, later, values, awaited, result, registry, publish),
        )
    try:
        with storing_under(task.root) as nested:  # files inside outputs: stored root-relative
            records, result.inline = store_values(
                task.node,
                tuple(n for n in names if n not in later),
                values,
                task.serializers,
                task.store,
                task.inline_limit,
                registry=registry,
            )
        result.files.update(
            capture_nested(task.store, task.root, nested, result.files, task.node, written)
        )
        records.update({n: _measured(task.node, n, values[n], registry) for n in later})
    except BaseException as exc:
        if measured is not None:
            measured.set_exception(exc)  # the write started drops its temp file
        raise
    result.outputs = {n: returned[n] if n in returned else records[n] for n in task.outputs}
    result.values = {n: values[n] for n in handed}
    if measured is not None:
        measured.set_result(records)  # after result.outputs: the write publishes them
    if publish and not later:
        _publish(task, result)


def _handed_over(
    task: Task, names: tuple[str, ...], values: Mapping[str, Any], registry: SerializerRegistry
) -> tuple[str, ...]:
    """The outputs to hand over in memory: numpy arrays stored as ``npy`` and too large to
    travel inline. They are frozen: a consumer must not change what its siblings read."""
    handed = []
    for name in names:
        value = values[name]
        if not is_npy_array(value) or value.nbytes <= task.inline_limit:
            continue
        given = task.serializers.get(name)
        if (registry.get(given) if given else registry.choose(value)).name == "npy":
            value.flags.writeable = False
            handed.append(name)
    return tuple(handed)


class _Digesting:
    """A write-only sink that only hashes and counts what a serializer writes to it."""

    def __init__(self) -> None:
        self.hasher = new_hasher()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.hasher.update(view)
        self.size += view.nbytes
        return view.nbytes


def _measured(node: str, output: str, value: Any, registry: SerializerRegistry) -> dict[str, Any]:
    """The record of an array not stored yet: its ``npy`` bytes hashed in memory. A plain
    C-contiguous array is read once: each chunk feeds both the digest of its ``.npy`` bytes
    (the header, then the buffer as it is) and its value digest (``value_digest_teed``)."""
    sink = _Digesting()
    serializer = registry.get("npy")
    canonical = None
    header = npy_header(value, registry)
    if header is not None:
        sink.write(header)
        canonical = value_digest_teed(value, sink.hasher)
        sink.size += value.nbytes
    if canonical is None:  # another layout: serialize to the sink, then hash the value apart
        sink = _Digesting()
        dump_value(value, sink, serializer, node=node, output=output)  # type: ignore[arg-type]
    stored = StoredObject(sink.hasher.hexdigest(), sink.size, None)
    return _record(value, serializer, stored, canonical)


def _write_later(
    task: Task,
    names: tuple[str, ...],
    values: Mapping[str, Any],
    measured: Future[dict[str, dict[str, Any]]],
    result: TaskResult,
    registry: SerializerRegistry,
    publish: bool,
) -> None:
    """Store the outputs handed over (``npy``, see :func:`_handed_over`), started as soon as
    the node returned them: the bytes are hashed as they are written (one pass) and, before
    the object is published, the records measured in memory meanwhile are awaited (a node
    that failed meanwhile leaves nothing: the temp file is dropped); the object written must
    be the one its record names. Then publish the record if asked to."""
    serializer = registry.get("npy")
    for name in names:
        with task.store.writer(inline_limit=-1) as writer:
            dump_value(values[name], writer, serializer, node=task.node, output=name)
            announced = measured.result()[name]
            written = writer.commit()
        if (written.digest, written.size) != (announced["digest"], announced["size"]):
            raise StoreError(
                f"node {task.node!r}: output {name!r} was written as {written.digest} "
                f"({written.size} bytes), not as the {announced['digest']} "
                f"({announced['size']} bytes) handed to its consumers: was the array changed "
                "after the node returned it?",
                path=task.store.location(announced["digest"]),
            )
    if publish:
        _publish(task, result)


def _in_background(node: str, work: Callable[[], None]) -> Future[None]:
    """Run ``work`` in a new daemon thread; a future of its end (its exception if it failed)."""
    future: Future[None] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=run, name=f"etherealfabric-store-{node}", daemon=True).start()
    return future


def store_values(
    node: str,
    outputs: tuple[str, ...],
    values: Mapping[str, Any],
    serializers: Mapping[str, str],
    store: Store,
    inline_limit: int,
    *,
    registry: SerializerRegistry = default_registry,
) -> tuple[dict[str, dict[str, Any]], dict[str, bytes]]:
    """Serialize and store a node's outputs: their records, and the bytes of the small ones.
    A record names the output's digest, serializer, size, type and whether it is inline, and,
    for a value with a canonical hash (frames, arrays, plain values), its ``value`` digest."""
    records: dict[str, dict[str, Any]] = {}
    inline: dict[str, bytes] = {}
    for name in outputs:
        value = values[name]
        if isinstance(value, Secret):
            raise OutputError(
                f"node {node!r}: output {name!r} is a Secret; outputs are stored and secrets "
                "never are: return what you computed with it instead",
                node=node,
            )
        chosen = name not in serializers
        serializer = registry.choose(value) if chosen else registry.get(serializers[name])
        with noting():  # what a pickle names by reference, noted as it is written (_record)
            try:
                stored = write_value(store, value, serializer, inline_limit, node=node, output=name)
            except SerializationError as exc:
                if not chosen or serializer.name == "cloudpickle":
                    raise
                # an automatic choice (parquet for a frame) that could not write this value:
                # fall back to cloudpickle rather than fail the node
                failed, serializer = serializer.name, registry.get("cloudpickle")
                stored = write_value(store, value, serializer, inline_limit, node=node, output=name)
                say_pickled(node, name, value, f"writing it as {failed} failed: {exc.__cause__}")
            else:
                if chosen and serializer.name == "cloudpickle":
                    say_pickled(node, name, value)
            records[name] = _record(value, serializer, stored)
        if stored.inline is not None:
            inline[stored.digest] = stored.inline
    return records, inline


def _record(
    value: Any, serializer: Serializer, stored: StoredObject, canonical: str | None = None
) -> dict[str, Any]:
    """An output's record: digest, serializer, size, type, inline, and when they apply the
    library versions (models), the canonical ``value`` digest (``canonical`` when the
    caller computed it already) or, for a pickle, the ``code`` it names by reference (user
    classes and functions, packages: ``hashing._pickled``)."""
    record: dict[str, Any] = {
        "digest": stored.digest,
        "serializer": serializer.name,
        "size": stored.size,
        "type": f"{type(value).__module__}.{type(value).__qualname__}",
        "inline": stored.inline is not None,
    }
    versions = getattr(serializer, "versions", None)
    if callable(versions):  # a model: the library versions it was made with
        record["versions"] = versions(value)
    if canonical is None:
        canonical = value_digest(value)
    if canonical is not None:  # downstream keys use it: equal values, equal keys
        record["value"] = canonical
    elif code := record_code(value, serializer.name):  # for downstream keys
        record["code"] = code
    return record


def _publish(task: Task, result: TaskResult) -> None:
    """Write small outputs and the action record to a shared store, objects first."""
    for data in result.inline.values():
        task.store.put_bytes(data)
    task.store.put_action(
        task.key, action_record(task.node, result.outputs, result.files, result.reads)
    )
