"""EtherealFabric: a Python pipeline engine that never does the same work twice.

A workflow is a DAG of nodes. Each node's code and inputs are hashed into a cache key, its
outputs are kept in a content-addressed store, and every run is recorded in a SQLite journal,
so re-runs skip what is up to date and a crashed run resumes where it stopped.

The public surface is what this module exports; importing it loads no backend, no networkx,
no SQLite layer and no optional package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .define._context import checkpoint
from .define._files import Directory, File, root_path
from .define._function import NodeFunction, node
from .define._node import Node, OutputRef, Outputs
from .define._params import Param, ParamRef
from .define._policies import SKIP, NodeError, RetryPolicy
from .define._secret import Secret
from .errors import (
    ArtifactMissingError,
    AttemptOverError,
    ConfigError,
    CorruptArtifactError,
    CycleError,
    DamagedJournalError,
    DefinitionError,
    DuplicateNodeError,
    EtherealFabricError,
    ExecutionError,
    FingerprintWarning,
    HashingError,
    JournalError,
    MapItemsError,
    NodeFailedError,
    NodeTimeoutError,
    OutputError,
    ParameterError,
    RemoteError,
    RunFailedError,
    RunNotFoundError,
    SerializationError,
    StaleCodeError,
    StoreConfigError,
    StoreError,
    StoreUnreachableError,
    UnknownBackendError,
    UnknownOptionError,
    UnknownOutputError,
    UnknownParameterError,
    WorkerDiedError,
)
from .run._events import Event, EventBus, Subscriber
from .states import EventKind, NodeStatus, RunStatus
from .workflow import Workflow

if TYPE_CHECKING:
    from .run._audit import untracked
    from .run._context import NodeContext, context
    from .run._results import NodeResults, Results
    from .store._serializers import Serializer, register_serializer

__version__ = "0.1.0"

__all__ = [
    "SKIP",
    "ArtifactMissingError",
    "AttemptOverError",
    "ConfigError",
    "CorruptArtifactError",
    "CycleError",
    "DamagedJournalError",
    "DefinitionError",
    "Directory",
    "DuplicateNodeError",
    "EtherealFabricError",
    "Event",
    "EventBus",
    "EventKind",
    "ExecutionError",
    "File",
    "FingerprintWarning",
    "HashingError",
    "JournalError",
    "MapItemsError",
    "Node",
    "NodeContext",
    "NodeError",
    "NodeFailedError",
    "NodeFunction",
    "NodeResults",
    "NodeStatus",
    "NodeTimeoutError",
    "OutputError",
    "OutputRef",
    "Outputs",
    "Param",
    "ParamRef",
    "ParameterError",
    "RemoteError",
    "Results",
    "RetryPolicy",
    "RunFailedError",
    "RunNotFoundError",
    "RunStatus",
    "Secret",
    "SerializationError",
    "Serializer",
    "StaleCodeError",
    "StoreConfigError",
    "StoreError",
    "StoreUnreachableError",
    "Subscriber",
    "UnknownBackendError",
    "UnknownOptionError",
    "UnknownOutputError",
    "UnknownParameterError",
    "WorkerDiedError",
    "Workflow",
    "__version__",
    "checkpoint",
    "context",
    "node",
    "open_run",
    "register_serializer",
    "root_path",
    "untracked",
]


_LAZY = {
    "Results": "run._results",
    "NodeResults": "run._results",
    "Serializer": "store._serializers",
    "register_serializer": "store._serializers",
    "open_run": "run._reopen",
    "context": "run._context",
    "NodeContext": "run._context",
    "untracked": "run._audit",
}


def __getattr__(name: str) -> Any:
    """Names that load their layer on first use, so ``import etherealfabric`` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'etherealfabric' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
