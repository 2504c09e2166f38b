"""EtherealFabric: a Python pipeline engine that never does the same work twice.

A workflow is a DAG of nodes. Each node's code and inputs are hashed into a cache key, its
outputs are kept in a content-addressed store, and every run is recorded in a SQLite journal,
so re-runs skip what is up to date and a crashed run resumes where it stopped.

The public surface is what this module exports; importing it loads no backend, no networkx,
no SQLite layer and no optional package.
"""

from __future__ import annotations

from .define._node import Node, NodeFunction, OutputRef, Outputs, node
from .define._policies import SKIP, NodeError, RetryPolicy
from .errors import (
    ConfigError,
    CycleError,
    DefinitionError,
    DuplicateNodeError,
    EtherealFabricError,
    ExecutionError,
    NodeFailedError,
    NodeTimeoutError,
    OutputError,
    RunFailedError,
    SerializationError,
    StoreError,
    UnknownBackendError,
    UnknownOutputError,
)
from .hashing._files import Directory, File
from .workflow import Workflow

__version__ = "0.1.0"

__all__ = [
    "SKIP",
    "ConfigError",
    "CycleError",
    "DefinitionError",
    "Directory",
    "DuplicateNodeError",
    "EtherealFabricError",
    "ExecutionError",
    "File",
    "Node",
    "NodeError",
    "NodeFailedError",
    "NodeFunction",
    "NodeTimeoutError",
    "OutputError",
    "OutputRef",
    "Outputs",
    "RetryPolicy",
    "RunFailedError",
    "SerializationError",
    "StoreError",
    "UnknownBackendError",
    "UnknownOutputError",
    "Workflow",
    "__version__",
    "node",
]
