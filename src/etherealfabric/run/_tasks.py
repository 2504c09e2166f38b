"""Build the :class:`~etherealfabric.run._messages.Task` for a node whose key is known.

Inputs become what a worker can use anywhere: a handle naming each upstream output's stored
bytes (the bytes themselves when small), or, for an upstream ``File``/``Directory`` output, the
path it was stored from (restored there on a cache hit). The task also carries the node's
declared file outputs and its workflow's root, and the stat of its input files taken now,
after its key was computed from their content (one changed since counts as changed at once),
so that the worker can tell whether they changed while the node ran (``run/_files.py``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from ..backends._base import RetryStop
from ..define._policies import RetryPolicy
from ..define._refs import replace_refs
from ..errors import ArtifactMissingError, CorruptArtifactError, StoreError, raise_unusable
from ..plan._graph import InputRef
from ..plan._keys import KeyInfo
from ..store import Store
from ..store._links import LinkedOutputError
from ..store._serializers import PortableSerializers
from . import _audit
from ._cache import ArtifactCache
from ._checkpoint import CheckpointListing, finished_checkpoint
from ._codestamp import code_stamp
from ._drift import snapshot
from ._messages import OnRetry, Task
from ._preflight import warn_file_paths
from ._reads import code_texts

__all__ = ["build_task"]


def build_task(
    info: KeyInfo,
    *,
    run_id: str,
    outputs: Mapping[str, Mapping[str, Mapping[str, Any]]],
    cache: ArtifactCache,
    store: Store,
    inline_limit: int,
    default_retry: RetryPolicy | None,
    can_kill: bool,
    registered: PortableSerializers,
    hand_over: bool = False,
    background: bool = False,
    fresh: bool = False,
    checkpoints: CheckpointListing | None = None,
    on_retry: OnRetry | None = None,
    stop_retrying: threading.Event | None = None,
    printing: dict[str, list[str]] | None = None,
    retry_stop: RetryStop | None = None,
) -> tuple[Task, int]:
    """The task for a node, and how many bytes of inputs it reads (``checkpoints``: the run's
    listing of the store's checkpoints, asked before a stat per key; ``on_retry``: the
    scheduler's, given to a task that runs in its process, ``hand_over`` or on the driver, as
    ``stop_retrying``, set by a fail-fast stop, and ``printing``, where its attempts' captures
    are found while they run; a task run elsewhere carries ``retry_stop``, the backend's)."""
    spec = info.spec
    linked = cache.linked.pop(info.key, None)
    if linked is not None:  # its hit's files would go through a symbolic link: not run at all
        raise LinkedOutputError(f"node {spec.name!r}: {linked}", node=spec.name, link=linked.link)
    warn_file_paths(spec)  # a str naming a data file: its content is not in the key
    sizes: list[int] = []
    bad: list[StoreError] = []

    def handle(ref: InputRef) -> Any:
        record = outputs[ref.node][ref.output]
        sizes.append(int(record.get("size", 0)))
        try:
            return cache.input_for(record)
        except (ArtifactMissingError, CorruptArtifactError) as exc:
            bad.append(exc)  # the others are still checked: all are recomputed at once
            return None

    args = tuple(replace_refs(a, handle, kind=InputRef) for a in spec.call_args)
    kwargs = {k: replace_refs(v, handle, kind=InputRef) for k, v in spec.call_kwargs.items()}
    raise_unusable(bad)
    task = Task(
        run_id=run_id,
        node=spec.name,
        key=info.key,
        code=spec.code,
        is_class=spec.is_class,
        outputs=spec.outputs,
        args=args,
        kwargs=kwargs,
        store=store,
        serializers=spec.serializers,
        retry=spec.retry or default_retry,
        inline_limit=inline_limit,
        verify=cache.verify,
        publish=cache.publishes,
        timeout=spec.timeout,
        kill_on_timeout=can_kill,
        registered=registered,
        writes=spec.writes,
        root=spec.root,
        cwd=_audit._cwd or os.getcwd(),  # (working_folder(), inline: no call per node)
        inputs_seen=snapshot([*args, *kwargs.values()], info.hashed_at),
        hand_over=hand_over,
        background=background,
        names=code_texts(spec.code),
        # forced, or a checkpoint a kill left after the key's success: from the beginning
        fresh=fresh or finished_checkpoint(cache.journal, store, info.key, spec.name, checkpoints),
        code_stamp=() if hand_over or spec.on_driver else code_stamp(spec.code),
        on_retry=on_retry if hand_over or spec.on_driver else None,
        stop_retrying=stop_retrying if hand_over or spec.on_driver else retry_stop,
        printing=printing if hand_over or spec.on_driver else None,
    )
    return task, sum(sizes)
