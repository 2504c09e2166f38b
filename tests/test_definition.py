"""Defining workflows: references make edges, names are stable, bad graphs are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from etherealfabric import (
    CycleError,
    DefinitionError,
    DuplicateNodeError,
    Node,
    OutputError,
    RunFailedError,
    UnknownOutputError,
    Workflow,
    node,
)


class Add(Node):
    def __init__(self, a, b=0):
        super().__init__()
        self.a, self.b = a, b
        self.outputs = ["sum"]

    def run(self):
        return {"sum": self.a + self.b}


@node
def double(x):
    return x * 2


@node(outputs=["lo", "hi"])
def split(values, at):
    return [v for v in values if v < at], [v for v in values if v >= at]


@node
def total(parts):
    return sum(sum(p) for p in parts)


def test_references_create_edges_and_referenced_nodes_join_automatically() -> None:
    a = Add(1, 2)
    b = Add(a.outputs["sum"], 10)
    wf = Workflow("auto")
    wf.add_node(b)  # `a` is referenced, so it joins first
    assert [wf.name_of(n) for n in wf.nodes] == ["Add", "Add-2"]
    graph = wf.build()
    assert graph.order == ("Add", "Add-2")
    assert graph.upstream("Add-2") == ("Add",)
    assert wf.execute()[b]["sum"] == 13


def test_function_nodes_build_the_graph_from_calls_with_refs_in_containers() -> None:
    with Workflow("fn") as wf:
        d1 = double(3)
        d2 = double(d1)
        lo, hi = split([1, 5, 9, 2], at=d1)
        parts = total([lo, hi, (d2,)])
    names = [wf.name_of(n) for n in wf.nodes]
    assert names == ["double", "double-2", "split", "total"]
    graph = wf.build()
    assert set(graph.upstream("total")) == {"split", "double-2"}
    results = wf.execute()
    assert results[d2] == 12
    assert results[lo] == [1, 5, 2]
    assert results[hi] == [9]
    assert results[parts] == 1 + 5 + 2 + 9 + 12
    assert dict(results[split_node(wf)]) == {"lo": [1, 5, 2], "hi": [9]}


def split_node(wf: Workflow) -> Node:
    return wf["split"]


def test_dict_arguments_with_references() -> None:
    @node
    def keys_sum(mapping):
        return sum(mapping.values())

    with Workflow("dicts") as wf:
        a = double(1)
        b = double(2)
        s = keys_sum({"a": a, "b": b, "c": 100})
    assert wf.execute()[s] == 106


def test_node_function_outside_a_workflow_is_a_plain_call() -> None:
    assert double(21) == 42
    assert split([1, 2, 3], 2) == ([1], [2, 3])


def test_explicit_names_and_duplicates() -> None:
    wf = Workflow("names")
    a = wf.add_node(Add(1), name="first")
    wf.add_node(Add(2), name="second")
    assert wf["first"] is a
    with pytest.raises(DuplicateNodeError, match="'first'"):
        wf.add_node(Add(3), name="first")
    with Workflow("fnames") as wf2:
        double(1)
        with pytest.raises(DuplicateNodeError, match="'twice'"):
            node(name="twice")(lambda x: x)(1)
            node(name="twice")(lambda x: x)(2)
    assert len(wf2) == 2


def test_names_are_deterministic_across_builds() -> None:
    def build() -> list[str]:
        with Workflow("det") as wf:
            x = double(1)
            double(x)
            double(2)
        return [wf.name_of(n) for n in wf.nodes]

    assert build() == build() == ["double", "double-2", "double-3"]


def test_unknown_output_reference_names_node_and_output() -> None:
    a = Add(1)
    with pytest.raises(UnknownOutputError) as info:
        a.outputs["total"]
    assert info.value.node == "Add" and info.value.output == "total"
    assert "declares ['sum']" in str(info.value)
    with Workflow("multi"):
        outs = split([1], 1)
        with pytest.raises(UnknownOutputError, match="'middle'"):
            outs["middle"]


def test_cycle_is_rejected_with_its_path() -> None:
    wf = Workflow("cyc")
    a, b, c = Add(1), Add(2), Add(3)
    wf.add_dependency(a, b)
    wf.add_dependency(b, c)
    wf.add_dependency(c, a)
    with pytest.raises(CycleError) as info:
        wf.execute()
    assert set(info.value.cycle) == {"Add", "Add-2", "Add-3"}
    assert "->" in str(info.value)


def test_self_dependency_is_rejected() -> None:
    wf = Workflow("self")
    a = Add(1)
    with pytest.raises(DefinitionError, match="itself"):
        wf.add_dependency(a, a)


def test_bad_arguments_fail_at_the_call_site() -> None:
    with Workflow("args"), pytest.raises(DefinitionError, match=r"'double'.*bad arguments"):
        double(1, 2)


def test_add_node_rejects_non_nodes() -> None:
    with pytest.raises(DefinitionError, match="takes a Node"):
        Workflow("x").add_node(double)  # type: ignore[arg-type]


def test_run_returning_missing_or_undeclared_outputs_fails_the_node() -> None:
    class Bad(Node):
        def __init__(self, mode):
            super().__init__()
            self.mode = mode
            self.outputs = ["a", "b"]

        def run(self):
            return {"a": 1} if self.mode == "missing" else {"a": 1, "b": 2, "c": 3}

    for mode, expected in (("missing", "missing ['b']"), ("extra", "undeclared ['c']")):
        wf = Workflow(f"bad-{mode}")
        wf.add_node(Bad(mode))
        with pytest.raises(RunFailedError) as info:
            wf.execute()
        assert expected in str(info.value)
        assert "'Bad'" in str(info.value)
        assert isinstance(info.value.__cause__.original, OutputError)


def test_outputs_declared_twice_is_an_error() -> None:
    class Twice(Node):
        def __init__(self):
            super().__init__()
            self.outputs = ["a", "a"]

    with pytest.raises(DefinitionError, match=r"\['a'\] more than once"):
        Twice()


def test_serializer_for_undeclared_output_is_rejected() -> None:
    @node(serializers={"nope": "json"})
    def f():
        return 1

    with Workflow("ser") as wf:
        f()
    with pytest.raises(DefinitionError, match="undeclared output"):
        wf.build()


def test_targets_run_only_what_they_need() -> None:
    with Workflow("targets") as wf:
        a = double(1)
        b = double(a)
        c = double(100)
    results = wf.execute(targets=[b])
    assert set(results.statuses) == {"double", "double-2"}
    assert results[b] == 4
    assert c not in results


def test_a_workflow_block_collects_less_often_and_puts_the_collector_back() -> None:
    """A ``with`` block pauses full collections as a run does (run/_gcpause.py), also when it
    ends with an error, and a block inside a paused one leaves the pause to the outer one."""
    import gc

    before = gc.get_threshold(), gc.get_freeze_count()
    with Workflow("gc-outer") as wf:
        assert gc.get_threshold()[0] >= 10_000
        with Workflow("gc-inner"):
            pass
        assert gc.get_threshold()[0] >= 10_000
        double(1)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
    with pytest.raises(ZeroDivisionError), Workflow("gc-failing"):
        1 / 0  # noqa: B018
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
    assert len(wf) == 1


def test_a_dropped_workflows_nodes_go_by_reference_count() -> None:
    """Nodes hold no reference cycle (their ``outputs`` is a view made on access), so a
    workflow nobody holds any more goes at once, not at a full collection (0.3 s of CPU at
    the exit of a 100,000-node workflow); the view behaves as before."""
    import gc
    import warnings
    import weakref

    class Pair(Node):
        def __init__(self, x):
            super().__init__()
            self.x = x
            self.outputs = ["a", "b"]

        def run(self):
            return {"a": self.x, "b": -self.x}

    with warnings.catch_warnings():  # what earlier tests left to the collector is not ours
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    gc.disable()
    try:
        with Workflow("dropped") as wf:
            first = double(1)
            second = double(first)
        pair = wf.add_node(Pair(second))
        assert list(pair.outputs) == ["a", "b"] and pair.outputs == ["a", "b"]
        assert pair.outputs["b"].node is pair and "a" in pair.outputs
        with pytest.raises(UnknownOutputError):
            pair.outputs["c"]
        alive = [weakref.ref(wf), weakref.ref(pair), weakref.ref(first.node)]
        del wf, pair, first, second
        assert [ref() for ref in alive] == [None, None, None]
    finally:
        gc.enable()


def test_a_plain_call_keeps_no_bound_dict_and_builds_the_same_params() -> None:
    """A call giving every parameter in order is checked at the call site without keeping a
    dict of its arguments per node (the graph build names them): fewer objects alive for the
    collector to traverse at each collection and at exit; other calls keep theirs."""
    import gc

    @node
    def scale(x, factor=2):
        return x * factor

    with Workflow("plain-calls") as wf:
        root = double(1)
        gc.collect()
        before = len(gc.get_objects())
        refs = [scale(root, i) for i in range(1000)]
        grown = len(gc.get_objects()) - before
        default = scale(root)
        named = scale(root, factor=5)
    # per node: the node, its arguments' tuple and the reference returned (4 with the dict)
    assert grown <= 3 * 1000 + 50, grown
    specs = wf.build().specs
    first, last = wf.name_of(refs[0].node), wf.name_of(refs[-1].node)
    assert dict(specs[last].params)["factor"] == 999 and dict(specs[first].params)["factor"] == 0
    assert specs[last].params["x"].node == "double" and set(specs[last].params) == {"x", "factor"}
    assert dict(specs[wf.name_of(default.node)].params)["factor"] == 2
    assert dict(specs[wf.name_of(named.node)].params)["factor"] == 5
    with Workflow("plain-bad"), pytest.raises(DefinitionError, match=r"'scale'.*bad arguments"):
        scale(1, 2, 3)


class Scale(Node):
    """A class node whose base class holds a factor (a helper's attribute)."""

    def __init__(self, v, factor=2):
        super().__init__()
        self.v, self.factor = v, factor
        self.outputs = ["out"]

    def run(self):
        return {"out": self.v * self.factor}


def test_class_nodes_made_in_a_workflow_block_join_it_like_node_calls(
    tmp_path: Path,
) -> None:
    """A class node made inside ``with Workflow():`` is part of it (it was dropped silently
    when no other node referenced it: a terminal class node never ran), named in the order
    made, whatever references it; ``add_node`` of one already there only renames it."""
    with Workflow("mixed", home=str(tmp_path)) as wf:
        a = double(5)
        last = Scale(a, factor=3)  # the end of the graph: nothing references it
        other = Scale(7)
        wf.add_node(other, name="seven")
        mapped = Scale.map([1, 2, 3])  # a map: its node, not the template it is made from
    assert [wf.name_of(n) for n in wf.nodes] == ["double", "Scale", "seven", "Scale-3"]
    results = wf.execute()
    assert results[last]["out"] == 30 and results[other]["out"] == 14
    assert results[mapped]["out"] == [2, 4, 6]
    assert Add(1, 2).run() == {"sum": 3}  # outside a block: a plain object, added nowhere


@node
def plus_one(x):
    return x + 1


@node
def calls_a_node_function(x):
    return plus_one(x) * 2  # a plain call while the node runs


class MakesANode(Node):
    def __init__(self, x):
        super().__init__()
        self.x = x
        self.outputs = ["y"]

    def run(self):
        return {"y": Scale(self.x).run()["out"]}  # a class node made while it runs


def test_nodes_run_by_execute_inside_the_block_call_node_functions_as_functions(
    tmp_path: Path,
) -> None:
    """``execute()`` inside the ``with`` block: short nodes run in the caller's thread (the
    inline path), which is in the block; a ``@node`` function a node calls is still a plain
    call (it returned a reference: TypeError), and a class node it makes joins nothing."""
    with Workflow("inside", home=str(tmp_path)) as wf:
        ref = calls_a_node_function(1)
        for _ in range(5):
            ref = calls_a_node_function(ref)
        made = MakesANode(ref)
        results = wf.execute()
        assert results[ref] == 190
        assert results[made]["y"] == 380
        assert len([wf.name_of(n) for n in wf.nodes]) == 7
    assert wf.execute().cached == 7


def test_an_async_function_is_refused_as_a_node_with_what_to_do() -> None:
    async def fetch(url: str) -> str:
        return url

    with pytest.raises(DefinitionError, match=r"@node fetch: an async function.*asyncio\.run"):
        node(fetch)


def test_an_async_run_of_a_class_node_is_refused_with_what_to_do() -> None:
    with pytest.raises(DefinitionError, match=r"Fetch\.run is async.*asyncio\.run"):

        class Fetch(Node):
            async def run(self) -> dict[str, int]:
                return {"result": 1}


@pytest.mark.parametrize("name", [".", "..", " .. ", "a/b", "x\x1b[31m", ""])
def test_names_that_would_break_paths_or_links_are_refused(name: str) -> None:
    """``..`` as a node's name made its page in the web UI unreachable (a browser resolves
    ``/runs/ID/nodes/..`` to the run's page)."""

    def one() -> int:
        return 1

    with pytest.raises(DefinitionError, match="names must be"):
        node(name=name)(one)
