"""The exception tree. Every error EtherealFabric raises derives from one base class.

```
EtherealFabricError
├── DefinitionError            a workflow or node is defined wrongly
│   ├── CycleError             the graph has a cycle (``.cycle`` lists the path)
│   ├── DuplicateNodeError     two nodes share a name
│   └── UnknownOutputError     a reference names an output the node does not declare
├── ConfigError                a setting or environment variable has a bad value
│   ├── UnknownBackendError    no backend of that name
│   ├── UnknownOptionError     a mistyped option or setting (also a TypeError)
│   ├── StoreConfigError       a shared store is set up wrongly: no bucket, no credentials...
│   │                          (also a StoreError)
│   └── ParameterError         a workflow parameter has a bad value or declaration
│       └── UnknownParameterError  no parameter of that name (also an AttributeError)
├── HashingError               a value cannot be hashed at all
├── SerializationError         an output cannot be (de)serialized
├── OutputError                ``run()`` returned missing or undeclared outputs
├── StoreError                 the artifact store cannot be read or written
│   ├── ArtifactMissingError   an object named by an action record is gone
│   ├── CorruptArtifactError   an object's bytes do not match its digest
│   └── StoreUnreachableError  a shared store did not answer in time (a network error)
├── JournalError               the run journal cannot be read or written
│   ├── DamagedJournalError    the journal file is damaged or not a database (``.path``)
│   └── RunNotFoundError       no run with that id
└── ExecutionError             a run did not finish successfully
    ├── NodeFailedError        one node failed (``.node``, ``.attempts``, ``__cause__``)
    ├── NodeTimeoutError       an attempt ran past the node's ``timeout=`` (also a TimeoutError)
    ├── AttemptOverError       an attempt used its checkpoint after it was abandoned or ended
    ├── MapItemsError          a mapped node's items are not a sequence or mapping (a TypeError)
    ├── StaleCodeError         a worker's copy of the node's code is not the code the run keyed
    ├── RemoteError            stands in for a worker's exception that could not be sent back
    ├── WorkerDiedError        the worker process running a task died (``.pid``, ``.signal``)
    └── RunFailedError         the run failed (``.results``, ``.failures``)
```

Each error carries the context it is about as attributes (node, output, path, setting) so
programs can react to it and messages can say what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "ArtifactMissingError",
    "AttemptOverError",
    "ConfigError",
    "CorruptArtifactError",
    "CycleError",
    "DamagedJournalError",
    "DefinitionError",
    "DuplicateNodeError",
    "EtherealFabricError",
    "ExecutionError",
    "FingerprintWarning",
    "HashingError",
    "JournalError",
    "MapItemsError",
    "NodeFailedError",
    "NodeTimeoutError",
    "OutputError",
    "ParameterError",
    "RemoteError",
    "RunFailedError",
    "RunNotFoundError",
    "SerializationError",
    "StaleCodeError",
    "StoreConfigError",
    "StoreError",
    "StoreUnreachableError",
    "UnknownBackendError",
    "UnknownOptionError",
    "UnknownOutputError",
    "UnknownParameterError",
    "WorkerDiedError",
]


class EtherealFabricError(Exception):
    """Base class of every error raised by EtherealFabric."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (process and remote backends); their __init__
        # signatures differ from ``args``, so rebuild them without calling __init__.
        return (_rebuild, (type(self), self.args, self.__dict__))


#: two letters that start English words: a word starting otherwise with F, H, L, M, N, R, S or
#: X is said letter by letter (an ndarray, an SVC, an S3FileSystem, an HTTPResponse)
_CLUSTERS = ("fl", "fr", "sc", "sh", "sk", "sl", "sm", "sn", "sp", "sq", "st", "sw", "rh")


def a_or_an(word: str) -> str:
    """``word`` with its indefinite article, for messages, by how it is said: ``an int``,
    ``an ndarray``, ``an SVC``, ``a str``, ``a float``, ``a uint8`` (leading underscores
    skipped)."""
    head = word.lstrip("_")
    low = head.lower()
    if low[:1] in ("a", "e", "i", "o", "u"):
        you = low.startswith(("uint", "uni", "use", "usu", "uti", "uu", "ur", "eu", "one"))
        return f"{'a' if you else 'an'} {word}"
    spelled = low[:1] in ("f", "h", "l", "m", "n", "r", "s", "x") and len(head) > 1 and (
        head[:2].isupper() or head[1].isdigit()
        or (low[1] not in "aeiouy" and low[:2] not in _CLUSTERS)
    )  # fmt: skip
    return f"{'an' if spelled else 'a'} {word}"


def _rebuild(cls: type[EtherealFabricError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class DefinitionError(EtherealFabricError):
    """A workflow or node is defined wrongly; raised before anything runs."""

    def __init__(self, message: str, *, nodes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.nodes = nodes


class CycleError(DefinitionError):
    """The dependency graph contains a cycle; ``cycle`` is the path, first node repeated."""

    def __init__(self, cycle: list[str]) -> None:
        path = " -> ".join([*cycle, cycle[0]]) if cycle else "?"
        super().__init__(
            f"the workflow has a dependency cycle: {path}. "
            "Remove one of these edges so that the graph is acyclic.",
            nodes=tuple(cycle),
        )
        self.cycle = cycle


class DuplicateNodeError(DefinitionError):
    """Two different nodes were given the same name."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"two different nodes are named {name!r}; node names must be unique in a workflow "
            "(pass name=... to tell them apart)",
            nodes=(name,),
        )
        self.name = name


class UnknownOutputError(DefinitionError):
    """A reference names an output its node does not declare."""

    def __init__(self, node: str, output: str, declared: list[str]) -> None:
        super().__init__(
            f"node {node!r} has no output {output!r}; it declares {declared or 'no outputs'}",
            nodes=(node,),
        )
        self.node = node
        self.output = output
        self.declared = declared


class ConfigError(EtherealFabricError):
    """A setting has a bad value; ``setting`` names it (an argument or environment variable)."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class UnknownBackendError(ConfigError):
    """No execution backend is registered under the requested name."""

    def __init__(self, name: str, known: list[str], *, setting: str | None = None) -> None:
        import difflib  # (only for a suggestion)

        where = f" (from {setting})" if setting else ""
        close = difflib.get_close_matches(name.strip().lower(), known, n=1)
        hint = f" did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"unknown execution backend {name!r}{where}:{hint} the known backends are "
            f"{', '.join(known)}",
            setting=setting,
        )
        self.name = name
        self.known = known


class UnknownOptionError(ConfigError, TypeError):
    """A keyword argument, option or setting that the function does not know (likely a typo).

    ``option`` is the unknown word, ``where`` the call it was given to, ``valid`` the accepted
    names and ``suggestion`` the closest of them (``None`` when none is close). It is also a
    ``TypeError``, as Python's own error for an unexpected keyword argument is.
    """

    def __init__(self, option: str, *, where: str, valid: Iterable[str]) -> None:
        names = sorted(set(valid))
        import difflib  # (only for a suggestion)

        close = difflib.get_close_matches(option, names, n=1)
        suggestion = close[0] if close else None
        hint = f"; did you mean {suggestion!r}?" if suggestion else "."
        listed = ", ".join(names) if names else "none"
        super().__init__(
            f"{where} got an unknown option {option!r}{hint} Valid options: {listed}",
            setting=option,
        )
        self.option = option
        self.where = where
        self.valid = tuple(names)
        self.suggestion = suggestion


class ParameterError(ConfigError):
    """A workflow parameter was declared wrongly or given a value of the wrong type;
    ``setting`` is its dotted path (``model.C``)."""


class UnknownParameterError(ParameterError, AttributeError):
    """No parameter of that name: ``parameter`` is the name given, ``suggestion`` the closest
    declared one (``None`` when none is close), ``known`` every declared path. Also an
    ``AttributeError``, as ``wf.params.n_row`` is an attribute lookup."""

    def __init__(self, parameter: str, *, workflow: str, known: Iterable[str]) -> None:
        names = sorted(set(known))
        import difflib  # (only for a suggestion)

        close = difflib.get_close_matches(parameter, names, n=1, cutoff=0.5)
        suggestion = close[0] if close else None
        hint = f"; did you mean {suggestion!r}?" if suggestion else "."
        declared = "DEFAULT"
        for part in reversed(parameter.split(".")):  # model.C: {'model': {'C': DEFAULT}}
            declared = f"{{{part!r}: {declared}}}"
        listed = (
            ", ".join(names)
            if names
            else (
                f"none (declare it with Workflow(..., params={declared}) and pass it to a node "
                f"as wf.params.{parameter})"
            )
        )
        ConfigError.__init__(
            self,
            f"workflow {workflow!r} has no parameter {parameter!r}{hint} Its parameters: {listed}",
            setting=parameter,
        )
        self.parameter = parameter
        self.suggestion = suggestion
        self.known = tuple(names)


class HashingError(EtherealFabricError):
    """A value could not be hashed, even through cloudpickle."""


class SerializationError(EtherealFabricError):
    """An output could not be serialized or deserialized."""

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        output: str | None = None,
        type_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.node = node
        self.output = output
        self.type_name = type_name


class OutputError(EtherealFabricError):
    """A node's ``run()`` returned outputs that do not match its declared outputs."""

    def __init__(self, message: str, *, node: str) -> None:
        super().__init__(message)
        self.node = node


class StoreError(EtherealFabricError):
    """The artifact store could not be read or written."""

    def __init__(self, message: str, *, path: str | None = None, digest: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.digest = digest
        self._digests: list[str] = []

    @property
    def digests(self) -> list[str]:
        """The digests of every unusable input a node found at once (this error's first)."""
        return self._digests or ([self.digest] if self.digest else [])

    @digests.setter
    def digests(self, digests: list[str]) -> None:
        self._digests = list(digests)


def raise_unusable(found: list[StoreError]) -> None:
    """Raise the first of the inputs a node found missing or corrupt, naming them all in its
    ``digests`` (so that their producers are recomputed at once); nothing if there are none."""
    if found:
        found[0].digests = [digest for exc in found for digest in exc.digests]
        raise found[0]


class ArtifactMissingError(StoreError):
    """An object that an action record names is not in the store."""


class CorruptArtifactError(StoreError):
    """An object's bytes do not match its content digest."""


class StoreUnreachableError(StoreError):
    """A shared store did not answer: a connection error or a timeout (not a refusal).

    Runs go on without it (see ``store/_layered.py``); commands that need it fail with it.
    """


class StoreConfigError(ConfigError, StoreError):
    """A shared store cannot be used as configured: its bucket does not exist, there are no
    credentials, a read-only folder is to be written (mode read-write). Met by a run's first
    lookup in the store (or checked as the run starts), it stops the run, as a configuration
    error and not as a node's failure; ``setting`` names what to fix, ``path`` the store.
    Also a :class:`StoreError`, which it was before it had a class of its own."""

    def __init__(self, message: str, *, setting: str | None = None, path: str | None = None):
        super().__init__(message, setting=setting)  # (StoreError's __init__ comes next)
        self.path = path


class JournalError(EtherealFabricError):
    """The run journal could not be read or written."""


class DamagedJournalError(JournalError):
    """The journal file is damaged, or is not a SQLite database at all (``path``)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class RunNotFoundError(JournalError):
    """No run with the given id exists in the journal."""

    def __init__(self, run_id: str) -> None:
        hint = "" if run_id[:1].isdigit() or run_id == "latest" else " (`latest`: the newest run)"
        super().__init__(
            f"no run {run_id!r} in the journal; `etherealfabric runs` lists them{hint}"
        )
        self.run_id = run_id


class ExecutionError(EtherealFabricError):
    """A run did not finish successfully."""


class NodeFailedError(ExecutionError):
    """A node raised; the original exception is ``__cause__`` and ``original``."""

    def __init__(
        self,
        node: str,
        *,
        attempts: int,
        original: BaseException | None,
        traceback: str = "",
    ) -> None:
        kind = type(original).__name__ if original is not None else "error"
        plural = "s" if attempts != 1 else ""
        super().__init__(
            f"node {node!r} failed after {attempts} attempt{plural}: {kind}: {original}"
        )
        self.node = node
        self.attempts = attempts
        self.original = original
        self.traceback = traceback


class NodeTimeoutError(ExecutionError, TimeoutError):
    """An attempt ran longer than its ``timeout``; ``where``: its thread's stack then, or ""."""

    def __init__(self, node: str, timeout: float, *, stopped: bool, starting: bool = False) -> None:
        how = (
            "stopped"
            if stopped
            else "abandoned (threads cannot be stopped; it may still be running)"
        )
        text = (
            f"the process of node {node!r} did not start running it within {timeout:g}s "
            "(starting the process, loading the node and importing what it needs) and was "
            "stopped"
            if starting
            else f"node {node!r} ran past its timeout of {timeout:g}s and was {how}"
        )
        super().__init__(text)
        self.node, self.timeout, self.stopped, self.where = node, timeout, stopped, ""


class RemoteError(ExecutionError):
    """Stands in for an exception raised in a worker process that could not be sent back
    (it does not pickle, or its class cannot be rebuilt from its ``args``, as when its
    ``__init__`` takes other arguments): it keeps the original's type name, text and
    traceback text (``type_name``, ``remote_traceback``). :meth:`standing_in` makes one of a
    subclass named like the original, so that messages name the original type."""

    @classmethod
    def standing_in(cls, exc: BaseException, remote_traceback: str = "") -> RemoteError:
        """A stand-in for ``exc``, of a class named like ``type(exc)`` (a RemoteError)."""
        kind = type(exc)
        named = type(kind.__name__, (cls,), {"__qualname__": kind.__qualname__})
        return named(kind.__name__, str(exc), remote_traceback)  # type: ignore[no-any-return]

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkerDiedError(ExecutionError):
    """The worker process running a task died (killed, e.g. by the out-of-memory killer, or
    exited) before it sent the task's result back: ``pid``, ``signal`` (its name, or None)
    and ``exitcode``; ``notes`` are what the task reported while it ran (its attempts),
    ``started_at`` and ``died_at`` when it was handed to the worker and when it was found
    dead (``time.time()``)."""

    def __init__(
        self,
        message: str,
        *,
        pid: int,
        exitcode: int | None,
        signal: str | None = None,
        notes: list[Any] | None = None,
        started_at: float = 0.0,
        died_at: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal
        self.notes = list(notes or [])
        self.started_at = started_at
        self.died_at = died_at


class StaleCodeError(ExecutionError):
    """A worker's copy of code the node uses (a module imported by name) differs from the code
    the run keyed: it was edited after the worker imported it, or the worker's machine has
    another version. The node is not run, nothing is stored (``run/_codestamp.py``)."""


class AttemptOverError(ExecutionError):
    """An attempt used its checkpoint after the attempt was over: abandoned at its timeout
    (its thread runs on), or ended (the node succeeded or failed). Raised in that attempt's
    thread, where it ends the abandoned work early; it never replaces the attempt's outcome."""

    def __init__(self, node: str, attempt: int, why: str) -> None:
        super().__init__(
            f"node {node!r}: attempt {attempt} is over ({why}): its checkpoint can no longer "
            "be saved, loaded or cleared, so that it cannot overwrite the state of a later "
            "attempt or outlive the node's success"
        )
        self.node = node
        self.attempt = attempt
        self.why = why


class MapItemsError(ExecutionError, TypeError):
    """What a mapped node maps over is not a list, tuple or other sequence, nor a dict."""

    def __init__(self, message: str, *, node: str) -> None:
        super().__init__(message)
        self.node = node


class RunFailedError(ExecutionError):
    """A run finished with failed nodes; ``results`` holds what did complete."""

    def __init__(self, message: str, *, results: Any, failures: dict[str, str]) -> None:
        super().__init__(message)
        self.results = results
        self.failures = failures


class FingerprintWarning(UserWarning):
    """A node's key cannot cover some of what its code reads (a computed ``getattr``, ``eval``,
    an environment variable...), or its fingerprint used bytecode (no source). Filter it with
    :func:`warnings.filterwarnings` where that is on purpose."""
