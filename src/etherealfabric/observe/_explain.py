"""Why a node ran, was cached, or will run: key components compared with the previous run.

A node's cache key is a hash of its components (:meth:`plan.KeyInfo.components`): node kind,
code fingerprint with one digest per function, class and constant it uses, ``version``,
parameter hashes with short reprs, and the digests of the upstream outputs it reads. When a key
changes, comparing the components with those of the previous keyed run of the same node in the
same workflow says which part changed::

    >>> print(explain_node(journal, "20261125-211530-3f9a1c", "fit"))
    fit in run 20261125-211530-3f9a1c (workflow 'train'): ran (succeeded)
      compared with run 20261125-201002-8be2d1:
      - code: flow.helper changed
      - param lr: 0.1 → 0.01
      - input df: clean.result changed (da2e658e → 1f0c33a9)

The dry run (:mod:`etherealfabric.observe._dryrun`) asks the same question before a run, with
:func:`diff_components` and the same words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import EtherealFabricError
from ..journal import _history as history
from ..journal._browse import attempts_as_shown, shown
from ..states import NodeStatus, RunStatus

if TYPE_CHECKING:
    from ..journal._journal import Journal

__all__ = [
    "Change",
    "Explanation",
    "NodeNotInRunError",
    "diff_components",
    "explain_node",
    "previous_outcome",
]

_EXECUTED = frozenset(
    {
        NodeStatus.SUCCEEDED,
        NodeStatus.FAILED,
        NodeStatus.FALLBACK,
        NodeStatus.RUNNING,
        NodeStatus.RETRYING,
        NodeStatus.INTERRUPTED,
    }
)
_NOT_RUN = (NodeStatus.UPSTREAM_FAILED, NodeStatus.CANCELLED, NodeStatus.SKIPPED)
#: statuses of a node that ran when its row has a key and a start (else it did not run)
_RAN_IF_STARTED = (NodeStatus.CANCELLED, NodeStatus.SKIPPED)
# an attempt that started and was stopped before it ended, and why; or was skipped after it failed
_STOPPED = {
    NodeStatus.CANCELLED: "it was stopped while it ran: the run was cancelled (Ctrl-C, or an "
    "error of the run itself) before the node ended",
    NodeStatus.INTERRUPTED: "it was stopped while it ran: the run's process died before the "
    "node ended",
    NodeStatus.SKIPPED: "it failed, then its on_error handler skipped it (SKIP): the nodes "
    "below it were skipped",
}
_STOPPED_FROM_OUTSIDE = (
    "it was stopped while it ran: the run was stopped from outside (SIGTERM: `kill`, a job "
    "scheduler, a container stopping; recorded interrupted) before the node ended"
)


@dataclass(frozen=True)
class Change:
    """One part of a key that differs from the previous run's.

    ``part`` is ``kind``, ``code``, ``package``, ``version``, ``param``, ``input``, ``output``,
    ``write`` (a declared file or folder) or ``key``;
    ``change`` is ``changed``, ``added`` or ``removed``. A package's ``old``/``new`` are its
    versions (``package scikit-learn 1.5.2 → 1.6.0``).
    """

    part: str
    name: str | None
    change: str
    old: str | None = None
    new: str | None = None

    def __str__(self) -> str:
        label = f"{self.part} {self.name}" if self.name and self.part != "code" else self.part
        if self.part == "code":
            return f"code: {self.name or 'the node'} {self.change}"
        if self.part == "package":
            return _package_text(self)
        if self.part == "input" and self.change == "changed" and self.old and self.new:
            return _input_text(self.name, self.old, self.new)
        if self.change == "added":
            return f"{label}: added ({self.new})" if self.new is not None else f"{label}: added"
        if self.change == "removed":
            return (
                f"{label}: removed (was {self.old})"
                if self.old is not None
                else f"{label}: removed"
            )
        if self.old is None and self.new is None:
            return f"{label}: changed"
        return f"{label}: {self.old} → {self.new}"


def diff_components(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """The parts of two nodes' key components that differ, in a stable order."""
    changes: list[Change] = []
    if old.get("kind") != new.get("kind"):
        changes.append(Change("kind", None, "changed", old.get("kind"), new.get("kind")))
    changes += _code_changes(old, new)
    if old.get("version") != new.get("version"):
        changes.append(
            Change("version", None, "changed", _text(old.get("version")), _text(new.get("version")))
        )
    changes += _workflow_param_changes(old, new)
    whole = {*(old.get("param_args") or ())} & {*(new.get("param_args") or ())}
    changes += [c for c in _param_changes(old, new) if c.name not in whole]
    changes += _input_changes(old.get("inputs") or {}, new.get("inputs") or {})
    changes += _input_code_changes(old.get("input_code") or {}, new.get("input_code") or {})
    for part in ("outputs", "writes"):  # components recorded before these were kept say nothing
        if part in old and part in new:
            changes += _list_changes(part.rstrip("s"), old[part], new[part])
    return changes


def _list_changes(part: str, old: list[str], new: list[str]) -> list[Change]:
    """Names added to or removed from a node's outputs or declared writes."""
    return [Change(part, n, "added") for n in new if n not in old] + [
        Change(part, n, "removed") for n in old if n not in new
    ]


def _text(value: Any) -> str:
    return "none" if value is None else repr(value)


def _package_text(change: Change) -> str:
    if change.change == "changed":
        return f"package {change.name} {change.old} → {change.new}"
    if change.change == "added":
        return f"package {change.name} {change.new}: now used"
    return f"package {change.name} {change.old}: no longer used"


def _code_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    if old.get("code") == new.get("code"):
        return []
    before, after = old.get("code_parts") or {}, new.get("code_parts") or {}
    changes = [
        _part_change(n, "changed", before, after)
        for n in after
        if n in before and before[n] != after[n]
    ]
    changes += [_part_change(n, "added", before, after) for n in after if n not in before]
    changes += [_part_change(n, "removed", before, after) for n in before if n not in after]
    if old.get("code_source") != new.get("code_source"):
        changes.append(
            Change(
                "code",
                "fingerprint source",
                "changed",
                old.get("code_source"),
                new.get("code_source"),
            )
        )
    return changes or [Change("code", None, "changed")]


def _part_change(
    name: str, change: str, before: Mapping[str, str], after: Mapping[str, str]
) -> Change:
    """A code part that changed; ``package:NAME`` parts hold versions, shown as such."""
    if name.startswith(_PACKAGE):
        return Change("package", name[len(_PACKAGE) :], change, before.get(name), after.get(name))
    return Change("code", name, change)


_PACKAGE = "package:"


def _workflow_param_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Workflow parameters the node reads (``param model.C: 1.0 → 0.5``), see define/_params."""
    before, after = old.get("workflow_params") or {}, new.get("workflow_params") or {}
    kind = {True: "changed", False: "added"}
    return [
        Change(
            "param", p, kind[p in before] if p in after else "removed", before.get(p), after.get(p)
        )
        for p in sorted({*before, *after})
        if before.get(p) != after.get(p)
    ]


def _param_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    inputs = {*(old.get("inputs") or {}), *(new.get("inputs") or {})}
    before, after = old.get("params") or {}, new.get("params") or {}
    old_repr, new_repr = old.get("params_repr") or {}, new.get("params_repr") or {}
    changes = []
    for name in [*after, *(n for n in before if n not in after)]:
        if name in inputs or before.get(name) == after.get(name):
            continue
        if name not in before:
            changes.append(Change("param", name, "added", new=new_repr.get(name)))
        elif name not in after:
            changes.append(Change("param", name, "removed", old=old_repr.get(name)))
        else:
            was, now = old_repr.get(name), new_repr.get(name)
            if was is not None and was == now:  # same description: show the digests
                was = f"{was} [{str(before[name])[:12]}]"
                now = f"{now} [{str(after[name])[:12]}]"
            changes.append(Change("param", name, "changed", was, now))
    return changes


def _input_changes(old: Mapping[str, list[str]], new: Mapping[str, list[str]]) -> list[Change]:
    changes = []
    for name in [*new, *(n for n in old if n not in new)]:
        before, after = list(old.get(name, [])), list(new.get(name, []))
        if before == after:
            continue
        if not before:
            changes.append(Change("input", name, "added", new=", ".join(map(_source, after))))
        elif not after:
            changes.append(Change("input", name, "removed", old=", ".join(map(_source, before))))
        else:
            changes.append(Change("input", name, "changed", ", ".join(before), ", ".join(after)))
    return changes


def _input_code_changes(
    old: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]]
) -> list[Change]:
    """What changed in the code behind pickled inputs (a class's fingerprint, a package's
    version: ``hashing/_pickled.py``), for inputs read in both runs."""
    changes = []
    for param in [p for p in new if p in old]:
        before, after = old[param], new[param]
        for name in sorted({*before, *after}):
            was, now = before.get(name), after.get(name)
            if was != now and was is not None and now is not None:
                package = name.startswith("package:")
                label = f"package {name.partition(':')[2]}" if package else name
                was, now = (was, now) if package else (was[:12], now[:12])
                changes.append(Change(f"code behind input {param}", label, "changed", was, now))
    return changes


def _source(ref: str) -> str:
    return ref.rpartition("@")[0] or ref


def _digest(ref: str) -> str:
    return ref.rpartition("@")[2][:8]


def _input_text(name: str | None, old: str, new: str) -> str:
    before, after = old.split(", "), new.split(", ")
    if list(map(_source, before)) != list(map(_source, after)):
        return (
            f"input {name}: now reads {', '.join(map(_source, after))} "
            f"instead of {', '.join(map(_source, before))}"
        )
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    return (
        f"input {name}: {', '.join(_source(b) for _, b in moved)} changed "
        f"({', '.join(_digest(a) for a, _ in moved)} → {', '.join(_digest(b) for _, b in moved)})"
    )


# -- explain a node of a past run -------------------------------------------------------------
@dataclass(frozen=True)
class Explanation:
    """Why ``node`` ran, was cached or did not run in run ``run_id``.

    ``verdict`` is ``executed``, ``cached`` or ``not_run``; ``reason`` is one of ``changed``,
    ``no_previous_run``, ``same_key``, ``read_changed`` (a data file the node read changed),
    ``previous_failed`` (same key as an attempt that failed or did not finish), ``forced``
    (``--force``),
    ``no_components``, ``cached``, ``no_key``,
    ``upstream_failed``, ``cancelled``, ``skipped``, ``not_run``.
    """

    run_id: str
    node: str
    workflow: str
    status: NodeStatus
    verdict: str
    reason: str
    key: str | None = None
    changes: tuple[Change, ...] = ()
    previous_run: str | None = None
    previous_key: str | None = None
    error: str | None = None
    detail: str = ""
    uncovered: tuple[str, ...] = ()  # what the node's key does not cover (dynamic look-ups...)
    run_status: str | None = None  # how the run ended (why a node stopped while it ran)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (changes as dicts, with their text)."""
        data = asdict(self)
        data["status"] = self.status.value
        data["changes"] = [{**asdict(c), "text": str(c)} for c in self.changes]
        data["summary"] = self.summary()
        data["stopped"] = self.stopped()
        return data

    def stopped(self) -> str | None:
        """The line saying how a node that ran was stopped before it ended (or skipped after
        it failed), or None."""
        if self.verdict != "executed" or self.status not in _STOPPED:
            return None
        if self.status is NodeStatus.CANCELLED and self.run_status == RunStatus.INTERRUPTED:
            return _STOPPED_FROM_OUTSIDE  # (cancelled by a SIGTERM: the run interrupted)
        return _STOPPED[self.status]

    def summary(self) -> str:
        """One line: what happened and the main reason."""
        if self.reason == "changed":
            return "; ".join(str(c) for c in self.changes)
        return self.detail

    def __str__(self) -> str:
        head = f"{self.node} in run {self.run_id} (workflow {self.workflow!r}): "
        head += {"executed": "ran", "cached": "cached", "not_run": "did not run"}[self.verdict]
        head += f" ({self.status})" if self.verdict == "executed" else ""
        lines = [head]
        stopped = self.stopped()
        if stopped:
            lines.append(f"  {stopped}")
        if self.reason == "changed":
            lines.append(f"  compared with run {self.previous_run}:")
            lines += [f"  - {c}" for c in self.changes]
        else:
            lines.append(f"  {self.detail}")
        if self.error and self.verdict == "executed":
            lines.append(f"  error: {self.error}")
        lines += [f"  not covered by the key: {item}" for item in self.uncovered]
        return "\n".join(lines)


class NodeNotInRunError(EtherealFabricError):
    """The run has no row for that node."""


def explain_node(journal: Journal, run_id: str, node: str) -> Explanation:
    """Why ``node`` ran (or was cached, or did not run) in run ``run_id`` (a unique prefix works).

    Raises :class:`~etherealfabric.errors.RunNotFoundError` for an unknown run and
    :class:`NodeNotInRunError` (an ``EtherealFabricError``) when the run has no such node.
    """
    run = shown(journal.get_run(run_id), journal)  # a dead run's nodes: not running
    attempts = attempts_as_shown(run, history.node_attempts(journal, run["id"], node))
    if not attempts:  # (the words of `cat`: a node an interrupted run never reached says so)
        why, _ = history.no_node(run, node, history.node_names(journal, run["id"]))
        raise NodeNotInRunError(f"{why}. See `etherealfabric show {run['id']}`")
    row = attempts[-1]
    components = history.components_of(journal, row) if row["cache_key"] else None
    base = {"run_id": run["id"], "node": node, "workflow": run["workflow"],
            "uncovered": tuple((components or {}).get("uncovered") or ()),
            "run_status": run["status"]}  # fmt: skip
    status, key = NodeStatus(row["status"]), row["cache_key"]
    if status is NodeStatus.CACHED:
        return _cached(journal, run, row, base)
    # a cancelled row with a key and a start: the node ran, and the run stopped meanwhile; a
    # skipped one: it ran and failed, and its on_error handler said SKIP
    if status not in _EXECUTED and not (status in _RAN_IF_STARTED and key and row["started_at"]):
        return _not_run(row, base)
    if key is None:
        return Explanation(**base, status=status, verdict="executed", reason="no_key",
                           error=row["error"],
                           detail="it failed before its cache key could be computed")  # fmt: skip
    previous = history.previous_keyed_run(
        journal, node, workflow=run["workflow"], before=run["started_at"]
    )
    return _compare(journal, row, previous, base, components=components)


def _cached(
    journal: Journal, run: Mapping[str, Any], row: Mapping[str, Any], base: dict[str, Any]
) -> Explanation:
    key = row["cache_key"]
    producer = history.producer_of(journal, key, before=run["started_at"]) if key else None
    if producer is None:
        detail = (
            f"cached: key {key} was found in the cache, computed in a run no longer in this "
            "journal (or by someone else, through the shared store)"
        )
        return Explanation(**base, status=NodeStatus.CACHED, verdict="cached", reason="cached",
                           key=key, detail=detail)  # fmt: skip
    other = f" (node {producer['node']!r})" if producer["node"] != row["node"] else ""
    return Explanation(
        **base, status=NodeStatus.CACHED, verdict="cached", reason="cached", key=key,
        previous_run=producer["run_id"], previous_key=key,
        detail=f"cached: same key as run {producer['run_id']}{other}",
    )  # fmt: skip


def _not_run(row: Mapping[str, Any], base: dict[str, Any]) -> Explanation:
    status = NodeStatus(row["status"])
    if status is NodeStatus.UPSTREAM_FAILED:
        detail = f"did not run: {row['error'] or 'an upstream node failed'}"
    elif status is NodeStatus.CANCELLED:
        detail = "did not run: the run stopped (a failure or an interruption) before it started"
    elif status is NodeStatus.SKIPPED:
        detail = f"did not run: {row['error'] or 'skipped by an on_error handler'}"
    else:
        detail = f"did not run: {status}"
    reason = status.value if status in _NOT_RUN else "not_run"
    return Explanation(**base, status=status, verdict="not_run", reason=reason,
                       error=row["error"], detail=detail)  # fmt: skip


def _compare(
    journal: Journal,
    row: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    base: dict[str, Any],
    *,
    components: Mapping[str, Any] | None,
) -> Explanation:
    common = {**base, "status": NodeStatus(row["status"]), "verdict": "executed", "key": row["cache_key"],
              "error": row["error"]}  # fmt: skip
    if previous is None:
        return Explanation(**common, reason="no_previous_run",
                           detail="no previous run of this node in this workflow")  # fmt: skip
    prior = {"previous_run": previous["run_id"], "previous_key": previous["cache_key"]}
    if previous["cache_key"] == row["cache_key"]:
        marks = history.start_marks(journal, row["run_id"], row["node"])
        if "forced" in marks:  # --force: run whatever the cache held
            detail = f"same key as run {previous['run_id']}, but the run forced it (--force)"
            return Explanation(**common, **prior, reason="forced", detail=detail)
        if "stale" in marks:  # "'data.csv', a file it read, changed since its cached result"
            detail = f"same key as run {previous['run_id']}, but {marks['stale']}"
            return Explanation(**common, **prior, reason="read_changed", detail=detail)
        ended = previous_outcome(previous, journal)
        if ended is not None:  # it failed, or its run was cut short: no result was stored
            detail = f"same key as run {previous['run_id']}, {ended}; it ran again"
            return Explanation(**common, **prior, reason="previous_failed", detail=detail)
        detail = (
            f"same key as run {previous['run_id']}, but its cached result was missing or "
            "corrupt (or not yet stored), so it ran again"
        )
        return Explanation(**common, **prior, reason="same_key", detail=detail)
    old = history.components_of(journal, previous)
    if old is None or components is None:
        detail = (
            f"its key differs from run {previous['run_id']}'s ({previous['cache_key']}), "
            "but the components of one of them are no longer recorded"
        )
        return Explanation(**common, **prior, reason="no_components", detail=detail)
    changes = diff_components(old, components) or [
        Change("key", None, "changed", previous["cache_key"], row["cache_key"])
    ]
    return Explanation(**common, **prior, reason="changed", changes=tuple(changes))


def previous_outcome(previous: Mapping[str, Any], journal: Journal | None = None) -> str | None:
    """How a node's previous attempt with the same key ended, when it stored no result to
    reuse: ``where it failed: <error>``, ``where it did not finish (interrupted)``... None
    when it succeeded or was cached (its result was stored, and is gone since). ``explain``
    and ``plan`` say it in these words."""
    status = NodeStatus(previous["status"])
    if status in (NodeStatus.SUCCEEDED, NodeStatus.CACHED):
        return None
    if status is NodeStatus.DRIFTED:
        return "where its result was not stored (a file it read changed while it ran)"
    if status in (NodeStatus.FAILED, NodeStatus.RETRYING, NodeStatus.FALLBACK, NodeStatus.SKIPPED):
        error = f": {previous['error']}" if previous["error"] else ""
        return f"where it failed{error}"
    if status is NodeStatus.RUNNING:  # a run still going, or one that died unnoticed yet
        if journal is not None and _run_died(journal, str(previous["run_id"])):
            return "where it did not finish (interrupted)"
        return "where it did not finish (that run is still running, or died)"
    return f"where it did not finish ({status})"


def _run_died(journal: Journal, run_id: str) -> bool:
    """Whether run ``run_id`` is shown ``interrupted``: its process, of this host, is gone."""
    try:
        return bool(shown(journal.get_run(run_id))["status"] == RunStatus.INTERRUPTED.value)
    except EtherealFabricError:  # (no such run any more)
        return False
